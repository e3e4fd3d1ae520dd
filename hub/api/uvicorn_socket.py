"""uvicorn's own WebSocket protocol, plus the connection's transport for the fan-out.

Starlette still does everything of a connection's life but the sending of channel
messages: routing, the handshake, Origin checks and connection limits, reading
requests, the close handshake; uvicorn answers pings and sends keep-alive pings. Once a
connection is accepted, the app finds a `RawSocket` in the ASGI scope's `extensions`
and writes complete frames (made once per message, the same bytes for every client)
straight to the transport, a tick's frames in one write, with no await per frame or per
client. Every write is a whole frame, so uvicorn's own frames (pongs, pings, the close)
interleave with them safely.

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
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request
from websockets.protocol import State

RAW_SOCKET = "hub.raw_socket"  # the key of the ASGI scope extension

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
)
_METHODS = ("handle_connect", "handle_close", "pause_writing", "resume_writing")


def _nothing() -> None:
    return None


class RawSocket:
    """What the app may do with an accepted connection beyond ASGI: write whole frames,
    see backpressure, be told when the client has read, close without waiting."""

    __slots__ = ("_protocol", "on_drain")

    def __init__(self, protocol: HubWebSocketProtocol) -> None:
        self._protocol = protocol
        self.on_drain: Callable[[], None] = _nothing

    @property
    def shares_frames(self) -> bool:
        """False when an extension (per-message deflate) makes each client's frames its own."""
        return not self._protocol.conn.extensions

    @property
    def open(self) -> bool:
        protocol = self._protocol
        return (
            protocol.conn.state is State.OPEN
            and not protocol.close_sent
            and not protocol.disconnected
            and not protocol.transport.is_closing()
        )

    @property
    def paused(self) -> bool:
        """The transport's buffer is over its high-water mark: the client is not keeping up."""
        return not self._protocol.writable.is_set()

    def forget_handshake(self) -> None:
        """Drop the parsed handshake once accepted: the scope has what the app needs, and
        a few kilobytes per idle connection add up at ten thousand clients."""
        protocol = self._protocol
        protocol.request = protocol.response = None  # type: ignore[assignment]

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)

    def abort(self) -> None:
        """Drop the connection at once (the app's reader then sees it gone)."""
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
    """`WebSocketsSansIOProtocol` that offers its `RawSocket` to the app."""

    raw: RawSocket | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            # The app's task is created but has not run yet: it sees the extension.
            self.raw = RawSocket(self)
            self.scope["extensions"][RAW_SOCKET] = self.raw

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.raw is not None:
            self.raw.on_drain()


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
