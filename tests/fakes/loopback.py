"""What every look-alike server shares: starting on a free loopback port (and again on the
same port after `stop`, so a client's URL stays valid across an outage), stopping,
`async with`, and waiting for a condition without sleeping.

`LoopbackServer` runs a websockets server (WebSocket on upgrade, plain HTTP answered in
`process_request`); subclasses implement `handler` and `process_request`. `StarletteServer`
runs routes under uvicorn, for look-alikes that only answer REST.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON answer to a plain HTTP request of `process_request`."""
    payload = dumps(body).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return Response(status, HTTPStatus(status).phrase, headers, payload)


class Served:
    """Started and stopped, by hand or with `async with`."""

    name = "look-alike"

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def before_stop(self) -> None:
        """Anything that would hold up the stop (held input, hung requests)."""

    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Waiting:
    """Wake every waiter on each change (`changed`), so none misses one."""

    name = "look-alike"

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def changed(self) -> None:
        # Swapping the event wakes every current waiter without any of them missing a change.
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, ready: Callable[[], bool], what: str, limit: float) -> None:
        try:
            async with asyncio.timeout(limit):
                while not ready():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"Fake {self.name}: no {what} within {limit}s") from None


class LoopbackServer(Served, Waiting):
    connection_class: type[ServerConnection] = ServerConnection

    def __init__(self) -> None:
        super().__init__()
        self._server: Server | None = None
        self._port: int | None = None

    async def start(self) -> None:
        self._server = await serve(
            self.handler, "127.0.0.1", self._port or 0,
            process_request=self.process_request, create_connection=self.connection_class,
            ping_interval=None, close_timeout=1.0,
        )  # fmt: skip
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is None:
            return
        self.before_stop()
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    @property
    def port(self) -> int:
        assert self._port is not None, f"Fake {self.name} not started"
        return self._port

    async def handler(self, ws: ServerConnection) -> None:
        await ws.close()

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        return None  # every request may upgrade


class StarletteServer(Served):
    """Routes under uvicorn on a free loopback port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def routes(self) -> list[Route]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = uvicorn.Config(
            Starlette(routes=self.routes()), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(1_000):
            if self._server.started:
                self.port = self._server.servers[0].sockets[0].getsockname()[1]
                return
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        raise TimeoutError(f"Fake {self.name} did not start")

    async def stop(self) -> None:
        self.before_stop()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, 10)
            self._server = self._task = None
