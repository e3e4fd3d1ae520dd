"""`GET /api/heatmap/alerts?symbol=&kind=&since=&limit=`: the recent alerts, newest first.

From the process's alert history (`hub.alerting.history`): what `ingest` kept in Redis,
or what this `serve` kept. `symbol` need not be tracked any more: its past alerts stay.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from hub.alerting.config import ALERT_KINDS
from hub.api.responses import choice_param, endpoint, int_param, ok, query_value
from hub.channels import is_symbol
from hub.errors import RequestError, echo
from hub.service.hubs import HubView

DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000


class AlertsApi:
    def __init__(self, hub: HubView) -> None:
        self.hub = hub

    @endpoint
    async def recent(self, request: Request) -> Response:
        symbol = query_value(request, "symbol")
        if symbol is not None:
            symbol = symbol.upper()
            if not is_symbol(symbol):
                raise RequestError(400, f"symbol: {echo(symbol)} is not a symbol")
        kind = choice_param(request, "kind", ALERT_KINDS)
        since = int_param(request, "since", 0, 0, 1 << 62)
        limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        return ok(await self.hub.alerts(symbol, kind, since, limit))
