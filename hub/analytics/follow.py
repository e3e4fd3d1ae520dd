"""A standby's processor, kept where the leader's checkpoints stand (a warm standby).

The leader writes every accepted event to the durable log and, with every flush that
moved a stream, its checkpoint (hub.analytics.checkpoint). A standby reads both and keeps
a processor whose books stand at the leader's last checkpoint: every window's sums are
those of its last publish, exactly what its clients hold, as a restore would build them.
From one checkpoint to the next a window's sums move by the rows that came into it (the
arrivals up to its new watermark) and the rows that aged out (between its two cutoffs),
so following costs what changed, not what the windows hold, and taking over costs a
restore's last step (`finish_stream`, and the events after the checkpoint applied as
new) instead of rebuilding 30 days of every symbol.

A book the follower cannot move step by step (a new epoch, a recentred grid, a checkpoint
that goes back, the cap) is started again from the rows it holds, as a restore starts it
(`start_stream`), without reading the log again. A checkpoint naming rows the follower has
not read yet waits for them (the leader writes the log before the checkpoint; reading the
checkpoints before the log keeps them in that order).

Pure: the caller reads the log and the checkpoints and passes them in, with the time.
"""

from __future__ import annotations

import numpy as np

from hub.analytics.checkpoint import (
    BookPosition,
    apply_rest,
    decode_position,
    finish_stream,
    lowest_watermark,
    restore_book,
    start_stream,
    trusted,
)
from hub.analytics.processor import LiquidationProcessor, ProcessorConfig, SymbolBook
from hub.analytics.rows import EMPTY_ROWS, Named, Rows, in_log_order, merge
from hub.analytics.sums import place_rows
from hub.models import ChannelMessage

_NOTHING = Named(EMPTY_ROWS, [])


class _Followed:
    """What the follower holds of one symbol beside its book: the book's store holds the
    rows up to the checkpoint's watermark, `pending` those after it (log order), and
    `recent` the store's rows after the lowest window watermark (log order, the store's
    exchange codes): the rows a window may still take in."""

    def __init__(self) -> None:
        self.position: BookPosition | None = None  # where the book stands; None: not started
        self._pending: list[Named] = []  # joined when read: a page at a time is O(page)
        # The epoch of a checkpoint the rows held could not start (a hole in the log): its
        # later checkpoints are not tried either (each would rebuild the book in vain).
        self.untrusted = ""
        self.recent = EMPTY_ROWS
        self.newest = 0  # the highest arrival number taken

    @property
    def pending(self) -> Named:
        if len(self._pending) > 1:
            self._pending = [merge(self._pending)]
        return self._pending[0] if self._pending else _NOTHING

    @pending.setter
    def pending(self, rows: Named) -> None:
        self._pending = [rows] if len(rows.rows) else []

    def add(self, rows: Named) -> None:
        self._pending.append(rows)


class Follower:
    def __init__(self, config: ProcessorConfig, epoch: str) -> None:
        self.processor = LiquidationProcessor(config, epoch)
        self._followed: dict[str, _Followed] = {}
        self.steps = 0  # checkpoints followed step by step
        self.starts = 0  # books started again from the rows held
        self.rebuilt: list[str] = []  # books taken over as a restore makes them (not followed)

    @property
    def symbols(self) -> set[str]:
        return set(self._followed)

    def take(self, symbol: str, logged: Named) -> None:
        """Rows read from `symbol`'s log, in log order; those already taken are skipped
        (a page read twice, a tail the leader wrote again after a failover)."""
        followed = self._follow(symbol)
        rows = logged.rows
        fresh = rows.arrival > followed.newest
        if not fresh.any():
            return
        rows = rows.take(fresh)
        followed.newest = int(rows.arrival.max())
        followed.add(Named(rows, logged.exchanges))

    def move(self, symbol: str, raw_position: bytes | None) -> None:
        """The leader's latest checkpoint of `symbol`: the book moves to it."""
        followed = self._follow(symbol)
        position = decode_position(raw_position)
        if position is None or position == followed.position:
            return
        if followed.newest < position.arrival:
            return  # its rows are not read yet: at a later checkpoint
        held = followed.position
        if held is not None and _follows(held, position):
            self._step(self.processor.books[symbol], followed, position)
        elif position.epoch != followed.untrusted:
            self._start(symbol, followed, position)

    def held(self) -> int:
        """The events held, followed or not yet."""
        stored = sum(len(book.store) for book in self.processor.books.values())
        return stored + sum(len(f.pending.rows) for f in self._followed.values())

    def newest_time(self) -> int | None:
        """The newest event time held."""
        times = [book.store.newest_time for book in self.processor.books.values()]
        pending = [f.pending.rows.time for f in self._followed.values()]
        times += [int(column.max()) for column in pending if len(column)]
        return max((t for t in times if t is not None), default=None)

    def keep_only(self, symbols: set[str]) -> None:
        """Drop the books of symbols the leader no longer tracks."""
        for symbol in self.symbols - symbols:
            del self._followed[symbol]
            self.processor.untrack(symbol)

    def take_over(
        self, symbol: str, raw_position: bytes | None, now: int
    ) -> tuple[bool, list[ChannelMessage]]:
        """This process takes over: `symbol`'s book as `restore_book` makes it from the log
        and `raw_position` (the last checkpoint, read after the last rows): whether the
        stream carries on, and the messages of the events after the checkpoint. New
        events are numbered from the processor's `first_arrival` on (set it first: after
        any the log holds)."""
        followed = self._follow(symbol)
        self.move(symbol, raw_position)
        position = decode_position(raw_position)
        book = self.processor.books[symbol]
        if position is None or followed.position != position:
            # Not followed to it (no checkpoint, or one not to be trusted): as a restore.
            self.rebuilt.append(symbol)
            rows = merge([Named(book.store.rows(), book.store.exchanges), followed.pending])
            self._fresh_book(symbol, book)
            del self._followed[symbol]
            return restore_book(self.processor, symbol, rows, raw_position, now)
        book.market_price = position.market_price
        recent = followed.recent
        finish_stream(book, position, recent.take(np.lexsort((recent.arrival, recent.time))))
        book.store.next_arrival = max(book.store.next_arrival, self.processor.first_arrival)
        pending = followed.pending
        del self._followed[symbol]
        return True, apply_rest(self.processor, symbol, pending, now)

    # -- internals --------------------------------------------------------------------

    def _follow(self, symbol: str) -> _Followed:
        followed = self._followed.get(symbol)
        if followed is None:
            followed = self._followed[symbol] = _Followed()
            self.processor.track(symbol, 0)
        return followed

    def _fresh_book(self, symbol: str, old: SymbolBook) -> SymbolBook:
        """An empty book in place of `old` (keeping its coverage)."""
        self.processor.untrack(symbol)
        book = self.processor.track(symbol, 0)
        book.coverage = old.coverage
        return book

    def _start(self, symbol: str, followed: _Followed, position: BookPosition) -> None:
        """Start the book again at `position` from every row held (as a restore does)."""
        self.starts += 1
        book = self.processor.books[symbol]
        logged = in_log_order(
            merge([Named(book.store.rows(), book.store.exchanges), followed.pending])
        )
        book = self._fresh_book(symbol, book)
        rows, exchanges = logged
        if not trusted(position, rows.arrival, book):
            followed.position, followed.pending, followed.recent = None, logged, EMPTY_ROWS
            followed.untrusted = position.epoch
            return
        upto = int(np.searchsorted(rows.arrival, position.arrival, side="right"))
        book.store.load(Named(rows.take(slice(0, upto)), exchanges))
        start_stream(book, position)
        stored = in_log_order(Named(book.store.rows(), book.store.exchanges)).rows
        followed.recent = stored.take(stored.arrival > lowest_watermark(position))
        followed.pending = Named(rows.take(slice(upto, None)), exchanges)
        followed.position = position

    def _step(self, book: SymbolBook, followed: _Followed, position: BookPosition) -> None:
        """Move the book from its checkpoint to the next of the same stream."""
        held = followed.position
        assert held is not None and book.grid is not None
        self.steps += 1
        pending = followed.pending.rows
        upto = int(np.searchsorted(pending.arrival, position.arrival, side="right"))
        moved, evicted = book.store.extend(
            Named(pending.take(slice(0, upto)), followed.pending.exchanges)
        )
        followed.pending = Named(pending.take(slice(upto, None)), followed.pending.exchanges)
        if len(evicted):  # the cap: which rows the windows held is not known any more
            self._start(book.symbol, followed, position)
            return
        recent = _joined(followed.recent, moved)
        placed = place_rows(recent, book.grid, book.kde)
        store = book.store
        for name, window in book.windows.items():
            before, after = held.windows[name], position.windows[name]
            if before == after:
                continue
            cutoff = after.published_at - window.span_ms
            entering = (
                (recent.arrival > before.watermark)
                & (recent.arrival <= after.watermark)
                & (recent.time >= cutoff)
            )
            aged = store.between(before.published_at - window.span_ms, cutoff)
            leaving = aged.take(aged.arrival <= before.watermark)
            window.follow(
                after.seq,
                after.published_at,
                after.watermark,
                placed.take(entering),
                place_rows(leaving, book.grid, book.kde),
            )
        followed.recent = recent.take(recent.arrival > lowest_watermark(position))
        followed.position = position
        # Past retention as of the oldest publish: no window holds those rows any more.
        oldest = min(saved.published_at for saved in position.windows.values())
        swept = store.sweep(oldest)
        if len(swept):
            for window in book.windows.values():
                inside = swept.take(
                    (swept.time >= (window.cutoff or 0)) & (swept.arrival <= window.watermark)
                )
                if len(inside):
                    window.sums.add(place_rows(inside, book.grid, book.kde), -1)
                    window.sums.take_changes()


def _follows(held: BookPosition, position: BookPosition) -> bool:
    """Whether `position` carries on the stream of `held` on the same grid: each window's
    publish the same or later."""
    if (position.epoch, position.bin_width, position.reference_price) != (
        held.epoch,
        held.bin_width,
        held.reference_price,
    ) or position.arrival < held.arrival:
        return False
    if set(position.windows) != set(held.windows):
        return False
    for name, after in position.windows.items():
        before = held.windows[name]
        if after.seq < before.seq or after.published_at < before.published_at:
            return False
        if after.watermark < before.watermark:
            return False
    return True


def _joined(first: Rows, second: Rows) -> Rows:
    if not len(first):
        return second
    if not len(second):
        return first
    return Rows(*(np.concatenate(pair) for pair in zip(first, second, strict=True)))
