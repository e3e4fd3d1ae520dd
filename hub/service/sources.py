"""Which upstreams a process reads: the configured exchanges live, a replay file, or the
bundled demo (every `hub/data/demo_*.jsonl`, merged by receive time)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from hub.config import Settings
from hub.feeds.backoff import Backoff
from hub.feeds.base import EventSink, Feed
from hub.feeds.binance import BinanceFeed
from hub.feeds.bybit import BybitFeed
from hub.feeds.connection import Timing
from hub.feeds.listings import binance_listing
from hub.feeds.okx import OkxLiquidationFeed
from hub.feeds.replay import ReplayFeed, read_replay, read_replays
from hub.service.listings import Listings

DATA = Path(__file__).parent.parent / "data"
DEMO_REPLAY = DATA / "demo_session.jsonl"  # the Binance part of the demo
Clock = Callable[[], int]


def demo_files() -> list[Path]:
    return sorted(DATA.glob("demo_*.jsonl"))


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Source(NamedTuple):
    replay: Path | None = None
    speed: float = 1.0
    demo: bool = False
    timing: Timing | None = None
    backoff: Backoff | None = None


def build_feeds(settings: Settings, source: Source, sink: EventSink) -> tuple[list[Feed], Clock]:
    """The feeds and the clock the processor runs on: a replay runs on its own time."""
    tracked = None if settings.track_all_symbols else set(settings.symbols)
    if source.replay is not None or source.demo:
        replay = source.replay
        lines = read_replay(replay) if replay is not None else read_replays(demo_files())
        feed = ReplayFeed(
            lines,
            sink,
            speed=source.speed,
            loop=source.demo,
            shift_to_now=source.demo,
            symbols=tracked,
            exchanges=settings.exchanges,
        )
        return [feed], feed.clock
    feeds: list[Feed] = []
    for exchange in settings.exchanges:
        # Each feed keeps its own tracked set: the feeds add and remove symbols separately.
        symbols = None if tracked is None else set(tracked)
        if exchange == "binance":
            feeds.append(
                BinanceFeed(settings.binance_ws_url, symbols, sink, source.timing, _backoff(source))
            )
        elif exchange == "bybit":
            feeds.append(
                BybitFeed(
                    settings.bybit_ws_url,
                    settings.bybit_rest_url,
                    symbols,
                    sink,
                    source.timing,
                    _backoff(source),
                )
            )
        else:
            feeds.append(
                OkxLiquidationFeed(
                    settings.okx_ws_url,
                    settings.okx_rest_url,
                    symbols,
                    sink,
                    source.timing,
                    _backoff(source),
                )
            )
    return feeds, wall_clock_ms


def _backoff(source: Source) -> Backoff | None:
    """A backoff per feed: one shared would count every feed's failures as its own."""
    if source.backoff is None:
        return None
    return source.backoff.fresh()


def build_listings(settings: Settings, source: Source) -> Listings | None:
    """The exchanges' listings for a live source; None for a replay or the demo, which
    run without network."""
    if source.replay is not None or source.demo:
        return None
    return Listings({"binance": binance_listing(settings.binance_rest_url)}, wall_clock_ms)
