"""`GET /metrics`: the hub's counters in the Prometheus text exposition format (0.0.4).

Rendered from the same status objects REST shows, on each scrape; a handful of series
does not justify a client library.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hub.service.hubs import HubView

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


def _samples(name: str, rows: list[tuple[dict[str, str], float]]) -> list[Sample]:
    return [(name, labels, value) for labels, value in rows]


def hub_families(status: dict[str, Any]) -> list[tuple[str, str, str, list[Sample]]]:
    """Metric families from the same status document `GET /api/heatmap/status` serves."""
    sources: dict[str, dict[str, Any]] = status.get("sources", {})
    broker = msgspec.to_builtins(status["broker"])
    fanout = msgspec.to_builtins(status["fanout"])
    families = [
        (
            f"hub_source_{key}",
            kind,
            help_text,
            _samples(
                f"hub_source_{key}",
                [
                    ({"source": name}, float(source.get(field, 0)))
                    for name, source in sources.items()
                ],
            ),
        )
        for key, field, kind, help_text in _SOURCE_FIELDS
    ]
    families += [
        (
            "hub_symbol_events",
            "gauge",
            "events held per symbol",
            _samples(
                "hub_symbol_events",
                [
                    ({"symbol": symbol}, float(data.get("events", 0)))
                    for symbol, data in status.get("symbols", {}).items()
                ],
            ),
        ),
        (
            "hub_clients",
            "gauge",
            "connected WebSocket clients",
            [("hub_clients", {}, float(status["clients"]))],
        ),
        (
            "hub_broker_connected",
            "gauge",
            "1 when the broker is reachable",
            [("hub_broker_connected", {"kind": broker["kind"]}, float(broker["connected"]))],
        ),
        (
            "hub_broker_published_total",
            "counter",
            "messages published to the broker",
            [("hub_broker_published_total", {"kind": broker["kind"]}, float(broker["published"]))],
        ),
    ]
    families += [
        (
            f"hub_fanout_{key}_total",
            "counter",
            help_text,
            [(f"hub_fanout_{key}_total", {}, float(fanout[key]))],
        )
        for key, help_text in _FANOUT_FIELDS
    ]
    return families


_SOURCE_FIELDS = (
    ("connected", "connected", "gauge", "1 when the upstream connection is up"),
    ("frames_total", "frames", "counter", "upstream frames received"),
    ("events_total", "events", "counter", "liquidation events decoded"),
    ("malformed_total", "malformed", "counter", "frames that could not be decoded"),
    ("reconnects_total", "reconnects", "counter", "upstream reconnects"),
)
_FANOUT_FIELDS = (
    ("messages", "channel messages taken from the broker"),
    ("deliveries", "messages queued to clients"),
    ("writes", "writes of queued frames to clients (fast path)"),
    ("gaps", "heatmap seq gaps seen (then resynced)"),
    ("duplicates", "messages received twice and dropped"),
)


class MetricsApi:
    def __init__(self, hub: HubView) -> None:
        self.hub = hub

    async def metrics(self, request: Request) -> Response:
        return Response(render(hub_families(await self.hub.status())), media_type=CONTENT_TYPE)
