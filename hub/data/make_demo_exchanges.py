"""Generate the Bitget, Gate, HTX, Deribit and BitMEX parts of the bundled demo.

Run from the repository root: `python -m hub.data.make_demo_exchanges` (seeded: the output
is the same every time). Like `make_demo.py` it follows each symbol's price path in
`demo_session.jsonl` (Binance), places liquidations around each Binance one (a Poisson
number within the surrounding second, on the same side 85 % of the time, at a bankruptcy
price 0.3-1.2 % through the path, lognormal notionals with a Pareto tail), and writes
them in each exchange's wire shape (docs/exchanges.md):

- `demo_bitget.jsonl`: `liquidation` pushes, once a second, holding per symbol at most
  the largest long and the largest short of that second (Bitget's sample since
  2026-06-23); `amount` in USDT, `side` the position's.
- `demo_gate.jsonl`: the contracts REST answer (`quanto_multiplier`), the ack, then each
  contract's liquidations of a second in one push (Gate since 2026-08-20), `size` signed
  decimal contracts (negative: a long).
- `demo_htx.jsonl`: the ack, then one `notify` a liquidation (`direction` the order's,
  `amount` coins, `volume` contracts), HTX being quiet.
- `demo_deribit.jsonl`: the subscription's reply, then trades of `BTC-PERPETUAL` and
  `ETH-PERPETUAL` (its only inverse perpetuals: the other symbols have none), USD amounts
  in whole contracts, the `liquidation` flag `T`, `M` or now and then `MT`, `direction`
  the taker's, beside ordinary trades of the same 100 ms.
- `demo_bitmex.jsonl`: the instruments REST answer, the welcome and acks, then per
  liquidation an `insert` (XBTUSD or XBTUSDT for BTC, ETHUSDT, SOLUSDT; BitMEX lists no
  ADA or BNB perpetual here), mostly followed by `update`s and a `delete`. Rows carry no
  time, and a replay has no receive time to give: each insert follows an `instrument`
  update of its symbol (`lastPrice`, `timestamp`), whose time the decoder takes instead
  (bitmex_wire); those updates carry no open interest.

The notional scales put the five at about a quarter of the demo's notional (the shares
measured are in hub/data/README.md).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hub.data.make_demo import SYMBOLS, Draw, _dumps, draws, price_paths

HERE = Path(__file__).parent
SEED = 20261206
GATE_MULTIPLIERS = {"BTC": "0.0001", "ETH": "0.01", "SOL": "1", "ADA": "10", "BNB": "0.001"}
HTX_CONTRACT_SIZES = {"BTC": 0.001, "ETH": 0.01, "SOL": 1.0, "ADA": 10.0, "BNB": 0.01}
DERIBIT_CONTRACTS = {"BTCUSDT": ("BTC-PERPETUAL", 10), "ETHUSDT": ("ETH-PERPETUAL", 1)}
BITMEX_LINEAR = {"BTCUSDT": ("XBTUSDT", 1_000_000), "ETHUSDT": ("ETHUSDT", 100_000),
                 "SOLUSDT": ("SOLUSDT", 10_000)}  # fmt: skip


def latency(rng: np.random.Generator) -> int:
    return int(rng.lognormal(math.log(40), 0.4))


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def bitget_lines(found: list[Draw], rng: np.random.Generator) -> list[dict[str, Any]]:
    kept: dict[tuple[int, str, str], Draw] = {}  # the largest per second, symbol and side
    for draw in found:
        key = (draw.time // 1000, draw.symbol, draw.side)
        if key not in kept or draw.notional > kept[key].notional:
            kept[key] = draw
    seconds: dict[int, list[Draw]] = defaultdict(list)
    for (second, _, _), draw in sorted(kept.items()):
        seconds[second].append(draw)
    lines = []
    for second, rows in sorted(seconds.items()):
        ts = (second + 1) * 1000 + int(rng.integers(2, 20))
        data = [{"symbol": d.symbol, "side": "buy" if d.side == "long" else "sell",
                 "price": f"{d.price:.{SYMBOLS[d.symbol][0]}f}", "amount": f"{d.notional:.4f}",
                 "ts": str(d.time)} for d in rows]  # fmt: skip
        frame = {"data": data, "arg": {"instType": "usdt-futures", "topic": "liquidation"},
                 "action": "update", "ts": ts}  # fmt: skip
        lines.append({"t": ts + latency(rng), "source": "bitget", "raw": frame})
    return lines


def gate_lines(found: list[Draw], rng: np.random.Generator, first: int) -> list[dict[str, Any]]:
    batches: dict[tuple[str, int], list[Draw]] = defaultdict(list)
    for draw in found:
        batches[(draw.symbol, draw.time // 1000)].append(draw)
    lines = []
    for (symbol, second), rows in sorted(batches.items(), key=lambda item: item[0][1]):
        base = symbol[:-4]
        multiplier = float(GATE_MULTIPLIERS[base])
        result = []
        for d in sorted(rows, key=lambda d: d.time):
            contracts = max(round(d.notional / d.price / multiplier), 1)
            signed = -contracts if d.side == "long" else contracts
            result.append({"contract": f"{base}_USDT", "price": f"{d.price:.{SYMBOLS[symbol][0]}f}",
                           "size": str(signed), "time": d.time})  # fmt: skip
        pushed = (second + 1) * 1000 + int(rng.integers(2, 20))
        frame = {"time": pushed // 1000, "time_ms": pushed, "channel": "futures.public_liquidates",
                 "event": "update", "result": result}  # fmt: skip
        lines.append({"t": pushed + latency(rng), "source": "gate", "raw": frame})
    contracts = [{"name": f"{b}_USDT", "type": "direct", "quanto_multiplier": m,
                  "status": "trading"} for b, m in GATE_MULTIPLIERS.items()]  # fmt: skip
    rest = {"t": first - 2000, "source": "gate", "rest": "/api/v4/futures/usdt/contracts",
            "raw": contracts}  # fmt: skip
    ack = {"time": (first - 1000) // 1000, "time_ms": first - 1000,
           "channel": "futures.public_liquidates", "event": "subscribe",
           "result": {"status": "success"}}  # fmt: skip
    return [rest, {"t": first - 1000, "source": "gate", "raw": ack}, *lines]


def htx_lines(found: list[Draw], rng: np.random.Generator, first: int) -> list[dict[str, Any]]:
    topic = "public.*.liquidation_orders"
    lines = []
    for d in found:
        base = d.symbol[:-4]
        size = HTX_CONTRACT_SIZES[base]
        volume = max(round(d.notional / d.price / size), 1)
        amount = round(volume * size, 6)
        row = {"symbol": base, "contract_code": f"{base}-USDT",
               "direction": "sell" if d.side == "long" else "buy", "offset": "close",
               "volume": volume, "price": d.price, "created_at": d.time, "amount": amount,
               "trade_turnover": round(amount * d.price, 6), "contract_type": "swap",
               "pair": f"{base}-USDT", "business_type": "swap"}  # fmt: skip
        ts = d.time + int(rng.integers(20, 80))
        frame = {"op": "notify", "topic": topic, "ts": ts, "data": [row]}
        lines.append({"t": ts + latency(rng), "source": "htx", "raw": frame})
    ack = {"op": "sub", "cid": "hub", "topic": topic, "ts": first - 1000, "err-code": 0}
    return [{"t": first - 1000, "source": "htx", "raw": ack}, *lines]


def deribit_lines(found: list[Draw], rng: np.random.Generator, first: int) -> list[dict[str, Any]]:
    lines = []
    for index, d in enumerate(found):
        name, contract = DERIBIT_CONTRACTS[d.symbol]
        order = "sell" if d.side == "long" else "buy"  # the liquidation order's side
        flag = "T" if rng.random() < 0.6 else ("M" if rng.random() < 0.9 else "MT")
        direction = order if flag == "T" else ("buy" if order == "sell" else "sell")
        amount = max(round(d.notional / contract), 1) * contract
        liquidation = {"trade_seq": index, "trade_id": f"demo-{index}", "timestamp": d.time,
                       "tick_direction": 3, "price": d.price, "mark_price": d.price,
                       "index_price": d.price, "instrument_name": name, "direction": direction,
                       "amount": amount, "liquidation": flag}  # fmt: skip
        ordinary = {**liquidation, "trade_id": f"demo-{index}-o", "amount": 10 * contract,
                    "direction": direction}  # fmt: skip
        del ordinary["liquidation"]
        params = {"channel": f"trades.{name}.100ms", "data": [ordinary, liquidation]}
        frame = {"jsonrpc": "2.0", "method": "subscription", "params": params}
        lines.append({"t": d.time + 100 + latency(rng), "source": "deribit", "raw": frame})
    channels = [f"trades.{name}.100ms" for name, _ in DERIBIT_CONTRACTS.values()]
    reply = {"jsonrpc": "2.0", "id": 2, "result": channels, "usIn": 0, "usOut": 0, "usDiff": 0,
             "testnet": False}  # fmt: skip
    return [{"t": first - 1000, "source": "deribit", "raw": reply}, *lines]


def bitmex_instruments() -> list[dict[str, Any]]:
    inverse = {"symbol": "XBTUSD", "rootSymbol": "XBT", "quoteCurrency": "USD", "typ": "FFWCSX",
               "isInverse": True, "isQuanto": False, "multiplier": -100000000,
               "underlyingToSettleMultiplier": -100000000,
               "underlyingToPositionMultiplier": None}  # fmt: skip
    linear = [{"symbol": name, "rootSymbol": "XBT" if name == "XBTUSDT" else name[:-4],
               "quoteCurrency": "USDT", "typ": "FFWCSX", "isInverse": False, "isQuanto": False,
               "multiplier": 1, "underlyingToPositionMultiplier": position,
               "underlyingToSettleMultiplier": None}
              for name, position in BITMEX_LINEAR.values()]  # fmt: skip
    return [inverse, *linear]


def bitmex_lines(found: list[Draw], rng: np.random.Generator, first: int) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for index, d in enumerate(found):
        inverse = d.symbol == "BTCUSDT" and rng.random() < 0.6
        if inverse:
            name, leaves = "XBTUSD", max(round(d.notional / 100), 1) * 100
        else:
            name, position = BITMEX_LINEAR[d.symbol]
            leaves = max(round(d.notional / d.price * position / 100), 1) * 100
        order_id = f"00000000-0000-4000-8000-{index:012d}"
        tick = {"symbol": name, "lastPrice": d.price, "timestamp": iso(d.time)}
        clock = {"table": "instrument", "action": "update", "data": [tick]}
        insert = {"table": "liquidation", "action": "insert",
                  "data": [{"orderID": order_id, "symbol": name,
                            "side": "Sell" if d.side == "long" else "Buy", "price": d.price,
                            "leavesQty": leaves}]}  # fmt: skip
        lines += [{"t": d.time, "source": "bitmex", "raw": clock},
                  {"t": d.time + 1, "source": "bitmex", "raw": insert}]  # fmt: skip
        later = d.time + int(rng.integers(50, 400))
        if rng.random() < 0.7:  # a fill, then the order leaves the book
            filled = {"table": "liquidation", "action": "update",
                      "data": [{"orderID": order_id, "symbol": name,
                                "leavesQty": max(leaves // 2 // 100 * 100, 100)}]}  # fmt: skip
            lines.append({"t": later, "source": "bitmex", "raw": filled})
        gone = {"table": "liquidation", "action": "delete",
                "data": [{"orderID": order_id, "symbol": name}]}  # fmt: skip
        lines.append({"t": later + int(rng.integers(20, 200)), "source": "bitmex", "raw": gone})
    welcome = {"info": "Welcome to the BitMEX Realtime API.", "version": "2.0.0",
               "timestamp": iso(first - 900), "docs": "https://www.bitmex.com/app/wsAPI",
               "heartbeatEnabled": False, "limit": {"remaining": 719}}  # fmt: skip
    ack = {"success": True, "subscribe": "liquidation",
           "request": {"op": "subscribe", "args": ["liquidation"]}}  # fmt: skip
    types = {"orderID": "guid", "symbol": "symbol", "side": "symbol", "price": "float",
             "leavesQty": "long"}  # fmt: skip
    partial = {"table": "liquidation", "action": "partial", "keys": ["orderID"],
               "types": types, "filter": {}, "data": []}  # fmt: skip
    head = [
        {"t": first - 2000, "source": "bitmex", "rest": "/api/v1/instrument/active",
         "raw": bitmex_instruments()},
        {"t": first - 900, "source": "bitmex", "raw": welcome},
        {"t": first - 800, "source": "bitmex", "raw": ack},
        {"t": first - 799, "source": "bitmex", "raw": partial},
    ]  # fmt: skip
    return head + sorted(lines, key=lambda line: line["t"])


def main() -> None:
    rng = np.random.default_rng(SEED)
    binance = [json.loads(line) for line in (HERE / "demo_session.jsonl").open()]
    paths = price_paths(binance)
    first = min(line["t"] for line in binance)

    def found(per_binance: float, scale: float, symbols: object = SYMBOLS) -> list[Draw]:
        drawn = draws(binance, paths, rng, per_binance, scale)
        return sorted((d for d in drawn if d.symbol in symbols), key=lambda d: d.time)  # type: ignore[operator]

    parts = {
        "demo_bitget.jsonl": bitget_lines(found(0.6, 0.8), rng),
        "demo_gate.jsonl": gate_lines(found(0.35, 0.95), rng, first),
        "demo_htx.jsonl": htx_lines(found(0.08, 2.2), rng, first),
        "demo_deribit.jsonl": deribit_lines(found(0.3, 1.0, DERIBIT_CONTRACTS), rng, first),
        "demo_bitmex.jsonl": bitmex_lines(found(0.15, 1.3, BITMEX_LINEAR), rng, first),
    }
    for name, lines in parts.items():
        lines.sort(key=lambda line: line["t"])
        with (HERE / name).open("w") as out:
            out.writelines(_dumps(line) + "\n" for line in lines)
        print(f"{name}: {len(lines)} lines")


if __name__ == "__main__":
    main()
