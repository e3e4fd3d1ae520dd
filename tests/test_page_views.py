"""The trader's view in real headless Chromium, on a desktop (1600 x 1000) and a phone
(390 x 844): mark-price candles where the hub has them, nothing wider than the screen,
labels that never overlap, and predicted levels drawn from the time they opened to the
time the price consumed them, followed live on `predicted:{SYMBOL}`.

As in tests/test_page_browser.py, every wait is on a condition the page publishes on
`<body data-*>`, and the checks read the screenshot's pixels against the hub's data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.browser import Browser
from tests.conftest import HubFactory, eventually
from tests.fakes.binance_open_interest import FakeOpenInterest
from tests.fakes.binance_server import FakeBinance
from tests.test_e2e_predicted import MARK, binance_only, mark
from tests.test_e2e_websocket import quiet
from tests.test_page_browser import (
    CHROMIUM,
    LIVE,
    Chart,
    check_candles,
    data_of,
    heat,
    save,
    shoot_with,
    start_demo,
)

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (CI installs it: .ci/run)"),
    pytest.mark.timeout(150),
]
SCREENS = pytest.mark.parametrize(
    ("viewport", "mobile"),
    [((1600, 1000), False), ((390, 844), True)],
    ids=["desktop", "phone"],
)
# What sticks out of the screen: the page wider than the viewport, or an element whose box
# reaches past it (a wide table scrolls inside its card: not counted), or whose content is
# cut by its own box.
OVERFLOW = """(() => {
  const page = document.documentElement, width = page.clientWidth, found = [];
  if (page.scrollWidth > width) found.push("page " + page.scrollWidth);
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest(".scroll") || el.closest("#tip")) continue;
    const box = el.getBoundingClientRect(), name = `${el.tagName}#${el.id}.${el.className}`;
    if (box.width && (box.right > width + 0.5 || box.left < -0.5))
      found.push(`${name} ${Math.round(box.left)}-${Math.round(box.right)}`);
    else if (getComputedStyle(el).overflowX !== "visible" && el.scrollWidth > el.clientWidth + 1)
      found.push(`cut ${name} ${el.scrollWidth} > ${el.clientWidth}`);
  }
  return found;
})()"""


@SCREENS
async def test_candles_and_levels_on_a_screen_they_fit(
    start_hub: HubFactory, tmp_path: Path, viewport: tuple[int, int], mobile: bool
) -> None:
    running = await start_demo(start_hub)
    assert CHROMIUM is not None
    async with Browser(CHROMIUM, viewport, mobile) as browser:
        await browser.goto(f"{running.http}/?symbol=BTCUSDT&window=1h")
        await browser.wait_for(
            f"{LIVE} && +document.body.dataset.cells > 0 && +document.body.dataset.candles > 0 && "
            "document.body.dataset.predicted === 'shown' && +document.body.dataset.levelbars > 0"
        )
        save(tmp_path, "page.png", await browser.screenshot())
        assert await browser.evaluate(OVERFLOW) == []
        data = await data_of(browser)
        width = int(data["width"])
        assert int(data["axisright"]) <= width, f"the price axis is cut: {data}"
        plot_width = float(data["plot"].split(",")[2])
        assert plot_width >= (180 if mobile else 800), f"a heatmap {plot_width} px wide"
        # the header's price is the mark price, said so
        quote = await browser.evaluate("document.querySelector('.quote').innerText")
        assert "mark price · binance" in quote and data["mark"], quote

        # Level labels never pile up, however many levels are open.
        labels = json.loads(await browser.evaluate("JSON.stringify(layout.labels)"))
        assert 0 < len(labels) <= 6
        for i, a in enumerate(labels):
            for b in labels[:i]:
                apart = (
                    a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                    or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"]
                )  # fmt: skip
                assert apart, f"labels overlap: {a} {b}"

        # Candles: the page's are the hub's (no mark price moves any more, the matrix is
        # re-read), and each is drawn in its bucket.
        await quiet(running)
        loads = int(data["loads"])
        await browser.evaluate("loadTimeline()")
        await browser.wait_for(f"+document.body.dataset.loads > {loads}")
        for toggle in ("markers", "predicted"):  # drawn over the candles' columns
            await browser.evaluate(f"document.getElementById('{toggle}').click()")
        await browser.wait_for(
            "document.body.dataset.markers === 'off' && "
            "document.body.dataset.predicted === 'hidden'"
        )
        chart, candles = await shoot_with(browser, "tl.candles")
        save(tmp_path, "candles.png", chart.png)
        colours = json.loads(await browser.evaluate("JSON.stringify(C)"))
        assert check_candles(chart, candles, colours) >= 20
        body = (await running.get("/api/heatmap/liquidations/BTCUSDT/timeline",
                                  timeWindow="1h", buckets="120")).json()["data"]  # fmt: skip
        hub = [c for c in body["candles"] if c]
        page = [c for c in candles if c]
        # bucket edges follow each request's clock: the extremes and the close agree
        assert (max(c[2] for c in page), min(c[3] for c in page), page[-1][4]) == (
            max(c[2] for c in hub),
            min(c[3] for c in hub),
            hub[-1][4],
        )
        assert page[-1][4] == float(data["mark"]) or page[-1][4] == float(
            (await data_of(browser))["mark"]
        )
        assert not [line for line in browser.console if "Error" in line], browser.console


async def shot_of_the_level(
    browser: Browser, condition: str
) -> tuple[Chart, dict[str, Any], list[Any]]:
    """Once `condition` holds of the one predicted bar in view (`bar`): the plot, the bar
    and the rows the level labels take, as the page drew them together, moved from canvas
    pixels to the plot's."""
    await browser.wait_for(
        "layout && layout.bars && layout.bars.length === 1 && "
        f"((bar) => {condition})(layout.bars[0])",
        within=60,
    )
    chart, (bars, labels, left, top) = await shoot_with(
        browser, "[layout.bars, layout.labels, layout.px0, layout.T]"
    )
    (bar,) = bars
    moved = {"x0": bar["x0"] - left, "x1": bar["x1"] - left, "y0": bar["y0"] - top}
    boxes = [(box["y"] - top, box["y"] - top + box["h"]) for box in labels]
    return chart, {**bar, **moved, "y1": bar["y1"] - top}, boxes


def bar_row(chart: Chart, bar: dict[str, Any]) -> np.ndarray:
    """The plot's pixels along the middle of a bar."""
    return chart.pixels[(bar["y0"] + bar["y1"]) // 2]


@SCREENS
async def test_predicted_levels_run_from_open_to_consumed_live(
    start_hub: HubFactory,
    fake_binance: FakeBinance,
    tmp_path: Path,
    viewport: tuple[int, int],
    mobile: bool,
) -> None:
    async with FakeOpenInterest() as rest:
        running = await start_hub(
            binance_only(fake_binance, rest), open_interest=True, oi_poll_interval=0.2
        )
        assert CHROMIUM is not None
        async with Browser(CHROMIUM, viewport, mobile) as browser:
            await browser.goto(f"{running.http}/?symbol=BTCUSDT&window=5m")
            await browser.wait_for("document.body.dataset.predicted === 'shown'")
            for toggle in ("realized", "priceLine"):  # the levels alone
                await browser.evaluate(f"document.getElementById('{toggle}').click()")
            await browser.wait_for(
                "document.body.dataset.realized === 'hidden' && "
                "document.body.dataset.priceline === 'off'"
            )
            # The mark price: 59,650 then 60,000 (so the chart spans both), open interest
            # 1,000 then 1,010: levels open; the 100x long one lies at 59,700.
            rest.open_interest["BTCUSDT"] = 1_000.0
            await fake_binance.wait_for_subscription(MARK)
            await fake_binance.push_stream(MARK, mark(59_650.0))

            async def priced() -> bool:
                await fake_binance.push_stream(MARK, mark(60_000.0))
                return (await data_of(browser)).get("mark") == "60000"

            await eventually(priced)
            polls = len(rest.requests)
            await eventually(lambda: len(rest.requests) > polls + 1)  # polled with a price
            rest.open_interest["BTCUSDT"] = 1_010.0
            # open: the bar runs to the present (the right edge), long enough to see
            chart, bar, labels = await shot_of_the_level(
                browser, "bar.level.end === null && bar.x1 - bar.x0 >= 10"
            )
            save(tmp_path, "open.png", chart.png)
            level = bar["level"]
            assert (level["side"], level["leverage"]) == ("long", 100.0)
            assert abs(bar["x1"] - chart.width) <= 1, f"an open level stops short: {bar}"
            # drawn to its end, on a row its label (at an open level's end) leaves free: the
            # bar is a 20-USDT bin on a chart spanning about 400, over 20 px tall
            row = chart.pixels[bar["y0"] + 1]
            assert not [box for box in labels if box[0] <= bar["y0"] + 1 < box[1]], labels
            assert heat(row[bar["x1"] - 4 : bar["x1"] - 1]).all(), f"stops short: {row[-8:]}"

            # The price falls through it: the page hears it on the channel, the bar stops.
            await fake_binance.push_stream(MARK, mark(59_650.0))
            # ... and stays where it stopped while the chart scrolls on
            chart, bar, labels = await shot_of_the_level(
                browser, "bar.level.end !== null && layout.px0 + layout.pw - bar.x1 >= 10"
            )
            save(tmp_path, "consumed.png", chart.png)
            assert labels == [], "a consumed level has no label"
            consumed = bar["level"]
            assert consumed["opened"] == level["opened"]
            assert consumed["consumed"] >= consumed["opened"]
            start, _ = chart.xy(max(consumed["opened"], chart.t0), consumed["price"])
            end, _ = chart.xy(consumed["consumed"], consumed["price"])
            assert abs(bar["x0"] - start) <= 1 and abs(bar["x1"] - end) <= 1, (bar, start, end)
            row = bar_row(chart, bar)
            assert heat(row[start + 1 : end - 1]).all(), f"a gap in the level: {row.tolist()}"
            after = row[end + 2 :]
            assert len(after) > 5 and not heat(after).any(), (
                f"the level goes on after it was consumed at x={end}: {after.tolist()[:10]}"
            )
            assert not [line for line in browser.console if "Error" in line], browser.console
