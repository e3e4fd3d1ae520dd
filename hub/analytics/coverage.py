"""What a symbol's history covers: since when the hub holds every liquidation it was sent,
and the holes in that, so a window can say how much of its span it really shows.

`since` starts when the hub starts taking the symbol's events (earlier for a source that
lays past events, as the demo does), is carried across restarts by the durable history,
and moves forward when events are dropped: past retention, or by the safety cap
(`HEATMAP_MAX_EVENTS`), which leaves everything before the newest dropped event
incomplete. A gap is a stretch the hub was not running (found at restore, when the
history stopped longer than `GAP_TOLERANCE_MS` before the new start).

A window [start, end] is complete when `since <= start` and no gap overlaps it; its
`from` is the oldest time it covers, max(since, start). Pure: times are arguments.
"""

from __future__ import annotations

import msgspec

from hub.models import WindowCoverage

GAP_TOLERANCE_MS = 60_000  # a restart shorter than this is not reported as a gap
MAX_GAPS = 32  # remembered per symbol, newest kept


class Gap(msgspec.Struct, frozen=True, gc=False):
    start: int
    end: int


class CoverageState(msgspec.Struct, gc=False):
    """The persisted form: since when, and the gaps."""

    since: int
    gaps: list[Gap] = []


class Coverage:
    def __init__(self, since: int) -> None:
        self.since = since
        self.gaps: list[Gap] = []
        self.revision = 0  # counts changes: what was saved of it is still right while equal

    @classmethod
    def restored(cls, state: CoverageState) -> Coverage:
        coverage = cls(state.since)
        coverage.gaps = list(state.gaps)
        return coverage

    def state(self) -> CoverageState:
        return CoverageState(self.since, list(self.gaps))

    def lose_before(self, time: int) -> bool:
        """Events before `time` may be gone; whether that changed anything."""
        if time <= self.since:
            return False
        self.since = time
        self.gaps = [gap for gap in self.gaps if gap.end > time]
        self.revision += 1
        return True

    def add_gap(self, start: int, end: int, tolerance: int = GAP_TOLERANCE_MS) -> None:
        """Nothing was taken in between (the hub was down, a file of it is unreadable): a
        hole, if it is longer than `tolerance`."""
        if end - start >= tolerance and end > self.since:
            self.gaps = [*self.gaps, Gap(max(start, self.since), end)][-MAX_GAPS:]
            self.revision += 1

    def complete_from(self, span_ms: int) -> int:
        """The first time a window of `span_ms` ending then is complete (no new gap)."""
        return max([self.since, *(gap.end for gap in self.gaps)]) + span_ms

    def of(self, start: int, end: int) -> WindowCoverage:
        """Coverage of the window [start, end]."""
        holed = any(gap.start < end and gap.end > start for gap in self.gaps)
        return WindowCoverage(max(self.since, start), self.since <= start and not holed)
