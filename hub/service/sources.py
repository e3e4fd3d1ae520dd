"""Which upstream a process reads: live Binance, a replay file, or the bundled demo; and,
when live, where the exchanges' listings come from."""

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
from hub.feeds.listings import binance_listing
from hub.feeds.replay import ReplayFeed, read_replay
from hub.service.listings import Listings

DEMO_REPLAY = Path(__file__).parent.parent / "data" / "demo_session.jsonl"
Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Source(NamedTuple):
    replay: Path | None = None
    speed: float = 1.0
    demo: bool = False
    timing: Timing | None = None
    backoff: Backoff | None = None


def build_feed(settings: Settings, source: Source, sink: EventSink) -> tuple[Feed, Clock]:
    """The feed and the clock the processor runs on: a replay runs on its own time."""
    tracked = None if settings.track_all_symbols else set(settings.symbols)
    if source.replay is not None or source.demo:
        feed = ReplayFeed(
            read_replay(source.replay or DEMO_REPLAY),
            sink,
            speed=source.speed,
            loop=source.demo,
            shift_to_now=source.demo,
            symbols=tracked,
        )
        return feed, feed.clock
    binance = BinanceFeed(
        settings.binance_ws_url, tracked, sink, timing=source.timing, backoff=source.backoff
    )
    return binance, wall_clock_ms


def build_listings(settings: Settings, source: Source) -> Listings | None:
    """The exchanges' listings for a live source; None for a replay or the demo, which
    run without network."""
    if source.replay is not None or source.demo:
        return None
    return Listings({"binance": binance_listing(settings.binance_rest_url)}, wall_clock_ms)
