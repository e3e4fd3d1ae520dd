"""Running the app under uvicorn, with the shutdown docs/operations.md promises.

On SIGTERM: stop accepting, send close 1001 to every client, flush, exit 0. uvicorn
would close WebSockets with 1012 and then re-raise SIGTERM (exit status -15), so the
server here closes clients itself first and keeps the exit clean.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette

from hub.access.keys import redact
from hub.api.uvicorn_socket import HubWebSocketProtocol, missing_internals

log = logging.getLogger("hub.api")
# uvicorn logs each request's path with its query, and a browser's WebSocket key is in it.
SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access")

_EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, before_shutdown: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(config)
        self.before_shutdown = before_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting before saying goodbye to the connected
        await self.before_shutdown()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _EXIT_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class KeyRedactor(logging.Filter):
    """Takes keys out of the server's log lines before any handler writes them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()  # arguments may be objects, such as a frame
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_REDACTOR = KeyRedactor()


def server_config(app: Starlette, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn on uvloop and httptools, with the WebSocket protocol that lets the fan-out
    write shared frames; on a uvicorn whose internals moved, its stock protocol (the
    plain ASGI send path), said in the log and on status. `options` override."""
    missing = missing_internals()
    ws: Any = HubWebSocketProtocol
    if missing:
        ws = "websockets-sansio"
        reason = f"uvicorn {uvicorn.__version__} lacks {', '.join(missing)}"
        log.warning("WebSocket fast path off, using the ASGI send path: %s", reason)
        app.state.hub.fanout.stats.fallback = reason
    defaults: dict[str, Any] = {
        "loop": "uvloop",
        "http": "httptools",
        "ws": ws,
        # Compression would make every client's frames its own: no shared frames.
        "ws_per_message_deflate": False,
        "ws_max_size": 1024 * 1024,  # the app's limit is 64 KiB; this bounds memory
        "lifespan": "on",
    }
    config = uvicorn.Config(app, host=host, port=port, **{**defaults, **options})
    for name in SERVER_LOGGERS:  # after Config, which sets up uvicorn's logging
        logging.getLogger(name).addFilter(_REDACTOR)
    return config


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound with SO_REUSEPORT: every process that binds (host, port) this way
    gets its own listening socket, and the kernel spreads new connections over them (by
    a hash of each connection's addresses), with no process in between."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def run(
    app: Starlette,
    host: str,
    port: int,
    log_level: str,
    before_shutdown: Callable[[], Awaitable[None]],
    ws_ping_interval: float = 20.0,
    reuse_port: bool = False,
    **tls: str | None,
) -> None:
    """`tls`: uvicorn's `ssl_certfile` and `ssl_keyfile` (HUB_TLS_*), or None each.
    `reuse_port`: listen on a socket of its own beside other processes' (`web --reuse-port`)."""
    config = server_config(
        app,
        host,
        port,
        log_level=log_level,
        ws_ping_interval=ws_ping_interval,
        ws_ping_timeout=ws_ping_interval,
        **tls,
    )
    sockets = [reuse_port_socket(host, port)] if reuse_port else None
    if sockets:
        log.info("listening on %s:%d beside other processes (SO_REUSEPORT)", host, port)
    GracefulServer(config, before_shutdown).run(sockets)
