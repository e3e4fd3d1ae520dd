"""OKX liquidation feed: the `liquidation-orders` channel, one subscription for every swap.

Contract values come from the instruments list, fetched before the first subscription
(no subscription without them: every size would be unconvertible) and refreshed daily;
a failed refresh keeps the values held. Keep-alive is OKX's text `ping` every 20 s (OKX
drops a connection idle for 30 s). Tracked symbols are filtered here, since the channel
cannot be narrowed; status lists tracked symbols OKX does not list.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from websockets.asyncio.client import ClientConnection

from hub.errors import UpstreamError
from hub.feeds.backoff import Backoff
from hub.feeds.base import EventSink, Feed, FeedStatus, deliver
from hub.feeds.connection import KeepAlive, PersistentConnection, Timing
from hub.feeds.okx_instruments import REFRESH_MS, fetch_instruments
from hub.feeds.okx_liquidations import SUBSCRIPTION, OkxLiquidationDecoder
from hub.feeds.okx_wire import PING, is_pong, request, swap_inst_id

log = logging.getLogger("hub.feeds")


class OkxLiquidationFeed(Feed):
    def __init__(
        self,
        ws_url: str,
        rest_url: str,
        symbols: set[str] | None,
        sink: EventSink,
        timing: Timing | None = None,
        backoff: Backoff | None = None,
        refresh_ms: int = REFRESH_MS,
    ) -> None:
        self.ws_url = ws_url
        self.rest_url = rest_url
        self.symbols = None if symbols is None else {s.upper() for s in symbols}
        self.sink = sink
        self.refresh_ms = refresh_ms
        self.decoder = OkxLiquidationDecoder()
        self.status = FeedStatus(
            name="okx", note="OKX pushes liquidation-orders for every swap; not every liquidation"
        )
        self.instruments_fetched_at: int | None = None
        self._http: httpx.AsyncClient | None = None
        self.connection = PersistentConnection(
            self.status,
            lambda: self.ws_url,
            self._on_frame,
            self._on_open,
            timing or Timing(ping_interval=20.0),
            backoff,
            KeepAlive(PING, is_pong),
        )

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            self._http = client
            refresher = asyncio.create_task(self._refresh_loop())
            try:
                await self.connection.run()
            finally:
                refresher.cancel()

    async def _on_open(self, websocket: ClientConnection) -> None:
        if not self.decoder.contract_values:
            await self.load_instruments()  # an UpstreamError reconnects with backoff
        await websocket.send(request("subscribe", [SUBSCRIPTION]))

    async def load_instruments(self) -> None:
        assert self._http is not None
        path, body, values = await fetch_instruments(self._http, self.rest_url)
        now = int(time.time() * 1000)
        self._rest_received(now, path, body)
        self.decoder.contract_values = values
        self.instruments_fetched_at = now
        self._note_unlisted()
        log.info("okx: contract values of %d linear swaps", len(values))

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_ms / 1000)
            try:
                await self.load_instruments()
            except UpstreamError as error:
                self.status.last_error = str(error)
                log.warning("okx: instruments refresh failed, keeping the held ones: %s", error)

    def _note_unlisted(self) -> None:
        values = self.decoder.contract_values
        if self.symbols is None or not values:
            self.status.unlisted = []
            return
        self.status.unlisted = sorted(s for s in self.symbols if swap_inst_id(s) not in values)

    def _on_frame(self, frame: bytes, received_ms: int) -> None:
        self._frame_received(received_ms, frame)
        decoded = self.decoder.decode(frame)
        for kind, detail in decoded.anomalies:
            if kind == "error_reply":
                self.status.last_error = detail
        deliver(self.status, decoded, self.symbols, self.sink)

    async def add_symbols(self, symbols: set[str]) -> None:
        if self.symbols is not None:
            self.symbols |= {s.upper() for s in symbols}
            self._note_unlisted()

    async def remove_symbols(self, symbols: set[str]) -> None:
        if self.symbols is not None:
            self.symbols -= {s.upper() for s in symbols}
            self._note_unlisted()
