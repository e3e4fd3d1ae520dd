"""Two `web --reuse-port` processes on one port, as real subprocesses over a real Redis:
the kernel spreads new connections over both, and when one is killed its clients
reconnect to the same address, reach the other and resume with `since`, without a
snapshot."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.conftest import eventually, free_port
from tests.fakes.binance_server import FakeBinance
from tests.test_e2e_scale_out import (
    HEATMAP,
    Client,
    Cluster,
    Injector,
    Proc,
    clients,
    cluster,
    settle,
)

__all__ = ["clients", "cluster"]  # fixtures
pytestmark = pytest.mark.timeout(240)
# The kernel picks a listener by a hash of each connection's addresses: with 100
# connections over two, a share under 30 % is over four standard deviations away.
CONNECTIONS = 100
ACCEPTED = re.compile(r'"WebSocket /ws" \[accepted\]')


async def start_web_on(cluster: Cluster, port: int) -> Proc:
    proc = await cluster._spawn("web", "web", "--port", str(port), "--reuse-port", port=port)

    def started() -> bool:
        assert proc.alive, f"web exited with {proc.process.returncode}"
        return "Application startup complete" in proc.log_path.read_text(errors="replace")

    await eventually(started, within=15)
    return proc


def accepted(proc: Proc) -> int:
    return len(ACCEPTED.findall(proc.log_path.read_text(errors="replace")))


async def test_two_web_processes_share_a_port_and_take_over_each_others_clients(
    cluster: Cluster, clients: list[Client], fake_binance: FakeBinance
) -> None:
    await cluster.start_ingest()
    port = free_port()
    webs = [await start_web_on(cluster, port), await start_web_on(cluster, port)]
    url = webs[0].ws

    opened = [Client(f"c{n}") for n in range(CONNECTIONS)]
    clients.extend(opened)
    await asyncio.gather(*(client.open(url) for client in opened))
    await eventually(lambda: all(c.heatmap.snapshots == 1 or c.error for c in opened))
    counts = [accepted(web) for web in webs]
    assert sum(counts) == CONNECTIONS, f"expected {CONNECTIONS} accepted, seen {counts}"
    assert min(counts) >= 0.3 * CONNECTIONS, f"expected each to take >= 30 %, seen {counts}"
    print(f"connections per process: {counts}")

    events = Injector(fake_binance)
    await events.inject(10, pause=0.01)
    await eventually(lambda: all(len(c.liquidations) == 10 for c in opened))

    await cluster.kill(webs[1])
    await eventually(lambda: sum(c.closed.is_set() for c in opened) == counts[1])
    moved = [c for c in opened if c.closed.is_set()]
    stayed = [c for c in opened if not c.closed.is_set()]
    positions = {c.name: (c.heatmap.epoch, c.heatmap.seq, len(c.heatmap_messages)) for c in moved}
    snapshots = {c.name: c.heatmap.snapshots for c in moved}

    # Several diffs go by while the moved clients are away.
    witness = stayed[0]
    seq = witness.heatmap.seq
    while witness.heatmap.seq < seq + 3:
        await events.inject(1, pause=0.03)
        witness.check()
    await settle(cluster, webs[0], witness, len(events.times))

    await asyncio.gather(
        *(
            client.open(url, since={HEATMAP: {"epoch": epoch, "seq": seq}})
            for client, (epoch, seq, _) in ((c, positions[c.name]) for c in moved)
        )
    )
    # Views too: a diff may still follow the last event; no await after this, so nothing
    # arrives while the clients are compared.
    await eventually(
        lambda: all(
            c.heatmap.seq == witness.heatmap.seq and c.heatmap.view() == witness.heatmap.view()
            for c in moved
        )
    )
    for client in moved:
        client.check()
        _, seq, read = positions[client.name]
        missed = client.heatmap_messages[read:]
        assert [m["type"] for m in missed] == ["diff"] * len(missed), "resumed without a snapshot"
        assert [m["seq"] for m in missed] == list(range(seq + 1, seq + 1 + len(missed)))
        assert client.heatmap.snapshots == snapshots[client.name]
        assert client.heatmap.view() == witness.heatmap.view()
    assert accepted(webs[0]) == counts[0] + len(moved), "every moved client reached the survivor"
