"""Scale-out with real processes: one `ingest` and two `web` processes over a real Redis.

Each test starts `python -m hub ingest` and `python -m hub web --port N` as subprocesses,
fed by a Binance look-alike, and checks the documented promises across them: any web process gives
a client the same stream, Redis restarting (empty) loses nothing already accepted, an
ingest restart keeps the epoch and the seqs, and a client resumes (`since`) on another web
process without a snapshot. Clients keep their heatmap by docs/protocol.md's rules
(`ClientHeatmap`), which fails on any seq gap that a fresh snapshot did not reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hub.analytics.rows import Rows
from hub.storage.event_log import read_all
from hub.storage.layout import stream_key
from tests.conftest import eventually, free_port, http_client
from tests.fakes.binance_server import FakeBinance, force_order
from tests.redis_server import RedisServer
from tests.test_e2e_live import ClientHeatmap

ROOT = Path(__file__).resolve().parent.parent
HEATMAP = "heatmap:BTCUSDT:1h"
LIQUIDATIONS = "liquidations:BTCUSDT"
STREAM = stream_key("BTCUSDT")
START_WITHIN = 15.0


# -- processes ----------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    log_file: IO[bytes]
    port: int | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


class Cluster:
    """Starts, kills and always cleans up the hub's processes of one test."""

    def __init__(self, tmp_path: Path, redis: RedisServer, fake: FakeBinance) -> None:
        self.tmp_path = tmp_path
        self.redis_server = redis
        self.fake = fake
        self.procs: list[Proc] = []
        self.http = http_client()
        self.env = {
            **os.environ,
            "REDIS_URL": redis.url,
            "BINANCE_WS_URL": fake.base_url,
            "BINANCE_REST_URL": f"http://127.0.0.1:{free_port()}",  # never the real Binance
            "HEATMAP_EXCHANGES": "binance",
            "HEATMAP_LIQUIDITY": "off",  # nor the real OKX
            "HEATMAP_SYMBOLS": "BTCUSDT,ETHUSDT",
            "HEATMAP_FLUSH_MS": "20",
            "PYTHONUNBUFFERED": "1",
        }

    async def _spawn(self, name: str, *args: str, port: int | None = None) -> Proc:
        log_path = self.tmp_path / f"{name}-{len(self.procs)}.log"
        log_file = log_path.open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub", *args,
            cwd=ROOT, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        proc = Proc(name, process, log_path, log_file, port)
        self.procs.append(proc)
        return proc

    async def start_ingest(self) -> Proc:
        """Start `ingest` and wait until it subscribed upstream (a fresh connection)."""
        before = self.fake.connection_count_total
        proc = await self._spawn("ingest", "ingest")

        def connected() -> bool:
            self._check_alive(proc)
            return self.fake.connection_count_total > before and any(
                c.market and "btcusdt@forceOrder" in c.streams for c in self.fake.connections
            )

        await eventually(connected, within=START_WITHIN)
        return proc

    async def start_web(self) -> Proc:
        """Start a `web` process and wait until it answers and holds the BTCUSDT heatmap."""
        port = free_port()
        proc = await self._spawn("web", "web", "--port", str(port), port=port)

        async def ready() -> bool:
            self._check_alive(proc)
            try:
                health = await self.http.get(f"{proc.http}/health")
                if health.status_code != 200:
                    return False
                heatmap = await self.http.get(
                    f"{proc.http}/api/heatmap/liquidations/BTCUSDT/heatmap"
                )
            except httpx.TransportError:
                return False
            return heatmap.status_code == 200

        await eventually(ready, within=START_WITHIN)
        return proc

    @staticmethod
    def _check_alive(proc: Proc) -> None:
        if not proc.alive:
            raise AssertionError(f"{proc.name} exited with {proc.process.returncode}")

    async def kill(self, proc: Proc) -> None:
        """SIGKILL: the process vanishes without closing anything cleanly."""
        if proc.alive:
            proc.process.kill()
        await proc.process.wait()

    async def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                if proc.alive:
                    proc.process.kill()
        for proc in self.procs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.process.wait(), 10)
            proc.log_file.close()
        await self.http.aclose()

    def print_logs(self) -> None:
        """Shown by pytest only when the test failed (captured teardown output)."""
        for proc in self.procs:
            text = proc.log_path.read_text(errors="replace")
            lines = [line for line in text.splitlines() if ' - "GET ' not in line][-80:]
            print(f"----- {proc.log_path.name} (exit {proc.process.returncode}) -----")
            print("\n".join(lines))

    # -- reading the hub ------------------------------------------------------------------

    async def rest_snapshot(self, web: Proc) -> dict[str, Any]:
        response = await self.http.get(f"{web.http}/api/heatmap/liquidations/BTCUSDT/heatmap")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def rest_event_times(self, web: Proc) -> list[int]:
        response = await self.http.get(
            f"{web.http}/api/heatmap/liquidations/BTCUSDT", params={"limit": "10000"}
        )
        assert response.status_code == 200, response.text
        return [row["time"] for row in response.json()["data"]]

    async def log_rows(self) -> Rows:
        """Every event in BTCUSDT's log (archive and stream), entry by entry."""
        redis = Redis.from_url(self.redis_server.url)
        try:
            logged = await read_all(redis, "BTCUSDT")
        finally:
            await redis.aclose()
        return logged.rows

    async def log_event_times(self) -> list[int]:
        """The trade times of every event in BTCUSDT's log, entry by entry."""
        return (await self.log_rows()).time.tolist()


@pytest.fixture
async def cluster(
    tmp_path: Path, redis_server: RedisServer, fake_binance: FakeBinance
) -> AsyncIterator[Cluster]:
    hub = Cluster(tmp_path, redis_server, fake_binance)
    try:
        yield hub
    finally:
        await hub.close()
        hub.print_logs()


# -- clients ------------------------------------------------------------------------------


class CountingHeatmap(ClientHeatmap):
    """ClientHeatmap that also records how many snapshots it took."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots = 0

    def take(self, message: dict[str, Any]) -> None:
        super().take(message)
        if message["type"] == "snapshot":
            self.snapshots += 1

    @property
    def seq(self) -> int:
        return -1 if self.state is None else int(self.state["seq"])

    @property
    def epoch(self) -> str | None:
        return None if self.state is None else str(self.state["epoch"])

    @property
    def reference_price(self) -> float | None:
        return None if self.state is None else float(self.state["reference_price"])


@dataclass(eq=False)
class Client:
    """A WebSocket client reading in the background; a broken rule fails `check()`."""

    name: str
    heatmap: CountingHeatmap = field(default_factory=CountingHeatmap)
    heatmap_messages: list[dict[str, Any]] = field(default_factory=list)
    liquidations: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)  # ingest down or up
    error: BaseException | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    ws: ClientConnection | None = None
    reader: asyncio.Task[None] | None = None

    async def open(self, url: str, since: dict[str, Any] | None = None) -> None:
        self.closed.clear()
        replies = len(self.replies)
        self.ws = await connect(url)
        request: dict[str, Any] = {"op": "subscribe", "id": 1, "channels": [HEATMAP, LIQUIDATIONS]}
        if since is not None:
            request["since"] = since
        await self.ws.send(json.dumps(request))
        self.reader = asyncio.create_task(self._read(self.ws))
        await eventually(lambda: len(self.replies) > replies or self.error is not None)
        self.check()
        assert self.replies[-1] == {
            "op": "subscribed",
            "id": 1,
            "channels": [HEATMAP, LIQUIDATIONS],
        }

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                message = json.loads(raw)
                if "op" in message:
                    self.replies.append(message)
                elif message["type"] == "status":
                    self.statuses.append(message)
                elif message["ch"] == HEATMAP:
                    self.heatmap_messages.append(message)
                    self.heatmap.take(message)
                elif message["ch"] == LIQUIDATIONS:
                    self.liquidations.append(message)
        except ConnectionClosed:
            pass
        except BaseException as error:  # an assertion of ClientHeatmap, kept for check()
            self.error = error
        finally:
            self.closed.set()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def diffs(self) -> dict[tuple[str, int], Any]:
        return {
            (m["epoch"], m["seq"]): m["data"] for m in self.heatmap_messages if m["type"] == "diff"
        }

    def liquidation_times(self) -> list[int]:
        return [m["data"]["time"] for m in self.liquidations]

    def assert_liquidations_follow_on(self) -> None:
        """One epoch, seq +1 per message: nothing lost or repeated on the channel."""
        assert len({m["epoch"] for m in self.liquidations}) == 1
        seqs = [m["seq"] for m in self.liquidations]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.reader, 5)


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        await client.close()


async def open_client(opened: list[Client], name: str, web: Proc) -> Client:
    client = Client(name)
    opened.append(client)
    await client.open(web.ws)
    await eventually(lambda: client.heatmap.snapshots == 1 or client.error is not None)
    client.check()
    return client


# -- events -------------------------------------------------------------------------------


class Injector:
    """Liquidations pushed through the Binance look-alike, each with its own trade time."""

    def __init__(self, fake: FakeBinance, exactly_one: bool = True) -> None:
        """`exactly_one`: each event must reach one ingest connection upstream, not more
        (else at least one)."""
        self.fake = fake
        self.exactly_one = exactly_one
        self.base = int(time.time() * 1000) - 120_000
        self.times: list[int] = []

    async def inject(self, n: int, pause: float = 0.0) -> None:
        for _ in range(n):
            i = len(self.times)
            side = "SELL" if i % 3 else "BUY"
            price = f"{60000 + (i % 12) * 37.5 - (i % 5) * 90:.2f}"
            trade_time = self.base + i * 97
            payload = force_order("BTCUSDT", side, price, f"{0.01 + (i % 40) / 1000:.3f}",
                                  trade_time=trade_time)  # fmt: skip
            sent = await self.fake.push(payload)
            assert sent >= 1, "ingest is not subscribed upstream"
            assert sent == 1 or not self.exactly_one, f"expected one ingest upstream, seen {sent}"
            self.times.append(trade_time)
            if pause:
                await asyncio.sleep(pause)


async def settle(hub: Cluster, web: Proc, client: Client, events: int, within: float = 10) -> None:
    """Wait until the client's heatmap and the web process's REST snapshot hold `events`
    events at the same seq, then require them equal (both as they were at that moment: a
    diff may follow, clusters being found again at their pace)."""
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    async def settled() -> bool:
        client.check()
        if client.heatmap.state is None:
            return False
        rest = await hub.rest_snapshot(web)
        mine = client.heatmap.view()
        seen[:] = [(rest, mine)]
        return (
            rest["statistics"]["event_count"] == events
            and rest["seq"] == mine["seq"]
            and rest["epoch"] == mine["epoch"]
        )

    await eventually(settled, within=within)
    rest, mine = seen[0]
    assert (mine["seq"], mine["epoch"]) == (rest["seq"], rest["epoch"])
    assert mine["bins"] == sorted(rest["bins"])
    assert mine["clusters"] == rest["clusters"]
    assert mine["statistics"] == rest["statistics"]
    assert mine["reference_price"] == rest["reference_price"]
    assert mine["density"] == rest["density"]
    assert mine["coverage"] == rest["coverage"]


async def assert_all_once(hub: Cluster, webs: list[Proc], times: list[int]) -> None:
    """Every injected event is in the durable log and in each web's REST list exactly once."""
    expected = Counter(times)

    async def logged() -> bool:
        return Counter(await hub.log_event_times()) == expected

    await eventually(logged)
    for web in webs:
        listed = await hub.rest_event_times(web)
        assert Counter(listed) == expected, f"REST of {web.name}:{web.port}"


async def two_webs_with_a_client_each(
    cluster: Cluster, clients: list[Client]
) -> tuple[list[Proc], Client, Client]:
    webs = [await cluster.start_web(), await cluster.start_web()]
    return webs, await open_client(clients, "a", webs[0]), await open_client(clients, "b", webs[1])


# -- tests --------------------------------------------------------------------------------


async def test_every_web_process_serves_the_same_stream(
    cluster: Cluster, clients: list[Client], fake_binance: FakeBinance
) -> None:
    await cluster.start_ingest()
    webs, a, b = await two_webs_with_a_client_each(cluster, clients)
    events = Injector(fake_binance)
    await events.inject(40, pause=0.01)
    await eventually(
        lambda: all(len(c.liquidations) >= len(events.times) for c in (a, b)), within=10
    )

    for client, web in ((a, webs[0]), (b, webs[1])):
        await settle(cluster, web, client, len(events.times))
        assert client.liquidation_times() == events.times  # each event once, in order
        client.assert_liquidations_follow_on()
    # Both subscribed before the first event: from then on, the same seq carries the same
    # message on both processes (the first message is each one's own join snapshot). A
    # diff may still follow the last event (clusters found again at their pace): compared
    # once both hold the same, with no await between (nothing arrives meanwhile).
    await eventually(
        lambda: a.heatmap.view() == b.heatmap.view(), seen=lambda: (a.heatmap.seq, b.heatmap.seq)
    )
    diffs_a, diffs_b = a.diffs(), b.diffs()
    assert diffs_a.keys() == diffs_b.keys() and len(diffs_a) >= 3
    for key, data in diffs_a.items():
        assert diffs_b[key] == data, key

    def stream(client: Client) -> list[tuple[str, int, str, Any]]:
        return [(m["type"], m["seq"], m["epoch"], m["data"]) for m in client.heatmap_messages[1:]]

    assert stream(a) == stream(b)
    assert [(m["seq"], m["epoch"], m["data"]) for m in a.liquidations] == [
        (m["seq"], m["epoch"], m["data"]) for m in b.liquidations
    ]
    assert a.heatmap.view() == b.heatmap.view()
    await assert_all_once(cluster, webs, events.times)


async def test_redis_restart_loses_nothing(
    cluster: Cluster,
    clients: list[Client],
    fake_binance: FakeBinance,
    redis_server: RedisServer,
) -> None:
    await cluster.start_ingest()
    webs, a, b = await two_webs_with_a_client_each(cluster, clients)
    events = Injector(fake_binance)

    await events.inject(15, pause=0.01)
    await eventually(lambda: all(len(c.liquidations) >= 15 for c in (a, b)))
    snapshots = {c.name: c.heatmap.snapshots for c in (a, b)}
    await asyncio.to_thread(redis_server.kill)
    await events.inject(15, pause=0.05)  # accepted by ingest while Redis is gone
    await asyncio.sleep(0.5)
    await asyncio.to_thread(redis_server.start)  # same port, empty: no persistence
    await events.inject(5, pause=0.05)
    await asyncio.sleep(1.0)
    await events.inject(10, pause=0.02)

    await assert_all_once(cluster, webs, events.times)
    for client, web in ((a, webs[0]), (b, webs[1])):
        await settle(cluster, web, client, len(events.times), within=15)
        # Lost diffs were replaced by a fresh snapshot (ClientHeatmap fails on a bare gap).
        assert client.heatmap.snapshots > snapshots[client.name], client.name
        assert not client.closed.is_set()
    assert all(p.alive for p in cluster.procs)


async def test_ingest_restart_keeps_epoch_and_seq(
    cluster: Cluster, clients: list[Client], fake_binance: FakeBinance
) -> None:
    ingest = await cluster.start_ingest()
    webs, a, b = await two_webs_with_a_client_each(cluster, clients)
    events = Injector(fake_binance)

    await events.inject(20, pause=0.01)
    for client, web in ((a, webs[0]), (b, webs[1])):
        # Published (so logged and checkpointed): the client's heatmap counts them all.
        await settle(cluster, web, client, len(events.times))
    epoch = (await cluster.rest_snapshot(webs[0]))["epoch"]
    seq_before = a.heatmap.seq
    reference = a.heatmap.reference_price
    snapshots = {c.name: c.heatmap.snapshots for c in (a, b)}
    diffs_from = {c.name: len(c.heatmap_messages) for c in (a, b)}

    await cluster.kill(ingest)
    await cluster.start_ingest()
    await events.inject(20, pause=0.01)

    await assert_all_once(cluster, webs, events.times)
    for client, web in ((a, webs[0]), (b, webs[1])):
        await settle(cluster, web, client, len(events.times))
        assert client.heatmap.epoch == epoch, "an ingest restart that restores keeps the epoch"
        # The new events' prices are those of before: the price axis stays where it was.
        assert client.heatmap.reference_price == reference, (
            f"expected the reference price to stay at {reference}, "
            f"got {client.heatmap.reference_price}"
        )
        assert client.heatmap.snapshots == snapshots[client.name], "no new snapshot"
        after = client.heatmap_messages[diffs_from[client.name] :]
        assert [m["type"] for m in after] == ["diff"] * len(after)
        assert [m["seq"] for m in after] == list(range(seq_before + 1, seq_before + 1 + len(after)))
        assert client.heatmap.seq > seq_before
        assert client.liquidation_times() == events.times
        client.assert_liquidations_follow_on()
    assert (await cluster.rest_snapshot(webs[1]))["epoch"] == epoch


async def test_client_resumes_on_another_web_process(
    cluster: Cluster, clients: list[Client], fake_binance: FakeBinance
) -> None:
    await cluster.start_ingest()
    webs, a, b = await two_webs_with_a_client_each(cluster, clients)
    events = Injector(fake_binance)

    await events.inject(10, pause=0.01)
    await settle(cluster, webs[1], b, len(events.times))
    await cluster.kill(webs[1])
    await asyncio.wait_for(b.closed.wait(), 5)
    b.check()
    epoch, seq = b.heatmap.epoch, b.heatmap.seq
    missed_from = len(b.heatmap_messages)
    snapshots = b.heatmap.snapshots

    # Several flushes apart: several diffs go by while the client is away.
    deadline = asyncio.get_running_loop().time() + 10
    while a.heatmap.seq < seq + 3 or len(events.times) < 20:
        assert asyncio.get_running_loop().time() < deadline, "no diffs went by"
        await events.inject(1, pause=0.03)
        a.check()
    await eventually(
        lambda: (
            a.heatmap.state is not None
            and (a.heatmap.state["statistics"]["event_count"] == len(events.times))
        ),
        within=10,
    )
    resumed_from = a.heatmap.seq
    await b.open(webs[0].ws, since={HEATMAP: {"epoch": epoch, "seq": seq}})

    await settle(cluster, webs[0], b, len(events.times))
    # A diff may still follow the last event (clusters are found again at their own pace,
    # up to a second later): both clients get it, and end alike.
    await eventually(
        lambda: b.heatmap.view() == a.heatmap.view(),
        seen=lambda: (a.heatmap.seq, b.heatmap.seq),
    )
    missed = b.heatmap_messages[missed_from:]
    assert len(missed) >= 3 and missed[-1]["seq"] >= resumed_from, (
        f"expected the diffs missed while away, up to seq {resumed_from} at least; "
        f"got seqs {[m['seq'] for m in missed]}"
    )
    assert [m["type"] for m in missed] == ["diff"] * len(missed), "resumed without a snapshot"
    assert [m["seq"] for m in missed] == list(range(seq + 1, seq + 1 + len(missed)))
    assert b.heatmap.snapshots == snapshots
    b.check()
