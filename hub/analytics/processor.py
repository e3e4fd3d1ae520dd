"""The liquidation processor: events in, channel messages out. Pure: `now` is an argument.

It owns one `SymbolBook` per tracked symbol (the store of every held event, price grid,
one `HeatmapWindow` per window of docs/protocol.md, coverage, leverage estimator, alert
engine) and numbers every message it emits: a heatmap channel's seq comes from its window,
a liquidations/alerts channel's from a counter here, so every web process that relays them
shows the same seq and epoch.

An event is written once, into its book's store, and noted in the book's arrivals; `flush`
(every HEATMAP_FLUSH_MS) drains the arrivals into every window's sums and publishes the
windows that are due, so a burst costs one diff per window, not one per event.

The past is not news: an event older than `alert_max_age_ms` when it arrives (a backfill,
a replayed log, an exchange resending its recent liquidations) is held and shown, but
raises no alert, and a flush whose events were all such raises no cluster alert either.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator
from typing import NamedTuple

import msgspec
import numpy as np

from hub.analytics.alert_policy import NO_BACKGROUND, Background
from hub.analytics.alerts import AlertEngine, AlertThresholds
from hub.analytics.coverage import Coverage
from hub.analytics.density import KernelDensity
from hub.analytics.grid import PriceGrid
from hub.analytics.leverage import MARGIN_RULES, LeverageEstimator, tier_of
from hub.analytics.rows import Rows
from hub.analytics.store import EventStore
from hub.analytics.sums import (
    EMPTY_STATISTICS,
    MICROS,
    ROW_BY_ROW,
    Arrivals,
    place,
    place_few,
    place_rows,
)
from hub.analytics.window import HeatmapWindow, refresh_ms
from hub.channels import ANY_SYMBOL, WINDOWS, heatmap_channel
from hub.models import (
    ChannelMessage,
    Density,
    HeatmapSnapshot,
    LiquidationEvent,
)

ALERT_WINDOW = "1h"
_ALERT_SPAN_MS = float(WINDOWS[ALERT_WINDOW])
FANNED_KINDS = ("liquidations", "alerts")
MARKET_PRICE_WEIGHT = 0.3  # a single outlier moves the market price by 30 % of its gap
# time, price, notional, short, exchange code, arrival, in the alert statistics
_ARRIVED_FIELDS = 7


class Applied(NamedTuple):
    event: LiquidationEvent | None
    messages: list[ChannelMessage]
    arrival: int = 0  # the event's arrival number in its book (hub.analytics.store)


class Flushed(NamedTuple):
    """Where a book stood at its last flush that moved a stream (a checkpoint's position)."""

    time: int
    arrival: int  # of the last event applied before it; 0: none
    # `place`'s running market price then: a restored book carries it on, or its first
    # event would pull it from 0 and move the density axis far from the market.
    market_price: float


class ProcessorConfig(msgspec.Struct, frozen=True):
    max_events: int = 5_000_000
    retention_ms: int = 30 * 86_400_000
    bandwidth_pct: float = 0.3
    range_pct: float = 15.0
    alert_max_age_ms: int = 60_000
    alerts: AlertThresholds = AlertThresholds()
    alerts_by_symbol: tuple[tuple[str, AlertThresholds], ...] = ()  # overrides `alerts`

    def alerts_of(self, symbol: str) -> AlertThresholds:
        return dict(self.alerts_by_symbol).get(symbol, self.alerts)


class SymbolBook:
    """Everything the processor knows about one symbol."""

    def __init__(
        self, symbol: str, config: ProcessorConfig, covered_since: int, first_arrival: int = 1
    ) -> None:
        self.symbol = symbol
        self.config = config
        self.store = EventStore(symbol, config.max_events, config.retention_ms, first_arrival)
        self.coverage = Coverage(covered_since)
        self.leverage = LeverageEstimator()
        self.alerts = AlertEngine(symbol, config.alerts_of(symbol))
        self.grid: PriceGrid | None = None
        self.kde: KernelDensity | None = None  # the density axis of the grid
        self.market_price = 0.0
        # Market prices inside this band neither recentre the grid nor start an epoch (see
        # `place`); empty until there is a grid.
        self._steady = (math.inf, -math.inf)
        self.windows: dict[str, HeatmapWindow] = {}
        self.new_epoch = False  # the windows' snapshots are due at the next flush
        self.empty_epoch = f"{symbol}.0"
        self.channels = {  # per kind: the symbol's channel and the `*` one
            kind: (f"{kind}:{symbol}", f"{kind}:{ANY_SYMBOL}") for kind in FANNED_KINDS
        }
        self.last_arrival = 0
        self.flushed: Flushed | None = None
        self.fresh = False  # an event young enough to alert on came since the last flush
        # Rows the store took since the windows last drained, flat (see _ARRIVED_FIELDS),
        # and the alert window's share of them (see `alert_background`); the windows' sums hold
        # the rows up to arrival `_drained`.
        self._arrived = array("d")
        self._alert_extra = [0, 0, 0]  # count, micros, squared micros
        self._drained = 0
        # Nothing to do before this time unless an event arrives (see `HeatmapWindow.wake_at`):
        # a flush passes over a quiet book at the cost of a comparison.
        self.quiet_until = -math.inf
        self._epoch_ms = -1
        self._epochs_this_ms = 0

    @property
    def epoch(self) -> str:
        return self.grid.epoch if self.grid else self.empty_epoch

    def place(self, price: float, now: int) -> None:
        """Make sure the grid fits the market: create it, recentre it, or start a new epoch.

        The market price is an exponential average of recent liquidation prices, so one
        fill far through the book does not swing the density axis out and back (each move
        rebuilds the density of every window). A new epoch is sized on the event's own
        price, so a genuine jump gets the bin width it needs at once."""
        if self.grid is None:
            self.market_price = price
        else:
            self.market_price += MARKET_PRICE_WEIGHT * (price - self.market_price)
            low, high = self._steady
            if low <= self.market_price <= high:  # the common case: nothing moves
                return
        grid = self.grid
        if grid is None or grid.needs_new_epoch(self.market_price):
            self.start_epoch(price, now)
            return
        moved = grid.recentred(self.market_price)
        if moved is not None:
            kde = self._set_grid(moved)
            for window in self.windows.values():
                window.recentre(moved, kde)
            self.quiet_until = -math.inf

    def start_epoch(self, market_price: float, now: int) -> None:
        """A new epoch on a grid around `market_price`: every window rebuilt from the
        store, their snapshots due at the next flush."""
        self.market_price = market_price
        grid = PriceGrid.around(market_price, self.config.range_pct, self._new_epoch(now))
        kde = self._set_grid(grid)
        # The windows take every held row, the arrivals included.
        self.settle()
        for window in self.windows.values():
            window.restart(grid, kde, now, self.coverage)
        self.new_epoch = True

    def _set_grid(self, grid: PriceGrid) -> KernelDensity:
        """Take `grid` and its density axis; the windows are made with the first."""
        self.grid = grid
        bandwidth = grid.reference_price * self.config.bandwidth_pct / 100.0
        kde = KernelDensity(grid.density_start, grid.bin_width, grid.density_size, bandwidth)
        self.kde = kde
        self._steady = grid.steady_band()
        if not self.windows:
            self.windows = {
                name: HeatmapWindow(self.store, name, span, grid, kde, refresh_ms(span))
                for name, span in WINDOWS.items()
            }
        return kde

    def carry_on(self, grid: PriceGrid, market_price: float) -> None:
        """Take up a restored stream's grid and market price (see `place`)."""
        self._set_grid(grid)
        self.market_price = market_price

    def hold(self, event: LiquidationEvent, now: int) -> None:
        """Keep an accepted event (the grid placed): store, arrivals, alert statistics."""
        self.last_arrival, evicted = self.store.add(event)
        counted = event.time >= now - WINDOWS[ALERT_WINDOW]
        self._arrived.extend(
            (
                event.time,
                event.price,
                event.notional,
                event.side == "short",
                self.store.code(event.exchange),
                self.last_arrival,
                counted,
            )
        )
        if counted:
            self._count_extra(event.notional, 1)
        if len(evicted):
            self.drop(evicted)

    @property
    def quiet(self) -> bool:
        """Nothing arrived since the last flush, and no new epoch is due."""
        return not self._arrived and not self.new_epoch

    def _count_extra(self, notional: float, sign: int) -> None:
        amount = round(notional * MICROS)
        extra = self._alert_extra
        extra[0] += sign
        extra[1] += sign * amount
        extra[2] += sign * amount * amount

    def drop(self, evicted: Rows) -> None:
        """The store pushed these rows out (oldest first): the windows drop those their
        sums hold, the arrivals those not drained yet, and what came before them is no
        longer complete."""
        drained = evicted.arrival <= self._drained
        if self.grid is not None and drained.any():
            placed = place_rows(evicted.take(drained), self.grid, self.kde)
            for window in self.windows.values():
                window.catch_up()
                window.forget(placed)
        if not drained.all():
            self._unarrive(set(evicted.arrival[~drained].tolist()))
        self.coverage.lose_before(int(evicted.time[-1]) + 1)
        self.quiet_until = -math.inf

    def _unarrive(self, arrivals: set[int]) -> None:
        """Take rows out of the arrivals (the cap pushed them out before any drain)."""
        values = np.frombuffer(self._arrived, np.float64).reshape(-1, _ARRIVED_FIELDS)
        keep = ~np.isin(values[:, 5], list(arrivals))
        for notional, counted in values[~keep][:, (2, 6)].tolist():
            if counted:
                self._count_extra(notional, -1)
        kept = values[keep].ravel().tolist()
        del values
        self._arrived = array("d", kept)

    def drain(self, now: int, every: bool = False) -> None:
        """The windows' sums brought to `now` (arrivals in, aged rows out): those that are
        due, or `every` one; the others keep the arrivals for when they are."""
        arrived: Arrivals | None = None
        arrived_rows = len(self._arrived) // _ARRIVED_FIELDS
        if arrived_rows and self.grid is not None:
            # What the windows that take them all (most do) share is made once.
            if arrived_rows <= ROW_BY_ROW:
                fields = self._arrived
                rows = [fields[at : at + 5] for at in range(0, len(fields), _ARRIVED_FIELDS)]
                placed = place_few(rows, self.grid, self.kde)
            else:
                values = np.frombuffer(self._arrived, np.float64).reshape(-1, _ARRIVED_FIELDS).T
                time, price, notional, short, exchange = values[:5].astype(np.float64, copy=True)
                del values  # a view of the buffer: it must go before the buffer may shrink
                placed = place(
                    time.astype(np.int64),
                    price,
                    notional,
                    short != 0.0,
                    exchange.astype(np.uint8),
                    self.grid,
                    self.kde,
                )
            arrived = Arrivals(placed)
        for window in self.windows.values():
            if every or window.due(now):
                window.drain(arrived, now)
            else:
                window.defer(arrived)
        self.settle()

    def settle(self) -> None:
        """The windows' sums hold every row taken so far (a drain, a rebuild, a restore):
        nothing is waiting in the arrivals."""
        del self._arrived[:]
        self._alert_extra = [0, 0, 0]
        self._drained = self.last_arrival

    def alert_background(self) -> Background:
        """The alert window as it stands: its sums at the last drain and what arrived
        since (exact integers, see `hub.analytics.sums`)."""
        window = self.windows.get(ALERT_WINDOW)
        extra = self._alert_extra
        count, total, squares = extra
        if window is not None:
            sums = window.sums
            count += sums.count
            total += sums.long + sums.short
            squares += sums.squares
        if count == 0:
            return NO_BACKGROUND
        variance = (count * squares - total * total) / (count * count) / MICROS**2
        return Background(count, total / count / MICROS, math.sqrt(variance), _ALERT_SPAN_MS)

    def _new_epoch(self, now: int) -> str:
        """A name no earlier epoch of this book had: a second new epoch within the same ms
        gets a suffix, or a client resuming from the first would take the second's diffs
        (same epoch, same seqs) as its own continuation."""
        if now == self._epoch_ms:
            self._epochs_this_ms += 1
            return f"{self.symbol}.{now:x}-{self._epochs_this_ms}"
        self._epoch_ms, self._epochs_this_ms = now, 0
        return f"{self.symbol}.{now:x}"

    def snapshot(self, window: str, now: int) -> HeatmapSnapshot:
        held = self.windows.get(window)
        if held is not None and self.grid is not None:
            return held.snapshot()
        return HeatmapSnapshot(
            symbol=self.symbol,
            window=window,
            seq=0,
            epoch=self.empty_epoch,
            time=now,
            reference_price=0.0,
            bin_width=0.0,
            bins=[],
            density=Density(0.0, 0.0, []),
            clusters=[],
            statistics=EMPTY_STATISTICS,
            coverage=self.coverage.of(now - WINDOWS[window], now),
        )


class LiquidationProcessor:
    def __init__(self, config: ProcessorConfig, epoch: str, first_arrival: int = 1) -> None:
        """`first_arrival`: where each book numbers its events from (hub.analytics.store)."""
        self.config = config
        self.epoch = epoch  # of the liquidations/alerts channels
        self.first_arrival = first_arrival
        self.books: dict[str, SymbolBook] = {}
        self._seq: dict[str, int] = {}
        self._flushed_seq: dict[str, int] = {}
        self._flushes = 0
        self.rejected = 0

    def track(self, symbol: str, covered_since: int) -> SymbolBook:
        """Start keeping `symbol`; `covered_since` is the oldest time from which the hub
        will hold all its events (docs/analytics.md, Coverage)."""
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = SymbolBook(
                symbol, self.config, covered_since, self.first_arrival
            )
        return book

    def seqs(self) -> dict[str, int]:
        """The liquidations/alerts channels' seqs as of the last flush (for a checkpoint,
        whose watermarks are taken at the same moment)."""
        return dict(self._flushed_seq)

    @property
    def flushes(self) -> int:
        """How many flushes took seqs: `seqs` changes only with this."""
        return self._flushes

    def restore_seqs(self, seqs: dict[str, int]) -> None:
        self._seq.update(seqs)

    def untrack(self, symbol: str) -> None:
        self.books.pop(symbol, None)

    def apply(self, event: LiquidationEvent, now: int) -> Applied:
        """Take one event; returns it as kept (with its leverage estimate), or None when
        refused, and its liquidation messages and any event alerts."""
        book = self.books.get(event.symbol)
        if book is None or not book.store.accepts(event, now):
            self.rejected += 1
            return Applied(None, [])
        leverage = book.leverage.take(
            event.side, event.price, event.time, MARGIN_RULES.get(event.exchange)
        )
        if leverage is not None:
            leverage = round(leverage, 2)
            event = msgspec.structs.replace(event, est_leverage=leverage, tier=tier_of(leverage))
        book.place(event.price, now)
        background = book.alert_background()
        book.hold(event, now)
        messages = self._fan(book.channels["liquidations"], "liquidation", event)
        if now - event.time <= self.config.alert_max_age_ms:
            book.fresh = True
            z_score = background.z(event.notional)
            for alert in book.alerts.on_event(event, z_score, ALERT_WINDOW, background):
                messages.extend(self._fan(book.channels["alerts"], "alert", alert))
        return Applied(event, messages, book.last_arrival)

    def flush(self, now: int) -> list[ChannelMessage]:
        """Diffs for every window that changed and is due, new-epoch snapshots first, then
        cluster alerts."""
        messages: list[ChannelMessage] = []
        self._flushed_seq = dict(self._seq)
        self._flushes += 1
        for book in self.books.values():
            if book.quiet and now < book.quiet_until:
                continue
            book.drain(now)
            changed = book.new_epoch
            if book.new_epoch:
                messages.extend(self._snapshot_message(w.snapshot()) for w in book.windows.values())
                book.new_epoch = False
            for name, window in book.windows.items():
                diff = window.flush(now, book.coverage)
                if diff is None:
                    continue
                changed = True
                channel = heatmap_channel(book.symbol, name)
                messages.append(ChannelMessage(channel, "diff", window.seq, book.epoch, diff))
                if name == ALERT_WINDOW and diff.clusters is not None:
                    # Not fresh: the engine only learns them, old news.
                    alerts = book.alerts.on_clusters(diff.clusters, name, now, book.fresh)
                    if book.fresh:
                        for alert in alerts:
                            messages.extend(self._fan(book.channels["alerts"], "alert", alert))
            book.fresh = False
            book.quiet_until = min(
                (w.wake_at(book.coverage) for w in book.windows.values()), default=math.inf
            )
            if changed or book.flushed is None:
                # The position of the last flush that moved a stream: an idle book keeps
                # its checkpoint, so nothing is rewritten every few milliseconds.
                book.flushed = Flushed(now, book.last_arrival, book.market_price)
                for window in book.windows.values():
                    if window.time == now:
                        window.watermark = book.last_arrival
        return messages

    def sweep(self, now: int) -> None:
        """Retention: drop events older than the configured age from every book."""
        for book in self.books.values():
            book.drain(now, every=True)
            evicted = book.store.sweep(now)
            if len(evicted):
                book.drop(evicted)
            book.coverage.lose_before(now - self.config.retention_ms)
            book.quiet_until = -math.inf

    def snapshots_of(self, symbol: str, now: int) -> list[ChannelMessage]:
        """The current snapshot of each heatmap channel of `symbol` (seeds a replica)."""
        book = self.books[symbol]
        return [self._snapshot_message(book.snapshot(name, now)) for name in WINDOWS]

    def events(
        self, symbol: str, since: int, side: str | None = None
    ) -> Iterator[LiquidationEvent]:
        """Held events of `symbol` with time >= since, newest first."""
        for event in self.books[symbol].store.newest_first(since):
            if side is None or event.side == side:
                yield event

    def _snapshot_message(self, snapshot: HeatmapSnapshot) -> ChannelMessage:
        channel = heatmap_channel(snapshot.symbol, snapshot.window)
        return ChannelMessage(channel, "snapshot", snapshot.seq, snapshot.epoch, snapshot)

    def _fan(self, channels: tuple[str, str], type_: str, data: object) -> list[ChannelMessage]:
        """One message on the symbol's channel and one on the `*` channel, each numbered."""
        seqs, epoch = self._seq, self.epoch
        symbol_channel, any_channel = channels
        seq = seqs[symbol_channel] = seqs.get(symbol_channel, 0) + 1
        any_seq = seqs[any_channel] = seqs.get(any_channel, 0) + 1
        return [
            ChannelMessage(symbol_channel, type_, seq, epoch, data),
            ChannelMessage(any_channel, type_, any_seq, epoch, data),
        ]
