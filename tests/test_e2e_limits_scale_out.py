"""Limits and keys across two `web` processes (`python -m hub web`) sharing one real Redis
and one keys file: a key's connections and REST budget, and an address's connections,
count over both; a process that dies stops counting; a revoked key is refused by both."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from hub.access.limits_redis import CONNECTIONS
from tests.conftest import eventually, free_port, http_client
from tests.keys_kit import add_key, admitted, close_code, revoke_key
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
STATUS = "/api/heatmap/status"


class Web:
    def __init__(self, process: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}/ws"


class Pair:
    """Two web processes on one Redis; stopped (and their logs shown on failure) after."""

    def __init__(self, tmp_path: Path, redis: RedisServer, keys_file: Path) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "REDIS_URL": redis.url,
            "HUB_API_KEYS_FILE": str(keys_file),
            "HUB_MAX_CONNECTIONS_PER_KEY": "2",
            "HUB_MAX_CONNECTIONS_PER_IP": "3",
            "HUB_REST_RATE_LIMIT": "0.01",  # one request per 100 s: never refilled in a test
            "HEATMAP_SYMBOLS": "BTCUSDT",
            "PYTHONUNBUFFERED": "1",
        }
        self.webs: list[Web] = []
        self.http = http_client()
        self.redis = Redis.from_url(redis.url)
        self.counts: dict[bytes, dict[bytes, bytes]] = {}

    async def start(self) -> Web:
        port = free_port()
        log = self.tmp_path / f"web-{len(self.webs)}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hub", "web", "--port", str(port),
                cwd=ROOT, env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        web = Web(process, port, log)
        self.webs.append(web)

        async def up() -> bool:
            assert process.returncode is None, f"web exited:\n{log.read_text()}"
            with contextlib.suppress(httpx.TransportError):
                return (await self.http.get(f"{web.http}/health")).status_code == 200
            return False

        await eventually(up)
        return web

    async def held(self, identity: str, expected: int = 1) -> bool:
        """Whether Redis counts `expected` connections of `identity` over every process."""
        self.counts = {}
        async for key in self.redis.scan_iter(match=f"{CONNECTIONS}*"):
            self.counts[key] = await self.redis.hgetall(key)
        return sum(int(h.get(identity.encode(), 0)) for h in self.counts.values()) == expected

    async def close(self) -> None:
        for web in self.webs:
            with contextlib.suppress(ProcessLookupError):
                web.process.kill()
            await asyncio.wait_for(web.process.wait(), 10)
        await self.http.aclose()
        await self.redis.aclose()

    def print_logs(self) -> None:
        for web in self.webs:
            print(f"----- {web.log.name} (exit {web.process.returncode}) -----")
            print("\n".join(web.log.read_text(errors="replace").splitlines()[-60:]))


@pytest.fixture
async def pair(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[tuple[Pair, Path]]:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text("")
    webs = Pair(tmp_path, redis_server, keys_file)
    try:
        yield webs, keys_file
    finally:
        await webs.close()
        webs.print_logs()


async def opened(stack: contextlib.AsyncExitStack, url: str) -> ClientConnection:
    return await stack.enter_async_context(connect(url))


async def test_limits_hold_across_two_web_processes(pair: tuple[Pair, Path]) -> None:
    webs, keys_file = pair
    desk, site, other = (add_key(keys_file, name) for name in ("desk", "site", "other"))
    one, two = await webs.start(), await webs.start()
    async with contextlib.AsyncExitStack() as stack:
        # a key's connections: two, wherever they are
        first = await opened(stack, f"{one.ws}?key={desk}")
        second = await opened(stack, f"{two.ws}?key={desk}")
        assert await admitted(first) and await admitted(second)
        third = await opened(stack, f"{one.ws}?key={desk}")
        assert await close_code(third) == (4429, "key 'desk' has 2 connections open")
        await second.close()

        async def desk_again() -> bool:
            async with connect(f"{one.ws}?key={desk}") as ws:
                return await admitted(ws)

        await eventually(desk_again)
        # an address's connections: three over both (desk holds one on `one`, once the
        # connections closed above are counted out)
        await eventually(lambda: webs.held("ip:127.0.0.1"), seen=lambda: webs.counts)
        assert await admitted(await opened(stack, f"{two.ws}?key={site}"))
        assert await admitted(await opened(stack, f"{one.ws}?key={site}"))
        with pytest.raises(InvalidStatus) as refused:
            await opened(stack, f"{two.ws}?key={other}")
        assert refused.value.response.status_code == 429
    # REST: one request per 100 s for a key, over both processes
    first_answer = await webs.http.get(f"{one.http}{STATUS}", headers=_bearer(other))
    assert first_answer.status_code == 200
    limited = await webs.http.get(f"{two.http}{STATUS}", headers=_bearer(other))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 90
    status = (await webs.http.get(f"{two.http}{STATUS}", headers=_bearer(desk))).json()
    assert status["data"]["access"]["limits_shared"] is True


async def test_a_dead_process_stops_counting_and_revocation_reaches_both(
    pair: tuple[Pair, Path],
) -> None:
    webs, keys_file = pair
    desk, ops = add_key(keys_file, "desk"), add_key(keys_file, "ops")
    one, two = await webs.start(), await webs.start()
    async with connect(f"{two.ws}?key={desk}") as on_two, connect(f"{two.ws}?key={desk}") as also:
        assert await admitted(on_two) and await admitted(also)
        async with connect(f"{one.ws}?key={desk}") as refused:
            assert (await close_code(refused))[0] == 4429
        two.process.kill()  # its two connections die with it, unannounced
        await two.process.wait()

        async def freed() -> bool:  # within the 10 s a silent process keeps counting
            async with connect(f"{one.ws}?key={desk}") as ws:
                return await admitted(ws)

        await eventually(freed, within=40)
    three = await webs.start()
    async with connect(f"{one.ws}?key={ops}") as ws_one, connect(f"{three.ws}?key={ops}") as ws_3:
        assert await admitted(ws_one) and await admitted(ws_3)
        revoke_key(keys_file, "ops")
        assert await close_code(ws_one) == (4401, "key revoked")
        assert await close_code(ws_3) == (4401, "key revoked")


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
