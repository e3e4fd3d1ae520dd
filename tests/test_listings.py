"""Exchange listings: which tracked symbols an exchange does not list, on status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.config import Settings
from hub.errors import UpstreamError
from hub.feeds.listings import parse_binance_listing
from hub.service.listings import Listings
from hub.service.sources import DEMO_REPLAY
from tests.conftest import BINANCE, HubFactory, eventually
from tests.fakes.binance_rest import FakeBinanceRest, symbol_row
from tests.fakes.binance_server import FakeBinance


def test_binance_listing_is_the_perpetuals_trading_now() -> None:
    body = {
        "timezone": "UTC",
        "symbols": [
            symbol_row("BTCUSDT"),
            symbol_row("ETHUSDT"),
            symbol_row("BTCUSDT_260327", contract_type="CURRENT_QUARTER"),
            symbol_row("OLDUSDT", status="SETTLING"),
            symbol_row("NEWUSDT", status="PENDING_TRADING"),
        ],
    }
    assert parse_binance_listing(json.dumps(body).encode()) == {"BTCUSDT", "ETHUSDT"}
    for bad in (b"<html>", b'{"symbols": 3}', b"{}"):
        with pytest.raises(UpstreamError, match="exchangeInfo"):
            parse_binance_listing(bad)


async def test_unknown_listing_is_not_unlisted_and_a_failure_is_a_state() -> None:
    answers: list[set[str] | UpstreamError] = [UpstreamError("GET x: HTTP 500"), {"BTCUSDT"}]

    async def binance() -> set[str]:
        answer = answers.pop(0)
        if isinstance(answer, UpstreamError):
            raise answer
        return answer

    async def bybit() -> set[str]:
        return {"BTCUSDT", "ETHUSDT"}

    listings = Listings({"binance": binance, "bybit": bybit}, clock=lambda: 1_000)
    tracked = {"BTCUSDT", "ETHUSDT", "FOOUSDT"}
    assert listings.unlisted(tracked) == {}, "nothing is known before a fetch"
    assert await listings.fetch("binance") is False
    assert await listings.fetch("bybit") is True
    status = listings.status["binance"]
    assert (status.last_error, status.listed, status.failures) == ("GET x: HTTP 500", None, 1)
    assert listings.unlisted(tracked) == {"FOOUSDT": ["bybit"]}, "binance is not known yet"
    assert await listings.fetch("binance") is True
    assert listings.status["binance"].last_error is None
    assert listings.status["binance"].fetched_at == 1_000
    assert listings.unlisted(tracked) == {"ETHUSDT": ["binance"], "FOOUSDT": ["binance", "bybit"]}


async def test_status_names_symbols_binance_does_not_list(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    async with FakeBinanceRest(["BTCUSDT", "ETHUSDT"]) as rest:
        settings = Settings(
            binance_ws_url=fake_binance.base_url,
            binance_rest_url=rest.url,
            symbols=("BTCUSDT", "FOOUSDT"),
            exchanges=BINANCE,
        )
        running = await start_hub(settings)

        async def status() -> dict:
            return (await running.get("/api/heatmap/status")).json()["data"]

        async def known() -> bool:
            return (await status())["listings"]["binance"]["listed"] == 2

        await eventually(known)
        seen = await status()
        assert seen["symbols_unlisted"] == {"FOOUSDT": ["binance"]}, seen
        assert seen["listings"]["binance"]["last_error"] is None


async def test_a_failed_listing_fetch_shows_on_status_and_is_retried(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    async with FakeBinanceRest(["BTCUSDT"]) as rest:
        rest.fail_with = 500
        settings = Settings(
            binance_ws_url=fake_binance.base_url,
            binance_rest_url=rest.url,
            symbols=("BTCUSDT", "FOOUSDT"),
            exchanges=BINANCE,
        )
        running = await start_hub(settings)
        assert (await running.get("/health")).status_code == 200

        async def listing() -> dict:
            return (await running.get("/api/heatmap/status")).json()["data"]["listings"]["binance"]

        async def failed() -> bool:
            return "HTTP 500" in ((await listing())["last_error"] or "")

        await eventually(failed, seen=lambda: rest.requests)
        status = (await running.get("/api/heatmap/status")).json()["data"]
        assert status["symbols_unlisted"] == {}, "an unknown listing names nothing unlisted"

        rest.fail_with = None  # the retry (backoff: a few seconds) finds it

        async def recovered() -> bool:
            seen = await listing()
            return seen["last_error"] is None and seen["listed"] == 1

        await eventually(recovered, seen=lambda: rest.requests)


async def test_replay_fetches_no_listing(start_hub: HubFactory) -> None:
    running = await start_hub(Settings(), replay=Path(DEMO_REPLAY), speed=0)
    status = (await running.get("/api/heatmap/status")).json()["data"]
    assert status["listings"] is None and status["symbols_unlisted"] == {}
