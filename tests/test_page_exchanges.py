"""The page's exchange breakdown and toggles in real headless Chromium against the demo hub
(its bundled session liquidates on several exchanges).

The breakdown panel lists `statistics.by_exchange` of the window as the channel holds it;
unticking an exchange shows the REST view of the others (`exchange=`), and ticking it
again returns to the live stream. As in tests/test_page_browser.py, every wait is on a
condition the page publishes on `<body data-*>` or on what it shows, never on a sleep.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser import Browser
from tests.conftest import HubFactory, RunningHub, eventually
from tests.test_e2e_websocket import DEMO_TEST_TIMEOUT_S, quiet
from tests.test_page_browser import CHROMIUM, LIVE, start_demo

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (CI installs it: .ci/run)"),
    pytest.mark.timeout(DEMO_TEST_TIMEOUT_S),
]
HEATMAP = "/api/heatmap/liquidations/BTCUSDT/heatmap"
# The panel's rows as shown: exchange, ticked, liquidations, longs, shorts.
ROWS = """JSON.stringify([...document.querySelectorAll('#exchanges tbody tr')].map((r) =>
  [r.dataset.exchange, r.querySelector('input').checked,
   ...[...r.cells].slice(1).map((c) => c.textContent)]))"""
# The event count the statistics panel shows.
SHOWN_COUNT = """(() => { const dt = [...document.querySelectorAll('#stats dt')]
  .find((d) => d.textContent === 'liquidations');
  return dt ? dt.nextElementSibling.textContent : ''; })()"""


def amount(notional: float) -> str:
    """A notional as the page writes it (its `fmtNum`; none: a dash); the unit heads the column."""
    size = abs(notional)
    if not notional:
        return "\N{EN DASH}"
    for scale, suffix in ((1e9, "B"), (1e6, "M")):
        if size >= scale:
            return f"{notional / scale:.2f}{suffix}"
    if size >= 1e3:
        return f"{notional / 1e3:.{0 if size >= 1e5 else 1}f}K"
    return f"{notional:.{0 if size >= 10 else 2}f}"


async def statistics(running: RunningHub, exchanges: list[str] | None = None) -> dict[str, Any]:
    params = {"timeWindow": "24h"} | ({"exchange": ",".join(exchanges)} if exchanges else {})
    body = (await running.get(HEATMAP, **params)).json()
    assert body["success"], body
    return body["data"]["statistics"]


async def test_the_breakdown_lists_each_exchange_and_a_toggle_shows_the_others(
    start_hub: HubFactory,
) -> None:
    running = await start_demo(start_hub)
    assert CHROMIUM is not None
    async with Browser(CHROMIUM) as browser:
        await browser.goto(f"{running.http}/?symbol=BTCUSDT&window=24h")
        await browser.wait_for(f"{LIVE} && document.body.dataset.breakdown.includes(',')")
        await quiet(running)  # then the numbers hold still
        seen: list[Any] = []

        async def breakdown_matches() -> bool:
            hub = (await statistics(running))["by_exchange"]
            rows = json.loads(await browser.evaluate(ROWS))
            seen[:] = [hub, rows]
            counts = {name: int(count.replace(",", "")) for name, _, count, *_ in rows}
            return counts == {name: x["count"] for name, x in hub.items()}

        await eventually(breakdown_matches, within=30, seen=lambda: seen)
        hub, rows = seen
        assert len(rows) >= 2 and all(ticked for _, ticked, *_ in rows), rows
        for name, _, _, longs, shorts in rows:
            notionals = (hub[name]["long_notional"], hub[name]["short_notional"])
            assert [longs, shorts] == [amount(v) for v in notionals], (
                name,
                longs,
                shorts,
                notionals,
            )
        head = await browser.evaluate("document.querySelector('#exchanges thead').textContent")
        assert "longs USDT" in head and "shorts USDT" in head, head

        # Untick one: the page shows the view of the others, and still lists all of them.
        left_out = rows[0][0]
        others = sorted(name for name in hub if name != left_out)
        await browser.evaluate(
            f"document.querySelector('#exchanges input[value=\"{left_out}\"]').click()"
        )
        await browser.wait_for(f"{LIVE} && document.body.dataset.view === '{','.join(others)}'")

        async def shows_the_count_of(exchanges: list[str] | None) -> bool:
            expected = (await statistics(running, exchanges))["event_count"]
            shown = await browser.evaluate(SHOWN_COUNT)
            seen[:] = [exchanges, expected, shown]
            return shown.replace(",", "") == str(expected)

        await eventually(lambda: shows_the_count_of(others), within=30, seen=lambda: seen)
        assert seen[1] < (await statistics(running))["event_count"], seen
        rows = json.loads(await browser.evaluate(ROWS))
        assert [(name, ticked) for name, ticked, *_ in rows] == [
            (name, name != left_out) for name in sorted(hub)
        ], rows
        assert left_out not in await browser.evaluate(
            "JSON.stringify(events.map((e) => e.exchange))"
        ), "a left-out exchange's liquidation in the list"

        # Tick it again: back to the live stream of every exchange.
        await browser.evaluate(
            f"document.querySelector('#exchanges input[value=\"{left_out}\"]').click()"
        )
        await browser.wait_for(f"{LIVE} && document.body.dataset.view === 'all'")
        await eventually(lambda: shows_the_count_of(None), within=30, seen=lambda: seen)

        # Untick them all, one after another: the last one stays ticked, and shown alone.
        await browser.evaluate(
            "document.querySelectorAll('#exchanges input').forEach((i) => i.click())"
        )
        last = sorted(hub)[-1]
        await browser.wait_for(f"{LIVE} && document.body.dataset.view === '{last}'")
        await eventually(lambda: shows_the_count_of([last]), within=30, seen=lambda: seen)
        rows = json.loads(await browser.evaluate(ROWS))
        assert [name for name, ticked, *_ in rows if ticked] == [last], rows
        assert not [line for line in browser.console if "Error" in line], browser.console
