"""Keys, limits and CORS on a real server (uvicorn on loopback, the Binance look-alike):
what a client with no, a bad, a read, a restricted or an admin key gets over REST and the
WebSocket; a key added and revoked while the server runs; the per-key connection limit;
REST's rate limit; CORS preflights; and that no key ever reaches the server's log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect

import hub.api.ws_keys as ws_keys
from hub.config import Settings
from tests.conftest import BINANCE, HubFactory, RunningHub, eventually, http_client
from tests.fakes.binance_server import FakeBinance
from tests.keys_kit import add_key, admitted, close_code, read_all, reply, revoke_key, spoil
from tests.test_cli import hub_process

STATUS = "/api/heatmap/status"


async def keyed_hub(
    start_hub: HubFactory, fake: FakeBinance, keys_file: Path, **overrides: Any
) -> RunningHub:
    settings = Settings(
        binance_ws_url=fake.base_url,
        symbols=("BTCUSDT", "ETHUSDT"),
        flush_ms=20,
        exchanges=BINANCE,
        api_keys_file=str(keys_file),
        **overrides,
    )
    running = await start_hub(settings)
    await fake.wait_for_subscription("btcusdt@forceOrder")
    return running


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text("")
    return path


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def metric(running: RunningHub, key: str, sample: str) -> float:
    text = (await running.client.get(f"{running.http}/metrics", headers=bearer(key))).text
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {sample!r} in /metrics:\n{text}")


# -- REST ---------------------------------------------------------------------------------


async def test_rest_needs_a_key_but_the_page_and_health_do_not(
    start_hub: HubFactory, fake_binance: FakeBinance, keys_file: Path
) -> None:
    key = add_key(keys_file, "desk")
    running = await keyed_hub(start_hub, fake_binance, keys_file)
    client = running.client
    assert (await running.get("/health")).status_code == 200
    assert (await running.get("/")).status_code == 200
    for headers in ({}, bearer("hub_not-a-key"), {"Authorization": f"Basic {key}"}):
        refused = await client.get(f"{running.http}{STATUS}", headers=headers)
        assert refused.status_code == 401, (headers, refused.text)
        assert refused.json() == {
            "success": False,
            "error": "a valid 'Authorization: Bearer KEY' is required",
        }
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert (await client.get(f"{running.http}/metrics")).status_code == 401
    answer = await client.get(f"{running.http}{STATUS}", headers=bearer(key))
    assert answer.status_code == 200 and answer.json()["data"]["access"]["keys"] == 1
    symbols = await client.get(f"{running.http}/api/heatmap/symbols", headers=bearer(key))
    assert symbols.json() == {"success": True, "data": {"symbols": ["BTCUSDT", "ETHUSDT"]}}
    assert await metric(running, key, 'hub_access_unauthorized_total{transport="rest"}') == 4
    assert await metric(running, key, "hub_access_keys") == 1


async def test_admin_endpoints_take_an_admin_key_or_the_admin_token(
    start_hub: HubFactory, fake_binance: FakeBinance, keys_file: Path
) -> None:
    read = add_key(keys_file, "desk")
    admin = add_key(keys_file, "ops", "admin")
    running = await keyed_hub(start_hub, fake_binance, keys_file, admin_token="t0ken")
    url = f"{running.http}/api/heatmap/symbols"
    body = {"symbols": ["SOLUSDT"]}
    refused = await running.client.post(url, json=body, headers=bearer(read))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "key 'desk' has scope read; this needs admin"
    added = await running.client.post(url, json=body, headers=bearer(admin))
    assert added.status_code == 200 and "SOLUSDT" in added.json()["data"]["symbols"]
    dropped = await running.client.request("DELETE", url, json=body, headers=bearer("t0ken"))
    assert dropped.status_code == 200, dropped.text
    assert "SOLUSDT" not in dropped.json()["data"]["symbols"]
    assert (await running.client.post(url, json=body)).status_code == 401


async def test_symbols_are_listed_without_keys(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    settings = Settings(
        binance_ws_url=fake_binance.base_url, symbols=("ETHUSDT", "BTCUSDT"), exchanges=BINANCE
    )
    running = await start_hub(settings)
    answer = await running.get("/api/heatmap/symbols")
    assert answer.json() == {"success": True, "data": {"symbols": ["BTCUSDT", "ETHUSDT"]}}


async def test_an_allow_list_limits_rest_and_subscriptions(
    start_hub: HubFactory, fake_binance: FakeBinance, keys_file: Path
) -> None:
    key = add_key(keys_file, "site", channels=("heatmap:BTCUSDT", "liquidations:BTCUSDT"))
    running = await keyed_hub(start_hub, fake_binance, keys_file)
    client, base = running.client, running.http
    refused = await client.get(
        f"{base}/api/heatmap/liquidations/ETHUSDT/heatmap", headers=bearer(key)
    )
    assert refused.status_code == 403 and refused.json()["error"] == "key 'site' may not read this"

    async def btc_heatmap() -> bool:
        answer = await client.get(
            f"{base}/api/heatmap/liquidations/btcusdt/heatmap", headers=bearer(key)
        )
        assert answer.status_code in (200, 503), answer.text
        return answer.status_code == 200

    await eventually(btc_heatmap)
    assert (await client.get(f"{base}{STATUS}", headers=bearer(key))).status_code == 200
    async with connect(f"{running.ws}?key={key}") as ws:
        for channel in ("alerts:BTCUSDT", "liquidations:*", "heatmap:ETHUSDT"):
            forbidden = await reply(ws, {"op": "subscribe", "id": 1, "channels": [channel]})
            canonical = channel + (":1h" if channel.startswith("heatmap") else "")
            assert forbidden == {
                "op": "error",
                "id": 1,
                "code": "forbidden",
                "message": f"key 'site' may not subscribe to {canonical}",
            }
        channels = ["heatmap:BTCUSDT", "liquidations:btcusdt"]
        subscribed = await reply(ws, {"op": "subscribe", "id": 2, "channels": channels})
        assert subscribed == {
            "op": "subscribed",
            "id": 2,
            "channels": ["heatmap:BTCUSDT:1h", "liquidations:BTCUSDT"],
        }


async def test_rest_rate_limit_answers_429_with_retry_after(
    start_hub: HubFactory, fake_binance: FakeBinance, keys_file: Path
) -> None:
    one, two = add_key(keys_file, "one"), add_key(keys_file, "two")
    # One request per 100 s: the second is refused however slow the machine is.
    running = await keyed_hub(start_hub, fake_binance, keys_file, rest_rate_limit=0.01)
    client, url = running.client, f"{running.http}{STATUS}"
    assert (await client.get(url, headers=bearer(one))).status_code == 200
    limited = await client.get(url, headers=bearer(one))
    assert limited.status_code == 429, limited.text
    wait = int(limited.headers["retry-after"])
    assert 90 <= wait <= 100, f"Retry-After {wait}: the budget comes back in about 100 s"
    assert limited.json() == {
        "success": False,
        "error": f"over 0.01 requests a second; retry in {wait} s",
    }
    assert (await client.get(url, headers=bearer(two))).status_code == 200, "each key its own"
    assert (await client.get(url)).status_code == 401, "no key: the address's budget, then 401"
    assert (await client.get(url)).status_code == 429, "guessing keys is rate limited too"
    for _ in range(3):
        assert (await running.get("/health")).status_code == 200


async def test_rest_rate_limit_per_address_without_keys(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    settings = Settings(
        binance_ws_url=fake_binance.base_url, exchanges=BINANCE, rest_rate_limit=0.01
    )
    running = await start_hub(settings)
    assert (await running.get(STATUS)).status_code == 200
    limited = await running.get(STATUS)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 90
    assert (await running.get("/health")).status_code == 200


# -- the WebSocket ------------------------------------------------------------------------


async def test_websocket_takes_a_key_by_header_query_or_first_message(
    start_hub: HubFactory, fake_binance: FakeBinance, keys_file: Path
) -> None:
    key = add_key(keys_file, "desk")
    running = await keyed_hub(start_hub, fake_binance, keys_file)
    async with connect(running.ws, additional_headers=bearer(key)) as ws:
        assert await admitted(ws)
    async with connect(f"{running.ws}?key={key}") as ws:
        assert await admitted(ws)
    async with connect(running.ws) as ws:
        assert await reply(ws, {"op": "auth", "key": key, "id": 7}) == {
            "op": "authenticated",
            "id": 7,
        }
        assert await admitted(ws)
    async with connect(running.ws) as ws:  # as the page does: a request right behind auth
        await ws.send(json.dumps({"op": "auth", "key": key}))
        await ws.send(json.dumps({"op": "subscribe", "id": 2, "channels": ["liquidations:*"]}))
        assert [json.loads(await asyncio.wait_for(ws.recv(), 20)) for _ in range(2)] == [
            {"op": "authenticated", "id": None},
            {"op": "subscribed", "id": 2, "channels": ["liquidations:*"]},
        ]
    async with connect(f"{running.ws}?format=msgpack") as ws:
        await ws.send(msgspec.msgpack.encode({"op": "auth", "key": key}))
        answer = msgspec.msgpack.decode(await asyncio.wait_for(ws.recv(), 20))
        assert answer == {"op": "authenticated", "id": None}


async def test_websocket_without_a_good_key_is_closed_with_4401(
    start_hub: HubFactory,
    fake_binance: FakeBinance,
    keys_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = add_key(keys_file, "desk")
    monkeypatch.setattr(ws_keys, "AUTH_WAIT_S", 0.5)
    running = await keyed_hub(start_hub, fake_binance, keys_file)
    async with connect(f"{running.ws}?key=hub_wrong") as ws:
        assert await close_code(ws) == (4401, "unknown or revoked key")
    async with connect(running.ws) as ws:  # a first message that is not `auth`
        await ws.send('{"op": "subscribe", "channels": ["liquidations:*"]}')
        code, reason = await close_code(ws)
        assert code == 4401 and reason.startswith("no key: send ?key=KEY"), reason
    async with connect(running.ws) as ws:  # nothing at all: closed, not left waiting
        code, _ = await close_code(ws)
        assert code == 4401
    async with connect(running.ws) as ws:
        await ws.send(f'{{"op": "auth", "key": "{key}x"}}')
        assert await close_code(ws) == (4401, "unknown or revoked key")
    await eventually(lambda: not running.hub.fanout.sessions)
    assert running.hub.access.stats.unauthorized_ws == 4
    assert dict(running.hub.access.limiter.connections) == {}, "every slot was given back"  # type: ignore[attr-defined]


async def test_keys_off_the_websocket_needs_none(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await start_hub(Settings(binance_ws_url=fake_binance.base_url, exchanges=BINANCE))
    async with connect(running.ws) as ws:
        assert await admitted(ws)
        refused = await reply(ws, {"op": "auth", "key": "anything", "id": 1})
        assert refused["op"] == "error" and refused["code"] == "bad_request", refused


async def test_a_key_has_a_connection_limit_closed_with_4429(
    start_hub: HubFactory, fake_binance: FakeBinance, keys_file: Path
) -> None:
    key = add_key(keys_file, "desk")
    running = await keyed_hub(start_hub, fake_binance, keys_file, max_connections_per_key=2)
    url = f"{running.ws}?key={key}"
    async with connect(url) as first, connect(url) as second:
        assert await admitted(first) and await admitted(second)
        async with connect(url) as third:
            assert await close_code(third) == (4429, "key 'desk' has 2 connections open")
        await second.close()

        async def another() -> bool:
            async with connect(url) as ws:
                return await admitted(ws)

        await eventually(another)
    assert running.hub.access.stats.refused_key >= 1


async def test_keys_are_added_and_revoked_in_a_running_server(
    start_hub: HubFactory, fake_binance: FakeBinance, keys_file: Path
) -> None:
    old = add_key(keys_file, "old")
    running = await keyed_hub(start_hub, fake_binance, keys_file)
    client, url = running.client, f"{running.http}{STATUS}"
    new = add_key(keys_file, "new")

    async def status_code(key: str) -> int:
        return (await client.get(url, headers=bearer(key))).status_code

    async def new_works() -> bool:
        return await status_code(new) == 200

    await eventually(new_works)
    async with (
        connect(f"{running.ws}?key={old}") as ws_old,
        connect(f"{running.ws}?key={new}") as ws_new,
    ):
        assert await admitted(ws_old) and await admitted(ws_new)
        revoke_key(keys_file, "old")
        assert await close_code(ws_old) == (4401, "key revoked")

        async def old_refused() -> bool:
            return await status_code(old) == 401

        await eventually(old_refused)
        assert await admitted(ws_new), "the other key's connection stays"
    async with connect(f"{running.ws}?key={old}") as ws:
        assert await close_code(ws) == (4401, "unknown or revoked key")
    assert await metric(running, new, "hub_access_revoked_closes_total") == 1


async def test_a_bad_keys_file_keeps_the_keys_and_degrades_health(
    start_hub: HubFactory, fake_binance: FakeBinance, keys_file: Path
) -> None:
    key = add_key(keys_file, "desk")
    running = await keyed_hub(start_hub, fake_binance, keys_file)
    spoil(keys_file)

    async def degraded() -> bool:
        health = (await running.get("/health")).json()["data"]
        return any(reason.startswith("keys file: ") for reason in health.get("reasons", []))

    await eventually(degraded)
    assert (await running.client.get(f"{running.http}{STATUS}", headers=bearer(key))).is_success
    assert await metric(running, key, "hub_access_keys_error") == 1


# -- CORS ---------------------------------------------------------------------------------


async def test_cors_preflight_is_answered_without_a_key(
    start_hub: HubFactory, fake_binance: FakeBinance, keys_file: Path
) -> None:
    key = add_key(keys_file, "desk")
    origin = "https://dash.example.com"
    running = await keyed_hub(start_hub, fake_binance, keys_file, cors_origins=(origin,))
    client, url = running.client, f"{running.http}{STATUS}"
    preflight = await client.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    answer = await client.get(url, headers={"Origin": origin, **bearer(key)})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == origin
    assert "Retry-After" in answer.headers["access-control-expose-headers"]
    refused = await client.get(url, headers={"Origin": origin})
    assert refused.status_code == 401, "a page can read why it was refused"
    assert refused.headers["access-control-allow-origin"] == origin
    elsewhere = await client.options(
        url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert elsewhere.status_code == 400
    assert "access-control-allow-origin" not in elsewhere.headers


async def test_without_cors_origins_there_are_no_cors_headers(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await start_hub(Settings(binance_ws_url=fake_binance.base_url, exchanges=BINANCE))
    answer = await running.client.get(
        f"{running.http}{STATUS}", headers={"Origin": "https://dash.example.com"}
    )
    assert answer.status_code == 200
    assert not [h for h in answer.headers if h.startswith("access-control-")]


# -- the log ------------------------------------------------------------------------------


async def test_keys_never_reach_the_log(keys_file: Path) -> None:
    key = add_key(keys_file, "desk")
    env = {"HUB_API_KEYS_FILE": str(keys_file), "HEATMAP_LIQUIDITY": "off"}
    args = ("--log-level", "debug", "serve", "--demo")
    async with hub_process(*args, env=env) as (process, port, log):
        base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"
        async with http_client() as client:

            async def up() -> bool:
                assert process.returncode is None, f"serve exited {process.returncode}"
                with contextlib.suppress(httpx.TransportError):
                    return (await client.get(f"{base}/health")).status_code == 200
                return False

            await eventually(up, within=60)
            await client.get(f"{base}{STATUS}", headers=bearer(key))
            await client.get(f"{base}{STATUS}?key={key}")
            await client.get(f"{base}{STATUS}", headers=bearer(key + "wrong"))
        async with connect(f"{ws_url}?format=json&key={key}") as ws:
            assert await admitted(ws)
        async with connect(f"{ws_url}?key={key}wrong") as ws:
            assert (await close_code(ws))[0] == 4401
        async with connect(ws_url) as ws:
            await ws.send(f'{{"op": "auth", "key": "{key}"}}')
            assert (await reply(ws, {"op": "ping"}))["op"] == "authenticated"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        text = read_all(log)
    assert "WebSocket /ws?format=json&key=[key]" in text, "the connections were logged"
    assert key not in text, "a key reached the log"
    assert key[4:20] not in text
