"""uvicorn's own WebSocket protocol, plus the connection's transport for the fan-out.

Starlette does the connection's start: routing, the handshake, Origin checks and
connection limits; uvicorn keeps doing the WebSocket protocol: parsing, answering and
sending pings, the close handshake. Once a connection is accepted, the app finds a
`RawSocket` in the ASGI scope's `extensions` and writes complete frames (made once per
message, the same bytes for every client) straight to the transport, a tick's frames in
one write, with no await per frame or per client. Every write is a whole frame, so
uvicorn's own frames (pongs, pings, the close) interleave with them safely.

The app may then `detach`: its ASGI call returns while the connection stays open, and
what uvicorn would have queued for `receive` (requests, the disconnect) goes to a
callback instead. An idle connection is then its protocol, transport and session, with
no task, no coroutine frames of the ASGI stack and no receive queue: about a quarter of
its memory.

This leans on internals of `WebSocketsSansIOProtocol`, listed in `_INTERNALS`.
`missing_internals()` checks them at start (the server then falls back to the plain
ASGI send path, with a warning) and a test fails loudly when a uvicorn release moves
them; pyproject pins uvicorn to the range tested.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request
from websockets.protocol import State

RAW_SOCKET = "hub.raw_socket"  # the key of the ASGI scope extension
_DETACHED_SCOPE: Any = {"type": "websocket", "detached": True}

_INTERNALS = (
    "transport",
    "conn",
    "queue",
    "writable",
    "close_sent",
    "disconnected",
    "handshake_complete",
    "close_timer",
    "read_paused",
    "loop",
    "app",
    "logger",
)
_METHODS = (
    "handle_connect",
    "handle_close",
    "pause_writing",
    "resume_writing",
    "run_asgi",
    "send_receive_event_to_app",
    "send_500_response",
    "receive",
    "send",
)


def _nothing() -> None:
    return None


Message = dict[str, Any]  # an ASGI receive event: websocket.receive or websocket.disconnect


class _Inbox:
    """Takes the place of the protocol's receive queue once the app has detached: each
    event goes to the app's callback as uvicorn puts it."""

    __slots__ = ("_take",)

    def __init__(self, take: Callable[[Message], None]) -> None:
        self._take = take

    def put_nowait(self, message: Message) -> None:
        self._take(message)

    def empty(self) -> bool:
        return True


class RawSocket:
    """What the app may do with an accepted connection beyond ASGI: write whole frames,
    see backpressure, be told when the client has read, close without waiting."""

    __slots__ = ("_protocol", "on_drain", "paused", "transport")

    def __init__(self, protocol: HubWebSocketProtocol) -> None:
        self._protocol = protocol
        self.on_drain: Callable[[], None] = _nothing
        # Read before every write: a plain attribute, kept by the protocol's pause_writing
        # and resume_writing, costs less than asking its `writable` event each time.
        self.paused = not protocol.writable.is_set()
        # Whole frames go to `transport.write` directly, with no Python frame between: one
        # call per delivery. (Not a bound method kept here: that would be one more object
        # per connection for the garbage collector to track.)
        self.transport = protocol.transport

    @property
    def shares_frames(self) -> bool:
        """False when an extension (per-message deflate) makes each client's frames its own."""
        return not self._protocol.conn.extensions

    @property
    def open(self) -> bool:
        # Asked before every write. Every way out of State.OPEN (a close sent or received,
        # a parser error, a lost connection) sets one of these, or closes the transport.
        protocol = self._protocol
        return not (protocol.close_sent or protocol.disconnected or self.transport.is_closing())

    def forget_handshake(self) -> None:
        """Drop the parsed handshake once accepted: the scope has what the app needs, and
        a few kilobytes per idle connection add up at ten thousand clients."""
        protocol = self._protocol
        protocol.request = protocol.response = None  # type: ignore[assignment]

    def detach(self, take: Callable[[Message], None]) -> None:
        """From now on the connection outlives the app's ASGI call: every event uvicorn
        would queue for `receive` (what the client sends, then exactly one or more
        disconnects) is given to `take` at once, starting with any already queued. The app
        must return from its call right after."""
        protocol = self._protocol
        queued = protocol.queue
        protocol.queue = _Inbox(take)  # type: ignore[assignment]
        protocol.detached = True
        while not queued.empty():
            take(queued.get_nowait())
        protocol.resume_if_paused()

    def abort(self) -> None:
        """Drop the connection at once (the app then gets its disconnect event)."""
        self._protocol.transport.abort()

    def close(self, code: int, reason: str, grace: float) -> None:
        """Send a close frame now, after what the transport holds. A client that reads
        nothing never lets that flush, so the connection is aborted after `grace`
        seconds unless the client answered the close first."""
        protocol = self._protocol
        if protocol.close_sent or protocol.disconnected or protocol.conn.state is not State.OPEN:
            return
        protocol.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        protocol.conn.send_close(code, reason)
        protocol.transport.write(b"".join(protocol.conn.data_to_send()))
        protocol.close_sent = True
        if protocol.read_paused:  # keep reading: the client's close reply ends it cleanly
            protocol.read_paused = False
            protocol.transport.resume_reading()
        protocol.close_timer = protocol.loop.call_later(grace, protocol.transport.abort)


class HubWebSocketProtocol(WebSocketsSansIOProtocol):
    """`WebSocketsSansIOProtocol` that offers its `RawSocket` to the app, and keeps the
    connection open when a detached app's ASGI call returns."""

    raw: RawSocket | None = None
    detached = False

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            # The app's task is created but has not run yet: it sees the extension.
            self.raw = RawSocket(self)
            self.scope["extensions"][RAW_SOCKET] = self.raw

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.raw is not None:
            self.raw.paused = True  # over the high-water mark: the client is not keeping up

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.raw is not None:
            self.raw.paused = False
            self.raw.on_drain()

    def send_receive_event_to_app(self) -> None:
        # uvicorn pauses reading after each message until `receive` takes it; a detached
        # app took it already.
        super().send_receive_event_to_app()
        if self.detached:
            self.resume_if_paused()

    def resume_if_paused(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    async def run_asgi(self) -> None:
        """uvicorn's, but a detached app's return leaves the connection open."""
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.detached:
            self.scope = _DETACHED_SCOPE  # the app has what it needs; this is ~1 KB a client
            return
        if self.close_timer is None:
            self.transport.close()


def missing_internals() -> list[str]:
    """What of uvicorn's WebSocket protocol the fast path needs and this uvicorn lacks."""
    missing = [name for name in _METHODS if not callable(getattr(HubWebSocketProtocol, name, None))]
    loop = asyncio.new_event_loop()
    try:
        config = Config(app=_no_app, ws=HubWebSocketProtocol, log_config=None)
        config.load()
        protocol = HubWebSocketProtocol(config, ServerState(), {}, _loop=loop)
    except Exception as error:  # any change in the constructor is a change in the internals
        return [*missing, f"constructor ({type(error).__name__}: {error})"]
    finally:
        loop.close()
    missing += [name for name in _INTERNALS if not hasattr(protocol, name)]
    if not isinstance(getattr(protocol, "writable", None), asyncio.Event):
        missing.append("writable is an asyncio.Event")
    return missing


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    return None
