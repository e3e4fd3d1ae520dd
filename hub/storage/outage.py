"""Redis reachability as a state: up, or down since a moment, with the next attempt due.

Every loop that talks to Redis (publishing, the event log, status, snapshot requests)
asks `due()` before trying and reports the outcome with `failed(error)` or
`succeeded()`. While Redis is down the attempts back off (full jitter, `Backoff`), so an
unreachable REDIS_URL costs a few connection attempts a second at most rather than one
per flush; and the log says when Redis was lost and when it came back, once each, not
once per attempt. The error of the latest attempt stays on status.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from hub.errors import clip
from hub.feeds.backoff import Backoff


class Outage:
    def __init__(
        self,
        what: str,
        log: logging.Logger,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`what` names the user of Redis in the log lines (e.g. "ingest")."""
        self.what = what
        self.log = log
        # Capped at a second: a failover is over in a few seconds, and a retry a second
        # wasted while Redis is away costs nothing; a 5 s cap held publishing back for up
        # to 4 s after Sentinel had named the new master.
        self.backoff = backoff or Backoff(base=0.2, cap=1.0, healthy_after=0.0)
        self.clock = clock
        self.down_since: float | None = None
        self.failures = 0  # attempts failed in the current outage
        self.last_error: str | None = None
        self._next_attempt = 0.0
        self._succeeded_at = -math.inf

    @property
    def up(self) -> bool:
        return self.down_since is None

    def due(self) -> bool:
        """Whether to try Redis now: always while up, after the backoff delay while down."""
        return self.down_since is None or self.clock() >= self._next_attempt

    def failed(self, error: BaseException, began: float | None = None) -> float:
        """Record a failed attempt; returns the delay before the next one is due. `began`
        (this clock's time the attempt started): when another attempt succeeded since,
        Redis was back before this one failed (several loops share one state), and the
        failure is stale: it changes nothing."""
        now = self.clock()
        if began is not None and self.down_since is None and began <= self._succeeded_at:
            return 0.0
        self.failures += 1
        self.last_error = f"{type(error).__name__}: {clip(str(error), 200)}"
        if self.down_since is None:
            self.down_since = now
            self.log.warning(
                "%s: Redis unreachable (%s); retrying with backoff, quiet until it is back",
                self.what,
                self.last_error,
            )
        delay = self.backoff.next_delay()
        self._next_attempt = now + delay
        return delay

    def succeeded(self) -> None:
        self._succeeded_at = self.clock()
        if self.down_since is not None:
            self.log.info(
                "%s: Redis is back after %.1f s (%d failed attempts)",
                self.what,
                self.clock() - self.down_since,
                self.failures,
            )
        self.down_since = None
        self.failures = 0
        self.backoff.attempt = 0
