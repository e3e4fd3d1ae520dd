"""The liquidation processor: events in, channel messages out. Pure: `now` is an argument.

It owns one `SymbolBook` per tracked symbol (store, the store's events as columns, price
grid, one `HeatmapWindow` per window of docs/protocol.md, leverage estimator, alert engine) and
numbers every message it emits: a heatmap channel's seq comes from its window, a
liquidations/alerts channel's from a counter here, so every web process that relays them
shows the same seq and epoch.

Diffs are produced by `flush`, which the caller runs every HEATMAP_FLUSH_MS; an event is
only written once into its book's columns, so a burst of events costs one diff per window,
not one per event, and nine windows cost no more per event than one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import msgspec

from hub.analytics.alerts import AlertEngine, AlertThresholds
from hub.analytics.columns import EventColumns
from hub.analytics.grid import PriceGrid
from hub.analytics.leverage import MARGIN_RULES, LeverageEstimator, tier_of
from hub.analytics.running import RunningStatistics
from hub.analytics.store import EventStore
from hub.analytics.window import EMPTY_STATISTICS, HeatmapWindow
from hub.channels import ANY_SYMBOL, WINDOWS, heatmap_channel
from hub.models import (
    ChannelMessage,
    Density,
    HeatmapSnapshot,
    LiquidationEvent,
)

ALERT_WINDOW = "1h"
FANNED_KINDS = ("liquidations", "alerts")
MARKET_PRICE_WEIGHT = 0.3  # a single outlier moves the market price by 30 % of its gap


class Applied(NamedTuple):
    event: LiquidationEvent | None
    messages: list[ChannelMessage]


class Flushed(NamedTuple):
    """Where a book stood at its last flush that moved a stream (a checkpoint's position)."""

    time: int
    last_applied: LiquidationEvent | None
    # `place`'s running market price then: a restored book carries it on, or its first
    # event would pull it from 0 and move the density axis far from the market.
    market_price: float


class ProcessorConfig(msgspec.Struct, frozen=True):
    max_events: int = 10_000
    retention_ms: int = 30 * 86_400_000
    bandwidth_pct: float = 0.3
    range_pct: float = 15.0
    alerts: AlertThresholds = AlertThresholds()


class SymbolBook:
    """Everything the processor knows about one symbol."""

    def __init__(self, symbol: str, config: ProcessorConfig) -> None:
        self.symbol = symbol
        self.config = config
        self.store = EventStore(config.max_events, config.retention_ms)
        self.columns = EventColumns()  # the store's events, row for row; windows read it
        # The per-event alert z-score, exact between flushes (windows are flush-time only).
        self.alert_statistics = RunningStatistics(WINDOWS[ALERT_WINDOW])
        self.leverage = LeverageEstimator()
        self.alerts = AlertEngine(symbol, config.alerts)
        self.grid: PriceGrid | None = None
        self.market_price = 0.0
        # Market prices inside this band neither recentre the grid nor start an epoch (see
        # `place`); empty until there is a grid.
        self._steady = (math.inf, -math.inf)
        self.windows: dict[str, HeatmapWindow] = {}
        self.pending_snapshots: list[HeatmapSnapshot] = []
        self.empty_epoch = f"{symbol}.0"
        self.channels = {  # per kind: the symbol's channel and the `*` one
            kind: (f"{kind}:{symbol}", f"{kind}:{ANY_SYMBOL}") for kind in FANNED_KINDS
        }
        self.last_applied: LiquidationEvent | None = None
        self.flushed: Flushed | None = None
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
            self.market_price = price
            self.grid = PriceGrid.around(price, self.config.range_pct, self._new_epoch(now))
            if not self.windows:
                self.windows = {
                    name: HeatmapWindow(
                        self.symbol, name, span, self.grid, self.config.bandwidth_pct, self.columns
                    )
                    for name, span in WINDOWS.items()
                }
            self.alert_statistics.expire(now)
            self.pending_snapshots = [w.restart(self.grid, now) for w in self.windows.values()]
            self._steady = self.grid.steady_band()
            return
        moved = grid.recentred(self.market_price)
        if moved is not None:
            self.grid = moved
            for window in self.windows.values():
                window.recentre(moved)
            self._steady = moved.steady_band()

    def hold(self, event: LiquidationEvent, now: int) -> None:
        """Keep an accepted event (the grid placed): store, columns, alert statistics."""
        for evicted in self.store.add(event):
            self.forget(evicted)
        self.columns.add(event, self.grid.bin_index(event.price))  # type: ignore[union-attr]
        self.alert_statistics.add(event, now)
        self.last_applied = event

    def forget(self, evicted: LiquidationEvent) -> None:
        """The store dropped `evicted` (its oldest)."""
        self.columns.forget(evicted)
        self.alert_statistics.forget(evicted)

    def carry_on(self, grid: PriceGrid, market_price: float) -> None:
        """Take up a restored stream's grid and market price (see `place`)."""
        self.grid = grid
        self.market_price = market_price
        self._steady = grid.steady_band()

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
        if held is not None:
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
        )


class LiquidationProcessor:
    def __init__(self, config: ProcessorConfig, epoch: str) -> None:
        self.config = config
        self.epoch = epoch  # of the liquidations/alerts channels
        self.books: dict[str, SymbolBook] = {}
        self._seq: dict[str, int] = {}
        self._flushed_seq: dict[str, int] = {}
        self.rejected = 0

    def track(self, symbol: str) -> SymbolBook:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = SymbolBook(symbol, self.config)
        return book

    def seqs(self) -> dict[str, int]:
        """The liquidations/alerts channels' seqs as of the last flush (for a checkpoint,
        whose watermarks are taken at the same moment)."""
        return dict(self._flushed_seq)

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
        z_score = book.alert_statistics.z_score(event.notional)
        book.hold(event, now)
        messages = self._fan(book.channels["liquidations"], "liquidation", event)
        for alert in book.alerts.on_event(event, z_score, ALERT_WINDOW):
            messages.extend(self._fan(book.channels["alerts"], "alert", alert))
        return Applied(event, messages)

    def flush(self, now: int) -> list[ChannelMessage]:
        """Diffs for every window that changed, new-epoch snapshots first, then cluster alerts."""
        messages: list[ChannelMessage] = []
        self._flushed_seq = dict(self._seq)
        for book in self.books.values():
            changed = bool(book.pending_snapshots)
            for snapshot in book.pending_snapshots:
                messages.append(self._snapshot_message(snapshot))
            book.pending_snapshots = []
            book.alert_statistics.expire(now)
            for name, window in book.windows.items():
                diff = window.flush(now)
                if diff is None:
                    continue
                changed = True
                channel = heatmap_channel(book.symbol, name)
                messages.append(ChannelMessage(channel, "diff", window.seq, book.epoch, diff))
                if name == ALERT_WINDOW and diff.clusters is not None:
                    for alert in book.alerts.on_clusters(diff.clusters, name, now):
                        messages.extend(self._fan(book.channels["alerts"], "alert", alert))
            if changed or book.flushed is None:
                # The position of the last flush that moved a stream: an idle book keeps
                # its checkpoint, so nothing is rewritten every few milliseconds.
                book.flushed = Flushed(now, book.last_applied, book.market_price)
        return messages

    def sweep(self, now: int) -> None:
        """Retention: drop events older than the configured age from every book."""
        for book in self.books.values():
            for evicted in book.store.sweep(now):
                book.forget(evicted)

    def snapshots_of(self, symbol: str, now: int) -> list[ChannelMessage]:
        """The current snapshot of each heatmap channel of `symbol` (seeds a replica)."""
        book = self.books[symbol]
        return [self._snapshot_message(book.snapshot(name, now)) for name in WINDOWS]

    def events(
        self, symbol: str, since: int, side: str | None = None
    ) -> Iterable[LiquidationEvent]:
        """Held events of `symbol` with time >= since, newest first."""
        for event in reversed(self.books[symbol].store):
            if event.time < since:
                break
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
