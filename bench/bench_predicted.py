"""Cost of the predicted-levels model per open-interest update, for 20 symbols.

    python bench/bench_predicted.py

20 symbols, simulated: a mark price every second per symbol (log random walk, 3 bp per
sqrt second), open interest every 10 s per symbol ($100M to $2B open; log random walk,
0.05 % per step, a slight upward drift so levels accumulate), a flush every second that
encodes each diff as the hub publishes it. One simulated hour warms the books up; the
next two are measured.
Prints the time per open-interest update (its apply, and its apply plus its share of the
flushes and encoding), per mark price, and the open levels held.
"""

from __future__ import annotations

import math
import os
import random
import time

from hub.analytics.candles import MarkPrices
from hub.analytics.predicted import PredictedConfig
from hub.analytics.predicted_stream import PredictedProcessor
from hub.fanout.codec import encode_message
from hub.models import MarkPriceUpdate, OpenInterestUpdate

SYMBOLS = 20
WARM_S = 3_600
MEASURE_S = 7_200
T0 = 1_800_000_000_000


def main() -> None:
    rng = random.Random(7)
    processor = PredictedProcessor(PredictedConfig(), "bench", MarkPrices())
    symbols = [f"SYM{i}USDT" for i in range(SYMBOLS)]
    prices = {s: 10.0 ** rng.uniform(-1, 5) for s in symbols}
    oi = {s: rng.uniform(1e8, 2e9) / prices[s] for s in symbols}  # $100M..$2B open
    for symbol in symbols:
        processor.track(symbol, T0)
    spent = {"oi": 0.0, "mark": 0.0, "flush": 0.0}
    counts = {"oi": 0, "mark": 0, "flush": 0, "bytes": 0, "diffs": 0}
    for second in range(WARM_S + MEASURE_S):
        now = T0 + second * 1_000
        measuring = second >= WARM_S
        for index, symbol in enumerate(symbols):
            prices[symbol] *= math.exp(rng.gauss(0, 0.0003))
            mark = MarkPriceUpdate("binance", symbol, now, prices[symbol])
            started = time.perf_counter()
            processor.apply_price(mark)
            if measuring:
                spent["mark"] += time.perf_counter() - started
                counts["mark"] += 1
            if second % 10 == index % 10:
                oi[symbol] *= math.exp(rng.gauss(0.0001, 0.0005))
                update = OpenInterestUpdate("binance", symbol, now, oi[symbol])
                started = time.perf_counter()
                processor.apply_open_interest(update)
                if measuring:
                    spent["oi"] += time.perf_counter() - started
                    counts["oi"] += 1
        started = time.perf_counter()
        encoded = [encode_message(m) for m in processor.flush(now)]
        if measuring:
            spent["flush"] += time.perf_counter() - started
            counts["flush"] += 1
            counts["diffs"] += len(encoded)
            counts["bytes"] += sum(map(len, encoded))
    levels = [len(stream.book.levels) for stream in processor.streams.values()]
    per_oi = spent["oi"] / counts["oi"] * 1e6
    with_flush = (spent["oi"] + spent["flush"]) / counts["oi"] * 1e6
    print(f"{SYMBOLS} symbols, {MEASURE_S} s measured after {WARM_S} s of warm-up")
    print(f"load average while it ran: {os.getloadavg()[0]:.1f} (the machine has 2 cores)")
    print(f"open levels per symbol: mean {sum(levels) / len(levels):.0f}, max {max(levels)}")
    print(f"open-interest update, apply only:        {per_oi:8.1f} us  ({counts['oi']} updates)")
    print(f"open-interest update, with flush+encode: {with_flush:8.1f} us")
    print(
        f"mark price update:                       {spent['mark'] / counts['mark'] * 1e6:8.1f} us"
    )
    print(
        f"flush (all symbols) every second:        {spent['flush'] / counts['flush'] * 1e3:8.2f} ms"
        f"; {counts['diffs'] / counts['flush']:.1f} diffs of "
        f"{counts['bytes'] / max(1, counts['diffs']) / 1024:.1f} KiB"
    )
    load = (spent["oi"] + spent["mark"] + spent["flush"]) / MEASURE_S * 100
    print(f"share of one core for {SYMBOLS} symbols:         {load:8.2f} %")


if __name__ == "__main__":
    main()
