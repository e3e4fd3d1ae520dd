"""Per-client limits: REST requests a second, and WebSocket connections held at once.

A client is an identity: `key:NAME` when keys are on and one was given, else
`ip:ADDRESS`. `Limiter` is what the API asks; `MemoryLimiter` counts in this process
(one `serve`, or when Redis is not there) and `hub.access.limits_redis` counts across
every process sharing a Redis, falling back to a `MemoryLimiter` while Redis is away.

The request rate is a GCRA (the generic cell rate algorithm, a token bucket kept as one
number per client: the theoretical arrival time of its next request). It allows a burst
of one second's worth, then one request every 1/rate s, and tells a refused client how
long to wait, which becomes `Retry-After`. One number per client is what Redis can hold
and update in one atomic step, so both backends run the same arithmetic (`gcra`).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Protocol

SWEEP_AT = 4096  # clients remembered before the idle ones are forgotten


def gcra(tat: float | None, now_ms: float, rate: float) -> tuple[float | None, float]:
    """One request at `now_ms` by a client whose theoretical arrival time is `tat` (None:
    never seen), at `rate` requests a second with a burst of one second's worth.
    Returns (its new tat, or None when refused; ms to wait before a retry, 0 admitted)."""
    interval = 1000.0 / rate
    tolerance = interval * (max(1, math.ceil(rate)) - 1)
    start = now_ms if tat is None or tat < now_ms else tat
    early = start - now_ms - tolerance
    if early > 0:
        return None, early
    return start + interval, 0.0


def retry_after_s(wait_ms: float) -> int:
    """`Retry-After` is whole seconds; rounding down would invite a retry that fails."""
    return max(1, math.ceil(wait_ms / 1000))


class Limiter(Protocol):
    async def admit_request(self, identity: str, rate: float, now_ms: float) -> float:
        """ms until `identity` may make a request at `rate`; 0 when this one is admitted."""

    async def acquire_connection(self, identity: str, limit: int) -> bool:
        """Take one of `limit` connection slots of `identity`; False when all are taken."""

    def release_connection(self, identity: str) -> None:
        """A connection `acquire_connection` admitted has ended."""


class MemoryLimiter:
    """Both limits, counted in this process."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.connections: Counter[str] = Counter()
        self._sweep_at = SWEEP_AT

    async def admit_request(self, identity: str, rate: float, now_ms: float) -> float:
        return self.admit(identity, rate, now_ms)

    def admit(self, identity: str, rate: float, now_ms: float) -> float:
        tat, wait = gcra(self.arrivals.get(identity), now_ms, rate)
        if tat is not None:
            self.arrivals[identity] = tat
            if len(self.arrivals) > self._sweep_at:
                self._sweep(now_ms)
        return wait

    def _sweep(self, now_ms: float) -> None:
        """Forget clients whose bucket is full again: to the algorithm they are new."""
        self.arrivals = {who: tat for who, tat in self.arrivals.items() if tat > now_ms}
        self._sweep_at = max(SWEEP_AT, 2 * len(self.arrivals))

    async def acquire_connection(self, identity: str, limit: int) -> bool:
        return self.acquire(identity, limit)

    def acquire(self, identity: str, limit: int) -> bool:
        if self.connections[identity] >= limit:
            return False
        self.connections[identity] += 1
        return True

    def release_connection(self, identity: str) -> None:
        self.connections[identity] -= 1
        if self.connections[identity] <= 0:
            del self.connections[identity]
