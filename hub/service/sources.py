"""Which upstream a process reads: live Binance (liquidations, and open interest with mark
prices), a replay file, or the bundled demo."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from hub.config import Settings
from hub.feeds.backoff import Backoff
from hub.feeds.base import EventSink, Feed
from hub.feeds.binance import BinanceFeed
from hub.feeds.connection import Timing
from hub.feeds.open_interest import BinanceOpenInterest, MarketSink
from hub.feeds.replay import ReplayFeed, ReplayLine, read_replay

DEMO_REPLAY = Path(__file__).parent.parent / "data" / "demo_session.jsonl"
DEMO_OPEN_INTEREST = DEMO_REPLAY.with_name("demo_oi.jsonl")
Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Source(NamedTuple):
    replay: Path | None = None
    speed: float = 1.0
    demo: bool = False
    timing: Timing | None = None
    backoff: Backoff | None = None
    open_interest: bool = True  # live only: poll open interest, follow mark prices
    oi_poll_interval: float = 10.0  # seconds between two polls of a symbol's open interest


def demo_lines() -> list[ReplayLine]:
    """The bundled session: liquidations, and open interest with mark prices, in time order."""
    lines = read_replay(DEMO_REPLAY) + read_replay(DEMO_OPEN_INTEREST)
    return sorted(lines, key=lambda line: line.t)


def build_feed(
    settings: Settings, source: Source, sink: EventSink, market_sink: MarketSink | None = None
) -> tuple[Feed, Clock]:
    """The feed and the clock the processor runs on: a replay runs on its own time. A
    replay also carries the market data (`market_sink`); live, that is its own source."""
    tracked = None if settings.track_all_symbols else set(settings.symbols)
    if source.replay is not None or source.demo:
        feed = ReplayFeed(
            read_replay(source.replay) if source.replay is not None else demo_lines(),
            sink,
            speed=source.speed,
            loop=source.demo,
            shift_to_now=source.demo,
            symbols=tracked,
            market_sink=market_sink,
        )
        return feed, feed.clock
    binance = BinanceFeed(
        settings.binance_ws_url, tracked, sink, timing=source.timing, backoff=source.backoff
    )
    return binance, wall_clock_ms


def build_open_interest(
    settings: Settings, source: Source, sink: MarketSink
) -> BinanceOpenInterest | None:
    """The live open interest and mark price source; None on a replay, which carries both."""
    if source.replay is not None or source.demo or not source.open_interest:
        return None
    symbols = set() if settings.track_all_symbols else set(settings.symbols)
    return BinanceOpenInterest(
        settings.binance_rest_url,
        settings.binance_ws_url,
        symbols,
        sink,
        all_market=settings.track_all_symbols,
        poll_interval=source.oi_poll_interval,
        timing=source.timing,
        backoff=source.backoff,
    )
