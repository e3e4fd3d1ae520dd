"""Tests for the local Binance USD-M forceOrder WebSocket fake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from tests.fakes.binance_server import FakeBinance, force_order

BAD_ID = "Invalid request: request ID must be an unsigned integer"
EXAMPLES = Path(__file__).parent / "data" / "forceOrder_examples.json"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        yield server


def _connect(url: str) -> Any:
    return connect(url, open_timeout=2, close_timeout=0.5, ping_interval=None)


async def _recv_json(ws: ClientConnection, within: float = 10.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def _request(ws: ClientConnection, req: dict[str, Any] | str) -> Any:
    await ws.send(req if isinstance(req, str) else json.dumps(req))
    return await _recv_json(ws)


async def _assert_silent(ws: ClientConnection, within: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), within)


def test_force_order_has_live_2026_shape() -> None:
    live = json.loads(EXAMPLES.read_text())["observed_live_frames"]["frames"][2]["frame"]["data"]
    built = force_order("XRPUSDT", "BUY", "1.4984", "127.2", trade_time=1791091174219)
    assert list(built) == list(live)
    assert list(built["o"]) == list(live["o"])
    assert built["E"] - built["o"]["T"] == 1005
    assert built["o"]["l"] == built["o"]["z"] == "127.2"
    assert built["o"]["ps"] == "XRPUSDT" and built["o"]["st"] == 1
    assert all(isinstance(v, str) for k, v in built["o"].items() if k not in ("T", "st"))
    assert "ps" not in force_order(extra_live_fields=False)["o"]


async def test_combined_endpoint_wraps_frames(fake: FakeBinance) -> None:
    url = f"{fake.base_url}/stream?streams=btcusdt@forceOrder/ethusdt@forceOrder"
    async with _connect(url) as ws:
        await fake.wait_for_connections(1)
        assert fake.connections[0].streams == {"btcusdt@forceOrder", "ethusdt@forceOrder"}
        btc, sol, eth = force_order(), force_order("SOLUSDT"), force_order("ETHUSDT")
        assert await fake.push(btc) == 1
        assert await _recv_json(ws) == {"stream": "btcusdt@forceOrder", "data": btc}
        assert await fake.push(sol) == 0
        assert await fake.push(eth) == 1
        assert await _recv_json(ws) == {"stream": "ethusdt@forceOrder", "data": eth}


async def test_raw_endpoint_sends_bare_payload(fake: FakeBinance) -> None:
    async with _connect(f"{fake.base_url}/ws/btcusdt@forceOrder") as ws:
        await fake.wait_for_subscription("btcusdt@forceOrder")
        payload = force_order()
        assert await fake.push(payload) == 1
        assert await _recv_json(ws) == payload


async def test_subscribe_list_unsubscribe(fake: FakeBinance) -> None:
    async with _connect(f"{fake.base_url}/ws") as ws:
        await fake.wait_for_connections(1)  # a raw connection counts before it subscribes
        sub = {"method": "SUBSCRIBE", "params": ["btcusdt@forceOrder", "ethusdt@forceOrder"]}
        assert await _request(ws, {**sub, "id": 1}) == {"result": None, "id": 1}
        listed = await _request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3})
        assert listed == {"result": ["btcusdt@forceOrder", "ethusdt@forceOrder"], "id": 3}
        unsub = {"method": "UNSUBSCRIBE", "params": ["ethusdt@forceOrder"], "id": 312}
        assert await _request(ws, unsub) == {"result": None, "id": 312}
        assert await fake.push(force_order("ETHUSDT")) == 0
        assert await fake.push(force_order("BTCUSDT")) == 1
        assert (await _recv_json(ws))["o"]["s"] == "BTCUSDT"
        assert fake.connections[0].requests[0] == {**sub, "id": 1}


async def test_set_and_get_property_combined(fake: FakeBinance) -> None:
    async with _connect(f"{fake.base_url}/ws/btcusdt@forceOrder") as ws:
        assert await _request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 2}) == {
            "result": False,
            "id": 2,
        }
        set_req = {"method": "SET_PROPERTY", "params": ["combined", True], "id": 5}
        assert await _request(ws, set_req) == {"result": None, "id": 5}
        await fake.push(force_order())
        assert (await _recv_json(ws))["stream"] == "btcusdt@forceOrder"


async def test_invalid_requests(fake: FakeBinance) -> None:
    async with _connect(f"{fake.base_url}/ws") as ws:
        reply = await _request(ws, "not json")
        assert reply["code"] == 2 and reply["msg"].startswith("Invalid request")
        assert "id" not in reply
        reply = await _request(ws, {"method": "FOO", "params": [], "id": 7})
        assert reply["code"] == 2 and "unknown variant `FOO`" in reply["msg"] and reply["id"] == 7
        for bad_id in (-1, "1", 1.5, None, True):
            reply = await _request(ws, {"method": "SUBSCRIBE", "params": [], "id": bad_id})
            assert reply == {"code": 2, "msg": BAD_ID}
        reply = await _request(ws, {"method": "SUBSCRIBE", "params": "btcusdt@forceOrder", "id": 8})
        assert reply["code"] == 2 and reply["id"] == 8


async def test_stream_limit_per_connection() -> None:
    async with FakeBinance(max_streams=2) as fake:
        async with _connect(f"{fake.base_url}/ws/btcusdt@forceOrder") as ws:
            req = {"method": "SUBSCRIBE", "params": ["ethusdt@forceOrder", "solusdt@forceOrder"]}
            reply = await _request(ws, {**req, "id": 1})
            assert reply["code"] == 2 and reply["id"] == 1
            assert fake.connections[0].streams == {"btcusdt@forceOrder"}
        too_many = f"{fake.base_url}/stream?streams=a@forceOrder/b@forceOrder/c@forceOrder"
        with pytest.raises(InvalidStatus):
            async with _connect(too_many):
                pass


async def test_unknown_path_is_rejected(fake: FakeBinance) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with _connect(f"{fake.base_url}/nope"):
            pass
    assert info.value.response.status_code == 404


@pytest.mark.parametrize("path", ["/ws", "/stream?streams=btcusdt@forceOrder"])
async def test_legacy_root_acks_but_sends_nothing(fake: FakeBinance, path: str) -> None:
    async with _connect(fake.root_url + path) as ws:
        sub = {"method": "SUBSCRIBE", "params": ["btcusdt@forceOrder"], "id": 1}
        assert await _request(ws, sub) == {"result": None, "id": 1}
        assert fake.connections[0].streams == {"btcusdt@forceOrder"}
        assert await fake.push(force_order()) == 0
        await fake.send_text("{}")
        await _assert_silent(ws)
        with pytest.raises(TimeoutError):
            await fake.wait_for_connections(1, timeout=0.1)
        with pytest.raises(TimeoutError):
            await fake.wait_for_subscription("btcusdt@forceOrder", timeout=0.1)


async def test_all_market_stream(fake: FakeBinance) -> None:
    async with (
        _connect(f"{fake.base_url}/ws/!forceOrder@arr") as raw,
        _connect(f"{fake.base_url}/stream?streams=!forceOrder@arr") as combined,
    ):
        await fake.wait_for_connections(2)
        for symbol in ("BTCUSDT", "MANTAUSDT"):
            payload = force_order(symbol)
            assert await fake.push(payload) == 2
            assert await _recv_json(raw) == payload
            assert await _recv_json(combined) == {"stream": "!forceOrder@arr", "data": payload}


async def test_send_text_delivers_raw_text(fake: FakeBinance) -> None:
    async with _connect(f"{fake.base_url}/ws/btcusdt@forceOrder") as ws:
        await fake.wait_for_connections(1)
        await fake.send_text("{not json")
        assert await asyncio.wait_for(ws.recv(), 10) == "{not json"


async def test_drop_all_aborts_without_close_frame(fake: FakeBinance) -> None:
    async with _connect(f"{fake.base_url}/ws/btcusdt@forceOrder") as ws:
        await fake.wait_for_connections(1)
        await fake.drop_all()
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is None
    assert fake.connections == [] and fake.connection_count_total == 1


async def test_close_all_sends_close_frame(fake: FakeBinance) -> None:
    async with _connect(f"{fake.base_url}/ws/btcusdt@forceOrder") as ws:
        await fake.wait_for_connections(1)
        await fake.close_all(4000, "bye")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4000 and ws.close_reason == "bye"


async def test_rate_limit_closes_connection(fake: FakeBinance) -> None:
    async with _connect(f"{fake.base_url}/ws") as ws:
        for i in range(11):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        replies = []
        with pytest.raises(ConnectionClosed):
            while True:
                replies.append(await _recv_json(ws))
        assert [r["id"] for r in replies] == list(range(10))
        assert ws.close_code == 1008


async def test_silent_mode_stops_answering_pings(fake: FakeBinance) -> None:
    async with _connect(f"{fake.base_url}/ws/btcusdt@forceOrder") as ws:
        await fake.wait_for_connections(1)
        assert await asyncio.wait_for(await ws.ping(), 1) >= 0  # answered while not silent
        fake.silent = True
        pong = await ws.ping()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pong), 1.0)
        assert await fake.push(force_order()) == 0
        await _assert_silent(ws, 0.1)
        fake.silent = False  # the held ping is processed now, like a stalled peer recovering
        await asyncio.wait_for(pong, 10)
        assert await fake.push(force_order()) == 1


async def test_silent_mode_still_notices_peer_going_away(fake: FakeBinance) -> None:
    fake.silent = True
    async with _connect(f"{fake.base_url}/ws/btcusdt@forceOrder") as ws:
        await fake.wait_for_connections(1)  # the handshake itself is still answered
        ws.transport.abort()
        await asyncio.wait_for(_until(lambda: not fake.connections), 1)


async def _until(predicate: Any) -> None:
    # Counters and the connection list have no public event to await, so poll briefly.
    while not predicate():  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def test_server_pings_and_counts_pongs() -> None:
    fake = FakeBinance(ping_interval=0.05)
    async with fake, _connect(f"{fake.base_url}/ws/btcusdt@forceOrder"):
        await fake.wait_for_connections(1)
        conn = fake.connections[0]
        await asyncio.wait_for(_until(lambda: conn.pongs_received >= 2), 2)
        assert conn.pings_sent >= conn.pongs_received
        fake.silent = True  # no pings go out while silent
        await asyncio.sleep(0.1)
        sent = conn.pings_sent
        await asyncio.sleep(0.2)
        assert conn.pings_sent == sent


async def test_stop_closes_clients_quickly(fake: FakeBinance) -> None:
    async with _connect(f"{fake.base_url}/ws/btcusdt@forceOrder") as ws:
        await fake.wait_for_connections(1)
        fake.silent = True
        await asyncio.wait_for(fake.stop(), 2)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
