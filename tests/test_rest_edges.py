"""Bad input at the edges: every HTTP error in the envelope, echoes cut short, empty query
values meaning "not given", symbols checked at start, an address in use refused at start."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from websockets.asyncio.client import connect

from hub.api.responses import EXCEPTION_HANDLERS
from hub.config import Settings, load_settings
from hub.errors import ConfigError, echo
from hub.service.sources import DEMO_REPLAY
from tests.conftest import HubFactory, RunningHub, eventually, http_client, web_process
from tests.redis_server import RedisServer
from tests.test_cli import run_cli

HUGE = "A" * 100_000
LONG = "A" * 10_000  # in a URL: long enough, and within every HTTP parser's line limit
API = "/api/heatmap"


@pytest.fixture
async def replayed(start_hub: HubFactory) -> RunningHub:
    from hub.config import Settings

    running = await start_hub(Settings(flush_ms=20), replay=Path(DEMO_REPLAY), speed=0)
    feed = running.hub.feed
    await eventually(lambda: feed.status.frames > 0 and not feed.status.connected)
    await running.hub.flush_now()
    return running


def envelope(response: object) -> str:
    """The error of a `{"success": false, "error": ...}` JSON body."""
    assert response.headers["content-type"] == "application/json", response.headers  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["success"] is False and isinstance(body["error"], str), body
    return body["error"]


async def test_unknown_paths_and_methods_answer_the_json_envelope(replayed: RunningHub) -> None:
    for path in (
        "/nope",
        f"{API}/liquidations/",
        f"{API}/liquidations/BTC%2FUSDT/heatmap",
        f"{API}/liquidations/BTCUSDT/heatmap/extra",
        "/ws",  # a WebSocket route asked over plain HTTP
    ):
        response = await replayed.get(path)
        assert response.status_code == 404, (path, response.status_code, response.text)
        assert "no such path" in envelope(response), path
    response = await replayed.client.post(f"{replayed.http}{API}/status")
    assert response.status_code == 405
    assert "POST is not allowed" in envelope(response)
    assert "GET" in response.headers["allow"]
    odd = await replayed.get(f"{API}/liquidations/%E2%82%AC%00/heatmap")
    assert odd.status_code == 404 and "is not tracked" in envelope(odd)


async def test_a_failure_outside_the_handlers_is_a_500_envelope() -> None:
    async def boom(request: Request) -> None:
        raise RuntimeError("secret detail")

    app = Starlette(routes=[Route("/boom", boom)], exception_handlers=EXCEPTION_HANDLERS)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert envelope(response) == "internal error; the server logged it"


async def test_errors_echo_at_most_a_short_excerpt_of_their_input(replayed: RunningHub) -> None:
    cases = [
        (f"{API}/liquidations/{LONG}/heatmap", {}, 404),
        (f"{API}/liquidations/{'b' * 5000}", {}, 404),
        (f"{API}/liquidations/BTCUSDT/heatmap", {"timeWindow": LONG}, 400),
        (f"{API}/liquidations/BTCUSDT", {"limit": LONG}, 400),
        (f"{API}/liquidations/BTCUSDT", {"side": LONG}, 400),
        (f"{API}/export/BTCUSDT", {"format": LONG}, 400),
        (f"/{LONG}", {}, 404),
    ]
    for path, params, status in cases:
        response = await replayed.get(path, **params)
        assert response.status_code == status, (path[:80], params.keys(), response.status_code)
        error = envelope(response)
        assert len(error) < 300 and "characters)" in error, f"{path[:60]}: {error[:400]}"
    async with connect(replayed.ws, max_size=None) as ws:
        for request in (
            {"op": "x" * 60_000, "id": 1},
            {
                "op": "subscribe",
                "id": 2,
                "channels": ["heatmap:BTCUSDT:1h"],
                "filter": {"y" * 60_000: 1},
            },
            {"op": "subscribe", "id": 3, "channels": ["heatmap:" + "Q" * 90]},
        ):
            await ws.send(json.dumps(request))
            reply = json.loads(await ws.recv())
            assert reply["op"] == "error" and reply["id"] == request["id"], reply
            assert len(reply["message"]) < 300, reply["message"][:400]


def test_echo_quotes_short_input_whole_and_cuts_long_input() -> None:
    assert echo("BTC") == "'BTC'"
    assert echo("x" * 64) == repr("x" * 64)
    assert echo("x" * 65) == f"{'x' * 64!r}… (65 characters)"
    with pytest.raises(ConfigError) as caught:
        load_settings({"HEATMAP_MAX_EVENTS": HUGE})
    assert len(str(caught.value)) < 200


async def test_an_empty_query_value_means_not_given(replayed: RunningHub) -> None:
    base = f"{API}/liquidations/SOLUSDT"
    empty = {"timeWindow": "", "limit": "", "side": ""}
    for path, params in (
        (base, empty),
        (f"{base}/heatmap", {"timeWindow": ""}),
        (f"{base}/leverage", {"timeWindow": ""}),
    ):
        given = await replayed.get(path, **params)
        default = await replayed.get(path)
        assert given.status_code == 200, (path, given.text[:300])
        assert given.json() == default.json(), path
    export = await replayed.get(f"{API}/export/SOLUSDT", format="", timeWindow="")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert export.text == (await replayed.get(f"{API}/export/SOLUSDT")).text
    assert (await replayed.get(base, limit="0")).status_code == 400, "a value is still checked"


@pytest.mark.parametrize("value", ["foo", "BTC", "btc-usdt", "BTCUSDT,eth", "X" * 100])
def test_symbols_of_the_wrong_shape_stop_the_start(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"HEATMAP_SYMBOLS": value})
    assert caught.value.variable == "HEATMAP_SYMBOLS"
    assert "is not a symbol" in str(caught.value) and len(str(caught.value)) < 250


def test_symbols_of_the_right_shape_are_accepted() -> None:
    settings = load_settings({"HEATMAP_SYMBOLS": "btcusdt, 1000PEPEUSDT,ETHUSDC"})
    assert settings.symbols == ("BTCUSDT", "1000PEPEUSDT", "ETHUSDC")
    assert load_settings({"HEATMAP_SYMBOLS": " * "}).track_all_symbols


def test_bad_symbols_and_a_port_in_use_exit_2_with_one_line() -> None:
    result = run_cli("serve", "--demo", env={"HEATMAP_SYMBOLS": "foo"})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "heatmap-hub: configuration error: HEATMAP_SYMBOLS: 'FOO' is not a symbol"
    ), lines
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for command in (["serve", "--demo"], ["web", "--redis-url", "redis://127.0.0.1:1"]):
            result = run_cli(*command, "--port", str(port))
            assert result.returncode == 2, (command, result.returncode, result.stderr[-500:])
            lines = result.stderr.strip().splitlines()
            assert lines == [
                f"heatmap-hub: configuration error: PORT: cannot listen on 127.0.0.1:{port}: "
                "Address already in use"
            ], lines


async def test_a_web_that_has_not_heard_from_ingest_says_starting(
    redis_server: RedisServer,
) -> None:
    """No ingest has announced its symbols yet: a symbol is not 'not tracked' (404) but
    not known yet (503); the read-only symbol list answers, empty."""
    settings = Settings(redis_url=redis_server.url, symbols=("BTCUSDT",))
    async with web_process(settings) as web, http_client() as client:
        for path in (
            "/api/heatmap/liquidations/BTCUSDT/heatmap",
            "/api/heatmap/liquidations/BTCUSDT",
            "/api/heatmap/liquidations/BTCUSDT/timeline",
            "/api/heatmap/export/BTCUSDT",
            "/api/heatmap/liquidity/BTCUSDT",
            "/api/heatmap/predicted/BTCUSDT",
        ):
            answer = await client.get(f"{web.http}{path}")
            assert answer.status_code == 503, f"{path}: expected 503, seen {answer.status_code}"
            assert "starting" in answer.json()["error"], (path, answer.json())
        listed = await client.get(f"{web.http}/api/heatmap/symbols")
        assert listed.status_code == 200 and listed.json()["data"] == {"symbols": []}
