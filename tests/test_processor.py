"""The liquidation processor, end to end on its message stream.

The property tests drive `LiquidationProcessor` with random event sequences and feed every
message, encoded as the fan-out encodes it, to a `ChannelState` per channel: the replica a
real client builds. They check the documented invariant (snapshot + diffs == state, seq +1 per diff,
new epoch only with a snapshot) and compare every window with a brute-force recomputation
from an independent model of the event store. The scripted tests cover the liquidation and
alert channels, leverage filling and the bundled replay against its ground truth.
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from hub.analytics.alerts import AlertThresholds
from hub.analytics.density import KernelDensity
from hub.analytics.leverage import tier_of
from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
from hub.analytics.window import DEPARTURE_PACE_MS, refresh_ms
from hub.channels import WINDOWS, heatmap_channel
from hub.fanout.channel_state import ChannelState, HeatmapReplica, Outcome
from hub.fanout.codec import EncodedMessage, decode_snapshot, encode_message
from hub.feeds.binance_wire import parse_frame
from hub.feeds.replay import read_replay
from hub.models import Alert, ChannelMessage, LiquidationEvent, Side

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "hub" / "data" / "demo_session.jsonl"
EXPECTED = Path(__file__).parent / "data" / "sample_session.expected.json"

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
START = 1_795_176_000_000
REL, ABS = 1e-9, 1e-6

# Realistic starting prices and ticks: BTC's bins are 20 wide, ADA's 0.0002.
BASE = {"BTCUSDT": 60_000.0, "ADAUSDT": 0.45}
TICK_DECIMALS = {"BTCUSDT": 1, "ADAUSDT": 4}
UNTRACKED = "DOGEUSDT"


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=ABS)


def make_event(
    symbol: str,
    side: Side,
    price: float,
    notional: float,
    time: int,
    quantity: float | None = None,
    exchange: str = "binance",
) -> LiquidationEvent:
    if quantity is None:
        quantity = max(round(notional / price, 3), 0.001)
    return LiquidationEvent(exchange, symbol, side, price, quantity, price * quantity, time)


# -- an independent model of the event store ---------------------------------------------


def key(event: LiquidationEvent) -> tuple[Any, ...]:
    return (event.exchange, event.time, event.side, event.price, event.quantity)


class ModelStore:
    """What docs/analytics.md says a symbol holds: at most `max_events`, oldest out, nothing
    older than retention, no duplicates, in trade-time order (ties in arrival order)."""

    def __init__(self, max_events: int, retention_ms: int) -> None:
        self.max_events = max_events
        self.retention_ms = retention_ms
        self.held: list[tuple[int, int, LiquidationEvent]] = []  # (time, arrival, event)
        self.arrivals = 0

    def offer(self, event: LiquidationEvent, now: int) -> bool:
        if event.time < now - self.retention_ms:
            return False
        if any(key(e) == key(event) for _, _, e in self.held):
            return False
        if len(self.held) >= self.max_events and event.time < self.held[0][0]:
            return False
        self.arrivals += 1
        self.held.append((event.time, self.arrivals, event))
        self.held.sort(key=lambda item: item[:2])
        del self.held[: max(0, len(self.held) - self.max_events)]
        return True

    def sweep(self, now: int) -> None:
        self.held = [item for item in self.held if item[0] >= now - self.retention_ms]

    def in_window(self, now: int, span: int) -> list[LiquidationEvent]:
        return [e for t, _, e in self.held if t >= now - span]


# -- the client side: what the fan-out and its clients do with the stream ----------------


class Recorder:
    """Encodes every message and feeds it to a ChannelState per channel, checking order."""

    def __init__(self) -> None:
        self.states: dict[str, ChannelState] = {}
        self.log: dict[str, list[EncodedMessage]] = {}
        self.marks: list[tuple[str, bytes, int]] = []  # (channel, snapshot json, log position)
        self.liquidations: list[ChannelMessage] = []
        self.epochs: dict[str, set[str]] = {}  # per channel, every epoch seen

    def take(self, messages: list[ChannelMessage], now: int) -> None:
        for message in messages:
            encoded = EncodedMessage.of(encode_message(message))
            header = encoded.header
            state = self.states.setdefault(header.ch, ChannelState(header.ch))
            if header.ch.startswith("heatmap:"):
                if header.type == "diff":
                    # (c): a diff continues its epoch at the next seq; never a gap.
                    assert state.replica is not None, f"{header.ch}: diff before any snapshot"
                    assert header.epoch == state.epoch, f"{header.ch}: epoch changed in a diff"
                    assert header.seq == state.seq + 1, (
                        f"{header.ch}: seq {header.seq} after {state.seq}"
                    )
                else:
                    assert header.type == "snapshot"
                    # A snapshot opens a new epoch; a snapshot inside a known epoch could
                    # only be a re-send of the position already reached.
                    assert header.epoch not in self.epochs.get(header.ch, ()) or (
                        header.epoch == state.epoch and header.seq == state.seq
                    ), f"{header.ch}: epoch {header.epoch} reused at seq {header.seq}"
                self.epochs.setdefault(header.ch, set()).add(header.epoch)
            else:
                assert header.seq == state.seq + 1, (
                    f"{header.ch}: seq {header.seq} after {state.seq}"
                )
                if header.type == "liquidation":
                    self.liquidations.append(message)
            outcome = state.accept(encoded, now)
            assert outcome is Outcome.ACCEPTED, f"{header.ch} {header.type} {header.seq}: {outcome}"
            self.log.setdefault(header.ch, []).append(encoded)

    def mark(self) -> None:
        """(b): remember every replica as a client holding seq S would."""
        for name, state in self.states.items():
            if state.replica is not None:
                frozen = msgspec.json.encode(state.replica.snapshot())
                self.marks.append((name, frozen, len(self.log[name])))


def as_builtins(snapshot: object) -> Any:
    return msgspec.json.decode(msgspec.json.encode(snapshot))


def assert_same_snapshot(replica: object, held: object, what: str) -> None:
    a, b = as_builtins(replica), as_builtins(held)
    if a != b:
        diffs = {k: (a[k], b[k]) for k in a if a[k] != b.get(k)}
        raise AssertionError(f"{what}: replica != processor in {sorted(diffs)}: {diffs!r:.2000}")


# -- brute force --------------------------------------------------------------------------


def millionths(notional: float) -> float:
    """A notional as the sums hold it: whole micro-units, half to even (`sums.micros`)."""
    return round(notional * 1_000_000) / 1_000_000


def brute_force(events: list[LiquidationEvent], grid: Any) -> tuple[tuple[float, ...], list]:
    """Statistics (total, long, short, mean, std) and bins of `events`, recomputed over
    the notionals as rounded to a millionth (what the sums are exact over, docs/analytics.md:
    n raw notionals may differ from them by n/2 millionths)."""
    if events:
        notionals = [millionths(e.notional) for e in events]
        total = math.fsum(notionals)
        mean = total / len(events)
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in notionals) / len(events))
        long_ = math.fsum(millionths(e.notional) for e in events if e.side == "long")
        short = math.fsum(millionths(e.notional) for e in events if e.side == "short")
        expected = (total, long_, short, mean, std)
    else:
        expected = (0.0, 0.0, 0.0, 0.0, 0.0)
    bins: dict[int, list[float]] = {}
    for e in events:
        row = bins.setdefault(grid.bin_index(e.price), [0.0, 0.0, 0])
        row[0 if e.side == "long" else 1] += millionths(e.notional)
        row[2] += 1
    return expected, [(grid.bin_low(i), *bins[i]) for i in sorted(bins)]


def assert_same_numbers(what: str, stats: Any, bins: list, events: list, grid: Any) -> None:
    expected, want = brute_force(events, grid)
    assert stats.event_count == len(events), (
        f"{what}: {stats.event_count} events, want {len(events)}"
    )
    got = (stats.total_notional, stats.long_notional, stats.short_notional, stats.mean, stats.std)
    for field, g, e in zip(("total", "long", "short", "mean", "std"), got, expected, strict=True):
        assert close(g, e), f"{what}: statistics.{field} {g!r} != {e!r}"
    assert [(b[0], b[3]) for b in bins] == [(w[0], w[3]) for w in want], (
        f"{what}: bin prices/counts"
    )
    for b, w in zip(bins, want, strict=True):
        assert close(b[1], w[1]) and close(b[2], w[2]), f"{what}: bin {b} != {w}"


def assert_matches_brute_force(
    processor: LiquidationProcessor, model: dict[str, ModelStore], now: int, density: bool
) -> None:
    """(d): every window's sums, brought to `now`, equal a recomputation from the raw
    events at `now`, and what it published equals one as of its publish, when that was
    `now` (a long window publishes at its own pace, and keeps its arrivals until then:
    its sums are brought to `now` on a copy, so the run under test keeps its pace)."""
    for symbol, book in processor.books.items():
        held = [key(e) for e in book.store]
        assert held == [key(e) for _, _, e in model[symbol].held], f"{symbol}: store != model"
        if book.grid is None:
            continue
        grid = book.grid
        caught_up = copy.deepcopy(book)
        caught_up.drain(now, every=True)
        for name, span in WINDOWS.items():
            window = book.windows[name]
            events = model[symbol].in_window(now, span)
            brought = caught_up.windows[name]
            assert [key(e) for e in brought.events()] == [key(e) for e in events], (
                f"{symbol} {name}: held events"
            )
            what = f"{symbol} {name}"
            index, long, short, count = brought.sums.occupied()
            current = [
                (grid.bin_low(i), lg / 1e6, sh / 1e6, c)
                for i, lg, sh, c in zip(index, long, short, count, strict=True)
            ]
            assert_same_numbers(
                f"{what} (sums)",
                brought.sums.statistics(book.store.exchanges),
                current,
                events,
                grid,
            )
            snap = window.snapshot()
            if window.pending:  # changed since its last publish, which its pace holds back
                assert not window.due(now), f"{what}: not published when due"
                continue
            # Rows only leaving wait for an arrival or the window's pace: until then, what
            # was published is exact as of its publish; after it, as of now.
            pace = max(window.refresh_ms, DEPARTURE_PACE_MS)
            if now - snap.time < pace:
                events = model[symbol].in_window(snap.time, span)
            assert_same_numbers(what, snap.statistics, snap.bins, events, grid)
            if density:
                fresh = KernelDensity(
                    grid.density_start, grid.bin_width, grid.density_size, window.kde.bandwidth
                )
                if events:
                    fresh.add_many(
                        np.array([e.price for e in events]), np.array([e.notional for e in events])
                    )
                values = np.array(snap.density.values)
                assert snap.density.start == grid.density_start
                assert values.shape == (grid.density_size,)
                expected = fresh.values()
                # the wire keeps six significant digits of the peak (window.wire_values)
                peak = float(expected.max()) if len(expected) else 0.0
                np.testing.assert_allclose(values, expected, rtol=0, atol=1e-5 * peak + 1e-9)


# -- the property test --------------------------------------------------------------------

# Price moves (log): mostly small, sometimes past the recentre threshold (a quarter of the
# +-15 % range) and sometimes far enough (x3) that the bin width is off and a new epoch starts.
MOVES = [0.0, 0.0, 0.0, 0.0005, -0.0005, 0.002, -0.002, 0.01, -0.01, 0.06, -0.06, 0.15, -0.15]
EPOCH_MOVES = [math.log(3.0), -math.log(3.0)]
DTS = [0, 0, 20, 50, 400, 1_000, 5_000, 30_000, 2 * MINUTE, 6 * MINUTE, 16 * MINUTE, 70 * MINUTE]
LAGS = [0, 0, 0, 5, 250, 3_000, 4 * MINUTE, 20 * MINUTE, -2_000]
NOTIONALS = [20.0, 950.0, 10_000.0, 87_500.0, 400_000.0, 1_000_000.0, 7_500_000.0]

event_op = st.tuples(
    st.just("event"),
    st.integers(0, 1),  # symbol index (modulo the symbols tracked)
    st.sampled_from(DTS),
    st.one_of(st.sampled_from(MOVES), st.sampled_from(EPOCH_MOVES)),
    st.sampled_from(["long", "short"]),
    st.sampled_from(NOTIONALS),
    st.floats(0.5, 2.0),
    st.sampled_from(LAGS),
    st.sampled_from([0.0, 0.0, 0.0004, -0.0007, 0.0031]),  # where in the spread it filled
    st.sampled_from(["binance", "binance", "bybit", "okx"]),
)
other_op = st.tuples(
    st.sampled_from(["flush", "flush", "sweep", "dup", "mark", "untracked"]),
    st.sampled_from(DTS),
    st.integers(0, 10_000),
)
ops_strategy = st.lists(st.one_of(event_op, event_op, other_op), min_size=8, max_size=80)


def run_sequence(
    ops: list[tuple[Any, ...]], symbols: tuple[str, ...], max_events: int, retention_ms: int
) -> None:
    config = ProcessorConfig(max_events=max_events, retention_ms=retention_ms)
    processor = LiquidationProcessor(config, epoch="test")
    for symbol in symbols:
        processor.track(symbol, START)
    model = {s: ModelStore(max_events, retention_ms) for s in symbols}
    recorder = Recorder()
    prices = dict(BASE)
    sent: list[LiquidationEvent] = []
    now = START

    def flush() -> None:
        recorder.take(processor.flush(now), now)
        # (a) after every flush, not only the last: each replica is the processor's state.
        for symbol in symbols:
            book = processor.books[symbol]
            for name, window in book.windows.items():
                state = recorder.states[heatmap_channel(symbol, name)]
                assert state.replica is not None
                assert_same_snapshot(
                    state.replica.snapshot(), window.snapshot(), f"{symbol} {name}"
                )
        assert_matches_brute_force(processor, model, now, density=False)

    for op in ops:
        kind = op[0]
        now += op[2]
        if kind == "event":
            _, index, _, move, side, notional, factor, lag, spread, exchange = op
            symbol = symbols[index % len(symbols)]
            base = BASE[symbol]
            # Bounded so a run of x3 moves stays a plausible price.
            prices[symbol] = min(max(prices[symbol] * math.exp(move), base / 20), base * 20)
            decimals = TICK_DECIMALS[symbol] + max(0, round(-math.log10(prices[symbol] / base)))
            price = round(prices[symbol] * (1 + spread), decimals)
            event = make_event(symbol, side, price, notional * factor, now - lag, exchange=exchange)
            applied = processor.apply(event, now)
            accepted = model[symbol].offer(event, now)
            assert (applied.event is not None) == accepted == bool(applied.messages), applied
            if applied.event is not None:  # the event as kept: the one held, with leverage
                assert key(applied.event) == key(event)
                assert applied.event in list(processor.books[symbol].store)
            recorder.take(applied.messages, now)
            sent.append(event)
        elif kind == "dup":
            if sent:  # a re-delivery: refused while the original is held, else new again
                event = sent[op[2] % len(sent)]
                messages = processor.apply(event, now).messages
                assert bool(messages) == model[event.symbol].offer(event, now)
                recorder.take(messages, now)
        elif kind == "untracked":
            before = processor.rejected
            assert (
                processor.apply(make_event(UNTRACKED, "long", 0.1, 500.0, now), now).messages == []
            )
            assert processor.rejected == before + 1
        elif kind == "sweep":
            processor.sweep(now)
            for store in model.values():
                store.sweep(now)
        elif kind == "mark":
            recorder.mark()
        else:
            flush()

    flush()
    # (a) at the end, with the density checked against a fresh KDE too, once every window
    # is due (the longest publishes every 30 s).
    now += (
        max(w.refresh_ms for b in processor.books.values() for w in b.windows.values())
        if any(b.windows for b in processor.books.values())
        else 0
    )
    flush()
    assert_matches_brute_force(processor, model, now, density=True)
    # What the run went through, for --hypothesis-show-statistics.
    note_event(f"epochs: {max((len(e) for e in recorder.epochs.values()), default=0)}")
    diffs = [
        msgspec.json.decode(m.header.data)
        for name, log in recorder.log.items()
        if name.startswith("heatmap:")
        for m in log
        if m.header.type == "diff"
    ]
    note_event(f"recentred: {any('reference_price' in d for d in diffs)}")
    note_event(f"bin removed: {any(b[3] == 0 for d in diffs for b in d.get('bins', []))}")
    pushed_out = sum(s.arrivals for s in model.values()) > sum(len(s.held) for s in model.values())
    note_event(f"store evictions: {pushed_out}")

    # Cluster ids are never reused across the epochs of a channel: alert memory and alert
    # ids key on them.
    for name, log in recorder.log.items():
        if name.startswith("heatmap:"):
            ids: dict[str, set[int]] = {}
            for m in log:
                clusters = msgspec.json.decode(m.header.data).get("clusters") or []
                ids.setdefault(m.header.epoch, set()).update(c["id"] for c in clusters)
            seen: set[int] = set()
            for epoch_ids in ids.values():
                assert not seen & epoch_ids, f"{name}: cluster ids reused across epochs"
                seen |= epoch_ids

    # (b): each remembered snapshot at seq S plus the diffs after it gives the state at T.
    checked = 0
    for name, frozen, position in recorder.marks:
        later = recorder.log[name][position:]
        if any(m.header.type == "snapshot" for m in later):
            continue  # history was reset by a new epoch; the client took that snapshot
        checked += bool(later)
        replica = HeatmapReplica(decode_snapshot(msgspec.Raw(frozen)))
        seq = replica.state.seq
        for message in later:
            assert message.header.seq == seq + 1
            seq = message.header.seq
            replica.apply_diff(message)
        _, symbol, window = name.split(":")
        assert_same_snapshot(
            replica.snapshot(), processor.books[symbol].windows[window].snapshot(), name
        )

    note_event(f"marks replayed: {min(checked, 1)}")
    # Every accepted event appeared once on its symbol's channel and once on `*`.
    per_channel = Counter(m.ch for m in recorder.liquidations)
    accepted = sum(store.arrivals for store in model.values())
    assert per_channel["liquidations:*"] == accepted
    assert sum(n for ch, n in per_channel.items() if ch != "liquidations:*") == accepted


# Found by the property test: a long window keeping arrivals (its pace), the axis moved,
# then the cap pushing a row out: taking the kept rows must not make the lattice from the
# store, which then held a row no window had taken yet (counted twice).
_STILL = ("event", 0, 0, 0.0, "long", 20.0, 1.0, 0, 0.0, "binance")
_TRIPLED = ("event", 0, 0, math.log(3.0), "long", 20.0, 1.0, 0, 0.0, "binance")
_KEPT_THEN_PUSHED_OUT = [
    *[_STILL] * 10,
    _TRIPLED,
    _TRIPLED,
    ("flush", 0, 0),
    _STILL,
    _STILL,
    ("event", 0, 0, 0.15, "long", 20.0, 1.0, 0, 0.0, "binance"),
]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(ops=_KEPT_THEN_PUSHED_OUT, symbols=("BTCUSDT",), max_events=2, retention_ms=90 * MINUTE)
@given(
    ops=ops_strategy,
    symbols=st.sampled_from([("BTCUSDT",), ("ADAUSDT",), ("BTCUSDT", "ADAUSDT")]),
    max_events=st.integers(2, 15),
    retention_ms=st.sampled_from([90 * MINUTE, 5 * HOUR, 30 * DAY]),
)
def test_stream_invariant_and_brute_force(
    ops: list[tuple[Any, ...]], symbols: tuple[str, ...], max_events: int, retention_ms: int
) -> None:
    run_sequence(ops, symbols, max_events, retention_ms)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(event_op, min_size=20, max_size=120), max_events=st.integers(3, 60))
def test_dense_bursts_in_one_symbol(ops: list[tuple[Any, ...]], max_events: int) -> None:
    # Events only, flushed at the end: many per bin, evictions and ageing between flushes.
    run_sequence(ops, ("BTCUSDT",), max_events, 2 * HOUR)


def test_epoch_change_and_recentre_on_the_stream() -> None:
    """A scripted path through a recentre (same epoch, new reference) and a new epoch.

    The reference follows the market price (an exponential average of liquidation
    prices): three fills at 64,000 drag it past a quarter of the range (2,250 from
    60,000), and one fill at 200,000 needs a bin width 2.5 times larger: a new epoch."""
    processor = LiquidationProcessor(ProcessorConfig(), epoch="test")
    processor.track("BTCUSDT", START)
    recorder = Recorder()
    now = START
    for price in (60_000.0, 60_100.0, 64_000.0, 64_000.0, 64_000.0, 200_000.0):
        now += 1_000
        recorder.take(
            processor.apply(make_event("BTCUSDT", "long", price, 50_000, now), now).messages, now
        )
        recorder.take(processor.flush(now), now)
    log = recorder.log[heatmap_channel("BTCUSDT", "1h")]
    kinds = [(m.header.type, m.header.seq) for m in log]
    # first event: snapshot at seq 0 of the first epoch, then one diff per flush
    assert kinds == [
        ("snapshot", 0),
        ("diff", 1),
        ("diff", 2),
        ("diff", 3),
        ("diff", 4),
        ("diff", 5),
        ("snapshot", 0),
        ("diff", 1),
    ]
    first_epoch, second_epoch = log[0].header.epoch, log[6].header.epoch
    assert first_epoch != second_epoch
    for quiet in (2, 3, 4):  # one or two fills at 64,000 do not move the axis
        assert "reference_price" not in msgspec.json.decode(log[quiet].header.data)
    recentred = msgspec.json.decode(log[5].header.data)
    assert recentred["reference_price"] == 62_640.0  # 62,638.3 snapped to the 20 grid
    fresh = decode_snapshot(log[6].header.data)
    assert fresh.bin_width == 100.0  # 0.05 % of 200,000
    assert fresh.statistics.event_count == 5  # the held events carry over into the new epoch
    assert [b[3] for b in fresh.bins] == [1, 1, 3]
    state = recorder.states[heatmap_channel("BTCUSDT", "1h")]
    assert state.replica is not None
    assert state.replica.snapshot().statistics.event_count == 6


# -- liquidation and alert channels -------------------------------------------------------


def test_liquidation_messages_numbered_per_channel() -> None:
    processor = LiquidationProcessor(ProcessorConfig(), epoch="e1")
    processor.track("BTCUSDT", START)
    processor.track("ETHUSDT", START)
    seen: list[tuple[str, int]] = []
    for i, symbol in enumerate(["BTCUSDT", "ETHUSDT", "BTCUSDT", "BTCUSDT", "ETHUSDT"]):
        price = 60_000.0 if symbol == "BTCUSDT" else 3_000.0
        messages = processor.apply(
            make_event(symbol, "short", price, 5_000, START + i), START + i
        ).messages
        liquidations = [m for m in messages if m.type == "liquidation"]
        assert [m.ch for m in liquidations] == [f"liquidations:{symbol}", "liquidations:*"]
        assert all(m.epoch == "e1" and m.data.symbol == symbol for m in liquidations)
        seen.extend((m.ch, m.seq) for m in liquidations)
    assert seen == [
        ("liquidations:BTCUSDT", 1), ("liquidations:*", 1),
        ("liquidations:ETHUSDT", 1), ("liquidations:*", 2),
        ("liquidations:BTCUSDT", 2), ("liquidations:*", 3),
        ("liquidations:BTCUSDT", 3), ("liquidations:*", 4),
        ("liquidations:ETHUSDT", 2), ("liquidations:*", 5),
    ]  # fmt: skip


def test_untracked_symbol_and_duplicate_are_rejected() -> None:
    processor = LiquidationProcessor(ProcessorConfig(), epoch="e1")
    processor.track("BTCUSDT", START)
    assert (
        processor.apply(make_event("ETHUSDT", "long", 3_000.0, 5_000, START), START).messages == []
    )
    assert "ETHUSDT" not in processor.books
    event = make_event("BTCUSDT", "long", 60_000.0, 5_000, START)
    assert processor.apply(event, START).messages
    assert processor.apply(event, START + 10).messages == []  # a re-delivery never double counts
    assert processor.rejected == 2
    processor.flush(START + 10)
    assert processor.books["BTCUSDT"].windows["1h"].statistics().event_count == 1


def test_a_late_liquidation_changes_only_the_windows_it_falls_in() -> None:
    """Long windows keep arrivals until they are due; one older than a window never
    enters it, and is no reason to send that window a diff: its stream is the same as
    without the late one."""

    def run(late: bool) -> LiquidationProcessor:
        processor = LiquidationProcessor(ProcessorConfig(), epoch="e1")
        processor.track("BTCUSDT", START - 31 * DAY)
        now = START
        processor.apply(make_event("BTCUSDT", "long", 60_000.0, 5_000, now), now)
        processor.flush(now)
        now += refresh_ms(WINDOWS["30d"])  # the `30d` window's pace: every window has published it
        processor.flush(now)
        now += 10  # the windows with a pace of their own published just now: not due
        if late:
            event = make_event("BTCUSDT", "short", 60_010.0, 7_000, now - 5 * HOUR)
            processor.apply(event, now)
        processor.flush(now)
        processor.flush(now + 30 * MINUTE)  # every window due again
        return processor

    with_late, without = (run(late).books["BTCUSDT"].windows for late in (True, False))
    seqs = {name: (with_late[name].seq, without[name].seq) for name in WINDOWS}
    for name in ("5m", "15m", "1h", "4h"):
        assert seqs[name][0] == seqs[name][1], f"{name}: expected the same seqs, saw {seqs}"
    for name in ("12h", "24h", "3d", "7d", "30d"):
        counts = (with_late[name].statistics().event_count, without[name].statistics().event_count)
        assert counts == (2, 1), f"{name}: expected the late one in, saw {counts}"


def test_leverage_and_tier_filled_once_a_price_path_exists() -> None:
    processor = LiquidationProcessor(ProcessorConfig(), epoch="e1")
    processor.track("BTCUSDT", START)
    data = []
    for i, (side, price) in enumerate(
        [("long", 60_000.0), ("short", 59_000.0), ("long", 58_800.0), ("short", 60_500.0)]
    ):
        now = START + i * 1_000
        messages = processor.apply(make_event("BTCUSDT", side, price, 20_000, now), now).messages
        data.append(messages[0].data)
    # The estimate needs two earlier prices on the path.
    assert data[0].est_leverage is None and data[0].tier is None
    assert data[1].est_leverage is None and data[1].tier is None
    # A long at 58,800 after a high of 60,000: move 2 %, leverage 1 / (0.02 + 0.004).
    assert data[2].est_leverage == round(1 / ((60_000 - 58_800) / 60_000 + 0.004), 2)
    assert data[2].tier == tier_of(data[2].est_leverage) == "25-50x"
    assert data[3].est_leverage is not None and data[3].tier == tier_of(data[3].est_leverage)
    held = list(processor.events("BTCUSDT", 0))
    assert held[0].est_leverage == data[3].est_leverage  # newest first, as stored


def test_large_liquidation_alert_on_symbol_and_any_channel() -> None:
    processor = LiquidationProcessor(ProcessorConfig(), epoch="e1")
    processor.track("ETHUSDT", START)
    quiet = processor.apply(make_event("ETHUSDT", "long", 3_000.0, 999_000, START), START).messages
    assert [m.type for m in quiet] == ["liquidation", "liquidation"]
    big = processor.apply(
        make_event("ETHUSDT", "long", 3_000.0, 0, START + 1, quantity=333.334), START + 1
    ).messages
    alerts = [m for m in big if m.type == "alert"]
    assert [(m.ch, m.seq) for m in alerts] == [("alerts:ETHUSDT", 1), ("alerts:*", 1)]
    alert = alerts[0].data
    assert isinstance(alert, Alert)
    assert alert.kind == "large_liquidation" and alert.symbol == "ETHUSDT"
    assert alert.notional == 3_000.0 * 333.334 >= 1_000_000
    assert alerts[1].data == alert


# -- the bundled replay against its ground truth ------------------------------------------


Replayed = tuple[LiquidationProcessor, list[Alert], dict[str, Any]]


def replay(config: ProcessorConfig, flush_ms: int) -> Replayed:
    """The bundled session through the live parser into the processor, now = receive time."""
    expected = json.loads(EXPECTED.read_text())
    processor = LiquidationProcessor(config, epoch="replay")
    for symbol in expected["per_symbol"]:
        processor.track(symbol, START)
    alerts: list[Alert] = []
    last_flush = now = 0
    for line in read_replay(DEMO):
        parsed = parse_frame(line.raw)
        assert parsed.event is not None, parsed
        now = line.t
        messages = processor.apply(parsed.event, now).messages
        if now - last_flush >= flush_ms:
            messages += processor.flush(now)
            last_flush = now
        alerts.extend(m.data for m in messages if m.ch == "alerts:*")
    alerts.extend(m.data for m in processor.flush(now) if m.ch == "alerts:*")
    return processor, alerts, expected


@pytest.fixture(scope="module")
def replayed() -> Replayed:
    # Flushing every 30 s rather than every 50 ms: what is checked here (statistics, event
    # alerts) does not depend on the cadence, and each flush recomputes 45 densities.
    return replay(ProcessorConfig(), flush_ms=30_000)


def test_replay_totals_match_ground_truth(
    replayed: Replayed,
) -> None:
    processor, _, expected = replayed
    assert processor.rejected == 0
    for symbol, truth in expected["per_symbol"].items():
        stats = processor.books[symbol].windows["1h"].snapshot().statistics
        assert stats.event_count == truth["events"], symbol
        for field in ("total_notional", "long_notional", "short_notional"):
            assert math.isclose(getattr(stats, field), truth[field], rel_tol=1e-9), (symbol, field)
        assert len(processor.books[symbol].store) == truth["events"]


@pytest.fixture(scope="module")
def replayed_without_cooldown() -> Replayed:
    return replay(ProcessorConfig(alerts=AlertThresholds(cooldown_seconds=0)), flush_ms=30_000)


def test_replay_large_liquidations_alerted(
    replayed_without_cooldown: Replayed,
) -> None:
    # Without the cooldown (which holds back a second large liquidation of a side within
    # 5 minutes unless riskier or twice as big), every one of at least 1M alerts.
    _, alerts, expected = replayed_without_cooldown
    large = [a for a in alerts if a.kind == "large_liquidation"]
    for truth in expected["events_ge_1m"]:
        notional = float(truth["notional"])
        assert any(
            a.symbol == truth["symbol"]
            and a.side == truth["side"]
            and math.isclose(a.notional, notional, rel_tol=1e-9)
            and a.time <= truth["E"]
            for a in large
        ), truth
    # ids are unique: the same liquidation never alerts twice
    assert len({a.id for a in large}) == len(large)


def missed_cascades(alerts: list[Alert], expected: dict[str, Any]) -> list[dict[str, Any]]:
    """Multi-symbol ground-truth cascades with no cascade alert of their side, on one of
    their symbols, within their time range (30 s of slack: the cascade window)."""
    cascades = [a for a in alerts if a.kind == "cascade"]
    slack = 30_000
    return [
        truth
        for truth in expected["cascades_ground_truth"]
        if len(truth["symbols"]) >= 2
        and not any(
            a.side == truth["side"]
            and a.symbol in truth["symbols"]
            and truth["start_ms"] - slack <= a.time <= truth["end_ms"] + slack
            for a in cascades
        )
    ]


def test_replay_cascades_alerted_within_ground_truth_windows(replayed: Replayed) -> None:
    # With the default 18 events per 30 s (normal times reach 19 at most, cascades 23-29),
    # every ground-truth cascade alerts and most cascade alerts are real cascades.
    _, alerts, expected = replayed
    assert missed_cascades(alerts, expected) == []
    cascades = [a for a in alerts if a.kind == "cascade"]
    inside = [
        a
        for a in cascades
        if any(
            a.side == t["side"] and t["start_ms"] - 30_000 <= a.time <= t["end_ms"] + 30_000
            for t in expected["cascades_ground_truth"]
        )
    ]
    assert len(inside) >= 0.8 * len(cascades)


def test_two_new_epochs_in_the_same_millisecond_have_different_names() -> None:
    # Were both named after `now`, a client resuming from (first epoch, seq 1) would take
    # the third epoch's diffs as the continuation of its own state.
    processor = LiquidationProcessor(ProcessorConfig(), epoch="test")
    processor.track("BTCUSDT", START)
    recorder = Recorder()  # asserts that no epoch is reused on a channel
    # back at 60,000, the market price needs a few fills to fall far enough for a new epoch
    prices = [60_000.0, 200_000.0] + [60_000.0] * 8
    for i, price in enumerate(prices):
        event = make_event("BTCUSDT", "long", price, 10_000, START + i)
        recorder.take(processor.apply(event, START).messages, START)
        recorder.take(processor.flush(START), START)
    assert len(recorder.epochs[heatmap_channel("BTCUSDT", "1h")]) == 3


def test_clusters_of_a_new_epoch_alert_as_new() -> None:
    # Cluster ids restarting at 1 in a new epoch made its clusters look already alerted.
    # (No cooldown: it would hold back the second epoch's cluster, as risky as the first's.)
    config = ProcessorConfig(alerts=AlertThresholds(cooldown_seconds=0))
    processor = LiquidationProcessor(config, epoch="test")
    processor.track("BTCUSDT", START)
    now = START
    alerts: dict[str, list[Alert]] = {}
    for epoch, prices in (("first", [60_000.0, 60_010.0, 52_000.0]), ("second", [200_000.0])):
        for price in prices:
            now += 1_000
            messages = processor.apply(
                make_event("BTCUSDT", "long", price, 50_000, now), now
            ).messages
            messages += processor.flush(now)
            alerts.setdefault(epoch, []).extend(
                m.data for m in messages if m.ch == "alerts:*" and m.data.kind == "cluster_new"
            )
    assert alerts["first"] and alerts["second"]
    assert alerts["second"][0].price == 200_000.0
    assert not {a.id for a in alerts["first"]} & {a.id for a in alerts["second"]}
