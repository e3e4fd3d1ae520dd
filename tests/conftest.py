"""Fixtures that start real servers on loopback: a Binance look-alike and the hub itself
under uvicorn. Each test gets its own, on free ports, and everything is stopped after."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from hub.api.app import create_app
from hub.api.server import server_config
from hub.config import EXCHANGES, Settings
from hub.feeds.backoff import Backoff
from hub.feeds.connection import Timing
from hub.service.hubs import ServeHub, WebHub
from hub.service.sources import EXCHANGE_FEEDS, Source
from tests.fakes.binance_server import FakeBinance, force_order
from tests.fakes.bitget_server import FakeBitget
from tests.fakes.bitget_server import row as bitget_liquidation
from tests.fakes.bitmex_server import FakeBitmex
from tests.fakes.bitmex_server import order as bitmex_order
from tests.fakes.bybit_server import FakeBybit
from tests.fakes.bybit_server import liquidation as bybit_liquidation
from tests.fakes.deribit_server import FakeDeribit
from tests.fakes.deribit_server import trade as deribit_trade
from tests.fakes.exchange_server import FakeExchange
from tests.fakes.gate_server import FakeGate
from tests.fakes.gate_server import row as gate_liquidation
from tests.fakes.htx_server import ALL as HTX_ALL
from tests.fakes.htx_server import FakeHtx
from tests.fakes.htx_server import row as htx_liquidation
from tests.fakes.loopback import Served
from tests.fakes.okx_server import SUBSCRIPTION as OKX_SUBSCRIPTION
from tests.fakes.okx_server import FakeOkx, detail
from tests.redis_server import RedisServer

DATA = Path(__file__).parent / "data"
# Processes the tests start keep no history on disk unless a test gives them a directory:
# never the user's own (a `serve --demo` may be running beside the suite).
os.environ["HEATMAP_DATA_DIR"] = "off"
BINANCE = ("binance",)  # HEATMAP_EXCHANGES of a test that runs against the fake Binance only
FAST_TIMING = Timing(ping_interval=0.2, watchdog_timeout=1.0, max_age=3600, open_timeout=2)


def fast_backoff() -> Backoff:
    return Backoff(base=0.05, cap=0.2, healthy_after=5)


def http_client() -> httpx.AsyncClient:
    """An HTTP client for tests: a fresh connection per request, since reusing an idle
    keep-alive one races the server closing it (on a slow machine, a poll can come right
    as uvicorn's keep-alive timeout ends), and a deadline a loaded machine can meet."""
    return httpx.AsyncClient(timeout=15, limits=httpx.Limits(max_keepalive_connections=0))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def look_alike(make: Callable[[], Served]) -> Any:
    """A fixture serving the look-alike `make` builds, for the test's length."""

    @pytest.fixture
    async def serving() -> AsyncIterator[Served]:
        async with make() as server:
            yield server

    return serving


fake_binance = look_alike(lambda: FakeBinance(ping_interval=None))
fake_bybit = look_alike(FakeBybit)
fake_okx = look_alike(FakeOkx)
fake_bitget = look_alike(FakeBitget)
fake_gate = look_alike(FakeGate)
fake_htx = look_alike(FakeHtx)
fake_deribit = look_alike(FakeDeribit)
fake_bitmex = look_alike(FakeBitmex)


@dataclass
class Eight:
    """The eight look-alikes of one test."""

    binance: FakeBinance
    bybit: FakeBybit
    okx: FakeOkx
    bitget: FakeBitget
    gate: FakeGate
    htx: FakeHtx
    deribit: FakeDeribit
    bitmex: FakeBitmex

    def settings(self, **overrides: Any) -> Settings:
        others = (self.bybit, self.okx, self.bitget, self.gate, self.htx, self.deribit, self.bitmex)
        chosen = {"exchanges": EXCHANGES, "symbols": ("BTCUSDT", "ETHUSDT"), "flush_ms": 20}
        return all_exchanges(self.binance, *others, **{**chosen, **overrides})

    async def subscribed(self) -> None:
        await self.binance.wait_for_subscription("btcusdt@forceOrder")
        await self.bybit.wait_for_subscription("allLiquidation.BTCUSDT")
        await self.okx.wait_for_subscription(OKX_SUBSCRIPTION)
        await self.bitget.wait_for_subscription("liquidation:usdt-futures")
        await self.gate.wait_for_subscription("liquidates:!all")
        await self.htx.wait_for_subscription(HTX_ALL)
        await self.deribit.wait_for_subscription("trades.BTC-PERPETUAL.100ms")
        await self.bitmex.wait_for_subscription("liquidation")

    async def push_one_each(self, t: int) -> None:
        """One BTC liquidation on each exchange, a long where even, a short where odd."""
        await self.binance.push(force_order("BTCUSDT", "SELL", "60000.0", "0.100", trade_time=t))
        await self.bybit.push(
            "BTCUSDT", [bybit_liquidation("BTCUSDT", "Sell", "0.2", "60010.0", t)]
        )
        await self.okx.push("BTC-USDT-SWAP", [detail("sell", "30", "59990.0", t)])
        await self.bitget.push([bitget_liquidation("BTCUSDT", "sell", "60020", "24008", t)])
        await self.gate.push([gate_liquidation("BTC_USDT", -5000, 59980.0, t)])
        await self.htx.push([htx_liquidation("BTC-USDT", "buy", 0.6, 60030.0, t)])
        await self.deribit.push_trades("BTC-PERPETUAL", [
            deribit_trade("BTC-PERPETUAL", "buy", 41_979.0, 59970.0, "M", "d1", t),
        ])  # fmt: skip
        await self.bitmex.insert(bitmex_order("m1", "XBTUSDT", "Buy", 60040.0, 800_000))


@pytest.fixture
def eight(
    fake_binance: FakeBinance, fake_bybit: FakeBybit, fake_okx: FakeOkx, fake_bitget: FakeBitget,
    fake_gate: FakeGate, fake_htx: FakeHtx, fake_deribit: FakeDeribit, fake_bitmex: FakeBitmex,
) -> Eight:  # fmt: skip
    return Eight(fake_binance, fake_bybit, fake_okx, fake_bitget, fake_gate, fake_htx,
                 fake_deribit, fake_bitmex)  # fmt: skip


FAKE_EXCHANGES = {
    FakeBybit: "bybit",
    FakeOkx: "okx",
    FakeBitget: "bitget",
    FakeGate: "gate",
    FakeHtx: "htx",
    FakeDeribit: "deribit",
    FakeBitmex: "bitmex",
}


def exchange_urls(*fakes: FakeExchange) -> dict[str, str]:
    """The settings fields pointing each look-alike's exchange at it."""
    urls: dict[str, str] = {}
    for fake in fakes:
        _, ws_field, rest_field = EXCHANGE_FEEDS[FAKE_EXCHANGES[type(fake)]]
        urls[ws_field] = fake.ws_url
        if rest_field is not None:
            urls[rest_field] = fake.rest_url
    return urls


def all_exchanges(binance: FakeBinance, *fakes: FakeExchange, **overrides: Any) -> Settings:
    """Settings reading the exchanges' liquidations from their look-alikes (the OKX one
    serves no order book: liquidity is off unless asked for)."""
    return Settings(
        **{
            "binance_ws_url": binance.base_url,
            **exchange_urls(*fakes),
            "liquidity": "off",
            **overrides,
        }
    )


@dataclass
class RunningHub:
    hub: ServeHub
    http: str
    ws: str
    client: httpx.AsyncClient
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Stop this hub as a restart does (its address can then serve another)."""
        self.server.should_exit = True
        await asyncio.wait_for(asyncio.shield(self.task), 10)

    async def get(self, path: str, **params: str) -> httpx.Response:
        return await self.client.get(f"{self.http}{path}", params=params)


HubFactory = Callable[..., Awaitable[RunningHub]]


@pytest.fixture
async def start_hub() -> AsyncIterator[HubFactory]:
    """Start the hub app under a real uvicorn server; returns a factory taking Hub kwargs
    (and `uvicorn_options`, extra `uvicorn.Config` keywords such as `ws_ping_interval`)."""
    servers: list[tuple[uvicorn.Server, asyncio.Task[None], httpx.AsyncClient]] = []

    async def start(
        settings: Settings,
        *,
        uvicorn_options: dict[str, Any] | None = None,
        port: int | None = None,
        **hub_kwargs: object,
    ) -> RunningHub:
        """`port`: a stopped hub's, to start its successor where clients reconnect."""
        if not (hub_kwargs.get("replay") or hub_kwargs.get("demo")):
            assert_offline(settings)
        port = port or free_port()
        if settings.binance_rest_url == Settings().binance_rest_url:
            # Tests never reach the real Binance: a live hub fetches the listing at start.
            closed = f"http://127.0.0.1:{free_port()}"
            settings = dataclasses.replace(settings, binance_rest_url=closed)
        if settings.liquidity != "off" and settings.okx_ws_url == Settings().okx_ws_url:
            # Nor the real OKX: a test that points no look-alike at it has no order book.
            settings = dataclasses.replace(settings, liquidity="off")
        hub_kwargs.setdefault("timing", FAST_TIMING)
        hub_kwargs.setdefault("backoff", fast_backoff())
        # Off unless a test asks: its mark price connection would count on the fake, and
        # its polls would go to the real Binance.
        hub_kwargs.setdefault("open_interest", False)
        hub = ServeHub(settings, Source(**hub_kwargs))  # type: ignore[arg-type]
        config = server_config(
            create_app(hub), "127.0.0.1", port, log_level="warning", **(uvicorn_options or {})
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        client = http_client()
        servers.append((server, task, client))
        http, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"
        return RunningHub(hub, http, ws, client, server, task)

    yield start
    for server, task, client in servers:
        await client.aclose()
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def assert_offline(settings: Settings) -> None:
    """A test never reaches an exchange: every configured one must point at loopback."""
    urls = {"binance": [settings.binance_ws_url]}
    for exchange, (_, ws_field, rest_field) in EXCHANGE_FEEDS.items():
        fields = [ws_field] if rest_field is None else [ws_field, rest_field]
        urls[exchange] = [getattr(settings, field) for field in fields]
    for exchange in settings.exchanges:
        for url in urls[exchange]:
            host = urlsplit(url).hostname
            assert host in ("127.0.0.1", "localhost"), (
                f"{exchange} would be reached at {url}: point it at a fake, or leave it out "
                f"of `exchanges` (e.g. exchanges=BINANCE)"
            )


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    within: float = 20.0,
    *,
    seen: Callable[[], object] | None = None,
) -> None:
    """Poll `check` until it holds. The deadline is generous on purpose: it only bounds a
    failing run, and a loaded 2-core CI machine can be many times slower than a quiet one.
    A failure names the condition (its source line) and, with `seen`, what was observed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            observed = f"; seen: {seen()!r}" if seen is not None else ""
            raise AssertionError(f"expected within {within}s: {describe(check)}{observed}")
        await asyncio.sleep(0.02)


def describe(check: Callable[..., object]) -> str:
    """The source text of a condition (a lambda's own line), else its name."""
    try:
        text = " ".join(inspect.getsource(check).split())
    except (OSError, TypeError):
        return getattr(check, "__qualname__", repr(check))
    return text if len(text) <= 300 else text[:297] + "..."


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port (never the machine's own Redis)."""
    try:
        server = RedisServer()
    except RuntimeError as error:
        pytest.fail(str(error))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class WebAddress(NamedTuple):
    http: str
    ws: str


@contextlib.asynccontextmanager
async def web_process(settings: Settings) -> AsyncIterator[WebAddress]:
    """A `web` hub (fan-out fed from Redis) under a real uvicorn in this process."""
    port = free_port()
    server = uvicorn.Server(
        server_config(create_app(WebHub(settings)), "127.0.0.1", port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done())
        if task.done():
            task.result()
        yield WebAddress(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
