"""The predicted-levels model and its channel stream, pure: no clock, no sockets."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.analytics.candles import MarkPrices
from hub.analytics.predicted import PredictedBook, PredictedConfig, liquidation_price, long_share
from hub.analytics.predicted_stream import PredictedProcessor
from hub.config import load_settings
from hub.errors import ConfigError
from hub.models import MarkPrice, MarkPriceUpdate, OpenInterestUpdate, PredictedSnapshot

T0 = 1_800_000_000_000
CONFIG = PredictedConfig(min_notional=1.0)


def book_with_one_rise(
    entry: float, rise: float, share_price: float | None = None, config: PredictedConfig = CONFIG
) -> PredictedBook:
    book = PredictedBook("BTCUSDT", config, "e")
    book.on_open_interest("binance", T0, 1_000.0, entry)
    book.on_open_interest("binance", T0 + 10_000, 1_000.0 + rise, share_price or entry)
    return book


def test_a_rise_in_open_interest_opens_one_level_per_side_and_tier() -> None:
    book = book_with_one_rise(60_000.0, 10.0)
    levels = book.open_levels()
    assert {(lv.side, lv.leverage) for lv in levels} == {
        (side, lev) for side in ("long", "short") for lev in (10.0, 25.0, 50.0, 100.0)
    }
    # no price move: half each side; 10 BTC at 60,000 = 600,000 spread by the tier shares
    assert sum(lv.notional for lv in levels) == pytest.approx(600_000.0, rel=1e-6)
    ten_x_long = next(lv for lv in levels if lv.side == "long" and lv.leverage == 10.0)
    assert ten_x_long.notional == pytest.approx(600_000.0 * 0.5 * 0.30, rel=1e-6)
    expected = liquidation_price(60_000.0, "long", 10.0, 0.005)  # 54,300
    width = book.grid.bin_width  # type: ignore[union-attr]
    assert ten_x_long.price <= expected < ten_x_long.price + width
    assert ten_x_long.opened == T0 + 10_000


def test_the_first_update_is_a_baseline_and_a_fall_scales_every_level() -> None:
    book = PredictedBook("BTCUSDT", CONFIG, "e")
    book.on_open_interest("binance", T0, 1_000.0, 60_000.0)
    assert book.open_levels() == []
    book.on_open_interest("binance", T0 + 1_000, 1_100.0, 60_000.0)
    before = {(lv.side, lv.leverage): lv.notional for lv in book.open_levels()}
    book.on_open_interest("binance", T0 + 2_000, 990.0, 60_000.0)  # 10 % of 1,100 closed
    after = {(lv.side, lv.leverage): lv.notional for lv in book.open_levels()}
    assert after.keys() == before.keys()
    for key, notional in before.items():
        assert after[key] == pytest.approx(notional * 0.9, rel=1e-6), key


def test_a_repeated_or_late_answer_changes_nothing() -> None:
    book = book_with_one_rise(60_000.0, 10.0)
    levels = book.open_levels()
    book.on_open_interest("binance", T0 + 10_000, 2_000.0, 60_000.0)
    book.on_open_interest("binance", T0 + 5_000, 2_000.0, 60_000.0)
    assert book.open_levels() == levels


def test_rising_price_puts_new_positions_on_the_long_side_and_taker_flow_wins() -> None:
    assert long_share(0.002, 0.002, None) == pytest.approx(0.5 + 0.5 * math.tanh(1.0))
    assert long_share(-0.01, 0.002, None) < 0.01
    assert long_share(-0.01, 0.002, 0.7) == 0.7
    book = book_with_one_rise(60_000.0, 10.0, share_price=60_300.0)  # +0.5 %
    longs = sum(lv.notional for lv in book.open_levels() if lv.side == "long")
    shorts = sum(lv.notional for lv in book.open_levels() if lv.side == "short")
    assert longs > 10 * shorts, (longs, shorts)


def test_entry_is_the_mean_of_the_prices_seen_over_the_interval() -> None:
    config = PredictedConfig(leverage_shares=((10.0, 1.0),), min_notional=1.0)
    book = PredictedBook("BTCUSDT", config, "e")
    book.on_open_interest("binance", T0, 1_000.0, 60_000.0)
    for i, price in enumerate((60_100.0, 60_200.0)):
        book.on_price(T0 + 1_000 * (i + 1), price)
    book.on_open_interest("binance", T0 + 3_000, 1_001.0, 60_300.0)
    long_level = next(lv for lv in book.open_levels() if lv.side == "long")
    entry = (60_100.0 + 60_200.0 + 60_300.0) / 3
    width = book.grid.bin_width  # type: ignore[union-attr]
    assert (
        long_level.price <= liquidation_price(entry, "long", 10.0, 0.005) < long_level.price + width
    )


def test_a_crossed_level_moves_to_consumed_with_its_time() -> None:
    book = book_with_one_rise(60_000.0, 10.0)
    hundred_x = next(lv for lv in book.open_levels() if lv.side == "long" and lv.leverage == 100)
    book.on_price(T0 + 20_000, hundred_x.price + 1.0)  # into its bin
    assert all(not (lv.side == "long" and lv.leverage == 100) for lv in book.open_levels())
    [consumed] = book.consumed_levels()
    assert (consumed.price, consumed.side, consumed.leverage) == (hundred_x.price, "long", 100)
    assert consumed.consumed == T0 + 20_000
    assert consumed.notional == hundred_x.notional


def test_a_level_already_reached_when_it_would_open_is_not_opened() -> None:
    config = PredictedConfig(leverage_shares=((100.0, 1.0),), min_notional=1.0)
    book = PredictedBook("BTCUSDT", config, "e")
    book.on_open_interest("binance", T0, 1_000.0, 60_000.0)
    book.on_price(T0 + 1_000, 60_000.0)
    # entry is the mean (63,000); the short at 100x sits at 63,315: below the price now
    book.on_open_interest("binance", T0 + 2_000, 1_001.0, 66_000.0)
    sides = {lv.side for lv in book.open_levels()}
    assert sides == {"long"}


def test_levels_decay_by_half_per_half_life_in_steps() -> None:
    config = PredictedConfig(half_life_ms=60_000, decay_step_ms=10_000, min_notional=1.0)
    book = book_with_one_rise(60_000.0, 10.0, config=config)
    total = sum(lv.notional for lv in book.open_levels())
    book.advance(T0 + 10_000 + 5_000)  # under one step: nothing yet
    assert sum(lv.notional for lv in book.open_levels()) == pytest.approx(total)
    book.advance(T0 + 10_000 + 60_000)
    assert sum(lv.notional for lv in book.open_levels()) == pytest.approx(total / 2, rel=1e-4)


def test_small_levels_expire_and_the_largest_are_kept() -> None:
    config = PredictedConfig(min_notional=50_000.0, max_levels=2)
    book = book_with_one_rise(60_000.0, 10.0, config=config)
    levels = book.open_levels()
    assert len(levels) == 2
    assert {lv.leverage for lv in levels} <= {10.0, 25.0}  # the 30 % tiers
    assert book.expired == 6


def test_a_distant_price_starts_a_new_epoch_on_a_fresh_grid() -> None:
    book = book_with_one_rise(60_000.0, 10.0)
    epoch = book.epoch
    book.on_price(T0 + 20_000, 200_000.0)
    assert book.epoch != epoch
    assert book.open_levels() == [] and book.consumed_levels() == []
    assert book.grid.bin_width == 100.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("shares", "mmr", "problem"),
    [
        ((), 0.005, "at least one"),
        (((10.0, 0.5),), 0.005, "add up to 1"),
        (((10.0, 1.2), (25.0, -0.2)), 0.005, "negative"),
        (((200.0, 1.0),), 0.004, "within 0.2 %"),
    ],
)
def test_a_config_that_cannot_work_is_refused(
    shares: tuple[tuple[float, float], ...], mmr: float, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        PredictedConfig(leverage_shares=shares, maintenance_margin=mmr).check()


def test_bad_inputs_are_counted_not_raised() -> None:
    book = PredictedBook("BTCUSDT", CONFIG, "e")
    book.on_price(T0, math.nan)
    book.on_price(T0, -1.0)
    book.on_open_interest("binance", T0, 5.0)  # no price known yet
    book.on_open_interest("binance", T0, math.inf, 60_000.0)
    assert book.rejected == 4
    assert book.open_levels() == []


# -- properties --------------------------------------------------------------------------

prices = st.floats(0.5, 2.0)  # relative to 60,000
steps = st.lists(
    st.tuples(st.sampled_from(["price", "oi", "advance"]), prices, st.floats(-50.0, 50.0)),
    min_size=1,
    max_size=40,
)
leverages = st.lists(
    st.sampled_from([3.0, 5.0, 10.0, 20.0, 25.0, 50.0, 75.0, 100.0]),
    min_size=1,
    max_size=4,
    unique=True,
)


def tier_config(levs: list[float], mmr: float) -> PredictedConfig:
    share = 1.0 / len(levs)
    return PredictedConfig(
        leverage_shares=tuple((lev, share) for lev in levs),
        maintenance_margin=mmr,
        min_notional=1.0,
        half_life_ms=120_000,
        decay_step_ms=1_000,
    )


@settings(max_examples=150, deadline=None)
@given(
    entry=st.floats(0.001, 1e6),
    rise=st.floats(0.001, 1e4),
    move=st.floats(-0.004, 0.004),
    levs=leverages,
    mmr=st.floats(0.001, 0.0075),
)
def test_long_levels_lie_below_the_entry_and_short_levels_above(
    entry: float, rise: float, move: float, levs: list[float], mmr: float
) -> None:
    config = tier_config(levs, mmr)
    book = PredictedBook("X", config, "e")
    book.on_open_interest("binance", T0, 1e6, entry)
    book.on_open_interest("binance", T0 + 1_000, 1e6 + rise, entry * (1 + move))
    width = book.grid.bin_width  # type: ignore[union-attr]
    mean_entry = entry * (1 + move)  # the only price seen in the interval
    for level in book.open_levels():
        if level.side == "long":
            assert level.price + width <= mean_entry * (1 + 1e-9), level
        else:
            assert level.price > mean_entry, level


@settings(max_examples=150, deadline=None)
@given(steps=steps, levs=leverages)
def test_open_levels_are_never_crossed_and_crossed_ones_are_consumed(
    steps: list[tuple[str, float, float]], levs: list[float]
) -> None:
    book = PredictedBook("BTCUSDT", tier_config(levs, 0.005), "e")
    oi, time = 1_000.0, T0
    book.on_open_interest("binance", time, oi, 60_000.0)
    for kind, relative, change in steps:
        time += 1_000
        price = 60_000.0 * relative
        before = {(lv.side, lv.leverage, lv.price) for lv in book.open_levels()}
        epoch = book.epoch
        if kind == "price":
            book.on_price(time, price)
        elif kind == "oi":
            oi = max(0.0, oi + change)
            book.on_open_interest("binance", time, oi, price)
        else:
            book.advance(time)
            continue
        width = book.grid.bin_width  # type: ignore[union-attr]
        for level in book.open_levels():
            if level.side == "long":
                assert price >= level.price + width - 1e-6, (price, level)
            else:
                assert price < level.price + 1e-6, (price, level)
        if book.epoch == epoch:
            gone = before - {(lv.side, lv.leverage, lv.price) for lv in book.open_levels()}
            consumed = {
                (c.side, c.leverage, c.price) for c in book.consumed_levels() if c.consumed == time
            }
            for side, leverage, level_price in gone:
                reached = price < level_price + width if side == "long" else price >= level_price
                if reached:
                    assert (side, leverage, level_price) in consumed


@settings(max_examples=100, deadline=None)
@given(gaps=st.lists(st.integers(0, 200_000), min_size=1, max_size=30), levs=leverages)
def test_decay_never_raises_a_level(gaps: list[int], levs: list[float]) -> None:
    book = PredictedBook("BTCUSDT", tier_config(levs, 0.005), "e")
    book.on_open_interest("binance", T0, 1_000.0, 60_000.0)
    book.on_open_interest("binance", T0 + 1, 1_100.0, 60_000.0)
    time = T0 + 1
    previous = {(lv.side, lv.leverage, lv.price): lv.notional for lv in book.open_levels()}
    for gap in gaps:
        time += gap
        book.advance(time)
        now = {(lv.side, lv.leverage, lv.price): lv.notional for lv in book.open_levels()}
        assert now.keys() <= previous.keys()
        for key, notional in now.items():
            assert notional <= previous[key], key
        previous = now


def apply(snapshot: PredictedSnapshot, data: dict[str, object], seq: int) -> None:
    snapshot.seq = seq
    snapshot.time = data["time"]  # type: ignore[assignment]
    if data.get("levels") is not None:
        snapshot.levels = data["levels"]  # type: ignore[assignment]
    if data.get("consumed") is not None:
        snapshot.consumed = data["consumed"]  # type: ignore[assignment]
    if data.get("reference_price") is not None:
        snapshot.reference_price = data["reference_price"]  # type: ignore[assignment]
    if data.get("mark") is not None:
        snapshot.mark = data["mark"]  # type: ignore[assignment]


@settings(max_examples=100, deadline=None)
@given(steps=steps, flush_every=st.integers(1, 4))
def test_a_snapshot_plus_the_diffs_after_it_is_the_later_snapshot(
    steps: list[tuple[str, float, float]], flush_every: int
) -> None:
    marks = MarkPrices()
    processor = PredictedProcessor(tier_config([10.0, 50.0], 0.005), "e", marks)
    processor.track("BTCUSDT", T0)
    replica: PredictedSnapshot | None = None
    oi, time = 1_000.0, T0
    for i, (kind, relative, change) in enumerate(steps):
        time += 3_000
        if kind == "oi":
            oi = max(0.0, oi + change)
            processor.apply_open_interest(
                OpenInterestUpdate("binance", "BTCUSDT", time, oi, 60_000.0 * relative)
            )
        else:
            update = MarkPriceUpdate("binance", "BTCUSDT", time, 60_000.0 * relative)
            processor.apply_price(update)
            marks.apply(update, time)  # the channel carries the mark price too
        if i % flush_every:
            continue
        for message in processor.flush(time):
            if message.type == "snapshot":
                replica = message.data
                continue
            assert replica is not None and message.epoch == replica.epoch
            assert message.seq == replica.seq + 1, "seq rises by one per diff"
            diff = message.data
            apply(replica, {f: getattr(diff, f) for f in diff.__struct_fields__}, message.seq)
        if replica is not None:
            assert replica == processor.snapshot("BTCUSDT")


def test_an_untracked_symbol_is_refused_and_an_idle_book_sends_nothing() -> None:
    processor = PredictedProcessor(CONFIG, "e", MarkPrices())
    processor.track("BTCUSDT", T0)
    assert not processor.apply_price(MarkPriceUpdate("binance", "ETHUSDT", T0, 3_000.0))
    assert processor.flush(T0) == []
    processor.apply_price(MarkPriceUpdate("binance", "BTCUSDT", T0, 60_000.0))
    [snapshot] = processor.flush(T0 + 1)
    assert (snapshot.type, snapshot.seq, snapshot.ch) == ("snapshot", 0, "predicted:BTCUSDT")
    assert processor.flush(T0 + 2) == []


def test_the_tiers_and_margin_are_configurable_and_checked_at_start() -> None:
    environ = {
        "HEATMAP_PREDICTED_LEVERAGE": "5:0.5, 20:0.5",
        "HEATMAP_PREDICTED_MMR": "0.01",
        "HEATMAP_PRICE_RANGE": "10",
    }
    settings = load_settings(environ)
    config = settings.predicted
    assert config.leverage_shares == ((5.0, 0.5), (20.0, 0.5))
    assert (config.maintenance_margin, config.range_pct) == (0.01, 10.0)
    for raw, problem in (
        ("25", "LEVERAGE:SHARE"),
        ("x:1", "LEVERAGE:SHARE"),
        ("0.5:1", "leverage 1..1000"),
        ("10:0.5,25:0.4", "add up to 1"),
        ("10:0.5,250:0.5", "within 0.2 %"),
    ):
        with pytest.raises(ConfigError, match=problem) as error:
            load_settings({"HEATMAP_PREDICTED_LEVERAGE": raw})
        assert error.value.variable == "HEATMAP_PREDICTED_LEVERAGE"
    with pytest.raises(ConfigError, match="HEATMAP_PREDICTED_MMR"):
        load_settings({"HEATMAP_PREDICTED_MMR": "0.049"})  # 25x would sit at 0.9 % of entry


def test_the_channel_carries_the_mark_price_at_most_once_a_second() -> None:
    marks = MarkPrices()
    processor = PredictedProcessor(CONFIG, "e", marks)
    processor.track("BTCUSDT", T0)
    for offset, price in ((0, 60_000.0), (200, 60_010.0), (400, 60_020.0)):
        marks.apply(MarkPriceUpdate("bybit", "BTCUSDT", T0 + offset, price), T0 + offset)
    [diff] = processor.flush(T0 + 500)
    assert diff.data.mark == MarkPrice(T0 + 400, 60_020.0, "bybit")
    marks.apply(MarkPriceUpdate("bybit", "BTCUSDT", T0 + 600, 60_030.0), T0 + 600)
    assert processor.flush(T0 + 1_000) == [], "a second mark within a second of the last"
    [diff] = processor.flush(T0 + 1_500)
    assert diff.data.mark.price == 60_030.0 and diff.seq == 2
    assert processor.flush(T0 + 3_000) == [], "an unchanged mark is not sent again"
    assert processor.snapshot("BTCUSDT").mark == diff.data.mark
