"""`GET /ws`: the I/O around `hub.fanout.protocol.Session`.

Two drivers:
- shared frames (the fast path, `hub.api.uvicorn_socket`): once accepted, the connection
  is detached from its ASGI call, which returns; requests reach the session as uvicorn
  parses them, and a session's queued frames are written to its transport once per loop
  tick, in one write, by one `Flusher` for all clients: no task, future or await per
  frame or per client, and none held per idle client. Backpressure is the transport's
  own: while its buffer is over the high-water mark nothing more is taken from the
  session, whose bounded queue then applies the slow-client rules.
- ASGI (the fallback, when uvicorn does not offer the raw socket, or a connection
  negotiated compression): a reader and a writer task per client; the writer awaits each
  send, bounded by the slow-client grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from hub.access.keys import Grant
from hub.api.responses import failure
from hub.api.uvicorn_socket import RAW_SOCKET, Message, RawSocket
from hub.api.ws_keys import UNAUTHORIZED, admit_key
from hub.errors import echo
from hub.fanout.codec import FORMATS
from hub.fanout.fanout import FanoutStats
from hub.fanout.protocol import Close, Limits, Session
from hub.service.hubs import HubView
from hub.tasks import cancel_and_wait

log = logging.getLogger("hub.api")
CLOSE_WAIT_S = 2.0
FLUSH_BUDGET = 256 * 1024  # bytes one client is given per tick, so one cannot starve the rest


class Flusher:
    """Writes what every woken session has queued: once per loop tick, or `delay` seconds
    after the first wake (HUB_WS_WRITE_DELAY_MS), so that a client's frames of that time
    share one write. A write is a syscall that costs about as much as all the rest of a
    delivery; at a few messages a second per client only a delay lets them share it."""

    def __init__(self, delay: float = 0.0, stats: FanoutStats | None = None) -> None:
        self.delay = delay
        self.stats = stats or FanoutStats()
        self._due: list[SharedFrameWriter] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def due(self, writer: SharedFrameWriter) -> None:
        if not self._due:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            if self.delay > 0:
                self._loop.call_later(self.delay, self._flush)
            else:
                self._loop.call_soon(self._flush)
        self._due.append(writer)

    def _flush(self) -> None:
        due, self._due = self._due, []
        self.stats.writes += len(due)
        for writer in due:
            try:
                writer.flush()
            except Exception:  # one client's failure must not leave the others unwritten
                log.exception("writing to a WebSocket client failed; closing it")
                writer.socket.abort()


class SharedFrameWriter:
    """Drives one session over a `RawSocket`: `wake` when something is queued or the
    client has read, `flush` (from the `Flusher`) to write it."""

    __slots__ = ("_clock", "_flusher", "_recheck", "_woken", "session", "socket")

    def __init__(
        self, session: Session, socket: RawSocket, flusher: Flusher, clock: Callable[[], int]
    ) -> None:
        self.session = session
        self.socket = socket
        self._flusher = flusher
        self._clock = clock
        self._woken = False
        self._recheck: asyncio.TimerHandle | None = None
        session.on_ready = self.wake
        socket.on_drain = self.wake

    def wake(self) -> None:
        if not self._woken:
            self._woken = True
            self._flusher.due(self)

    def flush(self) -> None:
        self._woken = False
        session, socket = self.session, self.socket
        if not socket.open:
            self.stop()
            return  # the disconnect event that follows tears the session down
        if socket.paused:
            self._stalled()
        else:
            session.flowing()
            data = session.take_frames(FLUSH_BUDGET)
            if data:
                socket.transport.write(data)
            if session.pending() and not socket.paused:
                self.wake()  # the rest next tick, after the other clients
        close = session.close
        if close is not None and (socket.paused or not session.pending()):
            # After what is queued; a client that is not reading will not read it.
            socket.close(close.code, close.reason, CLOSE_WAIT_S)
            self.stop()

    def _stalled(self) -> None:
        """Tell the session, and look again later: a client that never reads again is
        never woken by a drain."""
        self.session.stalled(self._clock())
        if self._recheck is None and self.session.close is None:
            delay = self.session.limits.slow_close_ms / 1000 / 4
            self._recheck = asyncio.get_running_loop().call_later(delay, self._look_again)

    def _look_again(self) -> None:
        self._recheck = None
        self.wake()

    def stop(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None


class WebSocketApi:
    def __init__(self, hub: HubView, limits: Limits | None = None) -> None:
        self.hub = hub
        settings = hub.settings
        self.limits = limits or Limits(
            **{name: getattr(settings, name) for name in Limits.__struct_fields__}
        )
        self.flusher = Flusher(settings.ws_write_delay_ms / 1000, hub.fanout.stats)
        hub.access.on_revoked.append(self.revoked)

    def origin_allowed(self, websocket: WebSocket) -> bool:
        origin = websocket.headers.get("origin")
        allowed = self.hub.settings.allowed_origins
        return origin is None or "*" in allowed or origin.rstrip("/") in allowed

    async def close_all(self, code: int, reason: str, within: float = 5.0) -> None:
        """Close every client with `code` after what is queued for it, and wait for them."""
        sessions = list(self.hub.fanout.sessions)
        for session in sessions:
            session.close = Close(code, reason)
            session.on_ready()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        # Polling once at shutdown, bounded by the deadline, beats wiring an event per client.
        while self.hub.fanout.sessions and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    def revoked(self, names: set[str]) -> None:
        """Keys were revoked: close their connections (the client may come back with
        another key)."""
        for session in list(self.hub.fanout.sessions):
            grant = session.grant
            if grant is not None and grant.name in names and session.close is None:
                session.close = Close(UNAUTHORIZED, "key revoked")
                session.on_ready()
                self.hub.access.stats.revoked_closes += 1

    async def serve(self, websocket: WebSocket) -> None:
        if not self.origin_allowed(websocket):
            await websocket.close(code=1008)  # before accept: the client gets HTTP 403
            return
        fmt = websocket.query_params.get("format") or "json"  # empty: not given, as in REST
        if fmt not in FORMATS:
            await websocket.send_denial_response(
                failure(400, f"format: {echo(fmt)} is not one of {', '.join(FORMATS)}")
            )
            return
        settings, access = self.hub.settings, self.hub.access
        address = f"ip:{websocket.client.host if websocket.client else '?'}"
        if len(self.hub.fanout.sessions) >= settings.max_connections:
            await websocket.send_denial_response(failure(503, "connection limit reached"))
            return
        if not await access.acquire(address, settings.max_connections_per_ip):
            access.stats.refused_ip += 1
            await websocket.send_denial_response(failure(429, "too many connections from you"))
            return
        grant: Grant | None = None
        key: str | None = None
        detached = False
        try:
            await websocket.accept()
            if access.keys_required:
                admitted = await admit_key(websocket, access, fmt, settings.max_connections_per_key)
                if admitted is None:
                    return
                grant, key = admitted
            socket: RawSocket | None = websocket.scope.get("extensions", {}).get(RAW_SOCKET)
            if socket is not None and socket.shares_frames:
                _Detached(self, socket, fmt, grant, address, key)
                detached = True
                return  # the connection carries on without this call (see RawSocket.detach)
            await self._serve_asgi(websocket, fmt, grant)
        finally:
            if not detached:
                self.release(address, key)

    def release(self, address: str, key: str | None) -> None:
        """A connection has ended: its slots in the per-address and per-key limits are free."""
        self.hub.access.release(address)
        if key is not None:
            self.hub.access.release(key)

    async def _serve_asgi(self, websocket: WebSocket, fmt: str, grant: Grant | None) -> None:
        """The fallback: a reader and a writer task per client, one awaited send a frame."""
        fanout = self.hub.fanout
        session = Session(fmt, fanout, self.limits, fanout.clock(), grant)  # type: ignore[arg-type]
        wake = asyncio.Event()
        session.on_ready = wake.set
        fanout.stats.asgi_sessions += 1
        fanout.attach(session)
        reader = asyncio.create_task(self._read(websocket, session))
        writer = asyncio.create_task(self._write(websocket, session, wake))
        try:
            # The writer ends the connection (a close it was told to send, or a client that
            # stopped reading); the reader only ends it when the client goes away.
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            fanout.detach(session)
            fanout.stats.asgi_sessions -= 1
            await cancel_and_wait((reader, writer))

    def request(self, session: Session, message: Message) -> None:
        """One websocket.receive event: a request of the client's."""
        frame = message.get("text")
        if frame is None:
            frame = message.get("bytes") or b""
        session.receive(frame, self.hub.fanout.clock())
        if session.close is not None:
            session.on_ready()  # the writer sends the close and ends the connection

    async def _read(self, websocket: WebSocket, session: Session) -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            self.request(session, message)

    async def _write(self, websocket: WebSocket, session: Session, wake: asyncio.Event) -> None:
        """The ASGI fallback's writer: one awaited send per frame."""
        seconds = self.limits.slow_close_ms / 1000
        try:
            while True:
                await wake.wait()
                wake.clear()
                for frame in session.drain():
                    send = (
                        websocket.send_text(frame)
                        if isinstance(frame, str)
                        else websocket.send_bytes(frame)
                    )
                    # A client that stopped reading blocks only this task, and not for ever.
                    await asyncio.wait_for(send, seconds)
                if session.close is not None:
                    await asyncio.wait_for(
                        websocket.close(session.close.code, session.close.reason), CLOSE_WAIT_S
                    )
                    return
        except TimeoutError:
            # The socket is stuck: try a 1013 briefly, then let go of the connection (its
            # slot and per-IP count); the server's keep-alive tears the transport down.
            session.close = Close(1013, "client too slow: a send did not complete")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(*session.close), CLOSE_WAIT_S)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return


class _Detached:
    """The fast path: one connection after its ASGI call returned. Frames are written by
    the `Flusher`, requests are taken as uvicorn parses them, and the first disconnect
    event tears everything down. An object rather than closures: at ten thousand idle
    connections the cells and functions were a dozen objects each for the collector."""

    __slots__ = ("address", "api", "ended", "key", "session", "socket", "writer")

    def __init__(
        self,
        api: WebSocketApi,
        socket: RawSocket,
        fmt: str,
        grant: Grant | None,
        address: str,
        key: str | None,
    ) -> None:
        fanout = api.hub.fanout
        self.api, self.socket, self.address, self.key = api, socket, address, key
        self.session = Session(fmt, fanout, api.limits, fanout.clock(), grant)  # type: ignore[arg-type]
        socket.forget_handshake()
        self.writer = SharedFrameWriter(self.session, socket, api.flusher, fanout.clock)
        fanout.stats.shared_frame_sessions += 1
        fanout.attach(self.session)
        self.ended = False
        socket.detach(self.take)

    def take(self, message: Message) -> None:
        if self.ended:
            return
        if message["type"] == "websocket.disconnect":
            self.ended = True
            self.writer.stop()
            fanout = self.api.hub.fanout
            fanout.detach(self.session)
            fanout.stats.shared_frame_sessions -= 1
            self.api.release(self.address, self.key)
            return
        try:
            self.api.request(self.session, message)
        except Exception:  # as an ASGI app's failure would: log it, drop the client
            log.exception("handling a WebSocket request failed; closing the connection")
            self.socket.abort()
