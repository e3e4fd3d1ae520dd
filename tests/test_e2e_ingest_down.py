"""`ingest` dies and comes back, with real processes over a real Redis: a `web` process
tells its subscribers (JSON and MessagePack) that ingest is down, says `degraded` on
/health, and once ingest is back tells them it is up and carries on without a silent gap
(`ClientHeatmap` fails on any seq gap a snapshot did not reset)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import connect

from tests.conftest import eventually
from tests.fakes.binance_server import FakeBinance
from tests.test_e2e_scale_out import (
    HEATMAP,
    LIQUIDATIONS,
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
pytestmark = pytest.mark.timeout(180)


class MsgpackReader:
    """A MessagePack subscriber to the heatmap, keeping every message it reads."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None

    async def open(self, web: Proc) -> None:
        ws = await connect(f"{web.ws}?format=msgpack")
        await ws.send(msgspec.msgpack.encode({"op": "subscribe", "channels": [HEATMAP]}))

        async def read() -> None:
            async for frame in ws:
                assert isinstance(frame, bytes), "a MessagePack connection gets binary frames"
                self.messages.append(msgspec.msgpack.decode(frame))

        self.task = asyncio.create_task(read())

    def statuses(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == "status"]


def ingest_states(client: Client, channel: str) -> list[str]:
    return [m["data"]["ingest"] for m in client.statuses if m["ch"] == channel]


async def health(hub: Cluster, web: Proc) -> dict[str, Any]:
    response = await hub.http.get(f"{web.http}/health")
    body: dict[str, Any] = response.json()
    return body


async def test_clients_are_told_while_ingest_is_away(
    cluster: Cluster, clients: list[Client], fake_binance: FakeBinance
) -> None:
    ingest = await cluster.start_ingest()
    web = await cluster.start_web()
    client = await open_client(clients, "a", web)
    packed = MsgpackReader()
    await packed.open(web)
    events = Injector(fake_binance)
    await events.inject(10, pause=0.01)
    await settle(cluster, web, client, len(events.times))
    assert client.statuses == [], "ingest was never away"
    steady = web.log_path.read_text(errors="replace")
    assert "out of step" not in steady, "a heartbeat disagreed with a steady stream"

    await cluster.kill(ingest)
    killed = time.monotonic()
    await eventually(
        lambda: ingest_states(client, HEATMAP) == ["down"], seen=lambda: client.statuses
    )
    told_after = time.monotonic() - killed
    await eventually(lambda: ingest_states(client, LIQUIDATIONS) == ["down"])
    body = await health(cluster, web)
    assert body["data"]["status"] == "degraded", body
    status = (await cluster.http.get(f"{web.http}/api/heatmap/status")).json()["data"]
    assert status["ingest_heartbeat"] == "down", status["ingest_heartbeat"]
    assert any(r.startswith("ingest: no heartbeat") for r in body["data"]["reasons"]), body
    await eventually(lambda: packed.statuses() != [])
    assert packed.statuses() == [{"ch": HEATMAP, "type": "status", "data": {"ingest": "down"}}]
    print(f"subscribers told {told_after:.2f} s after ingest was killed")

    await cluster.start_ingest()
    await eventually(lambda: ingest_states(client, HEATMAP) == ["down", "up"])
    await eventually(lambda: ingest_states(client, LIQUIDATIONS) == ["down", "up"])
    await eventually(lambda: len(packed.statuses()) == 2)
    assert packed.statuses()[1]["data"] == {"ingest": "up"}
    assert all("seq" not in m for m in client.statuses + packed.statuses())

    async def healthy() -> bool:
        return (await health(cluster, web))["data"]["status"] == "ok"

    await eventually(healthy)
    await events.inject(10, pause=0.01)
    await settle(cluster, web, client, len(events.times))
    assert client.liquidation_times() == events.times
    await assert_all_once(cluster, [web], events.times)
    assert packed.task is not None and not packed.task.done()
    packed.task.cancel()
