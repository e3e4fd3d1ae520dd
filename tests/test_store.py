"""The per-symbol event store: count bound, retention, time order, duplicates."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.analytics.store import EventStore
from hub.models import LiquidationEvent, Side

HOUR = 3_600_000


def ev(
    time: int, price: float = 100.0, quantity: float = 1.0, side: Side = "long"
) -> LiquidationEvent:
    return LiquidationEvent("binance", "BTCUSDT", side, price, quantity, price * quantity, time)


def offer(store: EventStore, event: LiquidationEvent, now: int) -> list[LiquidationEvent] | None:
    """What the processor does: `add` only what `accepts` allowed; None when refused."""
    return store.add(event) if store.accepts(event, now) else None


def times(store: EventStore) -> list[int]:
    return [e.time for e in store]


def test_count_bound_pushes_out_the_oldest() -> None:
    store = EventStore(max_events=3, retention_ms=HOUR)
    events = [ev(t) for t in (10, 20, 30, 40, 50)]
    pushed = [offer(store, e, 60) for e in events]
    assert pushed == [[], [], [], [events[0]], [events[1]]]
    assert times(store) == [30, 40, 50]
    assert len(store) == 3
    assert store.newest is events[4]
    assert [e.time for e in reversed(store)] == [50, 40, 30]


def test_retention_sweep_drops_old_events_oldest_first() -> None:
    store = EventStore(max_events=100, retention_ms=1_000)
    for t in (100, 400, 900, 1_500, 2_100):
        assert offer(store, ev(t), t) == []  # each arrives when it happens
    assert [e.time for e in store.sweep(1_450)] == [100, 400]
    assert times(store) == [900, 1_500, 2_100]
    assert store.sweep(1_450) == []
    assert [e.time for e in store.sweep(2_000)] == [900]
    assert [e.time for e in store.sweep(10_000)] == [1_500, 2_100]
    assert len(store) == 0 and store.newest is None


def test_retention_sweep_keeps_an_event_exactly_at_the_cutoff() -> None:
    store = EventStore(max_events=10, retention_ms=1_000)
    offer(store, ev(1_000), 1_000)
    assert store.sweep(2_000) == []  # age exactly 1,000 ms is not "older than"
    assert len(store.sweep(2_001)) == 1


def test_accepts_refuses_past_retention() -> None:
    store = EventStore(max_events=10, retention_ms=1_000)
    assert not store.accepts(ev(999), 2_000)
    assert store.accepts(ev(1_000), 2_000)


def test_out_of_order_insert_keeps_time_order_and_ties_in_arrival_order() -> None:
    store = EventStore(max_events=10, retention_ms=HOUR)
    first_at_20 = ev(20, price=1.0)
    second_at_20 = ev(20, price=2.0)
    for e in (ev(10), ev(30), first_at_20, ev(5), ev(40), second_at_20, ev(25)):
        assert offer(store, e, 50) == []
    assert times(store) == [5, 10, 20, 20, 25, 30, 40]
    held = list(store)
    assert held[2] is first_at_20 and held[3] is second_at_20


def test_duplicates_are_refused_until_the_original_is_gone() -> None:
    store = EventStore(max_events=2, retention_ms=HOUR)
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
    store = EventStore(max_events=3, retention_ms=HOUR)
    for t in (100, 200, 300):
        offer(store, ev(t), 300)
    assert not store.accepts(ev(99), 300)  # it would be pushed out at once
    assert offer(store, ev(100, price=7.0), 300) is not None  # a tie with the oldest is kept
    assert times(store) == [100, 200, 300]
    assert [e.price for e in store] == [7.0, 100.0, 100.0]


def test_a_store_with_room_takes_an_older_event() -> None:
    store = EventStore(max_events=3, retention_ms=HOUR)
    offer(store, ev(100), 100)
    assert offer(store, ev(50), 100) == []
    assert times(store) == [50, 100]


def test_accepts_refuses_prices_the_grid_cannot_place() -> None:
    store = EventStore(max_events=3, retention_ms=HOUR)
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
    store = EventStore(max_events, retention)
    model: list[tuple[int, int, LiquidationEvent]] = []  # (time, arrival, event)
    now = 0
    for arrival, (kind, value, price, advance) in enumerate(ops):
        now += advance
        if kind == "sweep":
            now += value
            gone = store.sweep(now)
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
            pushed = store.add(event)
            model.append((event.time, arrival, event))
            model.sort(key=lambda item: item[:2])
            cut = max(0, len(model) - max_events)
            assert pushed == [e for _, _, e in model[:cut]]
            del model[:cut]
        assert list(store) == [e for _, _, e in model]
        assert all(a.time <= b.time for a, b in zip(list(store), list(store)[1:], strict=False))
