"""Alerts to sinks: the configuration file, each sink against its look-alike (signature,
rate limits, retries, giving up), filters, no alert twice (also across a restart), and a
dead sink holding up no other."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from hub.alerting.config import SinkConfig, SinkFilter, load_alerts_config
from hub.alerting.delivered import DeliveredIds, FileDeliveredIds, RedisDeliveredIds
from hub.alerting.delivery import AlertDelivery
from hub.models import Alert
from tests.conftest import eventually
from tests.fakes.sink_servers import FakeDiscord, FakeSlack, FakeTelegram, FakeWebhook
from tests.redis_server import RedisServer
from tests.test_cli import run_cli

pytestmark = pytest.mark.timeout(60)
SECRET = "s3cret-shared-key"
TOKEN = "123456:telegram-bot-token"
CHAT = "987654"


def alert(
    number: int = 1,
    symbol: str = "BTCUSDT",
    kind: str = "large_liquidation",
    side: str | None = "long",
    notional: float = 1_500_000.0,
    risk: str = "high",
) -> Alert:
    return Alert(
        id=f"{symbol}:{kind}:1h:{number}",
        kind=kind,  # type: ignore[arg-type]
        symbol=symbol,
        price=61_234.5,
        notional=notional,
        z_score=2.5,
        risk=risk,  # type: ignore[arg-type]
        window="1h",
        time=int(time.time() * 1000),
        side=side,  # type: ignore[arg-type]
        detail="Long liquidation of $1.50M at $61,234.5 on binance (z 2.5 in 1h)",
        exchanges=("binance",),
    )


def sink(kind: str, **fields: object) -> SinkConfig:
    return SinkConfig(kind=kind, name=str(fields.pop("name", kind)), **fields)  # type: ignore[arg-type]


@pytest.fixture
async def webhook() -> AsyncIterator[FakeWebhook]:
    async with FakeWebhook() as server:
        yield server


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN, CHAT) as server:
        yield server


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest.fixture
async def delivering() -> AsyncIterator[list[AlertDelivery]]:
    """Deliveries a test starts, closed after it."""
    started: list[AlertDelivery] = []
    yield started
    for delivery in started:
        await delivery.close()


def start(
    started: list[AlertDelivery], sinks: list[SinkConfig], record: DeliveredIds | None = None
) -> AlertDelivery:
    delivery = AlertDelivery(sinks, record or DeliveredIds(), "https://hub.example")
    delivery.start()
    started.append(delivery)
    return delivery


# -- the configuration file -------------------------------------------------------------

GOOD = """
[[sink]]
kind = "webhook"
url = "https://example.com/hook"
secret = "from-the-file"

[[sink]]
kind = "telegram"
token = "in-the-file"
chat_id = -100123

[sink.filter]
symbols = ["btcusdt", "ETHUSDT"]
kinds = ["cascade"]
min_risk = "high"

[[sink]]
kind = "webhook"
name = "desk"
url = "https://example.com/desk"

[thresholds]
cooldown_seconds = 120
large_notional = 2_000_000

[thresholds.SOLUSDT]
large_notional = 250_000
"""


def test_a_good_file_with_secrets_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(GOOD)
    environ = {"HEATMAP_SINK_TELEGRAM_TOKEN": "from-env", "HEATMAP_SINK_DESK_SECRET": "desk-key"}
    config = load_alerts_config(str(path), environ)
    webhook, telegram, desk = config.sinks
    assert (webhook.name, webhook.secret) == ("webhook", "from-the-file")
    assert (telegram.name, telegram.token, telegram.chat_id) == ("telegram", "from-env", "-100123")
    assert telegram.filter == SinkFilter(
        symbols=("BTCUSDT", "ETHUSDT"), kinds=("cascade",), min_risk="high"
    )
    assert (desk.name, desk.secret) == ("desk", "desk-key")
    assert "desk-key" not in repr(desk) and "from-env" not in repr(config)
    assert config.thresholds.cooldown_seconds == 120
    assert config.thresholds_of("BTCUSDT").large_notional == 2_000_000
    solana = config.thresholds_of("SOLUSDT")
    assert (solana.large_notional, solana.cooldown_seconds) == (250_000, 120)


BAD = """
[[sink]]
kind = "pager"

[[sink]]
kind = "telegram"
token = "t"

[[sink]]
kind = "webhook"
url = "ftp://example.com"
secret = "k"
retries = 3

[sink.filter]
sides = ["up"]
min_risk = "severe"

[thresholds]
cascade_events = 0
quiet = true
"""


def test_a_bad_file_stops_serve_with_one_line_per_mistake(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(BAD)
    result = run_cli("serve", "--demo", env={"HEATMAP_ALERTS_CONFIG": str(path)})
    assert result.returncode == 2, f"expected exit 2, got {result.returncode}: {result.stderr}"
    lines = result.stderr.strip().splitlines()
    prefix = f"heatmap-hub: configuration error: HEATMAP_ALERTS_CONFIG: {path}: "
    assert all(line.startswith(prefix) for line in lines), lines
    mistakes = [line.removeprefix(prefix) for line in lines]
    assert mistakes == [
        "sink 1: kind must be one of webhook, telegram, discord, slack, got 'pager'",
        "sink 2 (telegram): chat_id is missing (in the file, or in HEATMAP_SINK_TELEGRAM_CHAT_ID)",
        "sink 3 (webhook): unknown key 'retries'",
        "sink 3 (webhook): url must be an http:// or https:// URL, not the URL",
        "sink 3 (webhook) filter: sides has 'up'; use long, short",
        "sink 3 (webhook) filter: min_risk must be one of low, moderate, high, extreme",
        "[thresholds]: unknown threshold 'quiet' (known: large_notional, large_z, "
        "cascade_events, cascade_notional, cascade_seconds, cascade_z, growth_pct, "
        "cascade_growth_pct, cascade_updates, cluster_min_risk, cooldown_seconds)",
        "[thresholds]: cascade thresholds must be positive",
    ], mistakes


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", env={"HEATMAP_ALERTS_CONFIG": str(tmp_path / "none.toml")})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "HEATMAP_ALERTS_CONFIG: cannot read" in line, line


# -- filters ------------------------------------------------------------------------------


def test_filters_combine_and_unknown_sides_and_exchanges_never_match() -> None:
    large = alert()
    assert SinkFilter().admits(large)
    assert SinkFilter(symbols=("BTCUSDT",), kinds=("large_liquidation",)).admits(large)
    assert not SinkFilter(symbols=("ETHUSDT",)).admits(large)
    assert not SinkFilter(sides=("short",)).admits(large)
    assert SinkFilter(exchanges=("bybit", "binance")).admits(large)
    assert not SinkFilter(exchanges=("okx",)).admits(large)
    assert SinkFilter(min_notional=1_500_000).admits(large)
    assert not SinkFilter(min_notional=1_500_001).admits(large)
    assert SinkFilter(min_risk="high").admits(large)
    assert not SinkFilter(min_risk="extreme").admits(large)
    cluster = msgspec.structs.replace(large, kind="cluster_new", side=None, exchanges=())
    assert not SinkFilter(sides=("long",)).admits(cluster)
    assert not SinkFilter(exchanges=("binance",)).admits(cluster)


# -- each sink against its look-alike -----------------------------------------------------


async def test_webhook_body_is_the_alert_signed_with_a_timestamp(
    webhook: FakeWebhook, delivering: list[AlertDelivery]
) -> None:
    delivery = start(delivering, [sink("webhook", url=webhook.hook_url, secret=SECRET)])
    sent = alert()
    before = int(time.time())
    delivery.offer(sent)
    await webhook.wait_until(lambda: webhook.received, "POST", 20)
    [got] = webhook.received
    assert msgspec.json.decode(got.body, type=Alert) == sent
    expected = "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-hub-signature-256"] == expected
    assert before <= int(got.headers["x-hub-timestamp"]) <= int(time.time())
    assert got.headers["content-type"] == "application/json"
    await eventually(lambda: delivery.status()["webhook"]["delivered"] == 1)


async def test_telegram_discord_slack_get_a_short_message_with_units_and_a_link(
    telegram: FakeTelegram, discord: FakeDiscord, slack: FakeSlack, delivering: list[AlertDelivery]
) -> None:
    delivery = start(
        delivering,
        [
            sink("telegram", token=TOKEN, chat_id=CHAT, api_url=telegram.url),
            sink("discord", url=discord.hook_url),
            sink("slack", url=slack.hook_url),
        ],
    )
    delivery.offer(alert())
    await eventually(
        lambda: all(lane["delivered"] == 1 for lane in delivery.status().values()),
        seen=delivery.status,
    )
    texts = [
        telegram.sent[0]["text"],
        discord.received[0].json()["content"],
        slack.received[0].json()["text"],
    ]
    for text in texts:
        lines = text.splitlines()
        assert lines == [
            "🟠 BTCUSDT long large liquidation, risk high",
            "Long liquidation of $1.50M at $61,234.5 on binance (z 2.5 in 1h)",
            "https://hub.example/?symbol=BTCUSDT&window=1h",
        ], lines
    assert discord.received[0].json()["allowed_mentions"] == {"parse": []}


@pytest.mark.parametrize("kind", ["telegram", "discord", "slack", "webhook"])
async def test_429_is_retried_after_the_time_the_service_asked(
    kind: str,
    telegram: FakeTelegram,
    discord: FakeDiscord,
    slack: FakeSlack,
    webhook: FakeWebhook,
    delivering: list[AlertDelivery],
) -> None:
    fake, config = {
        "telegram": (telegram, sink("telegram", token=TOKEN, chat_id=CHAT, api_url=telegram.url)),
        "discord": (discord, sink("discord", url=discord.hook_url)),
        "slack": (slack, sink("slack", url=slack.hook_url)),
        "webhook": (webhook, sink("webhook", url=webhook.hook_url, secret=SECRET)),
    }[kind]
    fake.script.extend(["429", "503"])  # rate limited, then down a moment, then fine
    delivery = start(delivering, [config])
    delivery.offer(alert())
    await eventually(lambda: delivery.status()[kind]["delivered"] == 1, seen=delivery.status)
    first, second, third = fake.received
    # The pause asked for (1 s; the body's for Telegram and Discord, the header's for the
    # others) was kept, measured on the receiving side.
    assert second.at - first.at >= 0.95, f"retried {second.at - first.at:.3f} s after a 429"
    assert third.body == first.body
    status = delivery.status()[kind]
    assert (status["retried"], status["failed"]) == (2, 0), status
    assert status["last_error"].startswith("HTTP 503"), status


async def test_gives_up_after_max_attempts_and_at_once_on_a_refusal(
    slack: FakeSlack, discord: FakeDiscord, delivering: list[AlertDelivery]
) -> None:
    slack.script.extend(["500"] * 10)
    unknown = f"{discord.url}/api/webhooks/1/wrong-token"
    delivery = start(
        delivering,
        [sink("slack", url=slack.hook_url, max_attempts=3), sink("discord", url=unknown)],
    )
    delivery.offer(alert())
    await eventually(lambda: delivery.status()["slack"]["failed"] == 1, seen=delivery.status)
    await eventually(lambda: delivery.status()["discord"]["failed"] == 1, seen=delivery.status)
    assert len(slack.received) == 3
    assert len(discord.received) == 1  # a 404 is a mistake in the URL: no retry
    status = delivery.status()
    assert status["slack"]["last_error"] == "HTTP 500"
    assert status["discord"]["last_error"] == "HTTP 404"
    assert "wrong-token" not in repr(status)


async def test_a_wrong_telegram_token_is_never_shown(
    telegram: FakeTelegram, delivering: list[AlertDelivery]
) -> None:
    wrong = "999:not-the-token"
    config = sink("telegram", token=wrong, chat_id=CHAT, api_url=telegram.url)
    delivery = start(delivering, [config])
    delivery.offer(alert())
    await eventually(lambda: delivery.status()["telegram"]["failed"] == 1)
    assert delivery.status()["telegram"]["last_error"] == "HTTP 401: Unauthorized"
    assert wrong not in repr(delivery.status())


async def test_no_secret_in_the_logs(
    telegram: FakeTelegram,
    discord: FakeDiscord,
    webhook: FakeWebhook,
    delivering: list[AlertDelivery],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    webhook.script.extend(["500", "500"])
    delivery = start(
        delivering,
        [
            sink("telegram", token=TOKEN, chat_id=CHAT, api_url=telegram.url),
            sink("discord", url=discord.hook_url),
            sink("webhook", url=webhook.hook_url, secret=SECRET, max_attempts=2),
        ],
    )
    delivery.offer(alert())
    await eventually(lambda: delivery.status()["telegram"]["delivered"] == 1)
    await eventually(lambda: delivery.status()["discord"]["delivered"] == 1)
    await eventually(lambda: delivery.status()["webhook"]["failed"] == 1)
    assert "HTTP Request: POST" in caplog.text  # httpx logged the requests ...
    for secret in (TOKEN, SECRET, FakeDiscord.path):
        assert secret not in caplog.text, f"{secret!r} in the logs:\n{caplog.text}"


async def test_a_sink_filter_chooses_its_alerts(
    webhook: FakeWebhook, slack: FakeSlack, delivering: list[AlertDelivery]
) -> None:
    only_eth = SinkFilter(symbols=("ETHUSDT",))
    delivery = start(
        delivering,
        [
            sink("webhook", url=webhook.hook_url, secret=SECRET, filter=only_eth),
            sink("slack", url=slack.hook_url),
        ],
    )
    delivery.offer(alert(1, "BTCUSDT"))
    delivery.offer(alert(2, "ETHUSDT"))
    await eventually(lambda: delivery.status()["slack"]["delivered"] == 2)
    await eventually(lambda: delivery.status()["webhook"]["delivered"] == 1)
    assert [r.json()["symbol"] for r in webhook.received] == ["ETHUSDT"]


async def test_a_dead_sink_holds_up_no_other(
    webhook: FakeWebhook, slack: FakeSlack, delivering: list[AlertDelivery]
) -> None:
    webhook.script.extend(["hang"] * 5)
    delivery = start(
        delivering,
        [
            sink("webhook", url=webhook.hook_url, secret=SECRET, timeout_seconds=30),
            sink("slack", url=slack.hook_url),
        ],
    )
    for number in range(5):
        delivery.offer(alert(number))
    await eventually(lambda: delivery.status()["slack"]["delivered"] == 5, seen=delivery.status)
    # All five reached Slack while the webhook still hangs on its first.
    assert len(webhook.received) == 1
    assert delivery.status()["webhook"]["delivered"] == 0


# -- never twice ----------------------------------------------------------------------------


async def test_the_same_alert_twice_is_sent_once(
    webhook: FakeWebhook, delivering: list[AlertDelivery]
) -> None:
    delivery = start(delivering, [sink("webhook", url=webhook.hook_url, secret=SECRET)])
    delivery.offer(alert(1))
    delivery.offer(alert(1))
    delivery.offer(alert(2))
    await eventually(lambda: delivery.status()["webhook"]["delivered"] == 2)
    await eventually(lambda: delivery.status()["webhook"]["duplicates"] == 1)
    assert [r.json()["id"] for r in webhook.received] == [alert(1).id, alert(2).id]


async def test_no_alert_twice_across_a_restart_on_disk(
    webhook: FakeWebhook, delivering: list[AlertDelivery], tmp_path: Path
) -> None:
    config = [sink("webhook", url=webhook.hook_url, secret=SECRET)]
    first = start(delivering, config, FileDeliveredIds(str(tmp_path)))
    first.offer(alert(1))
    await eventually(lambda: first.status()["webhook"]["delivered"] == 1)
    await first.close()
    again = start(delivering, config, FileDeliveredIds(str(tmp_path)))  # a restarted ingest
    again.offer(alert(1))
    again.offer(alert(2))
    await eventually(lambda: again.status()["webhook"]["delivered"] == 1)
    assert [r.json()["id"] for r in webhook.received] == [alert(1).id, alert(2).id]
    assert again.status()["webhook"]["duplicates"] == 1


async def test_no_alert_twice_across_a_restart_on_redis(
    webhook: FakeWebhook, delivering: list[AlertDelivery], redis_server: RedisServer
) -> None:
    config = [sink("webhook", url=webhook.hook_url, secret=SECRET)]
    redis = Redis.from_url(redis_server.url)
    try:
        first = start(delivering, config, RedisDeliveredIds(redis))
        first.offer(alert(1))
        await eventually(lambda: first.status()["webhook"]["delivered"] == 1)
        await first.close()
        again = start(delivering, config, RedisDeliveredIds(redis))
        again.offer(alert(1))
        again.offer(alert(2))
        await eventually(lambda: again.status()["webhook"]["delivered"] == 1)
        assert [r.json()["id"] for r in webhook.received] == [alert(1).id, alert(2).id]
    finally:
        await redis.aclose()
