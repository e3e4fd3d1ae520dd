"""One module per sink kind, each a `Sink` (base.py): the request an alert becomes, and
what the service's answer means. No I/O here: `hub.alerting.delivery` sends."""

from __future__ import annotations

from hub.alerting.config import SinkConfig
from hub.alerting.sinks.base import Sink
from hub.alerting.sinks.discord import DiscordSink
from hub.alerting.sinks.slack import SlackSink
from hub.alerting.sinks.telegram import TelegramSink
from hub.alerting.sinks.webhook import WebhookSink

_KINDS: dict[str, type[Sink]] = {
    "webhook": WebhookSink,
    "telegram": TelegramSink,
    "discord": DiscordSink,
    "slack": SlackSink,
}


def make_sink(config: SinkConfig, public_url: str | None) -> Sink:
    return _KINDS[config.kind](config, public_url)
