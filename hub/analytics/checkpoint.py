"""Checkpoints: where each stream stood at a flush, so a restarted processor resumes it.

At every flush the processor's position is saved beside the durable event log: per
symbol the epoch, the grid, each window's seq, the flush time and the last event applied
before it (the watermark). A new process replays the log: events up to the watermark
rebuild exactly the state of that flush (bins are sums in store order, which the replay
reproduces, and windows are cut at the flush time), the windows resume at the saved seq
in the same epoch, and the events after the watermark are applied as new. Clients then
simply see the next diff. When the watermark is not in the log (it was trimmed, or
lost), the state cannot be claimed to be the same, and the book starts a new epoch
instead. A resumed book's alert engine takes the clusters of that flush as alerted, so a
restart does not alert them again.

Pure: the caller reads and writes the bytes.
"""

from __future__ import annotations

import msgspec

from hub.analytics.grid import PriceGrid
from hub.analytics.processor import ALERT_WINDOW, Flushed, LiquidationProcessor, SymbolBook
from hub.analytics.window import HeatmapWindow
from hub.channels import WINDOWS
from hub.models import ChannelMessage, LiquidationEvent

CHANNELS_FIELD = "~channels"


class BookPosition(msgspec.Struct, frozen=True):
    epoch: str
    bin_width: float
    reference_price: float
    flushed_at: int
    watermark: str  # `event_id` of the last event applied before the flush
    seqs: dict[str, int]
    # The running market price at the flush; None in checkpoints written before it was
    # kept, which resume on the reference price (never further from it than a recentre).
    market_price: float | None = None


class ChannelPositions(msgspec.Struct, frozen=True):
    """The liquidations/alerts channels' epoch and seqs."""

    epoch: str
    seqs: dict[str, int]


_encoder = msgspec.json.Encoder()


def event_id(event: LiquidationEvent) -> str:
    """Identity of an event that is stable across processes (unlike `hash`)."""
    return f"{event.exchange}|{event.time}|{event.side}|{event.price!r}|{event.quantity!r}"


def positions(processor: LiquidationProcessor) -> dict[str, bytes]:
    """Field -> encoded position, for every book that has flushed a grid."""
    saved: dict[str, bytes] = {
        CHANNELS_FIELD: _encoder.encode(ChannelPositions(processor.epoch, processor.seqs()))
    }
    for symbol, book in processor.books.items():
        flushed = book.flushed
        if book.grid is None or flushed is None or flushed.last_applied is None:
            continue
        saved[symbol] = _encoder.encode(
            BookPosition(
                epoch=book.grid.epoch,
                bin_width=book.grid.bin_width,
                reference_price=book.grid.reference_price,
                flushed_at=flushed.time,
                watermark=event_id(flushed.last_applied),
                seqs={name: window.seq for name, window in book.windows.items()},
                market_price=flushed.market_price,
            )
        )
    return saved


def restore_channels(processor: LiquidationProcessor, raw: bytes | None) -> None:
    if raw:
        saved = msgspec.json.decode(raw, type=ChannelPositions)
        processor.epoch = saved.epoch
        processor.restore_seqs(saved.seqs)


def restore_book(
    processor: LiquidationProcessor,
    symbol: str,
    events: list[LiquidationEvent],
    raw_position: bytes | None,
    now: int,
) -> tuple[bool, list[ChannelMessage]]:
    """Rebuild `symbol` from its logged events (oldest first). Returns whether the saved
    stream was resumed (same epoch and seqs), and the messages of the events that came
    after the checkpoint (re-sent with the seqs they had; relays drop what they hold)."""
    book = processor.track(symbol)
    position = msgspec.json.decode(raw_position, type=BookPosition) if raw_position else None
    cut = _watermark_index(events, position.watermark) if position else None
    if position is None or cut is None:
        for event in events:
            processor.apply(event, now)  # a new epoch: nothing of the old stream is re-sent
        return False, []
    _rebuild(book, events[: cut + 1], position)
    messages: list[ChannelMessage] = []
    for event in events[cut + 1 :]:
        messages.extend(processor.apply(event, now).messages)
    return True, messages


def _watermark_index(events: list[LiquidationEvent], watermark: str) -> int | None:
    for index in range(len(events) - 1, -1, -1):
        if event_id(events[index]) == watermark:
            return index
    return None


def _rebuild(book: SymbolBook, events: list[LiquidationEvent], position: BookPosition) -> None:
    config = book.config
    grid = PriceGrid(position.bin_width, position.reference_price, config.range_pct, position.epoch)
    market_price = position.market_price
    book.carry_on(grid, position.reference_price if market_price is None else market_price)
    book.windows = {
        name: HeatmapWindow(book.symbol, name, span, grid, config.bandwidth_pct, book.columns)
        for name, span in WINDOWS.items()
    }
    flushed_at = position.flushed_at
    for event in events:
        if not book.store.accepts(event, flushed_at):
            continue
        book.leverage.observe(event.price, event.time)
        book.hold(event, flushed_at)
    for name, window in book.windows.items():
        clusters = window.resume(position.seqs.get(name, 0), flushed_at)
        if name == ALERT_WINDOW:
            # The process before the restart alerted these: the engine takes them as it
            # did, and what it would alert is not sent again. Only what changes from here
            # on is news (without this, every standing cluster was alerted again, as new).
            book.alerts.on_clusters(clusters, name, flushed_at)
    book.flushed = Flushed(flushed_at, book.last_applied, book.market_price)
