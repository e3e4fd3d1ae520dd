"""Exact running statistics of the alert window, for the per-event z-score.

A large-liquidation alert compares each event with the alert window as it stands when
the event arrives, between flushes. Heatmap windows are only computed at flush time (see
`hub.analytics.columns`), so this one window keeps, per event, a count and exact sums:
an event is counted when applied if inside the window at that moment, dropped when the
store evicts it, and aged out at each flush (or new epoch), as the heatmap windows do.

Notional sums are exact integers in units of 2**-62 of the quote currency: every float
notional >= 2**-10 converts exactly, so adding and later removing an event restores the
sums bit for bit. Float running sums drifted: after a 10M event left the window, a lone
event's std came out as 0.05 instead of 0, and the next event got z ~ 1000 (a spurious
large_liquidation). The sum of squares in the same units makes the variance exact too.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

from hub.models import LiquidationEvent

_FIXED_BITS = 62
_FIXED = float(1 << _FIXED_BITS)
_UNIT = 2.0**-_FIXED_BITS
_SQUARED_UNIT = 2.0 ** (-2 * _FIXED_BITS)


class RunningStatistics:
    def __init__(self, span_ms: int) -> None:
        self.span_ms = span_ms
        self._events: deque[LiquidationEvent] = deque()
        self._count = 0
        self._total = 0  # fixed point, see the module doc
        self._sum_squares = 0  # in units of 2**-124

    def add(self, event: LiquidationEvent, now: int) -> None:
        if event.time < now - self.span_ms:
            return
        events = self._events
        if not events or event.time >= events[-1].time:
            events.append(event)
        else:
            events.insert(bisect.bisect_right(events, event.time, key=_time), event)
        fixed = int(event.notional * _FIXED)  # _account(event, 1), inlined: per event
        self._count += 1
        self._total += fixed
        self._sum_squares += fixed * fixed

    def forget(self, event: LiquidationEvent) -> None:
        """The store dropped `event` (its oldest); drop it here too if held."""
        if self._events and self._events[0] is event:
            self._account(self._events.popleft(), -1)

    def expire(self, now: int) -> None:
        cutoff = now - self.span_ms
        events = self._events
        if not events or events[0].time >= cutoff:
            return
        count, total, squares = self._count, self._total, self._sum_squares
        while events and events[0].time < cutoff:  # _account(..., -1), inlined: per event
            fixed = int(events.popleft().notional * _FIXED)
            count -= 1
            total -= fixed
            squares -= fixed * fixed
        self._count, self._total, self._sum_squares = count, total, squares

    def _account(self, event: LiquidationEvent, sign: int) -> None:
        fixed = int(event.notional * _FIXED)  # exact: a power-of-two scale
        self._count += sign
        self._total += fixed * sign
        self._sum_squares += fixed * fixed * sign

    def z_score(self, notional: float) -> float:
        count = self._count
        if count == 0:
            return 0.0
        # n * sum(x^2) - sum(x)^2 is an exact integer >= 0: no cancellation, no clamp. It
        # is rounded to a float once, then scaled (a power of two: exact) and divided.
        total = self._total
        variance = float(count * self._sum_squares - total * total) * _SQUARED_UNIT / count**2
        std = math.sqrt(variance)
        mean = float(total) * _UNIT / count
        return (notional - mean) / std if std > 0 else 0.0


def _time(event: LiquidationEvent) -> int:
    return event.time
