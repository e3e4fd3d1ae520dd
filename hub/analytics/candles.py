"""Mark-price candles: each symbol's bounded history of OHLC candles at a few resolutions,
and the timeline's `candles` (one per bucket) made from them. Pure: times are arguments.

The timeline's buckets run from 3 s (5 minutes in 100) to 4 h (30 days in 180). Keeping
every mark price for 30 days would be 2.6 million points a symbol, and one resolution is
either too coarse for the short windows or too long for the long ones. So a symbol keeps
rings of candles at six resolutions (`TIERS`), each as long as the windows it serves:

    step    held    serves the windows
    1 s     5 min   5m
    5 s     15 min  15m
    15 s    1 h     1h
    1 min   24 h    4h, 12h, 24h
    15 min  7 d     3d, 7d
    1 h     30 d    30d

A slot is five float64 (start ms, open, high, low, close): 3,564 slots, 142,560 bytes a
symbol, 43 MB for 300 symbols, whatever the rates. The rings of a symbol are one flat
buffer (`MarkHistory.values`), which is also what Redis holds for `web` processes
(hub/storage/candles.py): a slot is valid only while its start is the one its position
stands for, so a stale or never-written slot (zeros) reads as no candle.

A bucket's candle joins the base candles that *start* inside it, from the coarsest ring
whose step fits the bucket and which reaches back to the window's start (`tier_for`); a
bucket shorter than the finest such step gets a candle only where a base candle starts,
and `null` elsewhere, rather than a candle copied into several buckets.

Which mark price: Binance's (`markPrice@1s`) while it keeps coming, else Bybit's ticker,
else OKX's, then the other exchanges' (`RANK`, `MarkPrices`): a source of lower rank is
taken only when the one in use has been silent for `STALE_MS` of mark time, so one
symbol's candles never mix two exchanges' prices second by second.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from hub.models import MarkPrice, MarkPriceUpdate

Candle = tuple[int, float, float, float, float]  # [time, open, high, low, close]
FIELDS = 5  # of a slot: start, open, high, low, close
SLOT_BYTES = FIELDS * 8
# mark price sources, preferred first; an exchange not named here comes after them all
RANK = ("binance", "bybit", "okx", "bitget", "deribit", "bitmex")
STALE_MS = 10_000  # a source silent this long (10 Binance pushes) gives way to the next
MAX_AHEAD_MS = 10 * 60_000  # a mark price stamped further in the future is a broken clock


class Tier(NamedTuple):
    step_ms: int
    slots: int
    first: int  # of its slots in the symbol's buffer

    @property
    def reach_ms(self) -> int:
        """How far back from the present the ring holds whole candles."""
        return (self.slots - 1) * self.step_ms


def _tiers(spec: Iterable[tuple[int, int]]) -> tuple[Tier, ...]:
    tiers, first = [], 0
    for step, held in spec:
        slots = held // step + 2  # the current, partial candle and one of slack
        tiers.append(Tier(step, slots, first))
        first += slots
    return tuple(tiers)


MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
TIERS = _tiers(
    (
        (1_000, 5 * MINUTE),
        (5_000, 15 * MINUTE),
        (15_000, HOUR),
        (MINUTE, DAY),
        (15 * MINUTE, 7 * DAY),
        (HOUR, 30 * DAY),
    )
)
SLOTS = sum(tier.slots for tier in TIERS)
HISTORY_BYTES = SLOTS * SLOT_BYTES


def tier_for(span_ms: int, buckets: int) -> Tier:
    """The ring a window of `buckets` buckets is drawn from: of those reaching back over the
    whole span, the coarsest whose step fits a bucket, else the finest."""
    width = span_ms / buckets
    reaching = [tier for tier in TIERS if tier.reach_ms >= span_ms] or [TIERS[-1]]
    fitting = [tier for tier in reaching if tier.step_ms <= width]
    return fitting[-1] if fitting else reaching[0]


class MarkHistory:
    """One symbol's candle rings, in one buffer of `SLOTS` slots."""

    def __init__(self) -> None:
        self.values = array("d", bytes(HISTORY_BYTES))
        self.changed: set[int] = set()  # slots written since `take_changes`

    def add(self, time: int, price: float) -> None:
        values = self.values
        for step, slots, first in TIERS:
            start = time - time % step
            slot = first + (start // step) % slots
            at = slot * FIELDS
            if values[at] != start:
                values[at] = start
                values[at + 1] = values[at + 2] = values[at + 3] = values[at + 4] = price
            else:
                if price > values[at + 2]:
                    values[at + 2] = price
                elif price < values[at + 3]:
                    values[at + 3] = price
                values[at + 4] = price
            self.changed.add(slot)

    def take_changes(self) -> list[tuple[int, bytes]]:
        """(slot, its bytes) of every slot written since the last call."""
        changed, self.changed = sorted(self.changed), set()
        view = memoryview(self.values).cast("B")
        return [
            (slot, bytes(view[slot * SLOT_BYTES : (slot + 1) * SLOT_BYTES])) for slot in changed
        ]

    def ring(self, tier: Tier) -> np.ndarray:
        """One ring's candles (`ring_of`)."""
        bytes_of = memoryview(self.values).cast("B")
        return ring_of(
            bytes_of[tier.first * SLOT_BYTES : (tier.first + tier.slots) * SLOT_BYTES], tier
        )

    def merge(self, kept: bytes) -> None:
        """Take the slots of an earlier process's buffer (`values` as bytes) that this one
        has not written since: a restart keeps its candles. A slot both hold for the same
        start is joined (its open from the earlier, its close from this one)."""
        if len(kept) != HISTORY_BYTES:
            return  # another layout: not ours to read
        old = np.frombuffer(kept, np.float64).reshape(SLOTS, FIELDS)
        new = np.frombuffer(self.values, np.float64).reshape(SLOTS, FIELDS).copy()
        take = old[:, 0] > new[:, 0]
        joined = (old[:, 0] == new[:, 0]) & (old[:, 0] > 0)
        new[take] = old[take]
        new[joined, 1] = old[joined, 1]
        new[joined, 2] = np.maximum(old[joined, 2], new[joined, 2])
        new[joined, 3] = np.minimum(old[joined, 3], new[joined, 3])
        self.values = array("d", new.tobytes())
        self.changed.update(np.flatnonzero(take | joined).tolist())


def ring_of(part: bytes | memoryview, tier: Tier) -> np.ndarray:
    """A ring's candles from its bytes (its part of `MarkHistory.values`), oldest first, a
    row each: start, open, high, low, close. A slot that is not the candle its position
    stands for (stale, or zeros: never written) is left out."""
    rows = np.frombuffer(part, np.float64).reshape(-1, FIELDS).copy()
    if len(rows) != tier.slots:
        return np.zeros((0, FIELDS))
    positions = np.arange(tier.slots)
    valid = (rows[:, 0] > 0) & ((rows[:, 0] // tier.step_ms) % tier.slots == positions)
    rows = rows[valid]
    return rows[np.argsort(rows[:, 0], kind="stable")]


def bucket_candles(ring: np.ndarray, now: int, span_ms: int, buckets: int) -> list[Candle | None]:
    """One candle per bucket of the window ending at `now` (the timeline's buckets: bucket
    i starts at now - span + ceil(i * span / buckets)): the base candles of `ring` (as
    `ring_of` gives them) starting in it, joined; None where none does. A candle starting
    after `now` (a clock a little ahead) counts in the last bucket, as a liquidation does."""
    cutoff = now - span_ms
    rows = ring[ring[:, 0] >= cutoff]
    candles: list[Candle | None] = [None] * buckets
    if not len(rows):
        return candles
    starts = rows[:, 0].astype(np.int64)
    index = np.minimum((starts - cutoff) * buckets // span_ms, buckets - 1)
    firsts = np.flatnonzero(np.diff(index, prepend=-1))
    lasts = np.append(firsts[1:], len(rows)) - 1
    highs = np.maximum.reduceat(rows[:, 2], firsts)
    lows = np.minimum.reduceat(rows[:, 3], firsts)
    for bucket, first, last, high, low in zip(
        index[firsts].tolist(),
        firsts.tolist(),
        lasts.tolist(),
        highs.tolist(),
        lows.tolist(),
        strict=True,
    ):
        time = cutoff - (-bucket * span_ms // buckets)
        candles[bucket] = (time, float(rows[first, 1]), high, low, float(rows[last, 4]))
    return candles


class MarkPrices:
    """Every symbol's mark price history, from whichever source ranks first (`RANK`)."""

    def __init__(self) -> None:
        self.histories: dict[str, MarkHistory] = {}
        self.latest: dict[str, MarkPrice] = {}
        self.rejected = 0  # not positive, stamped far ahead, or older than the last taken

    def apply(self, update: MarkPriceUpdate, now: int) -> bool:
        """Whether the update was taken (a tracked symbol's, from the source in use)."""
        history = self.histories.get(update.symbol)
        if history is None:
            return False
        if not (update.price > 0 and update.time <= now + MAX_AHEAD_MS):
            self.rejected += 1
            return False
        latest = self.latest.get(update.symbol)
        if latest is not None:
            if _rank(update.exchange) > _rank(latest.exchange) and (
                update.time - latest.time < STALE_MS
            ):
                return False  # the preferred source is alive
            if update.time < latest.time:
                self.rejected += 1
                return False
        history.add(update.time, update.price)
        self.latest[update.symbol] = MarkPrice(update.time, update.price, update.exchange)
        return True

    def track(self, symbol: str) -> None:
        if symbol not in self.histories:
            self.histories[symbol] = MarkHistory()

    def untrack(self, symbol: str) -> None:
        self.histories.pop(symbol, None)
        self.latest.pop(symbol, None)

    def ring(self, symbol: str, tier: Tier) -> np.ndarray | None:
        history = self.histories.get(symbol)
        return history.ring(tier) if history is not None else None


def _rank(exchange: str) -> int:
    return RANK.index(exchange) if exchange in RANK else len(RANK)
