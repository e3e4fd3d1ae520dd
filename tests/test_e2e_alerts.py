"""A user's journey with alerts: a hub configured with sinks, a liquidation upstream, the
message at the sink, the alert in `GET /api/heatmap/alerts`, the counters on status and
/metrics (without the secret), and the history read by a `web` process from Redis."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import AsyncIterator

import pytest

from hub.alerting.config import AlertsConfig, SinkConfig, SinkFilter
from hub.config import Settings
from tests.browser import Browser, find_chromium
from tests.conftest import BINANCE, HubFactory, eventually, http_client, web_process
from tests.fakes.binance_server import FakeBinance, force_order
from tests.fakes.sink_servers import FakeSlack, FakeWebhook
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(90)
SECRET = "e2e-webhook-secret"


@pytest.fixture
async def webhook() -> AsyncIterator[FakeWebhook]:
    async with FakeWebhook() as server:
        yield server


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


def alerting(fake: FakeBinance, webhook: FakeWebhook, slack: FakeSlack) -> Settings:
    sinks = (
        # One liquidation also makes a cluster (and its alert): the sinks take only the
        # large liquidations, and Slack only ETH's.
        SinkConfig(
            kind="webhook",
            name="desk",
            url=webhook.hook_url,
            secret=SECRET,
            filter=SinkFilter(kinds=("large_liquidation",)),
        ),
        SinkConfig(
            kind="slack",
            name="slack",
            url=slack.hook_url,
            filter=SinkFilter(symbols=("ETHUSDT",), kinds=("large_liquidation",)),
        ),
    )
    return Settings(
        binance_ws_url=fake.base_url,
        symbols=("BTCUSDT", "ETHUSDT"),
        flush_ms=20,
        exchanges=BINANCE,
        alerts=AlertsConfig(sinks),
        public_url="https://hub.example",
    )


async def test_a_large_liquidation_reaches_the_sink_the_history_and_the_counters(
    start_hub: HubFactory, fake_binance: FakeBinance, webhook: FakeWebhook, slack: FakeSlack
) -> None:
    running = await start_hub(alerting(fake_binance, webhook, slack))
    await fake_binance.wait_for_subscription("btcusdt@forceOrder")
    await fake_binance.push(force_order("BTCUSDT", "SELL", "60000.00", "20.000"))  # $1.2M
    await webhook.wait_until(lambda: webhook.received, "alert", 30)
    [got] = webhook.received
    body = got.json()
    assert (body["kind"], body["symbol"], body["side"]) == ("large_liquidation", "BTCUSDT", "long")
    assert body["detail"] == "Long liquidation of $1.20M at $60,000 on binance (z 0.0 in 1h)"
    expected = "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-hub-signature-256"] == expected

    history = (await running.get("/api/heatmap/alerts", symbol="btcusdt")).json()["data"]
    assert [a["kind"] for a in history] == ["cluster_new", "large_liquidation"], history
    assert history[1] == body
    large = await running.get("/api/heatmap/alerts", kind="large_liquidation", limit="1")
    assert large.json()["data"] == [body]
    assert (await running.get("/api/heatmap/alerts", kind="cascade")).json()["data"] == []
    since = str(max(a["time"] for a in history) + 1)
    assert (await running.get("/api/heatmap/alerts", since=since)).json()["data"] == []
    refused = await running.get("/api/heatmap/alerts", limit="0")
    assert refused.status_code == 400, refused.text

    async def counted() -> bool:
        status = (await running.get("/api/heatmap/status")).json()["data"]
        return status["alerts"]["sinks"]["desk"]["delivered"] == 1

    await eventually(counted)
    status = (await running.get("/api/heatmap/status")).text
    assert SECRET not in status and "slack-secret" not in status
    sinks = (await running.get("/api/heatmap/status")).json()["data"]["alerts"]["sinks"]
    assert sinks["slack"]["delivered"] == 0 and slack.received == []
    metrics = (await running.get("/metrics")).text
    assert 'hub_alerts_sent_total{sink="desk",kind="webhook"} 1' in metrics, metrics
    assert 'hub_alerts_failed_total{sink="slack",kind="slack"} 0' in metrics
    assert SECRET not in metrics


async def test_a_web_process_serves_the_alert_history_from_redis(
    start_hub: HubFactory,
    fake_binance: FakeBinance,
    webhook: FakeWebhook,
    slack: FakeSlack,
    redis_server: RedisServer,
) -> None:
    settings = dataclasses.replace(
        alerting(fake_binance, webhook, slack), redis_url=redis_server.url
    )
    await start_hub(settings)
    await fake_binance.wait_for_subscription("btcusdt@forceOrder")
    await fake_binance.push(force_order("ETHUSDT", "BUY", "3000.00", "400.000"))  # $1.2M
    await slack.wait_until(lambda: slack.received, "alert", 30)
    assert "ETHUSDT short large liquidation" in slack.received[0].json()["text"]
    async with web_process(settings) as web, http_client() as client:

        async def listed() -> list[str]:
            params = {"kind": "large_liquidation"}
            answer = await client.get(f"{web.http}/api/heatmap/alerts", params=params)
            return [a["symbol"] for a in answer.json()["data"]]

        await eventually(listed)
        assert await listed() == ["ETHUSDT"]


@pytest.mark.skipif(find_chromium() is None, reason="no chromium on PATH (CI installs it)")
async def test_the_page_shows_the_alerts_from_before_it_opened(
    start_hub: HubFactory, fake_binance: FakeBinance, webhook: FakeWebhook, slack: FakeSlack
) -> None:
    running = await start_hub(alerting(fake_binance, webhook, slack))
    await fake_binance.wait_for_subscription("btcusdt@forceOrder")
    await fake_binance.push(force_order("BTCUSDT", "SELL", "60000.00", "20.000"))
    await webhook.wait_until(lambda: webhook.received, "alert", 30)
    executable = find_chromium()
    assert executable is not None
    async with Browser(executable) as browser:
        await browser.goto(f"{running.http}/?symbol=BTCUSDT&window=1h")

        panel = [""]

        async def shown() -> bool:
            panel[0] = str(
                await browser.evaluate("document.getElementById('alerts')?.innerText ?? ''")
            )
            return "Long liquidation of $1.20M at $60,000 on binance" in panel[0]

        await eventually(shown, seen=lambda: panel[0])
