"""One OKX order book kept from a snapshot and 100 ms incremental updates. Pure.

Rules (OKX V5 "Order book channel", see docs/liquidity.md):
- A snapshot (`prevSeqId` -1, or a REST book) replaces the book. An update applies when
  its `prevSeqId` equals the last `seqId`; an empty update with `prevSeqId == seqId` is
  the ~60 s heartbeat; a `seqId` below its `prevSeqId` is the reset after maintenance and
  is accepted when `prevSeqId` still chains. Anything else is a gap: the book is dropped
  and the caller resynchronises (resubscribe, or the REST book).
- The CRC32 checksum over the top 25 levels is verified when it is non-zero and ignored
  when it is 0, which OKX has sent in every frame since 2026-06-23.
- A REST book may or may not carry a `seqId`. With one, updates that it already holds are
  skipped and the first one applied must straddle it. Updates that arrive while the REST
  request is in flight are held (bounded) and replayed onto it.
- Frames from before 2023 have no `seqId`: only the checksum guards them.

Prices are kept as the strings sent (the checksum hashes them verbatim) next to floats.
"""

from __future__ import annotations

import enum
import heapq
import zlib
from collections.abc import Iterable, Sequence

from hub.market.book import BookData, Level

CHECKSUM_LEVELS = 25
MAX_HELD_UPDATES = 600  # one minute of 100 ms updates while a REST book is fetched


class Outcome(enum.Enum):
    SYNCED = "synced"  # a snapshot made the book whole
    APPLIED = "applied"
    HEARTBEAT = "heartbeat"
    RESET = "reset"  # seqId restarted after maintenance; the book is still good
    SKIPPED = "skipped"  # already held by the REST book it follows
    HELD = "held"  # waiting for a snapshot
    GAP = "gap"  # prevSeqId does not follow: resync
    CHECKSUM = "checksum"  # the book disagrees with OKX's checksum: resync

    @property
    def broken(self) -> bool:
        return self in (Outcome.GAP, Outcome.CHECKSUM)


def checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """OKX's checksum: `bid:size:ask:size:...` over 25 ranks, a missing side skipped,
    CRC32 read as a signed int32."""
    parts: list[str] = []
    for rank in range(CHECKSUM_LEVELS):
        if rank < len(bids):
            parts.append(f"{bids[rank][0]}:{bids[rank][1]}")
        if rank < len(asks):
            parts.append(f"{asks[rank][0]}:{asks[rank][1]}")
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


class _Side:
    """Levels of one side by price: float price -> (px string, sz string, size)."""

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self.levels: dict[float, tuple[str, str, float]] = {}

    def replace(self, levels: Iterable[Level]) -> None:
        self.levels.clear()
        self.merge(levels)

    def merge(self, levels: Iterable[Level]) -> None:
        for level in levels:
            price = float(level[0])
            size = float(level[1])
            if size == 0:
                self.levels.pop(price, None)
            else:
                self.levels[price] = (level[0], level[1], size)

    def top(self, count: int) -> list[Level]:
        pick = heapq.nlargest if self.descending else heapq.nsmallest
        return [list(self.levels[p][:2]) for p in pick(count, self.levels)]

    def best(self) -> float | None:
        if not self.levels:
            return None
        return max(self.levels) if self.descending else min(self.levels)

    def sorted(self) -> list[tuple[float, float]]:
        """(price, size in contracts), best first."""
        prices = sorted(self.levels, reverse=self.descending)
        return [(p, self.levels[p][2]) for p in prices]


class OrderBook:
    def __init__(self, inst_id: str) -> None:
        self.inst_id = inst_id
        self.bids = _Side(descending=True)
        self.asks = _Side(descending=False)
        self.synced = False
        self.seq_id: int | None = None
        self.updated_ms = 0  # exchange time of the last change
        self._bridging = False  # after a REST book: skip what it holds, then straddle it
        self._held: list[BookData] = []

    def drop(self) -> None:
        """Forget the book; updates are held until the next snapshot."""
        self.synced = False
        self.seq_id = None
        self._bridging = False
        self.bids.levels.clear()
        self.asks.levels.clear()
        self._held.clear()

    def apply(self, action: str, data: BookData) -> Outcome:
        """A WebSocket push: `snapshot` or `update`."""
        if action == "snapshot":
            self._replace(data)
            self._held.clear()
            return self._verify(data, Outcome.SYNCED)
        if not self.synced:
            if len(self._held) < MAX_HELD_UPDATES:
                self._held.append(data)
            return Outcome.HELD
        return self._update(data)

    def load_rest(self, data: BookData) -> Outcome:
        """A REST book (`/api/v5/market/books`), then the updates held meanwhile."""
        self._replace(data)
        self._bridging = data.seqId is not None
        held, self._held = self._held, []
        outcome = Outcome.SYNCED
        for update in held:
            result = self._update(update)
            if result.broken:
                return result
        return outcome

    def _replace(self, data: BookData) -> None:
        self.bids.replace(data.bids)
        self.asks.replace(data.asks)
        self.synced = True
        self.seq_id = data.seqId
        self._bridging = False
        self.updated_ms = int(data.ts) if data.ts.isdigit() else self.updated_ms

    def _update(self, data: BookData) -> Outcome:
        prev, seq = data.prevSeqId, data.seqId
        outcome = Outcome.APPLIED
        if self._bridging and seq is not None and self.seq_id is not None:
            if seq <= self.seq_id:
                return Outcome.SKIPPED
            if prev is not None and prev > self.seq_id:
                return self._broken(Outcome.GAP)
            self._bridging = False
        elif prev is not None and self.seq_id is not None:
            if prev != self.seq_id:
                return self._broken(Outcome.GAP)
            if seq == prev and not data.bids and not data.asks:
                outcome = Outcome.HEARTBEAT
            elif seq is not None and seq < prev:
                outcome = Outcome.RESET
        self.bids.merge(data.bids)
        self.asks.merge(data.asks)
        if seq is not None:
            self.seq_id = seq
        if data.ts.isdigit():
            self.updated_ms = int(data.ts)
        return self._verify(data, outcome)

    def _verify(self, data: BookData, outcome: Outcome) -> Outcome:
        if data.checksum != 0 and data.checksum != self.checksum():
            return self._broken(Outcome.CHECKSUM)
        return outcome

    def _broken(self, outcome: Outcome) -> Outcome:
        self.drop()
        return outcome

    def checksum(self) -> int:
        return checksum(self.bids.top(CHECKSUM_LEVELS), self.asks.top(CHECKSUM_LEVELS))

    @property
    def best_bid(self) -> float | None:
        return self.bids.best()

    @property
    def best_ask(self) -> float | None:
        return self.asks.best()
