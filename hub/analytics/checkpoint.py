"""Checkpoints: where each stream stood at a flush, so a restarted processor resumes it.

At every flush that moves a stream the processor's position is saved beside the durable
event log: per symbol the epoch, the grid, the market price, the flush time and the
arrival number of the last event applied before it (the watermark), and per window its
seq, the time of its last publish and the watermark then (a long window publishes at its
own pace, so it may stand at an earlier point than the flush).

A new process reads the log back and rebuilds each book in bulk: the rows up to the
watermark are the store of that flush, and each window's sums are exactly those of its
last publish (they are integers, so the order of the rows does not matter), brought to
the flush by the rows after its own watermark. The windows resume at the saved seq in the
same epoch, and the events after the book's watermark are applied as new (their messages
re-sent with the seqs they had; relays drop what they hold): clients simply see the next
diff. When the position cannot be trusted (no checkpoint, a watermark the log does not
hold, more rows than the cap, an old format), the book starts a new epoch from the log
instead, with every event it holds. A resumed book's alert engine takes the clusters of
that publish as alerted, so a restart does not alert them again.

Pure: the caller reads and writes the bytes.
"""

from __future__ import annotations

import msgspec
import numpy as np

from hub.analytics.grid import PriceGrid
from hub.analytics.processor import (
    ALERT_WINDOW,
    MARKET_PRICE_WEIGHT,
    Flushed,
    LiquidationProcessor,
    SymbolBook,
)
from hub.analytics.rows import Named, Rows, events_of, in_log_order
from hub.analytics.sums import Arrivals, place_rows
from hub.channels import WINDOWS
from hub.models import ChannelMessage

CHANNELS_FIELD = "~channels"
LEVERAGE_LOOKBACK_MS = 4 * 3_600_000  # of LeverageEstimator: older prices do not matter
_MARKET_PRICE_EVENTS = 50  # the newest events a new epoch's market price is averaged over


class WindowPosition(msgspec.Struct, frozen=True, array_like=True):
    seq: int
    published_at: int
    watermark: int  # arrival number of the last event applied before that publish


class BookPosition(msgspec.Struct, frozen=True):
    epoch: str
    bin_width: float
    reference_price: float
    market_price: float
    flushed_at: int
    arrival: int  # the watermark: arrival number of the last event applied before the flush
    windows: dict[str, WindowPosition]


class ChannelPositions(msgspec.Struct, frozen=True):
    """The liquidations/alerts channels' epoch and seqs."""

    epoch: str
    seqs: dict[str, int]


_encoder = msgspec.json.Encoder()
_position_decoder = msgspec.json.Decoder(BookPosition)


class Positions:
    """Field -> encoded position, for every book that has flushed a grid. A book's position
    changes only with its `flushed` (a new one at each flush that moved a stream) and its
    grid, so it is encoded again only then: a checkpoint goes with every publish, and at
    300 symbols encoding them all each time cost more than the publish."""

    def __init__(self) -> None:
        self._encoded: dict[str, tuple[object, object, bytes]] = {}
        # The channels' seqs change only at a flush, and there are a few publishes per
        # flush: (flushes, epoch, encoded).
        self._channels: tuple[int, str, bytes] = (-1, "", b"")

    def __call__(self, processor: LiquidationProcessor) -> dict[str, bytes]:
        flushes, epoch, channels = self._channels
        if flushes != processor.flushes or epoch != processor.epoch:
            channels = _encoder.encode(ChannelPositions(processor.epoch, processor.seqs()))
            self._channels = (processor.flushes, processor.epoch, channels)
        saved: dict[str, bytes] = {CHANNELS_FIELD: channels}
        held = self._encoded
        for symbol in [s for s in held if s not in processor.books]:
            del held[symbol]
        for symbol, book in processor.books.items():
            flushed, grid = book.flushed, book.grid
            if grid is None or flushed is None or not flushed.arrival:
                continue
            known = held.get(symbol)
            if known is None or known[0] is not flushed or known[1] is not grid:
                known = held[symbol] = (flushed, grid, _encoded_position(book))
            saved[symbol] = known[2]
        return saved


def _encoded_position(book: SymbolBook) -> bytes:
    flushed, grid = book.flushed, book.grid
    assert flushed is not None and grid is not None
    return _encoder.encode(
        BookPosition(
            epoch=grid.epoch,
            bin_width=grid.bin_width,
            reference_price=grid.reference_price,
            market_price=flushed.market_price,
            flushed_at=flushed.time,
            arrival=flushed.arrival,
            windows={
                name: WindowPosition(w.seq, w.time, w.watermark) for name, w in book.windows.items()
            },
        )
    )


def restore_channels(processor: LiquidationProcessor, raw: bytes | None) -> None:
    if raw:
        try:
            saved = msgspec.json.decode(raw, type=ChannelPositions)
        except msgspec.DecodeError:
            return
        processor.epoch = saved.epoch
        processor.restore_seqs(saved.seqs)


def restore_book(
    processor: LiquidationProcessor,
    symbol: str,
    logged: Named,
    raw_position: bytes | None,
    now: int,
) -> tuple[bool, list[ChannelMessage]]:
    """Rebuild `symbol` (tracked already) from its logged rows. Returns whether the saved
    stream was resumed (same epoch and seqs), and the messages of the events that came
    after the checkpoint."""
    book = processor.books[symbol]
    logged = in_log_order(logged)
    rows, exchanges = logged
    position = decode_position(raw_position)
    if position is None or not trusted(position, logged.rows.arrival, book):
        _load(book, logged, now)
        return False, []
    upto = int(np.searchsorted(rows.arrival, position.arrival, side="right"))
    book.store.load(Named(rows.take(slice(0, upto)), exchanges))
    start_stream(book, position)
    held = book.store.rows()
    finish_stream(book, position, held.take(held.arrival > lowest_watermark(position)))
    return True, apply_rest(processor, symbol, Named(rows.take(slice(upto, None)), exchanges), now)


def apply_rest(
    processor: LiquidationProcessor, symbol: str, rest: Named, now: int
) -> list[ChannelMessage]:
    """The events after a checkpoint (in log order), applied as new: their messages are
    sent again with the seqs they had."""
    messages: list[ChannelMessage] = []
    for event in events_of(rest.rows, rest.exchanges, symbol):
        messages.extend(processor.apply(event, now).messages)
    return messages


def decode_position(raw: bytes | None) -> BookPosition | None:
    if not raw:
        return None
    try:
        return _position_decoder.decode(raw)
    except msgspec.DecodeError:  # an older format, or damaged: a new epoch
        return None


def trusted(position: BookPosition, arrivals: np.ndarray, book: SymbolBook) -> bool:
    """Whether the log (its `arrivals`, in order) holds the watermark, and the store of
    that flush never reached the cap (the rows the cap pushed out are in the log, but
    which they were is not)."""
    at = int(np.searchsorted(arrivals, position.arrival))
    if at >= len(arrivals) or arrivals[at] != position.arrival:
        return False
    return at < book.store.max_events and set(position.windows) == set(WINDOWS)


def lowest_watermark(position: BookPosition) -> int:
    """Every window's sums at its publish hold the rows up to this arrival (at least)."""
    return min(saved.watermark for saved in position.windows.values())


def start_stream(book: SymbolBook, position: BookPosition) -> None:
    """Take up the stream of `position`: its grid, and every window's sums as of its last
    publish, made from the store (which holds the rows up to the book's watermark)."""
    config = book.config
    grid = PriceGrid(position.bin_width, position.reference_price, config.range_pct, position.epoch)
    book.carry_on(grid, position.market_price)
    held = book.store.rows()
    placed = place_rows(held, grid, book.kde)
    for name, window in book.windows.items():
        saved = position.windows[name]
        start = saved.published_at - window.span_ms
        baseline = (held.arrival <= saved.watermark) & (held.time >= start)
        window.rebuild(saved.seq, saved.published_at, saved.watermark, placed.take(baseline))


def finish_stream(book: SymbolBook, position: BookPosition, recent: Rows) -> None:
    """The book as at the flush of `position`, every window's sums standing at its last
    publish (`start_stream`, `HeatmapWindow.follow`): each takes what arrived after its
    own watermark up to the book's (from `recent`: the store's rows after the lowest
    watermark, in the store's order), and the book carries on from there."""
    placed = place_rows(recent, book.grid, book.kde)
    for name, window in book.windows.items():
        saved = position.windows[name]
        clusters = window.resumed(clusters_then=name == ALERT_WINDOW)
        # From its publish to the flush: what arrived after its own watermark.
        after = placed.take(recent.arrival > saved.watermark)
        window.drain(Arrivals(after) if len(after) else None, position.flushed_at)
        if name == ALERT_WINDOW:
            # The process before the restart alerted these: the engine takes them as it
            # did, and what it would alert is not sent again. Only what changes from here
            # on is news (without this, every standing cluster was alerted again, as new).
            book.alerts.on_clusters(clusters, name, saved.published_at, announce=False)
    _observe_recent(book, position.flushed_at)
    book.last_arrival = position.arrival
    book.settle()
    book.flushed = Flushed(position.flushed_at, position.arrival, position.market_price)


def _load(book: SymbolBook, logged: Named, now: int) -> None:
    """Every logged row, in a new epoch centred on the recent market."""
    store = book.store
    store.load(logged)
    if not len(store):
        return
    prices = store.rows(max(0, len(store) - _MARKET_PRICE_EVENTS)).price.tolist()
    market_price = prices[0]
    for price in prices[1:]:
        market_price += MARKET_PRICE_WEIGHT * (price - market_price)
    # The last row's own number (the store numbers new ones from the process's base, which
    # no row holds): the first checkpoint then names a row of the log, and a restart (or
    # a standby) can resume from it.
    book.last_arrival = int(logged.rows.arrival.max())
    book.start_epoch(market_price, now)
    _observe_recent(book, now)


def _observe_recent(book: SymbolBook, now: int) -> None:
    """The leverage estimator's price path, from the recent rows."""
    recent = book.store.since(now - LEVERAGE_LOOKBACK_MS)
    observe = book.leverage.observe
    for price, time in zip(recent.price.tolist(), recent.time.tolist(), strict=True):
        observe(price, time)
