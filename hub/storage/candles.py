"""Mark-price candles in Redis, so a `web` process answers the timeline's `candles` as the
`ingest` process that holds them would.

Mark prices reach only `ingest`; the candles they make are a fixed-size buffer a symbol
(hub.analytics.candles: six rings, 142,560 bytes), so Redis keeps exactly that buffer as
one string, `hub:candles:v1:{SYMBOL}`. `ingest` writes the slots that changed once a
second (`SETRANGE`: a few 40-byte slots a symbol, whatever the rates), and a `web` process
reads the one ring a request needs (`GETRANGE`, at most 58 kB). A slot says which candle
it holds, so a reader needs nothing else: a stale or never-written one (zeros) is no
candle. The key outlives its last write by the longest ring (30 days), then goes.

A restarted `ingest` reads its symbols' buffers back before writing them, and joins them
with what it took since it started: the candles of a restart carry on, in `ingest` and in
`web` alike. While Redis is unreachable the changed slots accumulate (a symbol's buffer
bounds them) and are written once it answers again; if it came back empty, the whole
buffer is.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.analytics.candles import (
    HISTORY_BYTES,
    SLOT_BYTES,
    TIERS,
    MarkHistory,
    MarkPrices,
    Tier,
    ring_of,
)
from hub.storage.outage import Outage

log = logging.getLogger("hub.storage")
WRITE_EVERY_S = 1.0
KEEP_MS = TIERS[-1].reach_ms  # after the last write: the longest ring's reach
_FAILURES = (RedisError, OSError)


def candles_key(symbol: str) -> str:
    return f"hub:candles:v1:{symbol}"


class CandleWriter:
    """`ingest`'s side: every tracked symbol's changed slots, to Redis."""

    def __init__(self, redis: Redis, marks: MarkPrices) -> None:
        self.redis = redis
        self.marks = marks
        self.state = Outage("candles", log)
        # per symbol, the history its earlier buffer was read back into
        self._merged: dict[str, MarkHistory] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(WRITE_EVERY_S)
            if self.state.due():
                await self.write()

    async def write(self) -> None:
        try:
            for symbol in list(self.marks.histories):
                await self._write(symbol)
        except _FAILURES as error:
            self.state.failed(error)
        else:
            self.state.succeeded()

    async def _write(self, symbol: str) -> None:
        key = candles_key(symbol)
        history = self.marks.histories.get(symbol)
        if history is None:  # untracked meanwhile
            return
        if self._merged.get(symbol) is not history:
            kept = await self.redis.get(key)
            if kept:
                history.merge(kept)
            history.changed.clear()
            await self.redis.set(key, history.values.tobytes(), px=KEEP_MS)
            self._merged[symbol] = history
            return
        if not history.changed:
            return
        changes = history.take_changes()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for slot, data in changes:
                    pipe.setrange(key, slot * SLOT_BYTES, data)
                pipe.pexpire(key, KEEP_MS)
                lengths = (await pipe.execute())[:-1]
            if min(lengths) < HISTORY_BYTES:
                # The key was gone (Redis restarted empty): `SETRANGE` made a new one of
                # zeros around these slots. The whole buffer goes back.
                await self.redis.set(key, history.values.tobytes(), px=KEEP_MS)
        except _FAILURES:
            history.changed.update(slot for slot, _ in changes)  # written next time
            raise


async def read_ring(redis: Redis, symbol: str, tier: Tier) -> np.ndarray | None:
    """One ring of a symbol's candles as `ingest` last wrote them; None when it has none."""
    first = tier.first * SLOT_BYTES
    part = await redis.getrange(candles_key(symbol), first, first + tier.slots * SLOT_BYTES - 1)
    if not part:
        return None
    return ring_of(part, tier)
