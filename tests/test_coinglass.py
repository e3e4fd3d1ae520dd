"""CoinGlass validation: the pure hourly comparison, the poller against a local CoinGlass
look-alike (401, 429, plan refusal, unreachable), and the hub's status and unified view."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest

from hub.analytics.coinglass_compare import HOUR_MS, compare, hub_hours, reported
from hub.config import Settings
from hub.feeds.coinglass import Refused, parse_history
from hub.models import LiquidationEvent
from hub.service.coinglass import CoinGlassValidation
from tests.conftest import BINANCE, DATA, HubFactory, eventually, free_port
from tests.fakes.binance_server import FakeBinance
from tests.fakes.coinglass_server import FakeCoinGlass

NOW = 1_795_200_000_000 + 30 * 60_000  # half past an hour
CURRENT = NOW - NOW % HOUR_MS
KEY = "test-key"


def event(time: int, side: str, notional: float) -> LiquidationEvent:
    return LiquidationEvent("binance", "BTCUSDT", side, 100.0, notional / 100, notional, time)  # type: ignore[arg-type]


# the hub saw a tenth of what CoinGlass reports, hour by hour, in the last four hours
CG_HOURS = {CURRENT - h * HOUR_MS: (1000.0 * h, 500.0 * h) for h in range(1, 6)}
EVENTS = [
    event(hour + 60_000, side, usd / 10)
    for hour, pair in CG_HOURS.items()
    for side, usd in zip(("long", "short"), pair, strict=True)
]


def test_hub_hours_and_comparison() -> None:
    hours = hub_hours(EVENTS, CURRENT - 4 * HOUR_MS, CURRENT)
    assert sorted(hours) == [CURRENT - h * HOUR_MS for h in (4, 3, 2, 1)]
    assert hours[CURRENT - HOUR_MS] == (100.0, 50.0)
    result = compare(CG_HOURS, hours, range(CURRENT - 4 * HOUR_MS, CURRENT, HOUR_MS))
    assert result.hours == 4 and result.ratio == pytest.approx(0.1)
    assert result.correlation == pytest.approx(1.0)
    assert result.coinglass.long_usd == 1000.0 * (1 + 2 + 3 + 4)
    assert result.hub.short_usd == 50.0 * (1 + 2 + 3 + 4)
    few = compare(CG_HOURS, hours, [CURRENT - HOUR_MS, CURRENT - 2 * HOUR_MS])
    assert few.correlation is None, "two hours are too few for a correlation"
    assert compare({}, hours, []).ratio is None


def test_coinglass_figures_stand_without_a_comparison() -> None:
    """CoinGlass's own totals of the window are shown even when no whole hour of the hub
    overlaps them; the comparison only where one exists."""
    since = CURRENT - 24 * HOUR_MS
    own = reported(CG_HOURS, since, CURRENT)
    assert (own.long_usd, own.short_usd, own.hours) == (15_000.0, 7_500.0, 5)
    assert reported(CG_HOURS, CURRENT - 2 * HOUR_MS, CURRENT).hours == 2


def test_history_bodies() -> None:
    row = {"time": 1, "aggregated_long_liquidation_usd": 2.5}
    row["aggregated_short_liquidation_usd"] = "3"  # the pair endpoint sends strings
    numbers = json.dumps({"code": "0", "msg": "success", "data": [row]}).encode()
    assert parse_history(numbers) == {1: (2.5, 3.0)}
    documented = json.loads((DATA / "coinglass_examples.json").read_text())["endpoints"]
    response = documented["coin_aggregated_liquidation_history"]["response"]
    assert parse_history(json.dumps(response).encode()) == {
        1658966400000: (5916885.14234, 12969583.87632),
        1659052800000: (5345708.23191, 6454875.54909),
    }
    with pytest.raises(Refused, match="Upgrade"):
        parse_history(b'{"code":"403","msg":"Upgrade your plan"}')
    with pytest.raises(Refused, match="malformed"):
        parse_history(b"<html>")


@pytest.fixture
async def coinglass() -> AsyncIterator[FakeCoinGlass]:
    async with FakeCoinGlass(KEY, {"BTC": CG_HOURS}) as server:
        yield server


def poller(url: str, key: str = KEY) -> CoinGlassValidation:
    return CoinGlassValidation(
        url,
        key,
        lambda: ["BTCUSDT"],
        ["binance", "okx"],
        lambda symbol: EVENTS,
        lambda: NOW,
        started=CURRENT - 4 * HOUR_MS - 60_000,  # the hub ran through four whole hours
        spacing_s=0.0,
    )


async def test_poller_compares_and_reports_failures_as_states(coinglass: FakeCoinGlass) -> None:
    validation = poller(coinglass.url)
    await validation.poll_once()
    status = validation.status(NOW)
    assert status["connected"] and status["last_error"] is None, status
    compared = status["comparison"]
    assert compared["hours"] == 4 and compared["ratio"] == pytest.approx(0.1)
    assert compared["correlation"] == pytest.approx(1.0)
    assert status["coinglass"] == {"long_usd": 15_000.0, "short_usd": 7_500.0, "hours": 5}
    assert coinglass.requests[-1] | {"path": ""} == {
        "path": "",
        "exchange_list": "Binance,OKX",
        "symbol": "BTC",
        "interval": "1h",
        "limit": "25",
    }

    coinglass.mode = "rate_limited"
    await validation.poll_once()
    status = validation.status(NOW)
    assert "429" in status["last_error"] and not status["connected"]
    assert validation._backoff > validation.poll_every_s, "rate limited: poll less often"
    assert status["comparison"]["hours"] == 4, "the last comparison is kept"

    coinglass.mode = "plan"
    await validation.poll_once()
    assert "Upgrade your plan" in validation.status(NOW)["last_error"]

    coinglass.mode = "ok"
    wrong = poller(coinglass.url, key="wrong")
    await wrong.poll_once()
    assert "401" in wrong.status(NOW)["last_error"] and wrong.status(NOW)["comparison"] is None

    gone = poller(f"http://127.0.0.1:{free_port()}")
    await gone.poll_once()
    assert "unreachable" in gone.status(NOW)["last_error"]


async def test_hub_status_and_unified_show_the_comparison(start_hub: HubFactory) -> None:
    now = int(time.time() * 1000)
    current = now - now % HOUR_MS
    # CoinGlass reports the last five hours; the hub, started now, ran through none of them
    hours = {current - h * HOUR_MS: (1000.0 * h, 500.0 * h) for h in range(1, 6)}
    async with (
        FakeBinance(ping_interval=None) as binance,
        FakeCoinGlass(KEY, {"BTC": hours}) as coinglass,
    ):
        settings = Settings(
            binance_ws_url=binance.base_url,
            symbols=("BTCUSDT",),
            exchanges=BINANCE,
            liquidity="off",
            coinglass_api_key=KEY,
            coinglass_url=coinglass.url,
        )
        hub = await start_hub(settings)
        seen: dict = {}

        async def polled() -> bool:
            status = (await hub.get("/api/heatmap/status")).json()["data"]
            seen.update(status["sources"]["coinglass"])
            return seen["messages"] >= 1

        await eventually(polled, seen=lambda: seen)
        assert seen["enabled"] and seen["connected"] and seen["window"] == "24h"
        assert "okx_book" not in (await hub.get("/api/heatmap/status")).json()["data"]["sources"]
        unified = (await hub.get("/api/heatmap/unified/BTCUSDT")).json()["data"]
        cg = unified["coinglass"]
        assert cg["enabled"] and cg["last_error"] is None and cg["window"] == "24h"
        # CoinGlass's own figures, and no comparison: the hub ran through no whole hour yet
        assert cg["coinglass"] == {"long_usd": 15_000.0, "short_usd": 7_500.0, "hours": 5}, cg
        assert cg["comparison"] is None, cg
        liquidity = await hub.get("/api/heatmap/liquidity/BTCUSDT")
        assert liquidity.status_code == 503 and "HEATMAP_LIQUIDITY=off" in liquidity.json()["error"]
