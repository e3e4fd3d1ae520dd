"""Cost of the mark-price candles: memory per symbol, a mark price taken, the timeline's
candles of each page window, and `ingest`'s write round to Redis for 300 symbols.

    python bench/bench_candles.py [REDIS_URL]

300 symbols, a mark price a second each (log random walk) for two simulated days, so every
ring is full. The write round needs a Redis (a private `redis-server` on a scratch port
is fine); without REDIS_URL it is skipped.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import tracemalloc

from hub.analytics.candles import TIERS, MarkPrices, bucket_candles, tier_for
from hub.channels import WINDOWS
from hub.models import MarkPriceUpdate

SYMBOLS = 300
T0 = 1_800_000_000_000
DAYS_S = 2 * 86_400
PAGE_BUCKETS = {"5m": 100, "15m": 90, "1h": 120, "4h": 120, "12h": 144, "24h": 144,
                "3d": 144, "7d": 168, "30d": 180}  # fmt: skip


def main() -> None:
    rng = random.Random(7)
    symbols = [f"SYM{i}USDT" for i in range(SYMBOLS)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    marks = MarkPrices()
    for symbol in symbols:
        marks.track(symbol)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"memory: {held / SYMBOLS:,.0f} bytes a symbol, {held / 1e6:.1f} MB for {SYMBOLS}")

    # Two days of one symbol at 1/s fill every ring; the others get their last 10 minutes.
    price = 60_000.0
    updates = []
    for second in range(DAYS_S):
        price *= 1 + rng.gauss(0, 0.0003)
        updates.append(MarkPriceUpdate("binance", symbols[0], T0 + 1_000 * second, price))
    start = time.perf_counter()
    for update in updates:
        marks.apply(update, update.time)
    taken = time.perf_counter() - start
    print(f"a mark price taken: {taken / len(updates) * 1e6:.2f} us")
    now = T0 + 1_000 * DAYS_S
    for second in range(600):
        for symbol in symbols[1:]:
            marks.apply(
                MarkPriceUpdate("binance", symbol, now - 600_000 + 1_000 * second, 1.0), now
            )

    for window, buckets in PAGE_BUCKETS.items():
        span = WINDOWS[window]
        tier = tier_for(span, buckets)
        runs = 200
        start = time.perf_counter()
        for _ in range(runs):
            ring = marks.ring(symbols[0], tier)
            assert ring is not None
            candles = bucket_candles(ring, now, span, buckets)
        spent = (time.perf_counter() - start) / runs
        filled = sum(c is not None for c in candles)
        print(
            f"candles of {window:>3} ({buckets} buckets, {tier.step_ms // 1000} s ring): "
            f"{spent * 1e3:.2f} ms, {filled}/{buckets} filled"
        )

    if len(sys.argv) > 1:
        asyncio.run(write_rounds(sys.argv[1], marks, symbols, now))


async def write_rounds(url: str, marks: MarkPrices, symbols: list[str], now: int) -> None:
    from redis.asyncio import Redis

    from hub.storage.candles import CandleWriter

    redis = Redis.from_url(url)
    writer = CandleWriter(redis, marks)
    start = time.perf_counter()
    await writer.write()  # the first: each symbol's whole buffer
    print(f"first write round, {SYMBOLS} symbols: {time.perf_counter() - start:.3f} s")
    spent = []
    for second in range(10):
        for symbol in symbols:
            marks.apply(MarkPriceUpdate("binance", symbol, now + 1_000 * (second + 1), 2.0), now)
        start = time.perf_counter()
        await writer.write()
        spent.append(time.perf_counter() - start)
    changed = len(TIERS)
    print(
        f"a write round, {SYMBOLS} symbols with a new price each ({changed} slots a symbol): "
        f"{sorted(spent)[len(spent) // 2] * 1e3:.1f} ms (median of 10)"
    )
    memory = await redis.memory_usage(f"hub:candles:v1:{symbols[0]}")
    print(f"Redis memory of one symbol's key: {memory:,} bytes")
    await redis.aclose()


if __name__ == "__main__":
    main()
