"""One heatmap window of one symbol: the events of the last `span` ms, published as a
snapshot and then one diff per change.

The events live once, in the symbol's `EventStore`; a window keeps only exact integer sums
of the ones it holds (`WindowSums`: bins, density lattice, statistics), changed by the
rows that enter and leave (`drain`), so what a flush costs follows what changed, not how
many events the window holds: a 30-day window of a million events costs what an hour does.

What clients see moves at the window's own pace (`refresh_ms`): the hub's flush interval
for windows up to an hour, and span / 57,600 beyond (a day-long window every 1.5 s, a
30-day one every 45 s; each pace a whole multiple of every shorter one up to the day's,
so a symbol's long windows fall due together): a long window barely moves in a second,
and redrawing it as often as a 5-minute one would cost every client the same bytes for
nothing. Such a window publishes at most once in each period of its pace, the periods
starting at a phase of its symbol's own, so that many symbols' long windows spread over
the flushes instead of all publishing in one (which held up a whole flush for tenths of
a second at 300 symbols). Between two publishes such a window keeps what arrives
(`defer`) and takes it all when it is due, in one batch: a publish is always of the
present, and the sums are the same integers.
Rows that only age out are published with the next arrival, or after at most
DEPARTURE_PACE_MS (the window's pace when longer): what a window published is exact as
of its `time`, and at most a second older than the present while nothing arrives.

A publish (`flush`) turns what differs from what was published last into a
`HeatmapDiff`, advancing `seq` by one: the bins that changed (count 0: gone), statistics,
clusters, reference price and coverage when they changed, and the density as the runs of
values that changed (whole when its axis moved).
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from hub.analytics.clusters import ClusterTracker
from hub.analytics.coverage import Coverage
from hub.analytics.density import KernelDensity
from hub.analytics.grid import PriceGrid
from hub.analytics.store import EventStore
from hub.analytics.sums import (
    EMPTY_STATISTICS,
    Arrivals,
    Placed,
    WindowSums,
    bin_rows,
    place_rows,
)
from hub.models import (
    NO_COVERAGE,
    Bin,
    Cluster,
    Density,
    DensityRun,
    HeatmapDiff,
    HeatmapSnapshot,
    LiquidationEvent,
    Statistics,
    WindowCoverage,
)

__all__ = ["DEPARTURE_PACE_MS", "EMPTY_STATISTICS", "HeatmapWindow", "refresh_ms", "wire_values"]

# Equal to nothing a flush computes (NaN != NaN, no cluster has id -1): forces a re-send.
_UNSENT_STATISTICS = Statistics(-1, math.nan, math.nan, math.nan, math.nan, math.nan)
_UNSENT_CLUSTERS = [Cluster(-1, math.nan, math.nan, math.nan, 0.0, 0, 0.0, 0.0, "low")]
_UNSENT_COVERAGE = WindowCoverage(-1, False)
REFRESH_FRACTION = 57_600  # of the span: a long window's pace
CLUSTER_PACE_MS = 1_000
DEPARTURE_PACE_MS = 1_000  # rows that only leave are published at most this often
CLUSTER_FRACTION = 14_400  # of the span: a long window's clusters' pace
_OLDEST_CHUNK = 1024  # rows searched at a time for the oldest a window holds
# Changed density values closer than this are sent as one run: a run costs its offset.
_RUN_JOIN = 4


def refresh_ms(span_ms: int) -> int:
    """How often a window of `span_ms` is published at most (see the module doc); 0: at
    every flush."""
    return span_ms // REFRESH_FRACTION if span_ms > 3_600_000 else 0


def cluster_pace_ms(span_ms: int) -> int:
    """How often a window's clusters are found again at most: every second up to 4 h,
    1/14,400 of the span beyond (the `30d` window's every 3 minutes)."""
    return max(CLUSTER_PACE_MS, span_ms // CLUSTER_FRACTION)


class HeatmapWindow:
    def __init__(
        self,
        store: EventStore,
        name: str,
        span_ms: int,
        grid: PriceGrid,
        kde: KernelDensity,
        refresh: int = 0,
    ) -> None:
        """`store`: the symbol's events, which the window's sums follow."""
        self.store = store
        self.symbol = store.symbol
        self.name = name
        self.span_ms = span_ms
        self.refresh_ms = refresh
        # Where the window's pace periods (and its clusters') start: the same for a
        # symbol's windows in every process, different across symbols, so 300 symbols'
        # `7d` windows do not all publish in one flush, nor the busy symbols' short windows
        # all find their clusters in one (restored together, they would stay in step).
        self._phase = zlib.crc32(self.symbol.encode())
        self.seq = 0
        self.watermark = 0  # arrival number of the last event applied before the last publish
        self.sums = WindowSums()
        self.cutoff: int | None = None  # the sums hold the rows with time >= cutoff
        self._next_leave = math.inf  # the oldest time held: nothing leaves before it
        self._changed = False  # since the last publish
        self._axis_moved = False
        self._time = 0  # of the last publish
        self.grid = grid
        self.kde = kde
        self._clusters = ClusterTracker(kde.bandwidth)
        self._published_statistics = EMPTY_STATISTICS
        self._published_clusters: list[Cluster] = []
        self._published_reference = grid.reference_price
        self._published_coverage = NO_COVERAGE
        self._published_axis = (grid.density_start, grid.bin_width)
        self._wire = np.zeros(0)  # the published density values, as sent
        self._decimals: int | None = None  # they were rounded to
        # Clusters are found again at most once in each period of `cluster_pace_ms`
        # (phased as the publishes are): finding them costs more than the rest of a
        # publish, and they move slowly; between two, a publish keeps the last
        # (`_clusters_stale`: the sums changed since they were found).
        self.cluster_pace_ms = max(refresh, cluster_pace_ms(span_ms))
        self._clusters_due = -math.inf  # when they may be found again
        self._clusters_stale = False
        self._waiting: list[Placed] = []  # arrivals kept until the window is due (`defer`)

    # -- what the window holds --------------------------------------------------------

    def events(self) -> list[LiquidationEvent]:
        """The events held (as of the last drain)."""
        if self.cutoff is None:
            return []
        return self.store.events(self.store.since(self.cutoff))

    def drain(self, arrived: Arrivals | None, now: int) -> None:
        """Bring the sums to `now`: `arrived` (rows the store took since the last drain,
        placed on this window's grid) enter when recent enough; the rows that aged out
        leave. The store holds both."""
        if self.cutoff is None:
            return
        if self._waiting:
            arrived = self._kept(arrived)
        store = self.store
        old = self.cutoff
        new = max(old, now - self.span_ms)
        if arrived is not None:
            self._enter(arrived)
        if self._next_leave < new:
            # [old, new) of the store: what was held there, and what just arrived there.
            self.sums.add(place_rows(store.between(old, new), self.grid, self.kde), -1)
            self._next_leave = _first_time(store, new)
            self._changed = True
        self.cutoff = new
        if self.sums.lattice is None:
            self._build_lattice()

    def defer(self, arrived: Arrivals | None) -> None:
        """Keep `arrived` for the drain when the window is due (a window with a pace of
        its own, not due yet): it then takes everything kept, in one batch."""
        # Rows older than the window never enter it (its cutoff only moves on): keeping
        # them would make an empty diff.
        if arrived is not None and self.cutoff is not None and arrived.last >= self.cutoff:
            self._waiting.append(arrived.rows)
            self._changed = True

    def catch_up(self) -> None:
        """Take the kept arrivals now, the window's time unmoved: the sums must hold every
        row drained before the store may drop rows (`forget`). A lattice to be made again
        waits for the next drain: the store may already hold rows that no window took
        yet, which making it from the store now would count twice."""
        if self._waiting and self.cutoff is not None:
            self._enter(self._kept())

    def _kept(self, arrived: Arrivals | None = None) -> Arrivals:
        """What the window kept (and `arrived`), as one batch; nothing is kept after."""
        rows = self._waiting if arrived is None else [*self._waiting, arrived.rows]
        self._waiting = []
        return Arrivals(Placed.joined(rows))

    def _enter(self, arrived: Arrivals) -> None:
        """The rows of `arrived` recent enough for the window enter its sums."""
        assert self.cutoff is not None
        if arrived.first >= self.cutoff:  # all of them
            self.sums.take(arrived)
            self._next_leave = min(self._next_leave, arrived.first)
            self._changed = True
            return
        entering = arrived.rows.take(arrived.rows.time >= self.cutoff)
        if len(entering):
            self.sums.add(entering, 1)
            self._next_leave = min(self._next_leave, int(entering.time.min()))
            self._changed = True

    def forget(self, evicted: Placed) -> None:
        """The store dropped these rows (past retention, or the cap), all of them rows the
        sums took in: those inside the window are exactly the ones of time >= cutoff."""
        if self.cutoff is None or not len(evicted):
            return
        inside = evicted.take(evicted.time >= self.cutoff)
        if len(inside):
            self.sums.add(inside, -1)
            self._changed = True

    def _build_lattice(self) -> None:
        """The density lattice of the rows held, on the current axis."""
        sums = self.sums
        sums.set_axis(self.kde)
        lattice = sums.lattice
        assert lattice is not None
        held = place_rows(self.store.since(self.cutoff or 0), self.grid, self.kde)
        on = held.node >= 0
        np.add.at(lattice, held.node[on], held.micros[on] - held.right[on])
        np.add.at(lattice, held.node[on] + 1, held.right[on])

    # -- grid -------------------------------------------------------------------------

    def recentre(self, grid: PriceGrid, kde: KernelDensity) -> None:
        """Move the density axis to a new reference price; bins and seq carry on. The
        lattice is rebuilt on the new axis at the next drain."""
        self.grid = grid
        self.kde = kde
        self.sums.set_axis(None)
        self._axis_moved = True
        self._changed = True

    def restart(self, grid: PriceGrid, kde: KernelDensity, now: int, coverage: Coverage) -> None:
        """Start a new epoch on `grid`: sums rebuilt from the store, seq from 0; `snapshot`
        then gives the new epoch's first state, as of `now`."""
        self.grid, self.kde = grid, kde
        self._clusters.start_over(kde.bandwidth)
        self._waiting = []  # in the store, which the sums are made from
        self.cutoff = now - self.span_ms
        self.sums = WindowSums()
        self.sums.set_axis(kde)
        held = self.store.since(self.cutoff)
        self.sums.add(place_rows(held, grid, kde), 1)
        self.sums.take_changes()
        self._next_leave = int(held.time[0]) if len(held) else math.inf
        self._axis_moved = False
        values = self._density()
        self._publish_whole_density(values)
        self._published_clusters = self._find_clusters(values)
        self._published_statistics = self.sums.statistics(self.store.exchanges)
        self._published_reference = grid.reference_price
        self._published_coverage = coverage.of(self.cutoff, now)
        self._time = now
        self._changed = False
        self.seq = 0

    def rebuild(self, seq: int, published_at: int, watermark: int, held: Placed) -> None:
        """Carry on a stream from a checkpoint: `held` are the rows this window held at its
        publish of `seq` (at `published_at`, the rows up to arrival `watermark`), so its
        bins are exactly what clients hold. Then `resumed`, and the caller drains what
        came after."""
        self.sums = WindowSums()
        self.sums.set_axis(self.kde)
        self.follow(seq, published_at, watermark, held, None)

    def follow(
        self,
        seq: int,
        published_at: int,
        watermark: int,
        entering: Placed,
        leaving: Placed | None,
    ) -> None:
        """Move the sums to the window's publish of `seq` (at `published_at`, the rows up
        to arrival `watermark`) from its previous one, by the rows that came into it and
        those that aged out since: a standby following the checkpoints keeps each window
        as clients hold it, for what changed (`resumed` once it takes over)."""
        self.cutoff = published_at - self.span_ms
        self._waiting = []
        self.sums.add(entering, 1)
        if leaving is not None and len(leaving):
            self.sums.add(leaving, -1)
        self.sums.take_changes()
        self._next_leave = self._oldest_held(watermark)
        self.seq = seq
        self._time = published_at
        self.watermark = watermark

    def _oldest_held(self, watermark: int) -> float:
        """The oldest time of the rows up to arrival `watermark` from the cutoff on (the
        store is in time order; a later arrival is rarely among the oldest)."""
        rows = self.store.since(self.cutoff or 0)
        start = 0
        while start < len(rows):
            chunk = rows.arrival[start : start + _OLDEST_CHUNK] <= watermark
            if chunk.any():
                return int(rows.time[start + int(chunk.argmax())])
            start += _OLDEST_CHUNK
        return math.inf

    def resumed(self, clusters_then: bool) -> list[Cluster]:
        """The stream carries on from the publish the sums stand at (`rebuild`, `follow`):
        the derived parts (statistics, clusters, density, reference, coverage) are sent
        again by the next diff. With `clusters_then`, returns the clusters as of that
        publish, tracked (the next publish keeps their ids); else the next publish finds
        them afresh (a process's cluster ids are its own either way), which halves the
        clusters a restore or a takeover finds before its first diff."""
        self._axis_moved = True  # the next diff sends the density whole
        self._changed = True
        self.sums.forget_density()  # made from the lattice: the same however it was reached
        clusters = self._find_clusters(self._density()) if clusters_then else []
        self._published_statistics = _UNSENT_STATISTICS
        self._published_clusters = _UNSENT_CLUSTERS
        self._published_reference = math.nan
        self._published_coverage = _UNSENT_COVERAGE
        return clusters

    # -- what clients see -------------------------------------------------------------

    @property
    def time(self) -> int:
        """Of the last publish."""
        return self._time

    def statistics(self) -> Statistics:
        """As of the last publish."""
        return self._published_statistics

    def z_score(self, notional: float) -> float:
        stats = self._published_statistics
        return (notional - stats.mean) / stats.std if stats.std > 0 else 0.0

    def clusters(self) -> list[Cluster]:
        return self._published_clusters

    def density_message(self) -> Density:
        start, step = self._published_axis
        return Density(start, step, self._wire.tolist())

    def due(self, now: int) -> bool:
        return now >= self._due_at()

    def _due_at(self) -> int:
        """The start of the pace period after the one of the last publish (the last
        publish itself for a window paced by the flushes)."""
        return self._next_period(self._time, self.refresh_ms) if self.refresh_ms else self._time

    def _next_period(self, time: int, pace: int) -> int:
        """The start of the period of `pace` after the one holding `time`."""
        return time - (time - self._phase) % pace + pace

    def wake_at(self, coverage: Coverage) -> float:
        """The earliest time this window has something to do if nothing arrives: publish
        what is pending, let its oldest row go, or turn complete."""
        if self.cutoff is None:
            return math.inf
        # Rows that only leave wake the window at most once a second, and not before it
        # is due (an arrival publishes their leaving with it): at 2,000 liquidations/s
        # over 300 symbols, leavings alone woke the short windows four times as often as
        # arrivals.
        due_at = self._due_at()
        wake = max(self._next_leave + self.span_ms, self._time + DEPARTURE_PACE_MS, due_at)
        if self._changed:
            wake = min(wake, due_at)
        # Neither clusters to find again nor a coverage turning complete is published
        # before the window is due: waking for them sooner only drained the book's other
        # windows early (a restored book's long windows, their coverage unsent until their
        # first publish up to 45 s later, woke it at every flush).
        if self._clusters_stale:
            wake = min(wake, max(self._clusters_due, due_at))
        if not self._published_coverage.complete:
            wake = min(wake, max(coverage.complete_from(self.span_ms), due_at))
        return wake

    @property
    def pending(self) -> bool:
        """Whether the sums changed since the last publish (the window is not due yet)."""
        return self._changed

    @property
    def settled(self) -> bool:
        """Whether the last publish shows everything: no change and no clusters left to
        find again at their pace."""
        return not self._changed and not self._clusters_stale

    def flush(self, now: int, coverage: Coverage) -> HeatmapDiff | None:
        """What changed since the last publish, as the next diff; None when nothing did,
        or when the window's pace says not yet (`due`)."""
        if self.cutoff is None or not self.due(now):
            return None
        covered = coverage.of(now - self.span_ms, now)
        clusters_due = now >= self._clusters_due
        if (
            not self._changed
            and covered.complete == self._published_coverage.complete
            and not (self._clusters_stale and clusters_due)
        ):
            return None
        self._changed = False
        changes = self.sums.take_changes()
        values = self._density()
        touched, self.sums.density_range = self.sums.density_range, None
        if clusters_due or self._axis_moved or self._published_clusters is _UNSENT_CLUSTERS:
            clusters = self._find_clusters(values)
            self._clusters_due = self._next_period(now, self.cluster_pace_ms)
            self._clusters_stale = False
        else:  # at their own pace: they stand for the last second
            clusters = self._published_clusters
            self._clusters_stale = True
        diff = HeatmapDiff(time=now, bins=self._bin_changes(changes))
        if self._axis_moved or len(values) != len(self._wire):
            self._axis_moved = False
            self._publish_whole_density(values)
            diff.density = self.density_message()
        else:
            patch = self._patch(values, touched)
            if patch:
                diff.density_patch = patch
        statistics = self.sums.statistics(self.store.exchanges)
        if statistics != self._published_statistics:
            diff.statistics = self._published_statistics = statistics
        if clusters != self._published_clusters:
            diff.clusters = self._published_clusters = clusters
        if self.grid.reference_price != self._published_reference:
            diff.reference_price = self._published_reference = self.grid.reference_price
        if covered != self._published_coverage:
            diff.coverage = self._published_coverage = covered
        self._time = now
        self.seq += 1
        return diff

    def snapshot(self) -> HeatmapSnapshot:
        """The state as of the last publish (callers flush first to include newer events)."""
        return HeatmapSnapshot(
            symbol=self.symbol,
            window=self.name,
            seq=self.seq,
            epoch=self.grid.epoch,
            time=self._time,
            reference_price=self._published_reference,
            bin_width=self.grid.bin_width,
            bins=self.bins(),
            density=self.density_message(),
            clusters=self._published_clusters,
            statistics=self._published_statistics,
            coverage=self._published_coverage,
        )

    def bins(self) -> list[Bin]:
        """The bins as published: the sums, with the bins changed since then as they were."""
        index, long, short, count = self.sums.occupied()
        before = self.sums.published()
        if before:
            keep = ~np.isin(index, np.fromiter(before, np.int64, len(before)))
            old = sorted((i, v) for i, v in before.items() if v[2])
            index = np.concatenate((index[keep], [i for i, _ in old])).astype(np.int64)
            long = np.concatenate((long[keep], [v[0] for _, v in old])).astype(np.int64)
            short = np.concatenate((short[keep], [v[1] for _, v in old])).astype(np.int64)
            count = np.concatenate((count[keep], [v[2] for _, v in old])).astype(np.int64)
            order = np.argsort(index, kind="stable")
            index, long, short, count = index[order], long[order], short[order], count[order]
        return bin_rows(self.grid, index, long, short, count)

    # -- internals --------------------------------------------------------------------

    def _density(self) -> np.ndarray:
        """The density of the rows held (clamped at 0: round-off leaves tiny negatives)."""
        if self.sums.lattice is None:
            self._build_lattice()
        return np.maximum(self.sums.density(), 0.0)

    def _find_clusters(self, values: np.ndarray) -> list[Cluster]:
        return self._clusters.track(self.sums.shapes(values, self.kde, self.grid.bin_width))

    def _publish_whole_density(self, values: np.ndarray) -> None:
        self._decimals = wire_decimals(values)
        self._wire = wire_array(values)
        self._published_axis = (self.grid.density_start, self.grid.bin_width)

    def _patch(self, values: np.ndarray, touched: tuple[int, int] | None) -> list[DensityRun]:
        """The runs of wire values that differ from those published; they become published.
        Only the points a change `touched` can differ, unless the peak moved the rounding
        to other digits."""
        decimals = wire_decimals(values)
        # The arrays' own methods, not numpy's functions: a patch is a dozen numpy calls
        # on a few hundred points, where the functions' wrapping is a good part of each.
        if decimals != self._decimals:
            self._decimals = decimals
            wire = wire_array(values)
            changed = (wire != self._wire).nonzero()[0]
            self._wire = wire
        elif touched is None:
            return []
        else:
            first, last = touched
            part = values[first : last + 1].round(decimals) if decimals is not None else 0.0
            changed = first + (part != self._wire[first : last + 1]).nonzero()[0]
            self._wire[first : last + 1] = part
        if not len(changed):
            return []
        # Split in Python: a patch's hundred-odd points cost less so than numpy's calls.
        wire = self._wire
        points = changed.tolist()
        runs: list[DensityRun] = []
        start = end = points[0]
        for point in points[1:]:
            if point - end > _RUN_JOIN:
                runs.append((start, wire[start : end + 1].tolist()))
                start = point
            end = point
        runs.append((start, wire[start : end + 1].tolist()))
        return runs

    def _bin_changes(self, changes: dict[int, tuple[int, int, int]]) -> list[Bin]:
        return self.sums.bins_now(sorted(changes), self.grid)


def _first_time(store: EventStore, start: int) -> float:
    """The oldest time held at or after `start`; inf when none is."""
    times = store.times
    at = int(np.searchsorted(times, start, side="left"))
    return int(times[at]) if at < len(times) else math.inf


def wire_decimals(values: np.ndarray) -> int | None:
    """The decimals density values are sent with: six significant digits of the peak
    (None: all zero). Most of the axis is zero or convolution noise (5e-11) that would
    otherwise be written in full; rounding makes a diff about three times smaller, and
    lets a diff send only what changed."""
    peak = values.max() if len(values) else 0.0  # the method: np.max's wrapper costs more
    return 5 - math.floor(math.log10(peak)) if peak > 0 else None


def wire_array(values: np.ndarray) -> np.ndarray:
    """Density values as sent (see `wire_decimals`)."""
    decimals = wire_decimals(values)
    return np.zeros(len(values)) if decimals is None else np.round(values, decimals)


def wire_values(values: np.ndarray) -> list[float]:
    return wire_array(values).tolist()
