"""The browser page served at `/`, and the alert bot of client-examples/ run as a user would.

The page is checked lightly here (served, self-contained, speaks the documented protocol;
tests/test_page_browser.py runs it in Chromium); the bot runs as a subprocess against a
real hub: it prints every alert once, applies its filter, and after the hub drops it,
resumes with `since` and gets what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from pathlib import Path

from hub.config import Settings
from hub.fanout.broker import topic_for
from hub.fanout.codec import encode_message
from hub.fanout.protocol import Close
from hub.models import Alert, ChannelMessage
from tests.conftest import BINANCE, HubFactory, RunningHub, eventually
from tests.fakes.binance_server import FakeBinance

BOT = Path(__file__).parent.parent / "client-examples" / "alert_bot.py"
EPOCH = "test-epoch"


async def test_page_is_served_at_root(start_hub: HubFactory, fake_binance: FakeBinance) -> None:
    running = await start_hub(
        Settings(binance_ws_url=fake_binance.base_url, symbols=("BTCUSDT",), exchanges=BINANCE)
    )
    response = await running.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '"/ws"' in page
    assert 'op: "subscribe"' in page and 'op: "unsubscribe"' in page
    assert "/api/heatmap/status" in page
    assert "<canvas" in page
    # self-contained: the machine may have no internet; the one <link> is the inline favicon
    assert "<script src" not in page and "https://" not in page and "http://" not in page
    links = re.findall(r"<link[^>]*>", page)
    assert links and all('rel="icon"' in link and 'href="data:' in link for link in links), links
    # the timeline view and its side data come from the documented endpoints and channels
    for path in ("/timeline?", "/leverage?", '"predicted:"', "liquidations:"):
        assert path in page, path
    assert "· seq" not in page and "· bin" not in page  # no internals in the header


def alert(number: int, notional: float, alert_id: str | None = None) -> Alert:
    return Alert(
        id=alert_id or f"BTCUSDT:large_liquidation:1h:test:{number}",
        kind="large_liquidation",
        symbol="BTCUSDT",
        price=60_000.0 + number,
        notional=notional,
        z_score=3.5,
        risk="extreme",
        window="1h",
        time=int(time.time() * 1000),
        side="long",
        detail=f"test alert {number}",
    )


async def publish(running: RunningHub, seq: int, body: Alert) -> None:
    message = ChannelMessage("alerts:*", "alert", seq, EPOCH, body)
    await running.hub.ingest.broker.publish(topic_for(message.ch), encode_message(message))


class Lines:
    """Collects a stream's lines as they come."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode().rstrip("\n"))

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


async def test_alert_bot_prints_filters_deduplicates_and_resumes(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await start_hub(
        Settings(binance_ws_url=fake_binance.base_url, symbols=("BTCUSDT",), exchanges=BINANCE)
    )
    bot = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BOT),
        "--url",
        running.ws,
        "--min-notional",
        "100000",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert bot.stdout is not None and bot.stderr is not None
    out, err = Lines(bot.stdout), Lines(bot.stderr)
    try:
        await eventually(lambda: err.count("subscribed alerts:*") == 1)
        await publish(running, 1, alert(1, 2_000_000))
        await publish(running, 2, alert(2, 50_000))  # under --min-notional: filtered
        await publish(running, 3, alert(3, 150_000))
        await eventually(lambda: out.count("test:3") == 1)

        # The hub drops the bot; alerts published meanwhile must arrive on resume.
        (session,) = running.hub.fanout.sessions
        session.close = Close(1012, "test restart")
        session.on_ready()
        await eventually(lambda: not running.hub.fanout.sessions)
        await publish(running, 4, alert(4, 300_000))
        await publish(running, 5, alert(5, 10_000))  # filtered, also when replayed
        await publish(running, 6, alert(3, 150_000))  # same id as alert 3: a duplicate
        await eventually(lambda: err.count("subscribed alerts:*") == 2)
        await publish(running, 7, alert(7, 1_000_000))
        await eventually(lambda: out.count("test:7") == 1)
        await asyncio.sleep(0.2)

        printed = [line for line in out.lines if "test:" in line]
        assert [line.split("test:")[1].split()[0] for line in printed] == ["1", "3", "4", "7"]
        assert "BTCUSDT" in printed[0] and "large_liquidation" in printed[0]
        assert "notional=2,000,000" in printed[0]
        assert any("disconnected" in line for line in err.lines)
    finally:
        with contextlib.suppress(ProcessLookupError):
            bot.terminate()
        await asyncio.wait_for(bot.wait(), 5)
        await asyncio.gather(out.task, err.task, return_exceptions=True)
