"""Generate the Bybit and OKX parts of the bundled demo from its Binance part.

Run from the repository root: `python -m hub.data.make_demo` (seeded: the output is the
same every time). It reads `demo_session.jsonl` (Binance `forceOrder` frames), takes each
symbol's price path from it, and writes, in each exchange's documented wire shape:

- `demo_bybit.jsonl`: `allLiquidation.{SYMBOL}` pushes. Bybit's feed is complete, so
  around each Binance liquidation (a one-per-second sample of a busier market) it places a
  Poisson number of liquidations within the surrounding second, on the same side 85 % of
  the time, at a bankruptcy price 0.3-1.2 % through the path price, batched per symbol
  into 500 ms pushes as Bybit sends them.
- `demo_okx.jsonl`: the instruments REST response (contract values) first, then
  `liquidation-orders` pushes: a sample, about one for every two Binance liquidations,
  sizes in contracts (`sz` = base quantity / `ctVal`), arriving out of time order now and
  then as OKX's do.

Notionals are lognormal (median $4k, as Binance's) with a Pareto tail, scaled so that
Binance, Bybit and OKX hold roughly 45 %, 35 % and 20 % of the demo's notional.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

HERE = Path(__file__).parent
SEED = 20261130
# symbol: (price decimals, Bybit size step decimals, OKX contract value, notional scale)
SYMBOLS = {
    "BTCUSDT": (1, 3, "0.01", 2.0),
    "ETHUSDT": (2, 2, "0.1", 1.5),
    "SOLUSDT": (3, 1, "1", 1.0),
    "ADAUSDT": (4, 0, "100", 0.5),
    "BNBUSDT": (2, 2, "0.01", 0.5),
}
BYBIT_PER_BINANCE = 1.1  # mean Bybit liquidations around each Binance one
BYBIT_NOTIONAL = 1.2  # of a Binance-sized draw
OKX_PER_BINANCE = 0.5
OKX_NOTIONAL = 1.5
INSTRUMENTS_PATH = "/api/v5/public/instruments?instType=SWAP"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def price_paths(lines: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Per symbol, (trade times, average fill prices) of the Binance part, in time order."""
    paths: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for line in lines:
        order = line["raw"]["data"]["o"]
        paths[order["s"]].append((order["T"], float(order["ap"]) or float(order["p"])))
    return {
        symbol: ([t for t, _ in sorted(points)], [p for _, p in sorted(points)])
        for symbol, points in paths.items()
    }


def price_at(path: tuple[list[int], list[float]], time: int) -> float:
    times, prices = path
    index = min(bisect_left(times, time), len(times) - 1)
    return prices[index]


def notional(rng: np.random.Generator, scale: float) -> float:
    if rng.random() < 0.015:
        return float(min(100_000 * (1 - rng.random()) ** (-1 / 1.25), 5_000_000)) * scale
    return float(rng.lognormal(math.log(4_000), 1.2)) * scale


def through(price: float, side: str, rng: np.random.Generator) -> float:
    """A bankruptcy price: below the market for a long, above for a short."""
    offset = rng.uniform(0.003, 0.012)
    return price * (1 - offset) if side == "long" else price * (1 + offset)


class Draw(NamedTuple):
    symbol: str
    side: str  # of the liquidated position
    time: int
    price: float
    notional: float


def draws(
    binance: list[dict[str, Any]],
    paths: dict[str, Any],
    rng: np.random.Generator,
    per_binance: float,
    scale: float,
) -> Iterator[Draw]:
    """Around each Binance liquidation, a Poisson number (mean `per_binance`) within the
    surrounding second, on its side 85 % of the time, at a bankruptcy price through the
    path, notionals of the symbol's scale times `scale`."""
    for line in binance:
        order = line["raw"]["data"]["o"]
        symbol, side = order["s"], "long" if order["S"] == "SELL" else "short"
        decimals, _, _, symbol_scale = SYMBOLS[symbol]
        for _ in range(rng.poisson(per_binance)):
            t = int(order["T"] + rng.integers(-1000, 1000))
            own = side if rng.random() < 0.85 else ("short" if side == "long" else "long")
            price = round(through(price_at(paths[symbol], t), own, rng), decimals)
            yield Draw(symbol, own, t, price, notional(rng, scale * symbol_scale))


def bybit_lines(
    binance: list[dict[str, Any]], paths: dict[str, Any], rng: np.random.Generator
) -> list[dict[str, Any]]:
    batches: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for d in draws(binance, paths, rng, BYBIT_PER_BINANCE, BYBIT_NOTIONAL):
        decimals, step, _, _ = SYMBOLS[d.symbol]
        size = max(round(d.notional / d.price, step), 10.0**-step)
        item = {"T": d.time, "s": d.symbol, "S": "Buy" if d.side == "long" else "Sell",
                "v": f"{size:.{step}f}", "p": f"{d.price:.{decimals}f}"}  # fmt: skip
        batches[(d.symbol, d.time // 500)].append(item)
    lines = []
    for (symbol, window), items in batches.items():
        ts = (window + 1) * 500 + int(rng.integers(1, 15))
        frame = {"topic": f"allLiquidation.{symbol}", "type": "snapshot", "ts": ts,
                 "data": sorted(items, key=lambda i: i["T"])}  # fmt: skip
        lines.append({"t": ts + int(rng.lognormal(math.log(35), 0.4)), "source": "bybit",
                      "raw": frame})  # fmt: skip
    return lines


def okx_lines(
    binance: list[dict[str, Any]], paths: dict[str, Any], rng: np.random.Generator
) -> list[dict[str, Any]]:
    lines = []
    for line in binance:
        if rng.random() >= OKX_PER_BINANCE:
            continue
        order = line["raw"]["data"]["o"]
        symbol, side = order["s"], "long" if order["S"] == "SELL" else "short"
        decimals, _, contract_value, scale = SYMBOLS[symbol]
        t = int(order["T"] + rng.integers(-500, 500))
        price = round(through(price_at(paths[symbol], t), side, rng), decimals)
        quantity = notional(rng, OKX_NOTIONAL * scale) / price
        contracts = max(round(quantity / float(contract_value)), 1)
        inst_id = f"{symbol[:-4]}-USDT-SWAP"
        details = [{"bkLoss": "0", "bkPx": f"{price:.{decimals}f}", "ccy": "",
                    "posSide": side, "side": "sell" if side == "long" else "buy",
                    "sz": str(contracts), "ts": str(t)}]  # fmt: skip
        frame = {"arg": {"channel": "liquidation-orders", "instType": "SWAP"},
                 "data": [{"details": details, "instFamily": inst_id[:-5], "instId": inst_id,
                           "instType": "SWAP", "uly": inst_id[:-5]}]}  # fmt: skip
        # OKX pushes late and out of order: a delay of 0.1-3 s
        lines.append({"t": t + int(rng.uniform(100, 3000)), "source": "okx", "raw": frame})
    lines.sort(key=lambda line: line["t"])
    instruments = {"code": "0", "msg": "", "data": [
        {"instId": f"{symbol[:-4]}-USDT-SWAP", "instType": "SWAP", "ctVal": value,
         "ctType": "linear", "ctValCcy": symbol[:-4], "state": "live"}
        for symbol, (_, _, value, _) in SYMBOLS.items()
    ]}  # fmt: skip
    first = min(line["t"] for line in binance)
    rest = {"t": first - 2000, "source": "okx", "rest": INSTRUMENTS_PATH, "raw": instruments}
    channel = {"channel": "liquidation-orders", "instType": "SWAP"}
    ack = {"event": "subscribe", "arg": channel, "connId": "demo"}
    ack_line = {"t": first - 1000, "source": "okx", "raw": ack}
    return [rest, ack_line, *lines]


def main() -> None:
    rng = np.random.default_rng(SEED)
    binance = [json.loads(line) for line in (HERE / "demo_session.jsonl").open()]
    paths = price_paths(binance)
    bybit = sorted(bybit_lines(binance, paths, rng), key=lambda line: line["t"])
    okx = okx_lines(binance, paths, rng)
    for name, lines in (("demo_bybit.jsonl", bybit), ("demo_okx.jsonl", okx)):
        with (HERE / name).open("w") as out:
            out.writelines(_dumps(line) + "\n" for line in lines)
        print(f"{name}: {len(lines)} lines")


if __name__ == "__main__":
    main()
