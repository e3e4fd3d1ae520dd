"""The realized-liquidations timeline: the pure matrix against a brute-force computation and
against the heatmap's own bins, then the REST endpoint in `serve` and in `web`.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.analytics.coverage import Coverage
from hub.analytics.density import KernelDensity
from hub.analytics.grid import PriceGrid
from hub.analytics.rows import Rows, rows_of
from hub.analytics.store import EventStore
from hub.analytics.timeline import Timeline, bucket_starts, timeline
from hub.analytics.window import HeatmapWindow
from hub.config import Settings
from hub.models import LiquidationEvent
from tests.conftest import BINANCE, HubFactory, eventually, http_client, web_process
from tests.fakes.binance_open_interest import FakeOpenInterest
from tests.fakes.binance_server import FakeBinance, force_order
from tests.redis_server import RedisServer
from tests.test_e2e_predicted import MARK, mark

NOW = 1_800_000_000_000
HOUR = 3_600_000


def as_rows(events: list[LiquidationEvent]) -> Rows:
    return rows_of(enumerate(events)).rows


def event(time: int, price: float, notional: float, side: str = "long") -> LiquidationEvent:
    return LiquidationEvent(
        "binance",
        "BTCUSDT",
        side,
        price,
        notional / price,
        notional,
        time,  # type: ignore[arg-type]
    )


def brute_force(
    events: list[LiquidationEvent], grid: PriceGrid, now: int, span: int, buckets: int
) -> tuple[dict[tuple[int, int, str], float], list[float | None], list[int]]:
    """Cell sums keyed (bucket, bin index, side), the last fill per bucket and the bucket
    starts, from the definitions: bucket i starts at now - span + ceil(i * span / buckets)."""
    cutoff = now - span
    starts = [cutoff + math.ceil(Fraction(i * span, buckets)) for i in range(buckets)]
    low = grid.bin_index(grid.reference_price - grid.half_range)
    high = grid.bin_index(grid.reference_price + grid.half_range)
    cells: dict[tuple[int, int, str], float] = {}
    last: list[tuple[int, int, float] | None] = [None] * buckets
    for order, e in enumerate(events):
        if e.time < cutoff:
            continue
        bucket = max(i for i in range(buckets) if starts[i] <= e.time)
        if last[bucket] is None or (e.time, order) > last[bucket][:2]:  # type: ignore[index]
            last[bucket] = (e.time, order, e.price)
        column = grid.bin_index(e.price)
        if low <= column <= high:
            key = (bucket, column, e.side)
            cells[key] = cells.get(key, 0.0) + e.notional
    return cells, [None if x is None else x[2] for x in last], starts


def cells_of(matrix: Timeline, grid: PriceGrid) -> dict[tuple[int, int, str], float]:
    first = grid.bin_index(matrix.prices.start + grid.bin_width / 2)
    cells = {}
    for side, rows in (("long", matrix.long), ("short", matrix.short)):
        assert len(rows) == len(matrix.times)
        for bucket, row in enumerate(rows):
            assert len(row) == matrix.prices.count, f"row {bucket} is not dense: {len(row)}"
            for offset, notional in enumerate(row):
                if notional:
                    cells[(bucket, first + offset, side)] = notional
    return cells


prices = st.floats(50_000, 70_000, allow_nan=False)
events_strategy = st.lists(
    st.builds(
        event,
        time=st.integers(NOW - 2 * HOUR, NOW + 5_000),
        price=prices,
        notional=st.floats(1.0, 5e6),
        side=st.sampled_from(["long", "short"]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    events=events_strategy,
    reference=st.floats(55_000, 65_000),
    range_pct=st.sampled_from([2.0, 5.0, 15.0]),
    span=st.sampled_from([300_000, HOUR, 7 * 86_400_000, 999]),
    buckets=st.integers(1, 97),
)
def test_matrix_equals_a_brute_force_computation(
    events: list[LiquidationEvent], reference: float, range_pct: float, span: int, buckets: int
) -> None:
    grid = PriceGrid.around(reference, range_pct, "e")
    matrix = timeline(as_rows(events), grid, NOW, span, buckets)
    cells, last, starts = brute_force(events, grid, NOW, span, buckets)

    assert matrix.times == starts and len(matrix.times) == buckets
    assert matrix.price == last
    got = cells_of(matrix, grid)
    assert got.keys() == cells.keys()
    for key, notional in cells.items():
        assert got[key] == pytest.approx(notional, rel=1e-12), key
    if cells:  # the axis spans exactly the bins that hold something
        columns = [column for _, column, _ in cells]
        assert matrix.prices.start == grid.bin_low(min(columns))
        assert matrix.prices.count == max(columns) - min(columns) + 1
    else:
        assert matrix.prices.count == 0
    in_window = [e for e in events if e.time >= NOW - span]
    for side in ("long", "short"):
        total = sum(e.notional for e in in_window if e.side == side)
        placed = sum(v for (_, _, s), v in cells.items() if s == side)
        assert getattr(matrix.outside, side) + placed == pytest.approx(total, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(events=events_strategy, buckets=st.integers(1, 40))
def test_columns_summed_over_time_are_the_heatmap_bins(
    events: list[LiquidationEvent], buckets: int
) -> None:
    grid = PriceGrid.around(60_000.0, 20.0, "e")  # the whole strategy's price range fits
    store = EventStore("BTCUSDT", 10_000, 30 * 24 * HOUR)
    for e in events:
        store.add(e)
    kde = KernelDensity(grid.density_start, grid.bin_width, grid.density_size, 180.0)
    window = HeatmapWindow(store, "1h", HOUR, grid, kde)
    window.restart(grid, kde, NOW, Coverage(0))
    bins = window.snapshot().bins
    matrix = timeline(as_rows(events), grid, NOW, HOUR, buckets)

    first = grid.bin_index(matrix.prices.start + grid.bin_width / 2)
    summed = {}
    for offset in range(matrix.prices.count):
        long = sum(row[offset] for row in matrix.long)
        short = sum(row[offset] for row in matrix.short)
        if long or short:
            summed[grid.bin_low(first + offset)] = (long, short)
    assert sorted(summed) == [b[0] for b in bins]
    for low, long, short, count in bins:
        # the heatmap's bins are exact sums of notionals each rounded to a millionth of a
        # quote unit (hub.analytics.sums): half a millionth per event at most
        assert summed[low] == pytest.approx((long, short), rel=1e-12, abs=5e-7 * count), low


def test_bucket_edges_and_events_at_the_ends_of_the_window() -> None:
    assert bucket_starts(1000, 10, 3) == [990, 994, 997]  # ceil(10/3) = 4, ceil(20/3) = 7
    grid = PriceGrid.around(60_000.0, 15.0, "e")  # bin width 20
    events = [
        event(NOW - HOUR - 1, 60_000.0, 7.0),  # one ms before the window: left out
        event(NOW - HOUR, 60_010.0, 1.0),  # the window's first ms: bucket 0
        event(NOW + 3, 59_990.0, 2.0, "short"),  # after now (a replay tick): last bucket
    ]
    matrix = timeline(as_rows(events), grid, NOW, HOUR, 4)
    assert matrix.times == [NOW - HOUR + i * 900_000 for i in range(4)]
    assert matrix.prices.start == 59_980.0 and matrix.prices.step == 20.0
    assert matrix.prices.count == 2
    assert matrix.long == [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    assert matrix.short[3] == [2.0, 0.0]
    assert matrix.price == [60_010.0, None, None, 59_990.0]


def test_liquidations_beyond_the_heatmap_range_are_summed_apart() -> None:
    grid = PriceGrid.around(60_000.0, 5.0, "e")  # 57,000 .. 63,000
    events = [event(NOW - 10, 60_000.0, 5.0), event(NOW - 5, 90_000.0, 3.0, "short")]
    matrix = timeline(as_rows(events), grid, NOW, HOUR, 2)
    assert matrix.prices.count == 1 and matrix.long[1] == [5.0]
    assert (matrix.outside.long, matrix.outside.short) == (0.0, 3.0)
    assert matrix.price == [None, 90_000.0]  # the last fill, wherever it was


def test_no_events_and_no_grid_give_empty_rows() -> None:
    for grid in (None, PriceGrid.around(60_000.0, 15.0, "e")):
        matrix = timeline(as_rows([]), grid, NOW, HOUR, 3)
        assert matrix.prices.count == 0
        assert matrix.long == matrix.short == [[], [], []]
        assert matrix.price == [None, None, None]
    with pytest.raises(ValueError, match="positive"):
        timeline(as_rows([]), None, NOW, HOUR, 0)


# -- REST -----------------------------------------------------------------------------------

TIMELINE = "/api/heatmap/liquidations/{}/timeline"


async def push_events(fake: FakeBinance, now: int) -> None:
    await fake.wait_for_subscription("btcusdt@forceOrder")
    await fake.push(force_order(side="SELL", price="60000", qty="1", trade_time=now - 600_000))
    await fake.push(force_order(side="BUY", price="60105", qty="2", trade_time=now - 1_000))


def check_body(data: dict, buckets: int) -> None:
    assert len(data["times"]) == buckets
    assert len(data["long"]) == len(data["short"]) == len(data["price"]) == buckets
    count = data["prices"]["count"]
    assert all(len(row) == count for row in data["long"] + data["short"])
    assert data["prices"]["step"] == 20.0
    long = {(i, j): v for i, row in enumerate(data["long"]) for j, v in enumerate(row) if v}
    short = {(i, j): v for i, row in enumerate(data["short"]) for j, v in enumerate(row) if v}
    start = data["prices"]["start"]
    assert [(start + j * 20, v) for (_, j), v in long.items()] == [(60_000.0, 60_000.0)]
    assert [(start + j * 20, v) for (_, j), v in short.items()] == [(60_100.0, 120_210.0)]
    (row,) = [i for i, _ in short]
    assert data["price"][row] == 60_105.0


async def test_rest_timeline_in_serve(start_hub: HubFactory, fake_binance: FakeBinance) -> None:
    running = await start_hub(
        Settings(binance_ws_url=fake_binance.base_url, symbols=("BTCUSDT",), exchanges=BINANCE)
    )
    now = running.hub.clock()
    await push_events(fake_binance, now)

    async def two_events() -> bool:
        body = (await running.get(TIMELINE.format("btcusdt"))).json()
        return sum(v for row in body["data"]["long"] + body["data"]["short"] for v in row) > 0

    await eventually(lambda: len(running.hub.processor.books["BTCUSDT"].store) == 2)
    await eventually(two_events)
    body = (await running.get(TIMELINE.format("btcusdt"))).json()
    assert body["success"] and body["data"]["symbol"] == "BTCUSDT"
    assert body["data"]["window"] == "1h"
    check_body(body["data"], 60)
    body = (await running.get(TIMELINE.format("BTCUSDT"), buckets="1000", timeWindow="15m")).json()
    check_body(body["data"], 1000)
    assert body["data"]["times"][0] == body["data"]["time"] - 15 * 60_000


@pytest.mark.parametrize(
    ("path", "params", "status", "named"),
    [
        ("BTCUSDT", {"buckets": "0"}, 400, "buckets"),
        ("BTCUSDT", {"buckets": "1001"}, 400, "buckets"),
        ("BTCUSDT", {"buckets": "ten"}, 400, "buckets"),
        ("BTCUSDT", {"timeWindow": "2h"}, 400, "timeWindow"),
        ("DOGEUSDT", {}, 404, "DOGEUSDT"),
        ("BTC-USDT", {}, 404, "BTC-USDT"),
    ],
)
async def test_rest_timeline_refuses_bad_requests(
    start_hub: HubFactory,
    fake_binance: FakeBinance,
    path: str,
    params: dict[str, str],
    status: int,
    named: str,
) -> None:
    running = await start_hub(
        Settings(binance_ws_url=fake_binance.base_url, symbols=("BTCUSDT",), exchanges=BINANCE)
    )
    response = await running.get(TIMELINE.format(path), **params)
    assert response.status_code == status, response.text
    assert response.json()["success"] is False and named in response.json()["error"]


async def test_rest_timeline_in_web_answers_as_serve_does(
    start_hub: HubFactory, fake_binance: FakeBinance, redis_server: RedisServer
) -> None:
    settings = Settings(
        binance_ws_url=fake_binance.base_url,
        symbols=("BTCUSDT",),
        redis_url=redis_server.url,
        exchanges=BINANCE,
    )
    running = await start_hub(settings)
    await push_events(fake_binance, running.hub.clock())
    await eventually(lambda: len(running.hub.processor.books["BTCUSDT"].store) == 2)
    async with web_process(settings) as web, http_client() as client:
        bodies: list[dict] = []

        async def same_matrix() -> bool:
            served = (await running.get(TIMELINE.format("BTCUSDT"))).json()["data"]
            answered = (await client.get(web.http + TIMELINE.format("BTCUSDT"))).json()
            bodies[:] = [served, answered.get("data") or answered]
            if not answered.get("success"):
                return False
            # `times` follow each process's clock (the same to a few ms): the cells must agree
            keys = ("prices", "long", "short", "price", "outside")
            return all(served[k] == answered["data"][k] for k in keys)

        await eventually(same_matrix, seen=lambda: [b.get("prices") for b in bodies])
        check_body(bodies[1], 60)
        missing = await client.get(web.http + TIMELINE.format("ETHUSDT"))
        assert missing.status_code == 404


async def test_candles_of_the_mark_price_in_serve_and_in_web(
    start_hub: HubFactory, fake_binance: FakeBinance, redis_server: RedisServer
) -> None:
    async with FakeOpenInterest() as rest:
        settings = Settings(
            binance_ws_url=fake_binance.base_url,
            binance_rest_url=rest.url,
            symbols=("BTCUSDT",),
            redis_url=redis_server.url,
            exchanges=BINANCE,
        )
        running = await start_hub(settings, open_interest=True, oi_poll_interval=60)
        await fake_binance.wait_for_subscription(MARK)
        prices = (60_000.0, 60_250.5, 59_900.0, 60_100.0)
        for price in prices:
            await fake_binance.push_stream(MARK, mark(price))
        seen: list[object] = []

        async def all_taken(body: dict) -> bool:
            candles = [c for c in body["candles"] if c is not None]
            seen[:] = candles
            if not candles or len(body["candles"]) != 60:
                return False
            highs, lows = [c[2] for c in candles], [c[3] for c in candles]
            return (candles[0][1], max(highs), min(lows), candles[-1][4]) == (
                60_000.0,
                60_250.5,
                59_900.0,
                60_100.0,
            ) and all(c[0] in body["times"] for c in candles)

        async def served() -> bool:
            return await all_taken((await running.get(TIMELINE.format("BTCUSDT"))).json()["data"])

        await eventually(served, seen=lambda: seen)
        async with web_process(settings) as web, http_client() as client:
            bodies: list[dict] = []

            async def same_candles() -> bool:
                serve = (await running.get(TIMELINE.format("BTCUSDT"))).json()["data"]
                answered = (await client.get(web.http + TIMELINE.format("BTCUSDT"))).json()
                bodies[:] = [serve["candles"], answered.get("data", answered)]
                if not answered["success"]:
                    return False
                # bucket starts (a candle's time) follow each process's clock, the same to a
                # few ms: the prices must agree
                return [c and c[1:] for c in answered["data"]["candles"]] == [
                    c and c[1:] for c in serve["candles"]
                ]

            await eventually(same_candles, seen=lambda: bodies)
            assert await all_taken(bodies[1])
            quiet = await client.get(
                web.http + TIMELINE.format("BTCUSDT"), params={"timeWindow": "30d"}
            )
            assert sum(c is not None for c in quiet.json()["data"]["candles"]) == 1
