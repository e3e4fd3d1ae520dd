"""`GET /metrics`: the hub's counters in the Prometheus text exposition format (0.0.4).

Rendered from the same status objects REST shows, on each scrape; a handful of series
does not justify a client library.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

from hub.runtime import Hub

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[str, dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(families: Iterable[tuple[str, str, str, list[Sample]]]) -> str:
    lines: list[str] = []
    for name, kind, help_text, samples in families:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for sample_name, labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(
                f"{sample_name}{{{label_text}}} {value:g}" if labels else f"{sample_name} {value:g}"
            )
    return "\n".join(lines) + "\n"


def hub_families(hub: Hub) -> list[tuple[str, str, str, list[Sample]]]:
    feed = hub.feed.status
    source = {"source": feed.name}
    broker = hub.broker.status()
    stats = hub.fanout.stats
    return [
        (
            "hub_source_connected",
            "gauge",
            "1 when the upstream connection is up",
            [("hub_source_connected", source, float(feed.connected))],
        ),
        (
            "hub_source_frames_total",
            "counter",
            "upstream frames received",
            [("hub_source_frames_total", source, feed.frames)],
        ),
        (
            "hub_source_events_total",
            "counter",
            "liquidation events decoded",
            [("hub_source_events_total", source, feed.events)],
        ),
        (
            "hub_source_malformed_total",
            "counter",
            "frames that could not be decoded",
            [("hub_source_malformed_total", source, feed.malformed)],
        ),
        (
            "hub_source_reconnects_total",
            "counter",
            "upstream reconnects",
            [("hub_source_reconnects_total", source, feed.reconnects)],
        ),
        (
            "hub_symbol_events",
            "gauge",
            "events held per symbol",
            [
                ("hub_symbol_events", {"symbol": s}, len(b.store))
                for s, b in hub.processor.books.items()
            ],
        ),
        (
            "hub_clients",
            "gauge",
            "connected WebSocket clients",
            [("hub_clients", {}, len(hub.fanout.sessions))],
        ),
        (
            "hub_fanout_messages_total",
            "counter",
            "channel messages taken from the broker",
            [("hub_fanout_messages_total", {}, stats.messages)],
        ),
        (
            "hub_fanout_deliveries_total",
            "counter",
            "messages queued to clients",
            [("hub_fanout_deliveries_total", {}, stats.deliveries)],
        ),
        (
            "hub_fanout_gaps_total",
            "counter",
            "heatmap seq gaps seen (then resynced)",
            [("hub_fanout_gaps_total", {}, stats.gaps)],
        ),
        (
            "hub_broker_connected",
            "gauge",
            "1 when the broker is reachable",
            [("hub_broker_connected", {"kind": broker.kind}, float(broker.connected))],
        ),
        (
            "hub_broker_published_total",
            "counter",
            "messages published to the broker",
            [("hub_broker_published_total", {"kind": broker.kind}, broker.published)],
        ),
    ]


class MetricsApi:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def metrics(self, request: Request) -> Response:
        return Response(render(hub_families(self.hub)), media_type=CONTENT_TYPE)
