"""Generate `demo_oi.jsonl`: Binance open interest (REST answers) and mark prices
(`<symbol>@markPrice` frames, every 3 s) for the bundled demo session, in the replay
format. The live hub follows `@markPrice@1s`; the demo takes the 3 s stream, which keeps
the file and the demo's start-up pass (the whole session laid in the past at once) small.

Run from the repository root: `python hub/data/make_demo_oi.py` (seeded: the same file
every time).

What it takes from `demo_session.jsonl`: only the liquidations' fill prices (`ap`) and
times, as the record of where each symbol's price was. The mark price every 3 s is the
median of the fills within 5 s around it (fills sit within 0.15 % of the mark, on either
side), carried over gaps.

What it does not take: the liquidations' sides, sizes, counts, or the cascade windows.
Open interest is its own seeded model, blind to all of them: from a per-symbol starting
level it follows a mean-reverting log random walk, one step per 10 s poll, whose noise
grows with the size of the price move over the step (busier markets churn more
positions) but has no direction: a move is as likely to come with a fall in open interest
as with a rise. So the predicted levels built from it are not shaped by where the
liquidations happened; the validation in BENCHMARKS.md tells whether they still line up.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import statistics
from pathlib import Path

HERE = Path(__file__).parent
SEED = 20261130
OI_START = {  # base units, of the order Binance shows for these contracts
    "BTCUSDT": 80_000.0,
    "ETHUSDT": 1_500_000.0,
    "SOLUSDT": 9_000_000.0,
    "ADAUSDT": 450_000_000.0,
    "BNBUSDT": 700_000.0,
}
POLL_MS = 10_000
MARK_MS = 3_000
NOISE = 0.0006  # log-OI noise per step at rest
NOISE_PER_MOVE = 0.6  # extra noise per unit of |log return| over the step
REVERSION = 0.02  # pull per step back toward the starting level
FUNDING_MS = 8 * 3_600_000


def fills(path: Path) -> dict[str, list[tuple[int, float]]]:
    by_symbol: dict[str, list[tuple[int, float]]] = {}
    with path.open() as handle:
        for line in handle:
            order = json.loads(line)["raw"]["data"]["o"]
            price = float(order["ap"]) or float(order["p"])
            by_symbol.setdefault(order["s"], []).append((order["T"], price))
    for points in by_symbol.values():
        points.sort()
    return by_symbol


def mark_prices(points: list[tuple[int, float]], start: int, end: int) -> list[tuple[int, float]]:
    times = [t for t, _ in points]
    marks, last = [], points[0][1]
    for second in range(start, end, MARK_MS):
        low, high = (
            bisect.bisect_left(times, second - 5_000),
            bisect.bisect(times, second + 5_000),
        )
        if high > low:
            last = statistics.median(p for _, p in points[low:high])
        marks.append((second, last))
    return marks


def decimals(price: float) -> int:
    return max(2, 6 - math.floor(math.log10(price)))


def main() -> None:
    rng = random.Random(SEED)
    session = fills(HERE / "demo_session.jsonl")
    start = min(points[0][0] for points in session.values()) // 1_000 * 1_000
    end = max(points[-1][0] for points in session.values()) + 1_000
    lines: list[tuple[int, str]] = []
    for offset, symbol in enumerate(sorted(session)):
        marks = mark_prices(session[symbol], start, end)
        digits = decimals(marks[0][1])
        funding = rng.uniform(-0.0001, 0.0003)
        for second, price in marks:
            event = second + rng.randint(0, 20)
            received = event + int(rng.lognormvariate(math.log(40), 0.4))
            data = {
                "e": "markPriceUpdate",
                "E": event,
                "s": symbol,
                "p": f"{price:.{digits}f}",
                "i": f"{price * (1 + rng.gauss(0, 0.0002)):.{digits}f}",
                "P": f"{price * (1 + rng.gauss(0, 0.0001)):.{digits}f}",
                "r": f"{funding:.8f}",
                "T": (event // FUNDING_MS + 1) * FUNDING_MS,
            }
            frame = {"stream": f"{symbol.lower()}@markPrice", "data": data}
            lines.append(
                (
                    received,
                    json.dumps(
                        {"t": received, "source": "binance", "raw": frame}, separators=(",", ":")
                    ),
                )
            )
        base = OI_START[symbol]
        log_oi = math.log(base)
        previous = marks[0][1]
        first_poll = start + 2_000 * offset  # polls of the symbols spread over the interval
        for poll in range(first_poll, end, POLL_MS):
            price = marks[min(len(marks) - 1, (poll - start) // MARK_MS)][1]
            move = abs(math.log(price / previous))
            previous = price
            log_oi += -REVERSION * (log_oi - math.log(base)) + rng.gauss(
                0, NOISE + NOISE_PER_MOVE * move
            )
            received = poll + int(rng.lognormvariate(math.log(60), 0.4))
            body = {"openInterest": f"{math.exp(log_oi):.3f}", "symbol": symbol, "time": poll + 15}
            line = {
                "t": received,
                "source": "binance",
                "rest": "/fapi/v1/openInterest",
                "raw": body,
            }
            lines.append((received, json.dumps(line, separators=(",", ":"))))
    lines.sort(key=lambda item: item[0])
    with (HERE / "demo_oi.jsonl").open("w") as out:
        out.writelines(text + "\n" for _, text in lines)
    print(f"wrote {len(lines)} lines to {HERE / 'demo_oi.jsonl'}")


if __name__ == "__main__":
    main()
