"""The Starlette application: explicit route list, hub started and stopped by lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib import resources

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute

from hub.api.access import AccessMiddleware
from hub.api.admin import AdminApi
from hub.api.alerts import AlertsApi
from hub.api.cors import cors_middleware
from hub.api.export import ExportApi
from hub.api.liquidity import LiquidityApi
from hub.api.metrics import MetricsApi
from hub.api.predicted import PredictedApi
from hub.api.responses import EXCEPTION_HANDLERS
from hub.api.rest import RestApi
from hub.api.timeline import TimelineApi
from hub.api.websocket import WebSocketApi
from hub.fanout.protocol import Limits
from hub.service.hubs import HubView

API = "/api/heatmap"


def create_app(hub: HubView, limits: Limits | None = None) -> Starlette:
    rest = RestApi(hub)
    liquidity = LiquidityApi(hub)
    metrics = MetricsApi(hub)
    admin = AdminApi(hub)
    predicted = PredictedApi(hub)
    sockets = WebSocketApi(hub, limits)
    page_html = resources.files("hub").joinpath("web/heatmap.html").read_text(encoding="utf-8")

    async def page(request: Request) -> HTMLResponse:
        """The live heatmap page: one self-contained HTML file talking to /ws."""
        return HTMLResponse(page_html, headers={"Cache-Control": "no-cache"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    routes = [
        Route("/", page),
        Route("/health", rest.health),
        Route("/metrics", metrics.metrics),
        Route(f"{API}/status", rest.status),
        Route(f"{API}/alerts", AlertsApi(hub).recent),
        Route(f"{API}/symbols", admin.listing),
        Route(f"{API}/symbols", admin.add, methods=["POST"]),
        Route(f"{API}/symbols", admin.remove, methods=["DELETE"]),
        Route(f"{API}/liquidations/{{symbol}}", rest.liquidations),
        Route(f"{API}/liquidations/{{symbol}}/heatmap", rest.heatmap),
        Route(f"{API}/liquidations/{{symbol}}/leverage", rest.leverage),
        Route(f"{API}/liquidations/{{symbol}}/timeline", TimelineApi(hub).timeline),
        Route(f"{API}/export/{{symbol}}", ExportApi(hub).export),
        Route(f"{API}/liquidity/{{symbol}}", liquidity.liquidity),
        Route(f"{API}/unified/{{symbol}}", liquidity.unified),
        Route(f"{API}/predicted/{{symbol}}", predicted.levels),
        Route(f"{API}/predicted/{{symbol}}/timeline", predicted.timeline),
        WebSocketRoute("/ws", sockets.serve),
    ]
    # CORS outside the keys: a preflight needs no key, and a refusal carries CORS headers.
    middleware = [
        *cors_middleware(hub.settings),
        Middleware(AccessMiddleware, gate=hub.access, routes=routes),
    ]
    # Every HTTP error answers the REST envelope, not Starlette's plain text.
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.hub = hub
    app.state.sockets = sockets
    return app


async def say_goodbye(app: Starlette) -> None:
    """Before the server stops: stop the upstream, flush pending diffs, then close every
    client with 1001."""
    await app.state.hub.stop_intake()  # a busy upstream would keep the queues from draining
    await app.state.hub.flush_now()
    await app.state.sockets.close_all(1001, "server shutting down")
