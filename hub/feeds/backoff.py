"""Reconnect delays: exponential backoff with full jitter, capped, reset after health.

Full jitter (a uniform draw in [0, min(cap, base * 2**attempt)]) spreads a crowd of
clients reconnecting after one outage instead of having them retry in lockstep. The
attempt count resets once a connection has stayed up for `healthy_after` seconds, so a
flapping upstream keeps backing off while a long-lived one starts fresh next time.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        healthy_after: float = 60.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.base = base
        self.cap = cap
        self.healthy_after = healthy_after
        self.attempt = 0
        self._uniform = uniform

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2.0**self.attempt)
        self.attempt += 1
        return self._uniform(0.0, ceiling)

    def connection_lasted(self, seconds: float) -> None:
        if seconds >= self.healthy_after:
            self.attempt = 0

    def fresh(self) -> Backoff:
        """The same policy with its own attempt count (one per connection)."""
        return Backoff(self.base, self.cap, self.healthy_after, self._uniform)
