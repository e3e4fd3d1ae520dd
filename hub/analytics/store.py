"""The bounded, time-ordered event store of one symbol.

It is the only owner of accepted events: windows hold references into it and drop an
event when the store does. Bounds are a count (`HEATMAP_MAX_EVENTS`) and an age
(`HEATMAP_RETENTION_DAYS`); when full, the oldest event goes first. Events are kept in
trade-time order (out-of-order arrivals are inserted in place, which is rare and costs
O(n)), and a duplicate of an event already held (a reconnect overlap, a replayed log) is
refused, so re-delivery never double counts.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterator

from hub.models import LiquidationEvent


def same_event(a: LiquidationEvent, b: LiquidationEvent) -> bool:
    """Two deliveries of one liquidation: same trade time, price, quantity, side and
    exchange (the same numbers on two exchanges are two events)."""
    return (a.time, a.price, a.quantity, a.side, a.exchange) == (
        b.time,
        b.price,
        b.quantity,
        b.side,
        b.exchange,
    )


def _hash(event: LiquidationEvent) -> int:
    return hash((event.time, event.price, event.quantity, event.side, event.exchange))


class EventStore:
    def __init__(self, max_events: int, retention_ms: int) -> None:
        self.max_events = max_events
        self.retention_ms = retention_ms
        self._events: deque[LiquidationEvent] = deque()
        # hash of what `same_event` compares -> the event held (a list in the rare case
        # of a collision): one lookup however many events share a millisecond (a Bybit
        # batch, a burst of three exchanges), exact (the hash only finds candidates),
        # and one small int a slot, the longer windows being memory-bound
        self._by_hash: dict[int, LiquidationEvent | list[LiquidationEvent]] = {}

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[LiquidationEvent]:
        return iter(self._events)

    def __reversed__(self) -> Iterator[LiquidationEvent]:
        return reversed(self._events)

    @property
    def newest(self) -> LiquidationEvent | None:
        return self._events[-1] if self._events else None

    def is_duplicate(self, event: LiquidationEvent) -> bool:
        held = self._by_hash.get(_hash(event))
        if held is None:
            return False
        if isinstance(held, list):
            return any(same_event(event, other) for other in held)
        return same_event(event, held)

    def accepts(self, event: LiquidationEvent, now: int) -> bool:
        """Whether `add` would keep this event: a positive finite price and a finite
        notional, not a duplicate, not past retention, and not older than everything in a
        full store."""
        # The grid cannot place a price <= 0 (ValueError) and an inf notional would poison
        # every sum of the windows, so such an event is refused here, whatever feed sent it.
        if not (0.0 < event.price < math.inf and 0.0 <= event.notional < math.inf):
            return False
        if event.time < now - self.retention_ms or self.is_duplicate(event):
            return False
        full = len(self._events) >= self.max_events
        return not (full and event.time < self._events[0].time)

    def add(self, event: LiquidationEvent) -> list[LiquidationEvent]:
        """Insert an event that `accepts` allowed; returns the events pushed out by the bound."""
        events = self._events
        if not events or event.time >= events[-1].time:
            events.append(event)
        else:
            events.insert(bisect.bisect_right(events, event.time, key=_time), event)
        key = _hash(event)
        held = self._by_hash.get(key)
        if held is None:
            self._by_hash[key] = event
        elif isinstance(held, list):
            held.append(event)
        else:
            self._by_hash[key] = [held, event]
        evicted: list[LiquidationEvent] = []
        while len(events) > self.max_events:
            evicted.append(self._pop_oldest())
        return evicted

    def sweep(self, now: int) -> list[LiquidationEvent]:
        """Drop events past retention; returns them, oldest first."""
        cutoff = now - self.retention_ms
        evicted: list[LiquidationEvent] = []
        while self._events and self._events[0].time < cutoff:
            evicted.append(self._pop_oldest())
        return evicted

    def _pop_oldest(self) -> LiquidationEvent:
        event = self._events.popleft()
        key = _hash(event)
        held = self._by_hash[key]
        if isinstance(held, list):
            held.remove(event)
            if len(held) == 1:
                self._by_hash[key] = held[0]
        else:
            del self._by_hash[key]
        return event


def _time(event: LiquidationEvent) -> int:
    return event.time
