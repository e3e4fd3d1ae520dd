"""The feed interface: one adapter per exchange (or replay file) behind it.

A feed turns upstream frames into normalized `LiquidationEvent`s and hands each to its
sink as soon as it is decoded; it reports its state as a `FeedStatus`. Frame listeners
see every raw frame as received (the `record` command is one).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable

import msgspec

from hub.models import LiquidationEvent

EventSink = Callable[[LiquidationEvent], None]
FrameListener = Callable[[int, bytes], None]  # (received ms, frame exactly as received)

log = logging.getLogger("hub.feeds")


class FeedStatus(msgspec.Struct):
    name: str
    connected: bool = False
    url: str = ""
    frames: int = 0
    events: int = 0
    malformed: int = 0
    ignored: int = 0
    reconnects: int = 0
    last_frame_at: int | None = None  # ms
    last_error: str | None = None
    anomalies: dict[str, int] = {}
    note: str = ""

    def count_anomaly(self, kind: str, detail: str) -> None:
        """Count an unexpected frame; log the first of each kind only, to keep logs readable."""
        seen = self.anomalies.get(kind, 0)
        self.anomalies[kind] = seen + 1
        if seen == 0:
            log.warning("%s: %s (%s); further ones are only counted", self.name, kind, detail)


class Feed(abc.ABC):
    status: FeedStatus

    @abc.abstractmethod
    async def run(self) -> None:
        """Consume until cancelled (a replay may also finish)."""

    @abc.abstractmethod
    async def add_symbols(self, symbols: set[str]) -> None:
        """Start delivering these symbols too (upper case)."""

    @abc.abstractmethod
    async def remove_symbols(self, symbols: set[str]) -> None:
        """Stop delivering these symbols."""

    def add_frame_listener(self, listener: FrameListener) -> None:
        self._listeners = [*getattr(self, "_listeners", []), listener]

    def _frame_received(self, received_ms: int, frame: bytes) -> None:
        for listener in getattr(self, "_listeners", ()):
            listener(received_ms, frame)
