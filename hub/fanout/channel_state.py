"""What a fan-out process remembers of one channel: its position, recent history and,
for snapshot + diff channels (heatmap, predicted), a replica of the snapshot.

The replica is kept by applying the same diffs clients apply, so a snapshot handed to a
new subscriber is exactly the state the diff stream has reached (the invariant holds by
construction), and a web process needs nothing from the processor but the stream.

History (for `since`) is bounded by age and bytes, never by a count alone: each channel
keeps at least its last minute or last 1,000 messages, nothing older than
`HISTORY_MAX_AGE_MS`, and all channels of a process together keep at most
`HistoryBudget.max_bytes` (the oldest message of any channel goes first). A resume from
further back gets a snapshot, as the protocol says.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque

from hub.fanout.codec import (
    EncodedMessage,
    decode_diff_body,
    decode_diff_density,
    decode_predicted_diff,
    decode_predicted_snapshot,
    decode_snapshot,
)
from hub.models import Bin, Density, HeatmapSnapshot, PredictedSnapshot


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    GAP = "gap"


HISTORY_MIN_MESSAGES = 1_000
HISTORY_MIN_MS = 60_000
HISTORY_MAX_AGE_MS = 600_000
HISTORY_BYTES = 64 << 20
# A held message costs about its JSON twice over (the bytes received and the frame
# written from them) plus the entry itself.
_ENTRY_BYTES = 200
REPLICA_MAX_PENDING = 200


class HeatmapReplica:
    """A snapshot kept current by the channel's diffs, applied lazily: a diff is only
    queued when it arrives, and the queue is applied when a snapshot is asked for (or
    grows long), so the relay's cost per message is its header. Densities are applied
    from the last whole one of the run on: the patches after it, in order."""

    def __init__(self, snapshot: HeatmapSnapshot) -> None:
        self.state = snapshot
        self._bins: dict[float, Bin] = {b[0]: b for b in snapshot.bins}
        self._pending: list[EncodedMessage] = []

    def apply_diff(self, message: EncodedMessage) -> None:
        self._pending.append(message)
        if len(self._pending) >= REPLICA_MAX_PENDING:
            self._catch_up()

    def _catch_up(self) -> None:
        if not self._pending:
            return
        state = self.state
        for message in self._pending:
            diff = decode_diff_body(message.header.data)
            for row in diff.bins:
                if row[3] == 0:
                    self._bins.pop(row[0], None)
                else:
                    self._bins[row[0]] = row
            state.time = diff.time
            if diff.clusters is not None:
                state.clusters = diff.clusters
            if diff.statistics is not None:
                state.statistics = diff.statistics
            if diff.reference_price is not None:
                state.reference_price = diff.reference_price
            if diff.coverage is not None:
                state.coverage = diff.coverage
        state.density = _applied_densities(state.density, self._pending)
        state.seq = self._pending[-1].header.seq
        state.bins = [self._bins[price] for price in sorted(self._bins)]
        self._pending.clear()

    def snapshot(self) -> HeatmapSnapshot:
        self._catch_up()
        return self.state


def _applied_densities(density: Density, diffs: list[EncodedMessage]) -> Density:
    """`density` after the diffs' densities: the last whole one, then the later patches."""
    parts = [decode_diff_density(message.header.data) for message in diffs]
    start = 0
    for index in range(len(parts) - 1, -1, -1):
        whole = parts[index].density
        if whole is not None:
            density, start = whole, index + 1
            break
    values: list[float] | None = None
    for part in parts[start:]:
        for offset, run in part.density_patch or ():
            if values is None:
                values = list(density.values)
            values[offset : offset + len(run)] = run
    return density if values is None else Density(density.start, density.step, values)


class PredictedReplica:
    """A predicted-levels snapshot kept current by its diffs, which replace whole fields
    (they are small and rare next to heatmap diffs, so each is applied as it comes)."""

    def __init__(self, snapshot: PredictedSnapshot) -> None:
        self.state = snapshot

    def apply_diff(self, message: EncodedMessage) -> None:
        diff = decode_predicted_diff(message.header.data)
        state = self.state
        state.seq = message.header.seq
        state.time = diff.time
        if diff.levels is not None:
            state.levels = diff.levels
        if diff.consumed is not None:
            state.consumed = diff.consumed
        if diff.reference_price is not None:
            state.reference_price = diff.reference_price
        if diff.mark is not None:
            state.mark = diff.mark

    def snapshot(self) -> PredictedSnapshot:
        return self.state


def replica_of(message: EncodedMessage) -> HeatmapReplica | PredictedReplica:
    """The replica a channel's snapshot message starts."""
    if message.header.ch.startswith("predicted:"):
        return PredictedReplica(decode_predicted_snapshot(message.header.data))
    return HeatmapReplica(decode_snapshot(message.header.data))


def held_bytes(message: EncodedMessage) -> int:
    """What a held message is counted as (see `_ENTRY_BYTES`)."""
    return 2 * len(message.json) + _ENTRY_BYTES


class HistoryBudget:
    """The bytes the histories of all channels of a process may hold together; past them,
    the oldest message of any channel goes first. The channels' oldest messages are found
    through a heap of their heads' times, kept lazily: an entry is checked against the
    channel when it comes up, and the heap is rebuilt once stale entries outnumber the
    channels."""

    def __init__(self, max_bytes: int = HISTORY_BYTES) -> None:
        self.max_bytes = max_bytes
        self.held = 0
        self._states: list[ChannelState] = []
        self._heads: list[tuple[int, int, ChannelState]] = []  # (head's ms, tiebreak, channel)
        self._pushed = 0

    def join(self, state: ChannelState) -> None:
        self._states.append(state)

    def head_changed(self, state: ChannelState) -> None:
        if state.history:
            self._pushed += 1
            heapq.heappush(self._heads, (state.history[0][0], self._pushed, state))
            if len(self._heads) > 4 * len(self._states) + 64:
                self._rebuild()

    def enforce(self) -> None:
        heads = self._heads
        while self.held > self.max_bytes and heads:
            head_ms, _, state = heapq.heappop(heads)
            if state.history and state.history[0][0] == head_ms:
                state.drop_oldest()

    def _rebuild(self) -> None:
        self._heads = [
            (state.history[0][0], index, state)
            for index, state in enumerate(self._states)
            if state.history
        ]
        self._pushed = len(self._states)
        heapq.heapify(self._heads)


class ChannelState:
    """Position (epoch, seq), bounded history of encoded messages, optional replica."""

    def __init__(self, name: str, budget: HistoryBudget | None = None) -> None:
        self.name = name
        self.epoch: str | None = None
        self.seq = 0
        self.history: deque[tuple[int, EncodedMessage]] = deque()  # (received ms, message)
        self.budget = budget if budget is not None else HistoryBudget()
        self.budget.join(self)
        self.replica: HeatmapReplica | PredictedReplica | None = None
        self.snapshot_cache: EncodedMessage | None = None

    def accept(self, message: EncodedMessage, now: int) -> Outcome:
        """Take the next message.

        DUPLICATE: already held (a repeated delivery, or a snapshot answering another
        process's resync request at the position this replica has); nothing changes.
        GAP: a heatmap or predicted diff that does not follow on (lost messages, another epoch, no
        snapshot yet); nothing changes and the caller must resynchronise. Liquidation and
        alert gaps are accepted; clients see them as a seq jump."""
        header = message.header
        same_epoch = header.epoch == self.epoch
        if header.type == "snapshot":
            if same_epoch and header.seq <= self.seq and self.replica is not None:
                return Outcome.DUPLICATE
            self.replica = replica_of(message)
            self._clear()
        elif same_epoch and header.seq <= self.seq:
            return Outcome.DUPLICATE
        elif header.type == "diff":
            if self.replica is None or not same_epoch or header.seq != self.seq + 1:
                return Outcome.GAP
            self.replica.apply_diff(message)
            self._remember(message, now)
        else:
            # A liquidity message is the whole analysis: only the latest is worth holding.
            if not same_epoch or header.type == "liquidity":
                self._clear()
            self._remember(message, now)
        self.epoch = header.epoch
        self.seq = header.seq
        self.snapshot_cache = None
        return Outcome.ACCEPTED

    def _remember(self, message: EncodedMessage, now: int) -> None:
        history = self.history
        history.append((now, message))
        self.budget.held += held_bytes(message)
        if len(history) == 1:
            self.budget.head_changed(self)
        self._trim(now)
        self.budget.enforce()

    def _trim(self, now: int) -> None:
        history = self.history
        while history and (
            history[0][0] < now - HISTORY_MAX_AGE_MS
            or (len(history) > HISTORY_MIN_MESSAGES and history[0][0] < now - HISTORY_MIN_MS)
        ):
            self.drop_oldest()

    def drop_oldest(self) -> None:
        _, message = self.history.popleft()
        self.budget.held -= held_bytes(message)
        self.budget.head_changed(self)

    def forget(self) -> None:
        """Hold nothing, as before the first message: the stream this process followed is
        not the processor's any more (it went back), so only a snapshot starts it again."""
        self._clear()
        self.replica = None
        self.epoch = None
        self.seq = 0
        self.snapshot_cache = None

    def _clear(self) -> None:
        while self.history:
            self.drop_oldest()

    def since(self, epoch: str, seq: int) -> list[EncodedMessage] | None:
        """The messages after `seq` in `epoch`, or None when they are no longer all held."""
        if epoch != self.epoch or seq > self.seq:
            return None
        if seq == self.seq:
            return []
        history = self.history
        if not history or history[0][1].header.seq > seq + 1:
            return None
        # by seq, not by count: a liquidations/alerts channel may carry seq jumps
        return [m for _, m in history if m.header.seq > seq]
