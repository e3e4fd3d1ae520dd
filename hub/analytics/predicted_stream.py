"""The `predicted:{SYMBOL}` channels: open-interest and price updates in, snapshot and
diff messages out. Pure: `now` is an argument.

A diff carries the full list of open levels whenever one changed (and the consumed list,
the reference price, when they changed), so applying diffs to a snapshot is replacing
fields and the invariant holds by construction. Changes are collected between flushes:
a burst of mark prices costs one diff. A new epoch (the first price, or a price so far
away that the grid's bin width no longer fits) is a snapshot at seq 0.

The channel also carries the symbol's mark price (`mark`, from `MarkPrices`: the price the
page's header and candles follow live), at most once every `MARK_EVERY_MS`: a price that
moves every second must not cost every subscriber twenty diffs a second.
"""

from __future__ import annotations

from hub.analytics.candles import MarkPrices
from hub.analytics.predicted import PredictedBook, PredictedConfig
from hub.channels import predicted_channel
from hub.models import (
    ChannelMessage,
    MarkPrice,
    MarkPriceUpdate,
    OpenInterestUpdate,
    PredictedDiff,
    PredictedSnapshot,
)

MARK_EVERY_MS = 1_000


class _Stream:
    __slots__ = ("book", "mark", "mark_sent_at", "seq", "time")

    def __init__(self, book: PredictedBook, time: int) -> None:
        self.book = book
        self.seq = 0
        self.time = time
        self.mark: MarkPrice | None = None  # as last sent
        self.mark_sent_at = 0


class PredictedProcessor:
    def __init__(self, config: PredictedConfig, epoch: str, marks: MarkPrices) -> None:
        config.check()
        self.config = config
        self.epoch = epoch  # the process's; each book's epochs are named after it
        self.marks = marks
        self.streams: dict[str, _Stream] = {}

    def track(self, symbol: str, now: int) -> None:
        if symbol not in self.streams:
            self.streams[symbol] = _Stream(PredictedBook(symbol, self.config, self.epoch), now)
            self.marks.track(symbol)

    def untrack(self, symbol: str) -> None:
        self.streams.pop(symbol, None)
        self.marks.untrack(symbol)

    def book(self, symbol: str) -> PredictedBook | None:
        stream = self.streams.get(symbol)
        return stream.book if stream is not None else None

    def apply_open_interest(self, update: OpenInterestUpdate) -> bool:
        """False when the symbol is not tracked."""
        book = self.book(update.symbol)
        if book is None:
            return False
        book.on_open_interest(
            update.exchange, update.time, update.oi, update.price, update.taker_buy_share
        )
        return True

    def apply_price(self, update: MarkPriceUpdate) -> bool:
        book = self.book(update.symbol)
        if book is None:
            return False
        book.on_price(update.time, update.price)
        return True

    def flush(self, now: int) -> list[ChannelMessage]:
        """A snapshot for each new epoch, a diff for each symbol whose levels changed."""
        messages: list[ChannelMessage] = []
        for symbol, stream in self.streams.items():
            book = stream.book
            book.advance(now)
            mark = self.marks.latest.get(symbol)
            if mark is None or mark == stream.mark or now - stream.mark_sent_at < MARK_EVERY_MS:
                mark = None
            else:
                stream.mark, stream.mark_sent_at = mark, now
            if book.epoch_changed:
                self._clear(book)
                stream.seq, stream.time = 0, now
                messages.append(self._snapshot_message(symbol, stream))
                continue
            diff = PredictedDiff(time=now)
            if book.levels_changed:
                diff.levels = book.open_levels()
            if book.consumed_changed:
                diff.consumed = book.consumed_levels()
            if book.reference_changed and book.grid is not None:
                diff.reference_price = book.grid.reference_price
            diff.mark = mark
            if diff == PredictedDiff(time=now):
                continue
            self._clear(book)
            stream.seq += 1
            stream.time = now
            messages.append(
                ChannelMessage(predicted_channel(symbol), "diff", stream.seq, book.epoch, diff)
            )
        return messages

    def snapshot(self, symbol: str) -> PredictedSnapshot:
        """The channel's state. Callers flush first: a snapshot holding changes no diff
        has carried yet, at the seq of the last diff, would break the invariant."""
        stream = self.streams[symbol]
        book = stream.book
        grid = book.grid
        return PredictedSnapshot(
            symbol=symbol,
            seq=stream.seq,
            epoch=book.epoch,
            time=stream.time,
            reference_price=grid.reference_price if grid is not None else 0.0,
            bin_width=grid.bin_width if grid is not None else 0.0,
            levels=book.open_levels(),
            consumed=book.consumed_levels(),
            mark=stream.mark,
        )

    def snapshot_message(self, symbol: str) -> ChannelMessage:
        return self._snapshot_message(symbol, self.streams[symbol])

    def _snapshot_message(self, symbol: str, stream: _Stream) -> ChannelMessage:
        snapshot = self.snapshot(symbol)
        return ChannelMessage(
            predicted_channel(symbol), "snapshot", snapshot.seq, snapshot.epoch, snapshot
        )

    @staticmethod
    def _clear(book: PredictedBook) -> None:
        book.epoch_changed = book.levels_changed = False
        book.consumed_changed = book.reference_changed = False
