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

from hub.config import EXCHANGES
from hub.service.hubs import HubView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[str, dict[str, str], float]
Family = tuple[str, str, str, list[Sample]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(families: Iterable[Family]) -> str:
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


def _gauge(name: str, help_text: str, rows: list[tuple[dict[str, str], float]]) -> Family:
    return (name, "gauge", help_text, _samples(name, rows))


def _counter(name: str, help_text: str, rows: list[tuple[dict[str, str], float]]) -> Family:
    return (name, "counter", help_text, _samples(name, rows))


def hub_families(status: dict[str, Any], health: dict[str, Any]) -> list[Family]:
    """Metric families from the same status and health documents REST serves. A family
    whose value is unknown here (a lag not measured yet, `ingest` on a `serve`) is listed
    with no sample, so every process names every metric."""
    sources: dict[str, dict[str, Any]] = status.get("sources", {})
    broker = msgspec.to_builtins(status["broker"])
    fanout = msgspec.to_builtins(status["fanout"])
    access = status["access"]
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
    # A source's `events` are liquidations only for an exchange: the replay's are the sum
    # of its exchanges' (a Grafana sum() would count them twice), the order book's are
    # trades and open interest's updates.
    families += [
        _counter(
            "hub_source_events_total",
            "liquidation events decoded, per exchange",
            [
                ({"source": name}, float(source.get("events", 0)))
                for name, source in sources.items()
                if name in EXCHANGES
            ],
        ),
        _counter(
            "hub_source_updates_total",
            "what a side source decoded: order-book trades, mark prices, open interest",
            [
                ({"source": name}, float(source.get("events", 0)))
                for name, source in sources.items()
                if name not in EXCHANGES and name != "replay"
            ],
        ),
        _gauge(
            "hub_source_last_message_age_seconds",
            "seconds since the upstream last sent a frame",
            [
                ({"source": name}, source["last_message_age_ms"] / 1000)
                for name, source in sources.items()
                if source.get("last_message_age_ms") is not None
            ],
        ),
        _gauge(
            "hub_symbol_events",
            "events held per symbol",
            [
                ({"symbol": symbol}, float(data.get("events", 0)))
                for symbol, data in status.get("symbols", {}).items()
            ],
        ),
        _gauge("hub_clients", "connected WebSocket clients", [({}, float(status["clients"]))]),
        _gauge(
            "hub_broker_connected",
            "1 when the broker is reachable",
            [({"kind": broker["kind"]}, float(broker["connected"]))],
        ),
        _gauge(
            "hub_broker_lag_seconds",
            "round trip of a ping behind the messages not yet taken from Redis",
            [({"kind": broker["kind"]}, broker["lag_ms"] / 1000)]
            if broker.get("lag_ms") is not None
            else [],
        ),
        _counter(
            "hub_broker_published_total",
            "messages published to the broker",
            [({"kind": broker["kind"]}, float(broker["published"]))],
        ),
        _gauge(
            "hub_ingest_reporting",
            "on a web process: 1 while ingest's status is fresh in Redis",
            [({}, float(status["ingest"] == "reporting"))] if "ingest" in status else [],
        ),
        _gauge(
            "hub_degraded",
            "1 while /health says degraded",
            [({}, float(health.get("status") != "ok"))],
        ),
        _gauge(
            "process_resident_memory_bytes",
            "resident memory of this process",
            [({}, float(status["memory"]["rss_bytes"]))],
        ),
        _gauge(
            "hub_uptime_seconds",
            "seconds since this process started",
            [({}, float(status["uptime_s"]))],
        ),
    ]
    families += [
        _counter(f"hub_fanout_{key}_total", help_text, [({}, float(fanout[key]))])
        for key, help_text in _FANOUT_FIELDS
    ]
    return families + _access_families(access) + _alert_families(status.get("alerts"))


def _alert_families(alerts: dict[str, Any] | None) -> list[Family]:
    """Per sink (its name) and sink kind; no sample where no sink is configured, or on a
    `web` process before ingest has reported."""
    sinks: dict[str, dict[str, Any]] = (alerts or {}).get("sinks", {})
    return [
        _counter(
            f"hub_alerts_{key}_total",
            help_text,
            [
                ({"sink": name, "kind": sink["kind"]}, float(sink[field]))
                for name, sink in sinks.items()
            ],
        )
        for key, field, help_text in _ALERT_FIELDS
    ]


def _access_families(access: dict[str, Any]) -> list[Family]:
    return [
        _gauge(
            "hub_access_keys",
            "API keys in the keys file (no sample while keys are off)",
            [({}, float(access["keys"]))] if access["keys"] is not None else [],
        ),
        _gauge(
            "hub_access_keys_error",
            "1 while the keys file cannot be read (the last good keys stay in force)",
            [({}, float(access["keys_error"] is not None))],
        ),
        _gauge(
            "hub_access_limits_shared",
            "1 while the limits are counted in Redis across processes",
            [({}, float(access["limits_shared"]))],
        ),
        _counter(
            "hub_access_unauthorized_total",
            "requests and connections refused for a missing or unknown key (401, 4401)",
            [
                ({"transport": "rest"}, float(access["unauthorized_rest"])),
                ({"transport": "ws"}, float(access["unauthorized_ws"])),
            ],
        ),
        _counter(
            "hub_access_forbidden_total",
            "REST requests a key may not make (403)",
            [({}, float(access["forbidden_rest"]))],
        ),
        _counter(
            "hub_access_rate_limited_total",
            "REST requests over HUB_REST_RATE_LIMIT (429)",
            [({}, float(access["rate_limited_rest"]))],
        ),
        _counter(
            "hub_access_connections_refused_total",
            "WebSocket connections over a connection limit, by address or by key",
            [
                ({"by": "ip"}, float(access["refused_ip"])),
                ({"by": "key"}, float(access["refused_key"])),
            ],
        ),
        _counter(
            "hub_access_revoked_closes_total",
            "WebSocket connections closed because their key was revoked",
            [({}, float(access["revoked_closes"]))],
        ),
    ]


_SOURCE_FIELDS = (
    ("connected", "connected", "gauge", "1 when the upstream connection is up"),
    ("silent", "silent", "gauge", "1 when connected but no frame for 60 s"),
    ("frames_total", "frames", "counter", "upstream frames received"),
    ("malformed_total", "malformed", "counter", "frames that could not be decoded"),
    ("reconnects_total", "reconnects", "counter", "upstream reconnects"),
)
_ALERT_FIELDS = (
    ("sent", "delivered", "alerts a sink took (2xx)"),
    ("failed", "failed", "alerts given up after their retries, or refused"),
    ("retried", "retried", "attempts retried (429, 5xx, timeouts, connection errors)"),
    ("dropped", "dropped", "alerts dropped from a full sink queue"),
)
_FANOUT_FIELDS = (
    ("messages", "channel messages taken from the broker"),
    ("deliveries", "messages queued to clients"),
    ("writes", "writes of queued frames to clients (fast path)"),
    ("gaps", "heatmap seq gaps seen (then resynced)"),
    ("duplicates", "messages received twice and dropped"),
    ("dropped", "channel messages dropped from slow clients' queues"),
    ("slow_closes", "clients closed with 1013 for not reading"),
)


class MetricsApi:
    def __init__(self, hub: HubView) -> None:
        self.hub = hub

    async def metrics(self, request: Request) -> Response:
        families = hub_families(await self.hub.status(), await self.hub.health())
        return Response(render(families), media_type=CONTENT_TYPE)
