"""A WebSocket connection to an exchange that stays up: reconnects, keep-alive, watchdog.

Shared by every exchange adapter; the adapter supplies the URL, what to send on open and
what to do with each frame. Decisions:
- Our own keep-alive (a ping every `ping_interval`), not the library's, so a pong counts
  as life for the watchdog exactly like a data frame does. Binance's pings are answered
  by the protocol layer. Exchanges that want an application ping (Bybit's JSON
  `{"op":"ping"}`, OKX's text `ping`) give a `KeepAlive`: its replies are life for the
  watchdog but not messages, so a connection that only answers pings reads as silent.
  The same goes for an exchange's own application pings (HTX's `{"op":"ping"}`, Deribit's
  `test_request`), which the `KeepAlive` answers.
- Frames an exchange compresses (HTX's GZIP) are inflated here, before anyone sees them:
  listeners, recordings and decoders get the JSON text. One that does not inflate is
  counted as malformed and skipped.
- The watchdog closes a connection that has shown no frame (data or pong) for
  `watchdog_timeout`: a half-open TCP connection would otherwise look healthy for hours.
- A planned reconnect after `max_age` beats Binance's 24-hour cut, and skips the backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from hub.errors import UpstreamError
from hub.feeds.backoff import Backoff
from hub.feeds.base import FeedStatus
from hub.tasks import cancel_and_wait

log = logging.getLogger("hub.feeds")


class Timing:
    def __init__(
        self,
        ping_interval: float = 30.0,
        watchdog_timeout: float = 90.0,
        max_age: float = 23.5 * 3600,
        open_timeout: float = 10.0,
        silent_after: float = 60.0,
    ) -> None:
        self.ping_interval = ping_interval
        self.silent_after = silent_after  # no frame this long on an open connection: silent
        self.watchdog_timeout = watchdog_timeout
        self.max_age = max_age
        self.open_timeout = open_timeout


class KeepAlive(NamedTuple):
    """An application-level keep-alive: what to send every ping interval (a text, a
    function making one, or None for a protocol ping), how to recognise its reply, and
    the answer to the exchange's own pings (None: not one)."""

    message: str | Callable[[], str] | None
    is_reply: Callable[[bytes], bool]
    answer: Callable[[bytes], str | None] | None = None


class _Expired(Exception):
    """The connection reached its planned age."""


class PersistentConnection:
    def __init__(
        self,
        status: FeedStatus,
        url: Callable[[], str],
        on_frame: Callable[[bytes, int], None],
        on_open: Callable[[ClientConnection], Awaitable[None]] | None = None,
        timing: Timing | None = None,
        backoff: Backoff | None = None,
        keep_alive: KeepAlive | None = None,
        inflate: Callable[[bytes], bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.keep_alive = keep_alive
        self.inflate = inflate
        self.headers = dict(headers or {})
        self.url = url
        self.on_frame = on_frame
        self.on_open = on_open
        self.timing = timing or Timing()
        self.backoff = backoff or Backoff()
        self.websocket: ClientConnection | None = None
        self._last_life = 0.0

    async def run(self) -> None:
        while True:
            url = self.url()
            self.status.url = url
            opened = time.monotonic()
            planned = False
            try:
                async with connect(
                    url,
                    additional_headers=self.headers,
                    ping_interval=None,
                    open_timeout=self.timing.open_timeout,
                    max_size=2**22,
                    close_timeout=2,
                ) as websocket:
                    await self._serve(websocket)
            except _Expired:
                planned = True
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, UpstreamError) as e:
                self.status.last_error = f"{type(e).__name__}: {e}"
                what = "lost" if self.status.connected else "failed"
                log.warning("%s: connection to %s %s: %s", self.status.name, url, what, e)
            except InvalidURI as error:
                raise UpstreamError(f"bad upstream URL {url!r}: {error}") from error
            finally:
                self.websocket = None
                self.status.connected = False
                self.status.connected_since = None
            self.status.reconnects += 1
            self.backoff.connection_lasted(time.monotonic() - opened)
            if not planned:
                await asyncio.sleep(self.backoff.next_delay())

    async def _serve(self, websocket: ClientConnection) -> None:
        self.status.connected = True
        self.status.connected_since = int(time.time() * 1000)
        self._last_life = time.monotonic()
        if self.on_open is not None:
            await self.on_open(websocket)
        self.websocket = websocket
        reader = asyncio.create_task(self._read(websocket))
        keeper = asyncio.create_task(self._keep_alive(websocket))
        try:
            done, _ = await asyncio.wait((reader, keeper), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            await cancel_and_wait((reader, keeper))

    async def _read(self, websocket: ClientConnection) -> None:
        keep_alive = self.keep_alive
        while True:
            frame = await websocket.recv(decode=False)
            self._last_life = time.monotonic()
            if self.inflate is not None:
                try:
                    frame = self.inflate(frame)
                except (OSError, EOFError, zlib.error) as error:
                    self.status.malformed += 1
                    self.status.count_anomaly("malformed", f"does not inflate: {error}")
                    continue
            if keep_alive is not None:
                if keep_alive.is_reply(frame):
                    continue
                if keep_alive.answer is not None:
                    reply = keep_alive.answer(frame)
                    if reply is not None:
                        await websocket.send(reply)
                        continue
            received = int(time.time() * 1000)
            self.status.frames += 1
            self.status.last_frame_at = received
            self.on_frame(frame, received)

    async def _keep_alive(self, websocket: ClientConnection) -> None:
        opened = time.monotonic()
        interval = min(self.timing.ping_interval, self.timing.watchdog_timeout / 2)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if now - opened >= self.timing.max_age:
                raise _Expired  # leaving `connect` closes the socket cleanly
            if now - self._last_life >= self.timing.watchdog_timeout:
                raise UpstreamError(
                    f"no frame or pong for {now - self._last_life:.1f}s; reconnecting"
                )
            with contextlib.suppress(ConnectionClosed):
                message = self.keep_alive.message if self.keep_alive is not None else None
                if message is not None:
                    await websocket.send(message if isinstance(message, str) else message())
                    continue
                waiter = await websocket.ping()
                waiter.add_done_callback(self._pong)

    def _pong(self, waiter: asyncio.Future[float]) -> None:
        if not waiter.cancelled() and waiter.exception() is None:
            self._last_life = time.monotonic()
