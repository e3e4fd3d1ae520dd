"""The per-symbol event store: count bound, retention, time order, duplicates, arrival
numbers, loading a log back."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.analytics.rows import Named
from hub.analytics.store import DEDUP_HORIZON_MS, MAX_AHEAD_MS, EventStore
from hub.models import LiquidationEvent, Side

HOUR = 3_600_000
DAY = 24 * HOUR


def ev(
    time: int, price: float = 100.0, quantity: float = 1.0, side: Side = "long"
) -> LiquidationEvent:
    return LiquidationEvent("binance", "BTCUSDT", side, price, quantity, price * quantity, time)


def offer(store: EventStore, event: LiquidationEvent, now: int) -> list[LiquidationEvent] | None:
    """What the processor does: `add` only what `accepts` allowed; None when refused, else
    the events the cap pushed out."""
    if not store.accepts(event, now):
        return None
    return store.events(store.add(event)[1])


def times(store: EventStore) -> list[int]:
    return [e.time for e in store]


def test_count_bound_pushes_out_the_oldest() -> None:
    store = EventStore("BTCUSDT", max_events=3, retention_ms=HOUR)
    events = [ev(t) for t in (10, 20, 30, 40, 50)]
    pushed = [offer(store, e, 60) for e in events]
    assert pushed == [[], [], [], [events[0]], [events[1]]]
    assert times(store) == [30, 40, 50]
    assert len(store) == 3
    assert store.newest_time == 50
    assert [e.time for e in store.newest_first(0)] == [50, 40, 30]


def test_retention_sweep_drops_old_events_oldest_first() -> None:
    store = EventStore("BTCUSDT", max_events=100, retention_ms=1_000)
    for t in (100, 400, 900, 1_500, 2_100):
        assert offer(store, ev(t), t) == []  # each arrives when it happens
    assert store.sweep(1_450).time.tolist() == [100, 400]
    assert times(store) == [900, 1_500, 2_100]
    assert len(store.sweep(1_450)) == 0
    assert store.sweep(2_000).time.tolist() == [900]
    assert store.sweep(10_000).time.tolist() == [1_500, 2_100]
    assert len(store) == 0 and store.newest_time is None


def test_retention_sweep_keeps_an_event_exactly_at_the_cutoff() -> None:
    store = EventStore("BTCUSDT", max_events=10, retention_ms=1_000)
    offer(store, ev(1_000), 1_000)
    assert len(store.sweep(2_000)) == 0  # age exactly 1,000 ms is not "older than"
    assert len(store.sweep(2_001)) == 1


def test_accepts_refuses_past_retention() -> None:
    store = EventStore("BTCUSDT", max_events=10, retention_ms=1_000)
    assert not store.accepts(ev(999), 2_000)
    assert store.accepts(ev(1_000), 2_000)


def test_out_of_order_insert_keeps_time_order_and_ties_in_arrival_order() -> None:
    store = EventStore("BTCUSDT", max_events=10, retention_ms=HOUR)
    first_at_20 = ev(20, price=1.0)
    second_at_20 = ev(20, price=2.0)
    for e in (ev(10), ev(30), first_at_20, ev(5), ev(40), second_at_20, ev(25)):
        assert offer(store, e, 50) == []
    assert times(store) == [5, 10, 20, 20, 25, 30, 40]
    held = list(store)
    assert held[2] == first_at_20 and held[3] == second_at_20
    # Arrival numbers follow arrival, whatever the place in time order.
    assert store.rows().arrival.tolist() == [4, 1, 3, 6, 7, 2, 5]


def test_duplicates_are_refused_until_the_original_is_gone() -> None:
    store = EventStore("BTCUSDT", max_events=2, retention_ms=HOUR)
    original = ev(10, price=100.0, quantity=1.5)
    assert offer(store, original, 10) == []
    copy = ev(10, price=100.0, quantity=1.5)  # equal, not the same object: a re-delivery
    assert store.is_duplicate(copy)
    assert not store.accepts(copy, 10)
    # Any differing identity field makes it another liquidation.
    assert store.accepts(ev(10, price=100.0, quantity=1.6), 10)
    assert store.accepts(ev(10, price=100.1, quantity=1.5), 10)
    assert store.accepts(ev(11, price=100.0, quantity=1.5), 11)
    assert store.accepts(ev(10, price=100.0, quantity=1.5, side="short"), 10)
    # Once pushed out, the key is released: the store is the only memory of what it held.
    offer(store, ev(20), 20)
    assert offer(store, ev(30), 30) == [original]
    assert not store.is_duplicate(copy)


def test_full_store_refuses_an_event_older_than_all_it_holds() -> None:
    store = EventStore("BTCUSDT", max_events=3, retention_ms=HOUR)
    for t in (100, 200, 300):
        offer(store, ev(t), 300)
    assert not store.accepts(ev(99), 300)  # it would be pushed out at once
    assert offer(store, ev(100, price=7.0), 300) is not None  # a tie with the oldest is kept
    assert times(store) == [100, 200, 300]
    assert [e.price for e in store] == [7.0, 100.0, 100.0]


def test_a_store_with_room_takes_an_older_event() -> None:
    store = EventStore("BTCUSDT", max_events=3, retention_ms=HOUR)
    offer(store, ev(100), 100)
    assert offer(store, ev(50), 100) == []
    assert times(store) == [50, 100]


def test_accepts_refuses_prices_the_grid_cannot_place() -> None:
    store = EventStore("BTCUSDT", max_events=3, retention_ms=HOUR)
    for price, notional in ((0.0, 1.0), (-1.0, 1.0), (math.nan, 1.0), (math.inf, 1.0)):
        event = LiquidationEvent("binance", "X", "long", price, 1.0, notional, 10)
        assert not store.accepts(event, 10)
    inf_notional = LiquidationEvent("binance", "X", "long", 1e200, 1e200, math.inf, 10)
    assert not store.accepts(inf_notional, 10)


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"), st.integers(0, 60), st.sampled_from([1.0, 2.0]), st.integers(0, 5)
        ),
        st.tuples(st.just("sweep"), st.integers(0, 10), st.just(0.0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(ops=operations, max_events=st.integers(1, 6), retention=st.integers(5, 40))
def test_matches_a_sorted_list_model(
    ops: list[tuple[str, int, float, int]], max_events: int, retention: int
) -> None:
    store = EventStore("BTCUSDT", max_events, retention)
    model: list[tuple[int, int, LiquidationEvent]] = []  # (time, arrival, event)
    now = 0
    for arrival, (kind, value, price, advance) in enumerate(ops):
        now += advance
        if kind == "sweep":
            now += value
            gone = store.events(store.sweep(now))
            expected_gone = [e for t, _, e in model if t < now - retention]
            model = [item for item in model if item[0] >= now - retention]
            assert gone == expected_gone
            continue
        event = ev(now - value, price=price)
        key = (event.time, event.price)
        duplicate = any((e.time, e.price) == key for _, _, e in model)
        too_old = event.time < now - retention
        full_and_oldest = len(model) >= max_events and event.time < model[0][0]
        expect = not (duplicate or too_old or full_and_oldest)
        assert store.accepts(event, now) == expect
        if expect:
            pushed = store.events(store.add(event)[1])
            model.append((event.time, arrival, event))
            model.sort(key=lambda item: item[:2])
            cut = max(0, len(model) - max_events)
            assert pushed == [e for _, _, e in model[:cut]]
            del model[:cut]
        assert list(store) == [e for _, _, e in model]
        assert all(a.time <= b.time for a, b in zip(list(store), list(store)[1:], strict=False))


def test_a_late_duplicate_older_than_the_hash_horizon_is_still_refused() -> None:
    store = EventStore("BTCUSDT", max_events=100, retention_ms=DAY)
    old = ev(1_000, price=50.0)
    offer(store, old, 1_000)
    later = 1_000 + 3 * DEDUP_HORIZON_MS  # its hash is gone: found in the columns
    offer(store, ev(later), later)
    assert store.is_duplicate(old) and not store.accepts(old, later)
    assert store.accepts(ev(1_000, price=51.0), later)
    assert store.accepts(LiquidationEvent("okx", "BTCUSDT", "long", 50.0, 1.0, 50.0, 1_000), later)


def test_refuses_an_event_far_in_the_future_and_an_absurd_notional() -> None:
    store = EventStore("BTCUSDT", max_events=10, retention_ms=HOUR)
    assert store.accepts(ev(5_000 + MAX_AHEAD_MS), 5_000)
    assert not store.accepts(ev(5_001 + MAX_AHEAD_MS), 5_000)
    assert not store.accepts(ev(10, price=1e6, quantity=1e5), 10)  # 1e11 of quote currency


def test_load_takes_a_log_in_any_order_and_carries_on_its_arrival_numbers() -> None:
    source = EventStore("BTCUSDT", max_events=100, retention_ms=HOUR)
    events = [ev(t, price=float(t)) for t in (30, 10, 20, 20, 40)]
    events[3] = ev(20, price=99.0)
    for e in events:
        offer(source, e, 50)
    rows = source.rows()
    backwards = Named(rows.take(slice(None, None, -1)), source.exchanges)
    loaded = EventStore("BTCUSDT", max_events=100, retention_ms=HOUR)
    loaded.load(backwards)
    assert list(loaded) == list(source)
    assert loaded.rows().arrival.tolist() == rows.arrival.tolist()
    assert loaded.is_duplicate(events[0]) and not loaded.accepts(events[4], 50)
    assert loaded.add(ev(45))[0] == 6
