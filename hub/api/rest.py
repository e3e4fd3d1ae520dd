"""REST handlers of SPEC. They read the hub; they never change what it holds.

Heatmap snapshots come from the fan-out's replica, the very state WebSocket clients
reach by applying diffs, so REST and the socket never disagree at the same seq.
"""

from __future__ import annotations

import csv
import io
import os
import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hub.analytics.processor import SymbolBook
from hub.api.responses import choice_param, endpoint, int_param, ok, window_param
from hub.channels import heatmap_channel, is_symbol
from hub.errors import RequestError
from hub.models import LiquidationEvent
from hub.runtime import Hub

OUTLIER_Z = 3.0
EXPORT_FIELDS = tuple(LiquidationEvent.__struct_fields__)


class RestApi:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def _book(self, request: Request) -> SymbolBook:
        raw = request.path_params["symbol"]
        symbol = raw.upper()
        book = self.hub.processor.books.get(symbol) if is_symbol(symbol) else None
        if book is None:
            raise RequestError(404, f"symbol {raw!r} is not tracked")
        return book

    @endpoint
    async def heatmap(self, request: Request) -> Response:
        book = self._book(request)
        window = window_param(request)
        snapshot = self.hub.fanout.snapshot(heatmap_channel(book.symbol, window))
        if snapshot is None:
            snapshot = book.snapshot(window, self.hub.clock())
        return ok(snapshot)

    def _window_events(self, request: Request) -> tuple[SymbolBook, str, list[LiquidationEvent]]:
        book = self._book(request)
        window = window_param(request)
        side = choice_param(request, "side", ("long", "short"))
        held = book.windows.get(window)
        if held is None:
            return book, window, []
        cutoff = held.cutoff(self.hub.clock())
        events = self.hub.processor.events(book.symbol, cutoff, side)
        return book, window, list(events)

    @endpoint
    async def liquidations(self, request: Request) -> Response:
        limit = int_param(request, "limit", 100, 1, 10_000)
        book, window, events = self._window_events(request)
        held = book.windows.get(window)
        rows: list[dict[str, Any]] = []
        for event in events[:limit]:
            row = msgspec.structs.asdict(event)
            z_score = held.z_score(event.notional) if held is not None else 0.0
            row["z_score"] = round(z_score, 4)
            row["outlier"] = z_score >= OUTLIER_Z
            rows.append(row)
        return ok(rows)

    @endpoint
    async def leverage(self, request: Request) -> Response:
        book = self._book(request)
        window = window_param(request)
        held = book.windows.get(window)
        tiers = held.tiers.rows() if held is not None else []
        return ok(
            {
                "symbol": book.symbol,
                "window": window,
                "estimated": True,
                "method": "1 / (adverse move from the recent price extreme + maintenance margin)",
                "tiers": tiers,
            }
        )

    @endpoint
    async def export(self, request: Request) -> Response:
        fmt = choice_param(request, "format", ("csv", "json")) or "csv"
        book, window, events = self._window_events(request)
        events.reverse()  # oldest first reads naturally in a file
        filename = f"{book.symbol}_{window}_liquidations.{fmt}"
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
        if fmt == "json":
            return ok(events, headers=headers)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_FIELDS)
        for event in events:
            writer.writerow(msgspec.structs.astuple(event))
        return Response(buffer.getvalue(), media_type="text/csv", headers=headers)

    @endpoint
    async def status(self, request: Request) -> Response:
        hub = self.hub
        now = hub.clock()
        feed = hub.feed.status
        last = feed.last_frame_at
        return ok(
            {
                "sources": {
                    feed.name: {
                        **msgspec.structs.asdict(feed),
                        "last_message_age_ms": None if last is None else max(0, now - last),
                    }
                },
                "symbols": {
                    symbol: {"events": len(book.store), "epoch": book.epoch}
                    for symbol, book in hub.processor.books.items()
                },
                "clients": len(hub.fanout.sessions),
                "broker": hub.broker.status(),
                "fanout": hub.fanout.stats,
                "processor": {"rejected": hub.processor.rejected},
                "memory": {"rss_bytes": _rss_bytes()},
                "uptime_s": round(time.time() - hub.started_at, 3),
            }
        )

    @endpoint
    async def health(self, request: Request) -> Response:
        return ok({"status": "ok"})


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0
