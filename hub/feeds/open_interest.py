"""Binance open interest and mark price: the inputs of predicted levels (status `open_interest`).

Open interest has no stream, so it is polled: `GET {BINANCE_REST_URL}/fapi/v1/openInterest`
per symbol, each every `poll_interval` seconds (10 by default: a poll at least every 30 s is
what the hub promises). Requests are spaced evenly over the interval and never faster than
`max_rate` per second: weight 1 each against Binance's 2,400 a minute, so 10/s is a quarter
of it. With more than `poll_interval x max_rate` symbols a round takes longer than the
interval, and status says how long the last one took. HTTP 418/429 pause polling for the
`Retry-After` the server asks. Every failure (refused, timeout, HTTP error, malformed body)
is a state on status, never an exception: the next poll tries again.

The mark price comes from `<symbol>@markPrice@1s` on the `/market` route (the all-market
`!markPrice@arr@1s` past 200 symbols, or when every symbol seen is tracked) through the
shared `PersistentConnection`.

Both are normalized to `OpenInterestUpdate` / `MarkPriceUpdate` for the sink; other
exchanges' open interest plugs into the same sink. Frame listeners see mark price frames,
REST listeners each polled body, so `record` writes them to a replay file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import httpx

from hub.feeds.backoff import Backoff
from hub.feeds.base import Feed, FeedStatus, MarketSink
from hub.feeds.binance import MAX_STREAMS, market_route
from hub.feeds.binance_market import (
    ALL_MARK_PRICES,
    OPEN_INTEREST_PATH,
    mark_price_stream,
    parse_mark_price_frame,
    parse_open_interest,
)
from hub.feeds.connection import PersistentConnection, Timing
from hub.models import MarkPriceUpdate, OpenInterestUpdate
from hub.tasks import run_together

RestListener = Callable[[int, str, bytes], None]  # (received ms, path, body as received)

log = logging.getLogger("hub.feeds")


def _now_ms() -> int:
    return int(time.time() * 1000)


class BinanceOpenInterest(Feed):
    def __init__(
        self,
        rest_url: str,
        ws_url: str,
        symbols: set[str],
        sink: MarketSink,
        all_market: bool = False,
        poll_interval: float = 10.0,
        max_rate: float = 10.0,
        request_timeout: float = 5.0,
        timing: Timing | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.ws_url = market_route(ws_url)
        self.symbols = {s.upper() for s in symbols}
        self.sink = sink
        self.all_market = all_market
        self.poll_interval = poll_interval
        self.max_rate = max_rate
        self.request_timeout = request_timeout
        self.mark_status = FeedStatus(name="open_interest.mark_price")
        self.poll_status = FeedStatus(name="open_interest.poll", url=self.rest_url)
        self.poll_ok = False
        self.last_round_s: float | None = None
        self._rest_listeners: list[RestListener] = []
        self._url_streams: list[str] = []
        self.connection = PersistentConnection(
            self.mark_status, self._connect_url, self._on_frame, None, timing, backoff
        )

    @property
    def status(self) -> FeedStatus:  # type: ignore[override]
        """One source for status: connected while the mark price stream is up and the last
        poll succeeded; messages are mark price frames plus polled answers."""
        mark, poll = self.mark_status, self.poll_status
        seen = [t for t in (mark.last_frame_at, poll.last_frame_at) if t is not None]
        round_note = "" if self.last_round_s is None else f"; last round {self.last_round_s:.1f}s"
        return FeedStatus(
            name="open_interest",
            connected=mark.connected and self.poll_ok,
            url=f"{self.rest_url}{OPEN_INTEREST_PATH} + {mark.url}",
            frames=mark.frames + poll.frames,
            events=mark.events + poll.events,
            malformed=mark.malformed + poll.malformed,
            ignored=mark.ignored + poll.ignored,
            reconnects=mark.reconnects,
            last_frame_at=max(seen) if seen else None,
            last_error=poll.last_error if not self.poll_ok else mark.last_error,
            anomalies={**mark.anomalies, **poll.anomalies},
            note=f"open interest polled every {self.poll_interval:g}s per symbol, "
            f"at most {self.max_rate:g} requests/s{round_note}",
        )

    def add_rest_listener(self, listener: RestListener) -> None:
        self._rest_listeners.append(listener)

    async def run(self) -> None:
        await run_together(self.connection.run(), self._poll_loop())

    def track(self, symbol: str) -> None:
        """Poll this symbol too, on the all-market stream (which carries its mark price)."""
        self.symbols.add(symbol.upper())

    async def add_symbols(self, symbols: set[str]) -> None:
        self.symbols |= {s.upper() for s in symbols}
        await self._follow_symbols()

    async def remove_symbols(self, symbols: set[str]) -> None:
        self.symbols -= {s.upper() for s in symbols}
        await self._follow_symbols()

    # -- mark price ---------------------------------------------------------------------

    def _streams(self) -> list[str]:
        if self.all_market or not self.symbols or len(self.symbols) > MAX_STREAMS:
            return [ALL_MARK_PRICES]
        return [mark_price_stream(s) for s in sorted(self.symbols)]

    def _connect_url(self) -> str:
        self._url_streams = self._streams()
        return f"{self.ws_url}/stream?streams={'/'.join(self._url_streams)}"

    async def _follow_symbols(self) -> None:
        """A new URL on the next connection; the current one is closed to get there (the
        set changes rarely: an admin adding symbols, or `*` tracking a new one)."""
        websocket = self.connection.websocket
        if websocket is not None and self._streams() != self._url_streams:
            with contextlib.suppress(Exception):
                await websocket.close(1000, "changing streams")

    def _on_frame(self, frame: bytes, received_ms: int) -> None:
        self._frame_received(received_ms, frame)
        parsed = parse_mark_price_frame(frame)
        status = self.mark_status
        if parsed.anomaly is not None:
            status.malformed += parsed.anomaly == "malformed"
            status.count_anomaly(parsed.anomaly, parsed.detail)
            return
        for update in parsed.updates:
            if update.symbol not in self.symbols:
                status.ignored += 1
                continue
            status.events += 1
            self._deliver(update)

    def _deliver(self, update: OpenInterestUpdate | MarkPriceUpdate) -> None:
        try:
            self.sink(update)
        except Exception:  # a processor bug must not cost the source
            log.exception("open_interest: the sink failed on %s", update)

    # -- open interest ------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        async with httpx.AsyncClient(
            base_url=self.rest_url, timeout=self.request_timeout
        ) as client:
            while True:
                symbols = sorted(self.symbols)
                if not symbols:
                    await asyncio.sleep(self.poll_interval)
                    continue
                spacing = max(self.poll_interval / len(symbols), 1.0 / self.max_rate)
                started = time.monotonic()
                for index, symbol in enumerate(symbols):
                    pause = await self.poll(client, symbol)
                    due = started + (index + 1) * spacing
                    await asyncio.sleep(max(pause, due - time.monotonic()))
                self.last_round_s = time.monotonic() - started

    async def poll(self, client: httpx.AsyncClient, symbol: str) -> float:
        """Ask once for `symbol`'s open interest; returns the pause the server asked for."""
        status = self.poll_status
        try:
            response = await client.get(OPEN_INTEREST_PATH, params={"symbol": symbol})
        except httpx.HTTPError as error:
            self._failed(f"{type(error).__name__}: {error or 'no answer'}")
            return 0.0
        received = _now_ms()
        if response.status_code in (418, 429):
            pause = _retry_after(response.headers.get("Retry-After"))
            self._failed(f"HTTP {response.status_code}: rate limited; pausing {pause:g}s")
            return pause
        if response.status_code != 200:
            self._failed(f"HTTP {response.status_code}: {response.text[:120]}")
            return 0.0
        for listener in self._rest_listeners:
            listener(received, OPEN_INTEREST_PATH, response.content)
        status.frames += 1
        status.last_frame_at = received
        try:
            update = parse_open_interest(response.content)
        except ValueError as error:
            status.malformed += 1
            status.count_anomaly("malformed", str(error))
            self._failed(str(error))
            return 0.0
        if update.symbol != symbol:
            self._failed(f"asked for {symbol}, the answer is for {update.symbol}")
            return 0.0
        self.poll_ok = True
        status.events += 1
        self._deliver(update)
        return 0.0

    def _failed(self, error: str) -> None:
        if self.poll_ok or self.poll_status.last_error != error:
            log.warning("open_interest: poll failed: %s", error)
        self.poll_ok = False
        self.poll_status.last_error = error


def _retry_after(value: str | None, default: float = 60.0) -> float:
    try:
        return min(600.0, max(1.0, float(value))) if value is not None else default
    except ValueError:
        return default
