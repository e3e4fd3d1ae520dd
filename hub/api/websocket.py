"""`GET /ws`: the thin I/O loop around `hub.fanout.protocol.Session`.

Two tasks per client: the reader feeds frames to the session, the writer drains the
session's queue whenever it is woken. A slow socket only ever stalls its own writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from starlette.websockets import WebSocket, WebSocketDisconnect

from hub.api.responses import failure
from hub.fanout.codec import FORMATS
from hub.fanout.protocol import Close, Limits, Session
from hub.service.hubs import HubView
from hub.tasks import cancel_and_wait

log = logging.getLogger("hub.api")
CLOSE_WAIT_S = 2.0


class WebSocketApi:
    def __init__(self, hub: HubView, limits: Limits | None = None) -> None:
        self.hub = hub
        settings = hub.settings
        self.limits = limits or Limits(
            **{name: getattr(settings, name) for name in Limits.__struct_fields__}
        )
        self.per_ip: Counter[str] = Counter()

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

    async def serve(self, websocket: WebSocket) -> None:
        if not self.origin_allowed(websocket):
            await websocket.close(code=1008)  # before accept: the client gets HTTP 403
            return
        fmt = websocket.query_params.get("format", "json")
        if fmt not in FORMATS:
            await websocket.send_denial_response(
                failure(400, f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
            )
            return
        settings = self.hub.settings
        address = websocket.client.host if websocket.client else "?"
        if len(self.hub.fanout.sessions) >= settings.max_connections:
            await websocket.send_denial_response(failure(503, "connection limit reached"))
            return
        if self.per_ip[address] >= settings.max_connections_per_ip:
            await websocket.send_denial_response(failure(429, "too many connections from you"))
            return
        self.per_ip[address] += 1
        try:
            await self._serve(websocket, fmt)
        finally:
            self.per_ip[address] -= 1
            if not self.per_ip[address]:
                del self.per_ip[address]

    async def _serve(self, websocket: WebSocket, fmt: str) -> None:
        await websocket.accept()
        fanout = self.hub.fanout
        session = Session(fmt, fanout, self.limits, fanout.clock())  # type: ignore[arg-type]
        wake = asyncio.Event()
        session.on_ready = wake.set
        fanout.attach(session)
        reader = asyncio.create_task(self._read(websocket, session))
        writer = asyncio.create_task(self._write(websocket, session, wake))
        try:
            # The writer ends the connection (a close it was told to send, or a client that
            # stopped reading); the reader only ends it when the client goes away.
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            fanout.detach(session)
            await cancel_and_wait((reader, writer))

    async def _read(self, websocket: WebSocket, session: Session) -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            frame = message.get("text")
            if frame is None:
                frame = message.get("bytes") or b""
            session.receive(frame, self.hub.fanout.clock())
            if session.close is not None:
                session.on_ready()  # the writer sends the close and ends the connection

    async def _write(self, websocket: WebSocket, session: Session, wake: asyncio.Event) -> None:
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
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    websocket.close(1013, "client too slow: a send did not complete"),
                    CLOSE_WAIT_S,
                )
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
