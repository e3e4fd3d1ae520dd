"""Mark-price candles in Redis, so a `web` process answers the timeline's `candles` as the
`ingest` process that holds them would.

Mark prices reach only `ingest`; the candles they make are a fixed-size buffer a symbol
(hub.analytics.candles: six rings, 142,560 bytes), so Redis keeps exactly that buffer as
one string, `hub:candles:v1:{SYMBOL}`. `ingest` writes the slots that changed once a
second, whatever the rates: a symbol's six or so 40-byte slots in one script call
(`SETRANGE` each; one command a slot would cost `ingest` four times the time, in
redis-py's packing), all symbols in one pipeline. A `web` process reads the one ring a
request needs (`GETRANGE`, at most 58 kB). A slot says which candle
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
# ARGV: offset, bytes, offset, bytes, ..., then the time to live (ms). Answers the string's
# length: shorter than a buffer, the key was gone and is now zeros around these slots.
_WRITE_SLOTS = """
for i = 1, #ARGV - 1, 2 do redis.call('SETRANGE', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[#ARGV])
return redis.call('STRLEN', KEYS[1])
"""


def candles_key(symbol: str) -> str:
    return f"hub:candles:v1:{symbol}"


class CandleWriter:
    """`ingest`'s side: every tracked symbol's changed slots, to Redis."""

    def __init__(self, redis: Redis, marks: MarkPrices) -> None:
        self.redis = redis
        self.marks = marks
        self.state = Outage("candles", log)
        self._write_slots = redis.register_script(_WRITE_SLOTS)
        # per symbol, the history its earlier buffer was read back into
        self._merged: dict[str, MarkHistory] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(WRITE_EVERY_S)
            if self.state.due():
                await self.write()

    async def write(self) -> None:
        """One round: the buffers of symbols tracked since the last round are read back
        and written whole, then every other symbol's changed slots; one pipeline each."""
        try:
            await self._read_back()
            await self._write_changes()
        except _FAILURES as error:
            self.state.failed(error)
        else:
            self.state.succeeded()

    async def _read_back(self) -> None:
        histories = self.marks.histories
        self._merged = {s: h for s, h in self._merged.items() if histories.get(s) is h}
        fresh = [(s, h) for s, h in histories.items() if self._merged.get(s) is not h]
        if not fresh:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for symbol, _ in fresh:
                pipe.get(candles_key(symbol))
            kept = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for (symbol, history), earlier in zip(fresh, kept, strict=True):
                if earlier:
                    history.merge(earlier)
                history.changed.clear()  # all of it goes now
                pipe.set(candles_key(symbol), history.values.tobytes(), px=KEEP_MS)
            await pipe.execute()
        self._merged.update(fresh)

    async def _write_changes(self) -> None:
        written = [
            (symbol, history, history.take_changes())
            for symbol, history in self.marks.histories.items()
            if history.changed and self._merged.get(symbol) is history
        ]
        if not written:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for symbol, _, changes in written:
                    slots = [part for slot, data in changes for part in (slot * SLOT_BYTES, data)]
                    await self._write_slots([candles_key(symbol)], [*slots, KEEP_MS], pipe)
                lengths = await pipe.execute()
        except _FAILURES:
            for _, history, changes in written:
                history.changed.update(slot for slot, _ in changes)  # written next round
            raise
        # A key that was gone (Redis restarted empty) goes back whole.
        lost = [(s, h) for (s, h, _), n in zip(written, lengths, strict=True) if n < HISTORY_BYTES]
        if lost:
            async with self.redis.pipeline(transaction=False) as pipe:
                for symbol, history in lost:
                    pipe.set(candles_key(symbol), history.values.tobytes(), px=KEEP_MS)
                await pipe.execute()


async def read_ring(redis: Redis, symbol: str, tier: Tier) -> np.ndarray | None:
    """One ring of a symbol's candles as `ingest` last wrote them; None when it has none."""
    first = tier.first * SLOT_BYTES
    part = await redis.getrange(candles_key(symbol), first, first + tier.slots * SLOT_BYTES - 1)
    if not part:
        return None
    return ring_of(part, tier)
