"""Redis Sentinel under repeated faults, with real processes (issue 26's acceptance).

A master, its replica and three sentinels; an `ingest` fed by the Binance look-alike and
two `web` processes, each with a WebSocket client, all given REDIS_SENTINELS. While the
source keeps sending, the current master (asked of a sentinel each time) is paused
(SIGSTOP) for 6 s, long enough for the sentinels to promote the replica, five times, then
killed (SIGKILL). After each fault publishing resumes; once the source stops, each
client's heatmap equals what `ingest` published, the event log (and each `web`'s REST
list) holds every accepted liquidation exactly once, and no client saw a silent seq gap
or a repeat: `ClientHeatmap` fails on a heatmap gap that a snapshot did not reset, and a
liquidation published while Redis was away is lost as documented, as a seq jump."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import pytest

from tests.conftest import eventually
from tests.fakes.binance_server import FakeBinance
from tests.redis_server import RedisServer
from tests.test_e2e_scale_out import (
    Client,
    Cluster,
    Injector,
    assert_all_once,
    clients,
    settle,
    two_webs_with_a_client_each,
)
from tests.test_e2e_sentinel import Deployment, deployment, sentinel_cluster

__all__ = ["clients", "deployment", "sentinel_cluster"]  # fixtures
pytestmark = pytest.mark.timeout(300)
PAUSES = 5
HOLD = 6.0  # seconds a master stays paused: well past the sentinels' 1 s down-after


async def current_master(servers: Deployment) -> RedisServer:
    """The server a sentinel names as the master now."""
    port = await servers.master_port()
    by_port = {server.port: server for server in (servers.master, servers.replica)}
    assert port in by_port, f"expected the master at one of {sorted(by_port)}, seen {port}"
    return by_port[port]


async def source(events: Injector, stop: asyncio.Event) -> None:
    """Liquidations at a steady pace until `stop`, whatever Redis is going through (the
    Injector's trade times step 97 ms: slower than that keeps them in the past)."""
    while not stop.is_set():
        await events.inject(1, pause=0.1)


def check_channels(client: Client) -> None:
    """What a client received breaks no rule of docs/protocol.md that a fault could break."""
    client.check()  # its heatmap: each diff the next seq, else a snapshot
    assert all("seq" not in s and "epoch" not in s for s in client.statuses), client.statuses
    seqs = [(m["epoch"], m["seq"]) for m in client.liquidations]
    repeated = [key for key, n in Counter(seqs).items() if n > 1]
    assert not repeated, f"{client.name}: expected each liquidation seq once, repeated {repeated}"
    times = client.liquidation_times()
    twice = [t for t, n in Counter(times).items() if n > 1]
    assert not twice, f"{client.name}: expected each liquidation once, repeated times {twice}"


def assert_losses_show(client: Client, accepted: list[int]) -> None:
    """Liquidations published while Redis was away are lost (docs/operations.md), but
    never silently: each accepted one took its own seq, so what the client got is the
    accepted ones in order, each at its seq, and a loss is a seq jump (REST fills it)."""
    assert len({m["epoch"] for m in client.liquidations}) == 1, "one ingest run, one epoch"
    index = {t: i for i, t in enumerate(accepted)}
    placed = [(m["seq"], index[m["data"]["time"]]) for m in client.liquidations]
    shifts = [(s, i) for (r, j), (s, i) in itertools.pairwise(placed) if s - i != r - j]
    assert not shifts, (
        f"{client.name}: expected each liquidation at its own seq, seen (seq, accepted "
        f"index) pairs shift at {shifts[:10]} ({len(client.liquidations)} of {len(accepted)} got)"
    )


async def strike(server: RedisServer, hold: float | None) -> asyncio.Future[None] | None:
    """Pause `server` for `hold` seconds (None: kill it); the pause's end, to await."""
    if hold is None:
        await asyncio.to_thread(server.kill)
        return None
    server.pause()
    # The hold is the fault itself (not a wait for a condition): it runs beside the
    # caller's waits, which measure how soon publishing comes back.
    resumed = asyncio.ensure_future(asyncio.sleep(hold))
    resumed.add_done_callback(lambda _: server.resume())
    return resumed


async def published_again(clients: list[Client], last: int) -> None:
    """Until every client got a liquidation sent after `last` (its trade time)."""
    await eventually(
        lambda: all(c.liquidation_times()[-1] > last for c in clients),
        within=60,
        seen=lambda: [(last, c.liquidation_times()[-1]) for c in clients],
    )


async def fault(
    servers: Deployment, events: Injector, clients: list[Client], label: str, hold: float | None
) -> None:
    """Pause the current master for `hold` seconds (None: kill it), and wait until a
    sentinel names another one and both clients receive a liquidation sent after the
    fault: while the old master is still paused, if the failover is quick enough."""
    master = await current_master(servers)
    last = events.times[-1]  # anything later was sent after the fault
    started = time.monotonic()
    resumed = await strike(master, hold)
    try:
        promoted: list[int | None] = []

        async def failed_over() -> bool:
            promoted.append(await servers.master_port())
            return promoted[-1] not in (None, master.port)

        await eventually(failed_over, within=60, seen=lambda: promoted[-3:])
        promoted_after = time.monotonic() - started
        await published_again(clients, last)
        paused = "" if resumed is None else f", master still paused: {not resumed.done()}"
        print(
            f"{label}: a sentinel named the new master {promoted_after:.2f} s after it, "
            f"published again {time.monotonic() - started:.2f} s after it{paused}"
        )
        for client in clients:
            check_channels(client)
    finally:
        if resumed is not None:
            await resumed


async def test_paused_and_killed_masters_repeat_nothing_and_lose_nothing_silently(
    deployment: Deployment,
    sentinel_cluster: Cluster,
    clients: list[Client],
    fake_binance: FakeBinance,
) -> None:
    await eventually(deployment.ready, within=30)
    hub = sentinel_cluster
    await hub.start_ingest()
    webs, a, b = await two_webs_with_a_client_each(hub, clients)
    events = Injector(fake_binance)
    await events.inject(10, pause=0.01)
    for client, web in ((a, webs[0]), (b, webs[1])):
        await settle(hub, web, client, len(events.times))
    stop = asyncio.Event()
    sending = asyncio.create_task(source(events, stop))

    try:
        for round_ in range(PAUSES):
            # The paused master comes back as the new master's replica: a next failover
            # needs that link (and the sentinels agreeing) first.
            await eventually(deployment.ready, within=60)
            await fault(deployment, events, [a, b], f"pause {round_ + 1}", HOLD)
        await eventually(deployment.ready, within=60)
        await fault(deployment, events, [a, b], "kill", None)
    finally:
        stop.set()
        await sending
    stopped = time.monotonic()

    hub.redis_server = await current_master(deployment)  # where the log is read back
    for client, web in ((a, webs[0]), (b, webs[1])):
        await settle(hub, web, client, len(events.times), within=60)
        check_channels(client)
    print(f"{len(events.times)} liquidations; every client settled "
          f"{time.monotonic() - stopped:.2f} s after the source stopped")  # fmt: skip
    # Both show ingest's heatmap (a diff may still follow the last event: clusters are
    # found again at their own pace, so one client may hold it a moment before the other).
    await eventually(
        lambda: a.heatmap.view() == b.heatmap.view(), seen=lambda: (a.heatmap.seq, b.heatmap.seq)
    )
    for client in (a, b):
        assert_losses_show(client, events.times)
    await assert_all_once(hub, webs, events.times)
    logged = await hub.log_rows()
    arrivals = Counter(logged.arrival.tolist())
    assert len(arrivals) == len(events.times) and max(arrivals.values()) == 1, (
        f"expected {len(events.times)} arrival numbers once each, "
        f"seen {len(arrivals)} ({[n for n, k in arrivals.items() if k > 1][:10]} repeated)"
    )
