"""The feed interface: one adapter per exchange (or replay file) behind it.

A feed turns upstream frames into normalized `LiquidationEvent`s and hands each to its
sink as soon as it is decoded; it reports its state as a `FeedStatus` per source. Frame
listeners see every raw frame as received, and REST listeners every REST body a feed
polled (the `record` command is both). Each exchange's frame decoding is a pure
`Decoder` (bytes in, `Decoded` out), shared by its live feed and by replays.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from typing import NamedTuple, Protocol, TypeVar

import msgspec

from hub.models import LiquidationEvent, MarkPriceUpdate, OpenInterestUpdate

EventSink = Callable[[LiquidationEvent], None]
MarketUpdate = OpenInterestUpdate | MarkPriceUpdate
MarketSink = Callable[[MarketUpdate], None]
FrameListener = Callable[[int, bytes], None]  # (received ms, frame exactly as received)
RestListener = Callable[[int, str, bytes], None]  # (received ms, path with query, body)

log = logging.getLogger("hub.feeds")
T = TypeVar("T")


class FeedStatus(msgspec.Struct):
    name: str
    connected: bool = False
    url: str = ""
    frames: int = 0
    events: int = 0
    malformed: int = 0
    ignored: int = 0
    reconnects: int = 0
    duplicates: int = 0  # liquidations delivered again (an upstream replay), dropped
    connected_since: int | None = None  # ms; None while disconnected
    last_frame_at: int | None = None  # ms
    last_error: str | None = None
    anomalies: dict[str, int] = {}
    unlisted: list[str] = []  # tracked symbols this exchange does not list
    note: str = ""

    def count_anomaly(self, kind: str, detail: str) -> None:
        """Count an unexpected frame; log the first of each kind only, to keep logs readable."""
        seen = self.anomalies.get(kind, 0)
        self.anomalies[kind] = seen + 1
        if seen == 0:
            log.warning("%s: %s (%s); further ones are only counted", self.name, kind, detail)


def excerpt(frame: bytes) -> str:
    return bytes(frame[:120]).decode("utf-8", "replace")


def decode_common(decoder: msgspec.json.Decoder[T], frame: bytes | str) -> T | None:
    """`frame` in the one typed pass that fits the frame almost every one is, or None when
    it has another shape (a decoder then takes its layered path, which names anomalies)."""
    try:
        return decoder.decode(frame)
    except msgspec.DecodeError:
        return None


class Decoded(NamedTuple):
    """What one frame held: its liquidations, its market data (open interest, mark prices,
    which the same connection may carry), and anything unexpected as (kind, detail)."""

    events: list[LiquidationEvent]
    anomalies: list[tuple[str, str]] = []
    duplicates: int = 0
    ignored: int = 0  # well-formed but not ours (an instrument the hub does not follow)
    market: list[MarketUpdate] = []


class Decoder(Protocol):
    """An exchange's frames to events; pure apart from what earlier input taught it
    (OKX's contract values, recently seen liquidations)."""

    def decode(self, frame: bytes) -> Decoded: ...

    def take_rest(self, path: str, body: bytes) -> bool:
        """A REST response the feed polled (live or replayed), e.g. OKX's instruments;
        False when the path is none of this exchange's."""


def count_decoded(status: FeedStatus, decoded: Decoded) -> None:
    """Account for a frame's anomalies, duplicates and ignored items on `status`."""
    for kind, detail in decoded.anomalies:
        if kind == "malformed":
            status.malformed += 1
        status.count_anomaly(kind, detail)
    status.duplicates += decoded.duplicates
    status.ignored += decoded.ignored


def deliver(
    status: FeedStatus, decoded: Decoded, symbols: set[str] | None, sink: EventSink
) -> None:
    """Hand a frame's events for tracked symbols (all when `symbols` is None) to `sink`."""
    count_decoded(status, decoded)
    for event in decoded.events:
        if symbols is not None and event.symbol not in symbols:
            status.ignored += 1
            continue
        status.events += 1
        try:
            sink(event)
        except Exception:  # a processor bug must not cost the connection
            log.exception("%s: the event sink failed on %s", status.name, event)


def deliver_market(
    status: FeedStatus, decoded: Decoded, symbols: set[str] | None, sink: MarketSink | None
) -> None:
    """Hand a frame's market updates for tracked symbols to `sink` (None: not wanted)."""
    if sink is None:
        return
    for update in decoded.market:
        if symbols is not None and update.symbol not in symbols:
            status.ignored += 1
            continue
        try:
            sink(update)
        except Exception:  # a processor bug must not cost the connection
            log.exception("%s: the market sink failed on %s", status.name, update)


class Feed(abc.ABC):
    status: FeedStatus
    market_sink: MarketSink | None = None  # where its open interest and mark prices go

    @abc.abstractmethod
    async def run(self) -> None:
        """Consume until cancelled (a replay may also finish)."""

    @abc.abstractmethod
    async def add_symbols(self, symbols: set[str]) -> None:
        """Start delivering these symbols too (upper case)."""

    @abc.abstractmethod
    async def remove_symbols(self, symbols: set[str]) -> None:
        """Stop delivering these symbols."""

    def statuses(self) -> list[FeedStatus]:
        """One status per source this feed reads (a replay may hold several)."""
        return [self.status]

    @property
    def live(self) -> bool:
        """Whether this feed reads an exchange (so its outages matter to /health)."""
        return True

    def covers_from(self, now: int) -> int:
        """The oldest event time this feed delivers from its start: a live feed's present;
        one that first lays past events (the demo, a replay) says where they begin."""
        return now

    def state(self) -> bytes | None:
        """What this feed keeps across restarts, with the history (the demo's clock)."""
        return None

    def resume(self, state: bytes | None, newest: int | None, now: int) -> None:
        """Carry on from a kept `state`, the history holding events up to `newest`."""
        return None

    def add_frame_listener(self, listener: FrameListener) -> None:
        self._listeners = [*getattr(self, "_listeners", []), listener]

    def add_rest_listener(self, listener: RestListener) -> None:
        self._rest_listeners = [*getattr(self, "_rest_listeners", []), listener]

    def _frame_received(self, received_ms: int, frame: bytes) -> None:
        for listener in getattr(self, "_listeners", ()):
            listener(received_ms, frame)

    def _rest_received(self, received_ms: int, path: str, body: bytes) -> None:
        for listener in getattr(self, "_rest_listeners", ()):
            listener(received_ms, path, body)
