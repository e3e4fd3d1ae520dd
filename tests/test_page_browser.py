"""The page in real headless Chromium against a real hub.

Chromium is driven over the DevTools Protocol (tests/browser.py: one WebSocket, the
`websockets` package). Each test waits on a condition the page publishes on `<body
data-*>` (never on a sleep), takes a screenshot of the chart and checks its pixels
against the hub's own REST answers: a cell is coloured where a liquidation of the window
is, the padding above the highest one is not, the last-price line ends where the newest
fill is, and switching symbol or window redraws. The OKX book's depth strip is checked
the same way against the book the page holds (itself checked against REST), and the
insights list against `GET .../unified`. Skipped only when no Chromium is installed (CI
installs it: .ci/run).
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hub.config import Settings
from hub.feeds.replay import ReplayFeed
from tests.browser import Browser, decode_png, find_chromium
from tests.conftest import BINANCE, HubFactory, RunningHub, eventually
from tests.fakes.binance_server import FakeBinance, force_order
from tests.keys_kit import add_key
from tests.redis_server import RedisServer
from tests.test_e2e_websocket import DEMO_BACKFILL_S, DEMO_TEST_TIMEOUT_S, quiet

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (CI installs it: .ci/run)"),
    pytest.mark.timeout(DEMO_TEST_TIMEOUT_S),
]
LIVE = "document.body.dataset.state === 'live'"
# The demo replays its bundled OKX book; a loopback URL only keeps the `start_hub` fixture
# from turning liquidity off (it does so while the real OKX is configured).
WITH_BOOK = Settings(flush_ms=50, okx_ws_url="ws://127.0.0.1:9/unused")


def heat(pixels: np.ndarray) -> np.ndarray:
    """Where pixels have a heat colour: every colour of the page's scale is far from grey,
    while the plot's background, its grid lines, the white price line and its dark halo
    are near grey (a spread of channels under 25)."""
    spread = pixels.max(axis=-1).astype(int) - pixels.min(axis=-1).astype(int)
    return spread >= 25


class Chart:
    """One screenshot of the heatmap plot and the axes the page drew it with."""

    def __init__(self, png: bytes, data: dict[str, str]) -> None:
        self.png = png
        self.pixels = decode_png(png)
        self.data = data
        self.t0, self.t1 = int(data["t0"]), int(data["t1"])
        self.p0, self.p1 = float(data["p0"]), float(data["p1"])
        self.buckets = int(data["buckets"])
        self.bin_step = float(data["binstep"])
        self.height, self.width = self.pixels.shape[:2]

    @property
    def step(self) -> float:
        return (self.t1 - self.t0) / self.buckets

    def xy(self, time: float, price: float) -> tuple[int, int]:
        x = (time - self.t0) / (self.t1 - self.t0) * self.width
        y = (self.p1 - price) / (self.p1 - self.p0) * self.height
        return min(self.width - 1, int(x)), min(self.height - 1, int(y))

    def cell_centre(self, time: int, price: float) -> tuple[int, int]:
        bucket = math.floor((time - self.t0) / self.step)
        low = math.floor(price / self.bin_step + 1e-9) * self.bin_step
        return self.xy(self.t0 + (bucket + 0.5) * self.step, low + self.bin_step / 2)

    def shows(self, time: int, price: float) -> bool:
        return self.t0 <= time < self.t1 and self.p0 <= price <= self.p1


async def shoot(browser: Browser) -> Chart:
    """A screenshot of the plot whose axes did not move while it was taken."""
    while True:
        before = await browser.evaluate("JSON.stringify(document.body.dataset)")
        x, y, width, height = (float(v) for v in (await data_of(browser))["plot"].split(","))
        png = await browser.screenshot((x, y, width, height))
        if before == await browser.evaluate("JSON.stringify(document.body.dataset)"):
            chart = Chart(png, await data_of(browser))
            return chart


async def shoot_with(browser: Browser, expression: str) -> tuple[Chart, Any]:
    """A screenshot of the plot, with what `expression` (JSON-able) was when it was drawn."""
    read = f"JSON.stringify([document.body.dataset, {expression}])"
    while True:
        before = await browser.evaluate(read)
        chart = await shoot(browser)
        if before == await browser.evaluate(read):
            return chart, json.loads(before)[1]


def check_candles(chart: Chart, candles: list[list[float] | None], colours: dict[str, str]) -> int:
    """Every candle the page holds is drawn in its bucket's column, between its high and its
    low, in a candle colour; returns how many there were."""
    missing = []
    count = 0
    for i, candle in enumerate(candles):
        if candle is None or not chart.p0 <= candle[3] <= candle[2] <= chart.p1:
            continue
        count += 1
        x, high = chart.xy(chart.t0 + (i + 0.5) * chart.step, candle[2])
        _, low = chart.xy(chart.t0, candle[3])
        column = chart.pixels[max(0, high - 1) : low + 2, max(0, x - 1) : x + 2]
        if not (near(column, colours["candleUp"]) | near(column, colours["candleDown"])).any():
            missing.append((i, candle, (x, high, low)))
    assert not missing, f"{len(missing)} of {count} candles not drawn: {missing[:5]}"
    return count


async def matching_shot(
    browser: Browser, running: RunningHub, symbol: str, window: str, within: float = 30.0
) -> Chart:
    """A screenshot once what the page shows matches the data: right after a switch of
    symbol or window, a loaded machine can still be drawing the view (seen: one run in a
    few of the full suite beside another). Fails like `check_cells` if it never does."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        chart = await shoot(browser)
        try:
            check_cells(chart, await window_events(running, symbol, window))
            return chart
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def data_of(browser: Browser) -> dict[str, str]:
    return await browser.evaluate("Object.assign({}, document.body.dataset)")


async def window_events(running: RunningHub, symbol: str, window: str) -> list[dict[str, Any]]:
    body = (await running.get(f"/api/heatmap/liquidations/{symbol}", timeWindow=window,
                              limit="10000")).json()  # fmt: skip
    assert body["success"], body
    return body["data"]


def check_cells(chart: Chart, events: list[dict[str, Any]]) -> int:
    """Every liquidation the chart spans lies on a coloured cell; returns how many were seen."""
    shown = [e for e in events if chart.shows(e["time"], e["price"])]
    missing = []
    for e in shown:
        # the middle row of the cell (cells are ~6 px wide), where the price line may cross
        x, y = chart.cell_centre(e["time"], e["price"])
        row = chart.pixels[y, max(0, x - 2) : x + 3]
        if not heat(row).any():
            missing.append((e["time"], e["price"], (x, y), row.tolist()))
    assert not missing, (
        f"{len(missing)} of {len(shown)} liquidations on blank pixels: {missing[:5]}"
    )
    return len(shown)


async def start_demo(start_hub: HubFactory) -> RunningHub:
    """The bundled demo at its own pace (speed 1, as `serve --demo` runs), once its backfill
    pass is over. At speed 1 event times follow the wall clock, as live ones do."""
    running = await start_hub(Settings(flush_ms=50), demo=True, speed=1)
    feed = running.hub.feed
    assert isinstance(feed, ReplayFeed)
    await eventually(lambda: feed.status.frames > len(feed.lines), within=DEMO_BACKFILL_S)
    return running


def save(tmp_path: Path, name: str, png: bytes) -> None:
    (tmp_path / name).write_bytes(png)


async def test_the_page_draws_live_liquidations_where_the_data_has_them(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    running = await start_demo(start_hub)
    assert CHROMIUM is not None
    async with Browser(CHROMIUM) as browser:
        await browser.goto(f"{running.http}/?symbol=BTCUSDT&window=1h")
        # live: the REST timeline drawn, the heatmap snapshot in, a live liquidation applied
        await browser.wait_for(f"{LIVE} && +document.body.dataset.cells > 0")
        await browser.wait_for("+document.body.dataset.live >= 3")
        assert (await data_of(browser))["health"] == "demo"
        # No more events, and the matrix re-read: the picture holds still for the checks.
        # (Live additions are checked exactly in the next test, where no event is in
        # flight while the page reads the timeline.)
        await quiet(running)
        loads = int((await data_of(browser))["loads"])
        await browser.evaluate("loadTimeline()")
        await browser.wait_for(f"+document.body.dataset.loads > {loads}")
        # Cells alone first: the markers and the price line drawn over them are toggled off.
        await browser.evaluate("document.getElementById('markers').click()")
        await browser.evaluate("document.getElementById('priceLine').click()")
        await browser.wait_for(
            "document.body.dataset.markers === 'off' && document.body.dataset.priceline === 'off'"
        )
        # the predicted levels' bars would colour the blank padding checked below
        await browser.wait_for("document.body.dataset.predicted === 'shown'")
        await browser.evaluate("document.getElementById('predicted').click()")
        await browser.wait_for("document.body.dataset.predicted === 'hidden'")

        save(tmp_path, "page.png", await browser.screenshot())
        chart = await shoot(browser)
        save(tmp_path, "btc-1h.png", chart.png)
        events = await window_events(running, "BTCUSDT", "1h")
        assert check_cells(chart, events) >= 20

        # Above the highest liquidation the plot is blank: colour comes from the data only.
        top = max(e["price"] for e in events if chart.shows(e["time"], e["price"]))
        _, y_top = chart.xy(chart.t0, math.floor(top / chart.bin_step + 1) * chart.bin_step)
        strip = chart.pixels[: max(0, y_top - 3)]
        assert strip.shape[0] >= 5, f"no padding above the data: {y_top}"
        lit = heat(strip)
        assert lit.mean() < 0.002, f"{lit.mean():.2%} of the blank strip is coloured"

        # The price: the mark price's candles, and its last value dashed to the right edge.
        await browser.evaluate("document.getElementById('priceLine').click()")
        await browser.wait_for("document.body.dataset.priceline === 'on'")
        cells = chart
        chart, candles = await shoot_with(browser, "tl.candles")
        save(tmp_path, "btc-1h-candles.png", chart.png)
        newest = max(e["time"] for e in events)
        assert float(chart.data["last"]) in {e["price"] for e in events if e["time"] == newest}
        colours = json.loads(await browser.evaluate("JSON.stringify(C)"))
        assert check_candles(chart, candles, colours) >= 20
        _, y = chart.xy(chart.t0, float(chart.data["mark"]))
        right = chart.pixels[max(0, y - 1) : y + 2, chart.width - 40 :]
        assert (right.min(axis=2) > 200).sum() >= 6, "no last mark price line at the right edge"
        assert not (cells.pixels.min(axis=2) > 200).any(), "white drawn with the price off"

        # Hover values: a cell under the pointer shows its time, price range and notionals.
        e = max((e for e in events if chart.shows(e["time"], e["price"])), key=lambda e: e["time"])
        cx, cy = chart.cell_centre(e["time"], e["price"])
        plot_x, plot_y = (float(v) for v in chart.data["plot"].split(",")[:2])
        await browser.mouse_move(plot_x + cx, plot_y + cy)
        tip = await browser.wait_for(
            "document.getElementById('tip').style.display === 'block' && "
            "document.getElementById('tip').innerText"
        )
        assert "long liq." in tip and "short liq." in tip and "USDT" in tip and "UTC" in tip, tip
        await browser.mouse_move(1, 1)
        await browser.evaluate("document.getElementById('priceLine').click()")
        await browser.wait_for("document.body.dataset.priceline === 'off'")

        # Another symbol: new axes, the cells of its own liquidations (drawn once its own
        # timeline is loaded, not the axes alone).
        loads = int((await data_of(browser))["loads"])
        await browser.evaluate(
            "const s = document.getElementById('symbol'); s.value = 'ETHUSDT';"
            "s.dispatchEvent(new Event('change'))"
        )
        await browser.wait_for(
            f"document.body.dataset.symbol === 'ETHUSDT' && {LIVE} && "
            f"+document.body.dataset.p1 < {chart.p0} && +document.body.dataset.loads > {loads}"
        )
        eth = await matching_shot(browser, running, "ETHUSDT", "1h")
        save(tmp_path, "eth-1h.png", eth.png)
        assert check_cells(eth, await window_events(running, "ETHUSDT", "1h")) >= 20
        assert (eth.pixels != chart.pixels).any()

        # A shorter window: the time axis spans 15 minutes, cells redrawn on it.
        loads = int((await data_of(browser))["loads"])
        await browser.evaluate("document.querySelector('#windows [data-window=\"15m\"]').click()")
        await browser.wait_for(
            f"document.body.dataset.window === '15m' && {LIVE} && "
            "+document.body.dataset.t1 - +document.body.dataset.t0 === 900000 && "
            f"+document.body.dataset.loads > {loads}"
        )
        short = await matching_shot(browser, running, "ETHUSDT", "15m")
        save(tmp_path, "eth-15m.png", short.png)
        check_cells(short, await window_events(running, "ETHUSDT", "15m"))
        assert short.buckets == 90 and (short.pixels != eth.pixels).any()
        assert not [line for line in browser.console if "Error" in line], browser.console


async def test_the_page_says_the_upstream_is_down_instead_of_showing_live(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await start_hub(
        Settings(binance_ws_url=fake_binance.base_url, symbols=("BTCUSDT",), exchanges=BINANCE)
    )
    await fake_binance.wait_for_subscription("btcusdt@forceOrder")
    await fake_binance.stop()  # Binance goes away: the feed keeps retrying and failing
    status = running.hub.feed.status
    await eventually(lambda: not status.connected and status.reconnects > 0 and status.last_error)
    assert CHROMIUM is not None
    async with Browser(CHROMIUM) as browser:
        await browser.goto(f"{running.http}/")
        # The empty chart names the source that is down, rather than "no liquidations yet".
        notice = await browser.wait_for(
            "document.body.dataset.health === 'down' && document.body.dataset.notice"
        )
        assert "binance" in notice and "reconnecting" in notice, notice
        # (the header says "connecting to hub" until the page's own socket is open)
        header = await browser.wait_for(
            "document.getElementById('health').innerText.includes('binance reconnecting') && "
            "document.getElementById('health').innerText"
        )
        assert "live" not in header, header
        panel = await browser.evaluate("document.getElementById('sources').innerText")
        assert "last error" in panel, panel

        # The page's own rules for a source, on the shapes status may report.
        state = "sourceState({connected: %s, messages: 9, reconnects: %d, last_message_age_ms: %s})"
        cases = {
            state % ("true", 0, "1200"): ("live", "live"),
            state % ("true", 0, "75000"): ("warn", "silent for 75 s"),
            state % ("true", 0, "null"): ("warn", "connected, no frame yet"),
            state % ("false", 3, "null"): ("down", "reconnecting (3 retries)"),
            "sourceState({enabled: false, connected: false})": ("off", "disabled"),
        }
        for expression, (cls, text) in cases.items():
            got = await browser.evaluate(f"JSON.stringify({expression})")
            assert got == f'{{"cls":"{cls}","text":"{text}"}}', (expression, got)


async def test_the_demo_badge_says_demo_not_live(start_hub: HubFactory) -> None:
    """Every source of the demo reports `live: false`: a newcomer must not take the
    recorded session for exchange data."""
    running = await start_demo(start_hub)  # during its backfill the sources lag
    assert CHROMIUM is not None
    async with Browser(CHROMIUM) as browser:
        await browser.goto(f"{running.http}/")
        header = await browser.wait_for(
            "['live', 'demo'].includes(document.body.dataset.health) && "
            "document.getElementById('health').innerText"
        )
        health = (await data_of(browser))["health"]
        assert health == "demo", f"expected the demo badge, seen {health!r}: {header!r}"
        assert header.startswith("demo") and "live" not in header, header
        assert "replay" not in header.split("·", 1)[1], f"the exchanges only: {header!r}"


async def test_a_restarted_hub_leaves_no_markers_of_its_previous_run(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    settings = Settings(
        binance_ws_url=fake_binance.base_url, symbols=("BTCUSDT",), exchanges=BINANCE
    )
    first = await start_hub(settings)
    await fake_binance.wait_for_subscription("btcusdt@forceOrder")
    now = first.hub.clock()
    await fake_binance.push(
        force_order(side="SELL", price="60000", qty="2", trade_time=now - 60_000)
    )
    await eventually(lambda: len(first.hub.processor.books["BTCUSDT"].store) == 1)
    assert CHROMIUM is not None
    async with Browser(CHROMIUM) as browser:
        await browser.goto(f"{first.http}/?symbol=BTCUSDT&window=15m")
        await browser.wait_for(f"{LIVE} && events.length === 1")
        await first.stop()
        await browser.wait_for("document.body.dataset.state === 'disconnected'")
        # The same address, a new run that has not seen the first one's liquidation
        second = await start_hub(settings, port=int(first.http.rsplit(":", 1)[1]))
        await fake_binance.wait_for_subscription("btcusdt@forceOrder")
        await eventually(lambda: second.hub.feed.status.connected)
        now = second.hub.clock()
        await fake_binance.push(force_order(side="BUY", price="61000", qty="1", trade_time=now))
        await eventually(lambda: len(second.hub.processor.books["BTCUSDT"].store) == 1)
        await browser.wait_for(f"{LIVE} && events.some((e) => e.price === 61000)")
        prices = await browser.evaluate("JSON.stringify(events.map((e) => e.price))")
        assert prices == "[61000]", f"expected the new run's liquidation only, seen {prices}"


async def test_the_page_says_ingest_is_down_when_the_hub_says_so(
    start_hub: HubFactory, fake_binance: FakeBinance, redis_server: RedisServer
) -> None:
    running = await start_hub(
        Settings(
            binance_ws_url=fake_binance.base_url,
            symbols=("BTCUSDT",),
            exchanges=BINANCE,
            redis_url=redis_server.url,
            ingest_silent_ms=500,
        )
    )
    await fake_binance.wait_for_subscription("btcusdt@forceOrder")
    assert CHROMIUM is not None
    async with Browser(CHROMIUM) as browser:
        await browser.goto(f"{running.http}/")
        await browser.wait_for("document.getElementById('health').innerText.includes('binance')")
        await running.hub.ingest.stop()  # its heartbeats stop: subscribers are told
        header = await browser.wait_for(
            "document.body.dataset.health === 'down' && "
            "document.getElementById('health').innerText.includes('ingest down') && "
            "document.getElementById('health').innerText"
        )
        assert "data paused" in header, header


async def test_live_liquidations_are_added_to_the_matrix_as_they_arrive(
    start_hub: HubFactory, fake_binance: FakeBinance, tmp_path: Path
) -> None:
    running = await start_hub(
        Settings(binance_ws_url=fake_binance.base_url, symbols=("BTCUSDT",), exchanges=BINANCE)
    )
    await fake_binance.wait_for_subscription("btcusdt@forceOrder")
    now = running.hub.clock()
    # One liquidation before the page opens: it comes with the REST timeline.
    await fake_binance.push(
        force_order(side="SELL", price="60000", qty="2", trade_time=now - 90_000)
    )
    await eventually(lambda: len(running.hub.processor.books["BTCUSDT"].store) == 1)
    assert CHROMIUM is not None
    async with Browser(CHROMIUM) as browser:
        await browser.goto(f"{running.http}/?symbol=BTCUSDT&window=15m")
        await browser.wait_for(f"{LIVE} && document.body.dataset.cells === '1'")
        await browser.evaluate("document.getElementById('markers').click()")
        await browser.evaluate("document.getElementById('priceLine').click()")
        await browser.wait_for("document.body.dataset.priceline === 'off'")

        # Two more over the socket only: the page places them in the matrix itself.
        now = running.hub.clock()
        await fake_binance.push(force_order(side="SELL", price="60310", qty="1", trade_time=now))
        await fake_binance.push(force_order(side="BUY", price="59650", qty="3", trade_time=now + 1))
        await browser.wait_for(
            "document.body.dataset.live === '2' && document.body.dataset.cells === '3' && "
            "document.body.dataset.last === '59650'"
        )
        chart = await shoot(browser)
        save(tmp_path, "live.png", chart.png)
        events = await window_events(running, "BTCUSDT", "15m")
        assert check_cells(chart, events) == 3

        # Heat only inside those three cells, and the largest notional is the brightest.
        lit = heat(chart.pixels)
        boxes = []
        for e in events:
            low = math.floor(e["price"] / chart.bin_step) * chart.bin_step
            bucket = math.floor((e["time"] - chart.t0) / chart.step)
            x0, y1 = chart.xy(chart.t0 + bucket * chart.step, low)
            x1, y0 = chart.xy(chart.t0 + (bucket + 1) * chart.step, low + chart.bin_step)
            boxes.append((e["notional"], x0, x1, y0, y1))
            lit[max(0, y0 - 1) : y1 + 2, max(0, x0 - 1) : x1 + 2] = False
        assert not lit.any(), f"heat outside the liquidations' cells at {np.argwhere(lit)[:5]}"
        brightness = [
            chart.pixels[(y0 + y1) // 2, (x0 + x1) // 2].astype(int).sum()
            for _, x0, x1, y0, y1 in sorted(boxes)
        ]
        assert brightness == sorted(brightness), f"colour not rising with notional: {brightness}"


def near(pixels: np.ndarray, hex_colour: str, tolerance: int = 40) -> np.ndarray:
    """Where pixels are within `tolerance` of a `#rrggbb` colour, on every channel."""
    rgb = np.array([int(hex_colour[k : k + 2], 16) for k in (1, 3, 5)])
    return (np.abs(pixels.astype(int) - rgb) <= tolerance).all(axis=-1)


async def shoot_book(browser: Browser) -> tuple[bytes, dict[str, Any], dict[str, str]]:
    """A screenshot of the depth strip with the book and axes the page drew it from."""
    while True:
        before = await data_of(browser)
        book = json.loads(await browser.evaluate("JSON.stringify(book)"))
        x, y, width, height = (float(v) for v in before["depth"].split(","))
        png = await browser.screenshot((x, y, width, height))
        if before == await data_of(browser) and book and book["time"] == int(before["booktime"]):
            return png, book, before


async def test_the_page_draws_the_order_book_and_lists_its_insights(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    # the demo as `serve --demo` runs it; nothing here needs its backfill pass to be over
    running = await start_hub(WITH_BOOK, demo=True, speed=1)
    assert CHROMIUM is not None
    async with Browser(CHROMIUM) as browser:
        # SOLUSDT: the demo book spans about ten bins a side there
        await browser.goto(f"{running.http}/?symbol=SOLUSDT&window=1h")
        await browser.wait_for(
            f"{LIVE} && document.body.dataset.book === 'live' && "
            "+document.body.dataset.bidbins > 0 && +document.body.dataset.askbins > 0"
        )

        # The book the page holds is the hub's (channel and REST agree within a second).
        seen: list[Any] = []

        async def same_book() -> bool:
            page = json.loads(await browser.evaluate("JSON.stringify(book)"))
            rest = (await running.get("/api/heatmap/liquidity/SOLUSDT")).json()
            seen[:] = [page and page["time"], rest.get("data", rest)]
            return rest["success"] and page == rest["data"]

        await eventually(same_book, seen=lambda: seen)

        # Insights: the page re-reads unified every 5 s and lists what it says. The demo's
        # SOL book has some within seconds. Cluster prices move with each liquidation, so
        # for an exact comparison the page re-reads right before the test does.
        await browser.wait_for("+document.body.dataset.insights > 0")
        reread = "loadInsights().then(() => new Promise((done) => requestAnimationFrame(done)))"

        async def same_insights() -> bool:
            await browser.evaluate(reread)
            body = (await running.get("/api/heatmap/unified/SOLUSDT", timeWindow="1h")).json()
            shown = json.loads(await browser.evaluate(
                "JSON.stringify([...document.querySelectorAll('#insights .ins')]"
                ".map((e) => [e.dataset.kind, e.dataset.side, +e.dataset.price]))"
            ))  # fmt: skip
            want = [[i["kind"], i["side"], i["price"]] for i in body["data"]["insights"]]
            seen[:] = [shown, want, body["data"]["insights"]]
            return bool(want) and shown == want

        await eventually(same_insights, seen=lambda: seen)
        text = await browser.evaluate("document.getElementById('insights').innerText")
        for insight in seen[2]:
            assert insight["detail"] in text, (insight, text)
            # As the page's Math.round: halves up (Python's round() takes 68.5 to 68).
            shown_strength = math.floor(100 * insight["strength"] + 0.5)
            assert f"strength {shown_strength}%" in text, (insight, text)
        panel = await browser.evaluate("document.getElementById('book').innerText")
        assert "best bid" in panel and "best ask" in panel, panel
        save(tmp_path, "book-page.png", await browser.screenshot())

        # Pixels: bid colour left of the strip's centre and ask colour right of it, on the
        # rows of the bins where the book has depth; neither anywhere else. The demo's SOL
        # book holds walls after a few seconds: they are drawn too.
        await browser.wait_for("+document.body.dataset.walls > 0")
        png, book, data = await shoot_book(browser)
        save(tmp_path, "book-strip.png", png)
        pixels = decode_png(png)
        colours = json.loads(await browser.evaluate("JSON.stringify(C)"))
        height, width = pixels.shape[:2]
        p0, p1, centre = float(data["p0"]), float(data["p1"]), width // 2
        bin_width = book["depth"]["bin_width"]

        def row(price: float) -> int:
            return round((p1 - price) / (p1 - p0) * height)  # the page draws whole pixels

        covered = np.zeros(height, bool)  # rows any depth bin may touch
        for side, x in (("bid", centre - 1), ("ask", centre + 1)):
            # a wall's line (2 px, dark-edged) and the mid line cross the bars: not checked
            lines = [(row(w["price"]), 2) for w in book["walls"] if w["side"] == side]
            lines.append((row(book["mid"]), 1))
            checked = 0
            for low, _ in book["depth"][side + "s"]:
                top, bottom = row(low + bin_width), row(low)
                covered[max(0, top - 2) : bottom + 3] = True
                rows = [
                    y
                    for y in range(top, max(bottom, top + 2))
                    if 0 <= y < height and all(abs(y - at) > gap for at, gap in lines)
                ]
                if not rows:
                    continue
                checked += 1
                column = pixels[rows, x]
                assert near(column, colours[side]).any(), (side, low, x, rows, column.tolist())
            assert checked >= 2, f"only {checked} {side} bins away from the lines to check"
            for wall in (w for w in book["walls"] if w["side"] == side):
                y, half = (
                    row(wall["price"]),
                    slice(0, centre) if side == "bid" else slice(centre, width),
                )
                line = pixels[max(0, y - 2) : y + 3, half]
                assert near(line, colours[side + "Wall"]).any(), (wall, y, line.tolist())
        bid, ask = near(pixels, colours["bid"]), near(pixels, colours["ask"])
        assert not bid[:, centre + 1 :].any() and not ask[:, : centre - 1].any(), "sides mixed"
        assert not (bid | ask)[~covered].any(), "book colour on rows with no depth"

        # A wall under the pointer shows its notional.
        wall = book["walls"][0]
        x0, y0 = (float(v) for v in data["depth"].split(",")[:2])
        dx = centre - 10 if wall["side"] == "bid" else centre + 10
        await browser.mouse_move(x0 + dx, y0 + row(wall["price"]))
        tip = await browser.wait_for(
            "document.getElementById('tip').style.display === 'block' && "
            "document.getElementById('tip').innerText"
        )
        assert f"{wall['side']} wall" in tip and "USDT" in tip, tip
        save(tmp_path, "book-hover.png", await browser.screenshot())
        await browser.evaluate("document.getElementById('insights').scrollIntoView()")
        save(tmp_path, "book-insights.png", await browser.screenshot())
        assert not [line for line in browser.console if "Error" in line], browser.console


async def test_the_page_says_the_order_book_is_off(start_hub: HubFactory, tmp_path: Path) -> None:
    running = await start_hub(Settings(flush_ms=50, liquidity="off"), demo=True, speed=1)
    refused = await running.get("/api/heatmap/liquidity/BTCUSDT")
    assert refused.status_code == 503, refused.text
    assert CHROMIUM is not None
    async with Browser(CHROMIUM) as browser:
        await browser.goto(f"{running.http}/?symbol=BTCUSDT&window=1h")
        await browser.wait_for(
            f"{LIVE} && document.body.dataset.book === 'off' && "
            "document.body.dataset.insights === '0'"
        )
        panel = await browser.evaluate("document.getElementById('book').innerText")
        assert "order book off" in panel, panel
        listed = await browser.evaluate("document.getElementById('insights').innerText")
        assert "no insights for BTCUSDT" in listed and "order book off" in listed, listed
        data = await data_of(browser)
        assert data["bidbins"] == "0" and data["askbins"] == "0", data
        save(tmp_path, "book-off.png", await browser.screenshot())
        assert not [line for line in browser.console if "Error" in line], browser.console


async def test_the_page_says_no_book_is_synced_yet(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    # OKX unreachable: the hub keeps retrying, REST answers 503 with its reason.
    closed = "127.0.0.1:9"
    running = await start_hub(
        Settings(
            binance_ws_url=fake_binance.base_url,
            okx_ws_url=f"ws://{closed}/ws",
            okx_rest_url=f"http://{closed}",
            symbols=("BTCUSDT",),
            exchanges=BINANCE,
        )
    )
    refused = (await running.get("/api/heatmap/liquidity/BTCUSDT")).json()
    assert refused["success"] is False and "no OKX order book synced" in refused["error"], refused
    assert CHROMIUM is not None
    async with Browser(CHROMIUM) as browser:
        await browser.goto(f"{running.http}/?symbol=BTCUSDT&window=1h")
        panel = await browser.wait_for(
            "document.body.dataset.book === 'waiting' && document.body.dataset.insights === '0' "
            "&& document.getElementById('book').innerText"
        )
        assert "no synced order book yet" in panel and refused["error"] in panel, panel
        listed = await browser.evaluate("document.getElementById('insights').innerText")
        assert "no insights for BTCUSDT" in listed and "no synced order book" in listed, listed
        assert not [line for line in browser.console if "Error" in line], browser.console


async def test_the_page_takes_a_key_from_its_fragment(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    """On a hub that needs keys, `/#key=KEY` gets the page everything it gets without keys."""
    keys_file = tmp_path / "keys.json"
    key = add_key(keys_file, "page")
    settings = Settings(flush_ms=50, api_keys_file=str(keys_file))
    running = await start_hub(settings, demo=True, speed=1)
    assert CHROMIUM is not None
    async with Browser(CHROMIUM) as browser:
        await browser.goto(f"{running.http}/?symbol=BTCUSDT&window=1h#key={key}")
        await browser.wait_for(f"{LIVE} && +document.body.dataset.cells > 0")
    stats = running.hub.access.stats
    assert stats.unauthorized_rest == 0 and stats.unauthorized_ws == 0


async def test_the_page_says_how_much_of_its_window_the_hub_covers(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    """A hub up for minutes shows a 24h window that covers minutes: the page says so, from
    the snapshot's coverage, instead of calling it 24 h."""
    running = await start_hub(
        Settings(binance_ws_url=fake_binance.base_url, symbols=("BTCUSDT",), exchanges=BINANCE)
    )
    await fake_binance.wait_for_subscription("btcusdt@forceOrder")
    now = running.hub.clock()
    await fake_binance.push(force_order(side="SELL", price="60000", qty="2", trade_time=now))
    await eventually(lambda: len(running.hub.processor.books["BTCUSDT"].store) == 1)
    rest = (
        await running.get("/api/heatmap/liquidations/BTCUSDT/heatmap", timeWindow="24h")
    ).json()["data"]
    assert rest["coverage"]["complete"] is False, rest["coverage"]
    assert CHROMIUM is not None
    async with Browser(CHROMIUM) as browser:
        await browser.goto(f"{running.http}/?symbol=BTCUSDT&window=24h")
        await browser.wait_for(f"{LIVE} && document.body.dataset.coverage !== ''")
        shown = await browser.evaluate("document.body.dataset.coverage")
        # The hub started moments ago: well under an hour of the day is covered.
        assert shown.startswith("covers ") and shown.endswith(" min of 24h"), (
            f"expected 'covers N min of 24h', seen {shown!r}"
        )
        warned = await browser.evaluate("document.querySelector('#stats .warn') !== null")
        assert warned, "an incomplete window's coverage is marked as a warning"
