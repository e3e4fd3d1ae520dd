"""A warm standby `ingest`, with real processes over a real Redis: it publishes nothing
and reads nothing upstream while the primary holds the lease, takes over when the primary
dies, and a primary that was only paused (SIGSTOP) and wakes up after the takeover is
fenced off: Redis refuses its writes, it steps down, and clients never see two streams
(`ClientHeatmap` fails on a seq gap that a snapshot did not reset)."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.conftest import eventually
from tests.fakes.binance_server import FakeBinance
from tests.test_e2e_scale_out import (
    Client,
    Cluster,
    Injector,
    Proc,
    assert_all_once,
    clients,
    cluster,
    open_client,
    settle,
)

__all__ = ["clients", "cluster"]  # fixtures
pytestmark = pytest.mark.timeout(240)
LEASE_MS = "1500"


def log_of(proc: Proc) -> str:
    return proc.log_path.read_text(errors="replace")


async def primary_and_standby(cluster: Cluster) -> tuple[Proc, Proc, int]:
    """The primary subscribed upstream, and a standby waiting; the upstream connections
    counted once both run."""
    cluster.env["HEATMAP_INGEST_LEASE_MS"] = LEASE_MS
    primary = await cluster.start_ingest()
    standby = await cluster._spawn("ingest", "ingest", "--standby")
    await eventually(lambda: "waits as a standby" in log_of(standby), within=15)
    return primary, standby, cluster.fake.connection_count_total


def upstream_again(cluster: Cluster, count: int) -> bool:
    return cluster.fake.connection_count_total > count and any(
        c.market and "btcusdt@forceOrder" in c.streams for c in cluster.fake.connections
    )


async def warm_takeover(
    cluster: Cluster, clients: list[Client], fake_binance: FakeBinance
) -> tuple[Proc, Injector]:
    """A primary and a standby, a `web` and a client; the primary killed once the
    standby follows it: the standby must take over from the books it followed, the
    client's heatmap carrying on in the same epoch, every liquidation once. Returns the
    `web` and the liquidations sent."""
    primary, standby, upstream = await primary_and_standby(cluster)
    web = await cluster.start_web()
    client = await open_client(clients, "a", web)
    events = Injector(fake_binance)
    await events.inject(10, pause=0.01)
    await settle(cluster, web, client, len(events.times))
    assert fake_binance.connection_count_total == upstream, "the standby read upstream"
    assert "lease: taken" not in log_of(standby)
    # Warm: it read the history and follows the primary's log and checkpoints.
    await eventually(lambda: "standby: following" in log_of(standby), within=30)
    await events.inject(5, pause=0.01)  # followed as they come
    await settle(cluster, web, client, len(events.times))
    epoch = client.heatmap_messages[-1]["epoch"]
    seen = len(client.heatmap_messages)

    await cluster.kill(primary)
    killed = time.monotonic()
    await eventually(lambda: upstream_again(cluster, upstream), within=30)
    print(f"standby upstream {time.monotonic() - killed:.2f} s after the primary was killed")
    assert "lease: taken" in log_of(standby)
    await events.inject(10, pause=0.01)

    await settle(cluster, web, client, len(events.times), within=30)
    assert client.liquidation_times() == events.times
    client.assert_liquidations_follow_on()
    taken = log_of(standby)
    assert "stream resumed, kept warm by the standby" in taken, (
        f"expected the standby to carry on the stream from the books it followed; log: {taken}"
    )
    epochs = {m["epoch"] for m in client.heatmap_messages[seen:]}
    assert epochs == {epoch}, f"expected the heatmap to carry on in epoch {epoch}, saw {epochs}"
    return web, events


async def test_the_standby_takes_over_when_the_primary_dies(
    cluster: Cluster, clients: list[Client], fake_binance: FakeBinance
) -> None:
    web, events = await warm_takeover(cluster, clients, fake_binance)
    await assert_all_once(cluster, [web], events.times)


async def test_a_paused_primary_that_wakes_after_the_takeover_is_fenced(
    cluster: Cluster, clients: list[Client], fake_binance: FakeBinance
) -> None:
    primary, standby, upstream = await primary_and_standby(cluster)
    web = await cluster.start_web()
    client = await open_client(clients, "a", web)
    # A paused primary's socket still takes its copy of each event: one or two get them.
    events = Injector(fake_binance, exactly_one=False)
    await events.inject(10, pause=0.01)
    await settle(cluster, web, client, len(events.times))

    primary.process.send_signal(signal.SIGSTOP)
    try:
        await eventually(lambda: upstream_again(cluster, upstream), within=30)
        await events.inject(5, pause=0.01)  # the paused primary's socket takes them too
        await settle(cluster, web, client, len(events.times), within=20)
    finally:
        primary.process.send_signal(signal.SIGCONT)

    # Awake, it acts on what it had and on what waited in its socket: all refused.
    await eventually(lambda: "lease: lost" in log_of(primary), within=30)
    await eventually(lambda: "waits as a standby" in log_of(primary).split("lease: lost")[1])
    await events.inject(5, pause=0.01)
    await settle(cluster, web, client, len(events.times), within=20)
    assert client.liquidation_times() == events.times, "each event once, in order"
    await assert_all_once(cluster, [web], events.times)
    assert primary.alive and standby.alive
    await asyncio.sleep(0)
