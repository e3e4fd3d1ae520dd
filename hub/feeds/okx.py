"""OKX liquidation feed: the `liquidation-orders` channel, one subscription for every swap;
with a `market_sink`, also `open-interest` per tracked swap on the same connection.

Contract values come from the instruments list, fetched before the first subscription
(no subscription without them: every size would be unconvertible) and refreshed daily;
a failed refresh keeps the values held. Keep-alive is OKX's text `ping` every 20 s (OKX
drops a connection idle for 30 s). Tracked symbols are filtered here, since the channel
cannot be narrowed; status lists tracked symbols OKX does not list. Open interest is
subscribed per listed swap (every linear swap under `*`), in requests of at most
MAX_ARGS_PER_REQUEST arguments, and follows symbols added and removed at run time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hub.errors import UpstreamError
from hub.feeds.backoff import Backoff
from hub.feeds.base import EventSink, Feed, FeedStatus, MarketSink, deliver, deliver_market
from hub.feeds.connection import KeepAlive, PersistentConnection, Timing
from hub.feeds.okx_instruments import REFRESH_MS, fetch_instruments
from hub.feeds.okx_liquidations import SUBSCRIPTION, OkxLiquidationDecoder
from hub.feeds.okx_open_interest import subscription as open_interest_subscription
from hub.feeds.okx_wire import PING, is_pong, request, swap_inst_id, swap_symbol

MAX_ARGS_PER_REQUEST = 50  # ~3 KB of arguments, well under what OKX takes in one request
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
        market_sink: MarketSink | None = None,
    ) -> None:
        """`market_sink` None: open interest is not subscribed."""
        self.ws_url = ws_url
        self.rest_url = rest_url
        self.symbols = None if symbols is None else {s.upper() for s in symbols}
        self.sink = sink
        self.market_sink = market_sink
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
        await self._send_open_interest("subscribe", self._open_interest_symbols(), websocket)

    def _open_interest_symbols(self) -> set[str]:
        """The listed swaps whose open interest is wanted (none without a market sink)."""
        if self.market_sink is None:
            return set()
        if self.symbols is not None:
            return {s for s in self.symbols if swap_inst_id(s) in self.decoder.contract_values}
        return {s for i in self.decoder.contract_values if (s := swap_symbol(i)) is not None}

    async def _send_open_interest(
        self, op: str, symbols: set[str], websocket: ClientConnection | None = None
    ) -> None:
        websocket = websocket or self.connection.websocket
        if self.market_sink is None or websocket is None:
            return  # the next connection subscribes to the whole set
        args: list[dict[str, Any]] = [
            arg for s in sorted(symbols) if (arg := open_interest_subscription(s)) is not None
        ]
        for start in range(0, len(args), MAX_ARGS_PER_REQUEST):
            try:
                await websocket.send(request(op, args[start : start + MAX_ARGS_PER_REQUEST]))
            except ConnectionClosed:
                return

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
        deliver_market(self.status, decoded, self.symbols, self.market_sink)

    async def add_symbols(self, symbols: set[str]) -> None:
        if self.symbols is None:
            return
        before = self._open_interest_symbols()
        self.symbols |= {s.upper() for s in symbols}
        self._note_unlisted()
        await self._send_open_interest("subscribe", self._open_interest_symbols() - before)

    async def remove_symbols(self, symbols: set[str]) -> None:
        if self.symbols is None:
            return
        before = self._open_interest_symbols()
        self.symbols -= {s.upper() for s in symbols}
        self._note_unlisted()
        await self._send_open_interest("unsubscribe", before - self._open_interest_symbols())
