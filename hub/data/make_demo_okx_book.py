"""Generate demo_okx_book.jsonl: OKX `books` and `trades` frames that follow the bundled
demo's liquidation prices, so `serve --demo` shows order-book liquidity with no network.

    python hub/data/make_demo_okx_book.py   # rewrites hub/data/demo_okx_book.jsonl

The model (seed 20261121), in the 2026 live shapes of tests/data/okx:
- One REST instruments response first (`"rest": "/api/v5/public/instruments..."`), giving
  each swap's `ctVal` (assumed: BTC 0.01, ETH 0.1, SOL 1, ADA 100, BNB 0.01).
- The mid price of each symbol is the median liquidation price (`ap`) of the demo within
  +-30 s, sampled every `STEP_MS`; liquidation fills sit within 0.15 % of the mark.
- A price tick holds a level with probability 0.6, and its size (contracts) is a seeded
  lognormal of the tick itself, so the book is the same wherever price returns; ticks on
  round numbers (the wall step) hold 60x, which makes walls that persist while in reach.
- Each step the book is rebuilt around the new mid (`LEVELS` a side) and sent as an
  update holding only what changed, plus a few size changes; `checksum` is 0 and
  `seqId`/`prevSeqId` chain, as OKX sends since 2026-06-23. One snapshot per symbol opens.
- Trades: a Poisson number per step near the mid, lognormal sizes with a 5 % tail 20x
  larger, the taker side leaning with the price move.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import random
import statistics
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
SEED = 20261121
STEP_MS = 20_000
LEVELS = 60  # OKX sends 400; fewer keep the bundled file small (~2 MB)
INSTRUMENTS = {  # symbol: (tick, decimals, ctVal, wall step, median size in contracts)
    "BTCUSDT": (0.1, 1, "0.01", 5.0, 40.0),
    "ETHUSDT": (0.01, 2, "0.1", 0.5, 60.0),
    "SOLUSDT": (0.01, 2, "1", 0.25, 80.0),
    "ADAUSDT": (0.0001, 4, "100", 0.0025, 120.0),
    "BNBUSDT": (0.01, 2, "0.01", 0.5, 900.0),
}


def inst_id(symbol: str) -> str:
    return f"{symbol[:-4]}-USDT-SWAP"


def text(price_ticks: int, tick: float, decimals: int) -> str:
    return f"{price_ticks * tick:.{decimals}f}".rstrip("0").rstrip(".")


@functools.cache
def level_size(symbol: str, k: int, tick: float, wall_step: float, median: float) -> float:
    """Contracts at tick k, or 0 for an empty tick; the same every time it is asked."""
    rng = random.Random(f"{SEED}:{symbol}:{k}")
    if rng.random() > 0.6:
        return 0.0
    size = median * math.exp(rng.gauss(0, 1.0))
    wall_ticks = round(wall_step / tick)
    if k % wall_ticks == 0:
        size *= 60
    return round(size, 2)


def demo_prices() -> dict[str, list[tuple[int, float]]]:
    prices: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with (HERE / "demo_session.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            order = row["raw"]["data"]["o"]
            prices[order["s"]].append((row["t"], float(order["ap"])))
    return prices


def mid_path(points: list[tuple[int, float]], start: int, end: int) -> list[tuple[int, float]]:
    times = [t for t, _ in points]
    path, last = [], points[0][1]
    for now in range(start, end, STEP_MS):
        lo, hi = bisect.bisect_left(times, now - 30_000), bisect.bisect_right(times, now + 30_000)
        if hi > lo:
            last = statistics.median(p for _, p in points[lo:hi])
        path.append((now, last))
    return path


def book_at(symbol: str, mid: float) -> tuple[dict[int, float], dict[int, float]]:
    tick, _, _, wall_step, median = INSTRUMENTS[symbol]
    centre = round(mid / tick)
    bids: dict[int, float] = {}
    asks: dict[int, float] = {}
    k = centre - 1
    while len(bids) < LEVELS:
        size = level_size(symbol, k, tick, wall_step, median)
        if size:
            bids[k] = size
        k -= 1
    k = centre + 1
    while len(asks) < LEVELS:
        size = level_size(symbol, k, tick, wall_step, median)
        if size:
            asks[k] = size
        k += 1
    return bids, asks


def rows(side: dict[int, float], symbol: str, rng: random.Random) -> list[list[str]]:
    tick, decimals, *_ = INSTRUMENTS[symbol]
    return [
        [text(k, tick, decimals), f"{s:g}", "0", str(rng.randint(1, 30))]
        if s
        else [text(k, tick, decimals), "0", "0", "0"]
        for k, s in side.items()
    ]


def changes(old: dict[int, float], new: dict[int, float]) -> dict[int, float]:
    diff = {k: 0.0 for k in old if k not in new}
    diff.update({k: s for k, s in new.items() if old.get(k) != s})
    return diff


def frame(t: int, raw: dict) -> str:
    return json.dumps({"t": t, "source": "okx", "raw": raw}, separators=(",", ":"))


def main() -> None:
    rng = random.Random(SEED)
    prices = demo_prices()
    start = min(points[0][0] for points in prices.values())
    end = max(points[-1][0] for points in prices.values())
    lines: list[tuple[int, str]] = []
    instruments = {
        "code": "0",
        "msg": "",
        "data": [
            {
                "instId": inst_id(s),
                "instType": "SWAP",
                "ctType": "linear",
                "ctVal": v[2],
                "tickSz": f"{v[0]:g}",
                "state": "live",
            }
            for s, v in INSTRUMENTS.items()
        ],
    }
    rest_line = {
        "t": start - 1,
        "source": "okx",
        "rest": "/api/v5/public/instruments?instType=SWAP",
        "raw": instruments,
    }
    lines.append((start - 1, json.dumps(rest_line, separators=(",", ":"))))
    for symbol in INSTRUMENTS:
        tick, decimals, *_ = INSTRUMENTS[symbol]
        arg = {"channel": "books", "instId": inst_id(symbol)}
        seq = rng.randint(10**10, 10**11)
        previous: tuple[dict[int, float], dict[int, float]] | None = None
        last_mid = None
        for now, mid in mid_path(prices[symbol], start, end):
            t = now + rng.randint(5, 60)
            bids, asks = book_at(symbol, mid)
            for side in (bids, asks):  # some activity: sizes change near the touch
                for k in rng.sample(sorted(side)[:20] if side is asks else sorted(side)[-20:], 4):
                    side[k] = round(side[k] * rng.uniform(0.5, 1.5), 2)
            data = {"ts": str(now), "checksum": 0}
            if previous is None:
                data |= {"asks": rows(asks, symbol, rng), "bids": rows(bids, symbol, rng)}
                data |= {"prevSeqId": -1, "seqId": seq}
                action = "snapshot"
            else:
                data |= {
                    "asks": rows(changes(previous[1], asks), symbol, rng),
                    "bids": rows(changes(previous[0], bids), symbol, rng),
                }
                data |= {"prevSeqId": seq, "seqId": seq + rng.randint(100, 2000)}
                seq = data["seqId"]
                action = "update"
            previous = (bids, asks)
            lines.append((t, frame(t, {"arg": arg, "action": action, "data": [data]})))
            drift = 0.0 if last_mid is None else mid - last_mid
            last_mid = mid
            trades = []
            median_size = INSTRUMENTS[symbol][4] / 8
            for i in range(_poisson(rng, 8)):
                buy = rng.random() < (0.65 if drift > 0 else 0.35 if drift < 0 else 0.5)
                tail = 20 if rng.random() < 0.05 else 1
                size = median_size * math.exp(rng.gauss(0, 0.8)) * tail
                px = round(mid / tick) + (1 if buy else -1) * rng.randint(1, 5)
                trades.append(
                    {
                        "instId": inst_id(symbol),
                        "tradeId": str(seq + i),
                        "px": text(px, tick, decimals),
                        "sz": f"{max(round(size, 2), 0.01):g}",
                        "side": "buy" if buy else "sell",
                        "ts": str(now + i),
                        "count": "1",
                        "source": "0",
                        "seqId": seq,
                    }
                )
            if trades:
                raw = {"arg": {"channel": "trades", "instId": inst_id(symbol)}, "data": trades}
                lines.append((t + 1, frame(t + 1, raw)))
    lines.sort(key=lambda item: item[0])
    out = HERE / "demo_okx_book.jsonl"
    out.write_text("".join(f"{line}\n" for _, line in lines))
    print(f"{out}: {len(lines)} lines, {out.stat().st_size} bytes")


def _poisson(rng: random.Random, mean: float) -> int:
    count, threshold, product = 0, math.exp(-mean), rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


if __name__ == "__main__":
    main()
