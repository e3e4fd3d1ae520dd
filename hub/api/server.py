"""Running the app under uvicorn, with the shutdown SPEC asks for.

SPEC: on SIGTERM stop accepting, send close 1001 to every client, flush, exit 0. uvicorn
would close WebSockets with 1012 and then re-raise SIGTERM (exit status -15), so the
server here closes clients itself first and keeps the exit clean.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from starlette.applications import Starlette

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


def run(
    app: Starlette,
    host: str,
    port: int,
    log_level: str,
    before_shutdown: Callable[[], Awaitable[None]],
    ws_ping_interval: float = 20.0,
) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        ws_ping_interval=ws_ping_interval,
        ws_ping_timeout=ws_ping_interval,
        ws_max_size=1024 * 1024,  # SPEC's 64 KiB limit is the app's; this bounds memory
        lifespan="on",
    )
    GracefulServer(config, before_shutdown).run()
