"""Which upstream a process reads: live Binance, a replay file, or the bundled demo."""

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
from hub.feeds.replay import LineSink, ReplayFeed, ReplayLine, read_replay

DATA = Path(__file__).parent.parent / "data"
DEMO_REPLAY = DATA / "demo_session.jsonl"
DEMO_OKX_BOOK = DATA / "demo_okx_book.jsonl"
Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Source(NamedTuple):
    replay: Path | None = None
    speed: float = 1.0
    demo: bool = False
    timing: Timing | None = None
    backoff: Backoff | None = None


def demo_lines() -> list[ReplayLine]:
    """The bundled liquidations and the OKX book session, interleaved by receive time."""
    return sorted(read_replay(DEMO_REPLAY) + read_replay(DEMO_OKX_BOOK), key=lambda line: line.t)


def build_feed(
    settings: Settings,
    source: Source,
    sink: EventSink,
    line_sinks: dict[str, LineSink] | None = None,
) -> tuple[Feed, Clock]:
    """The feed and the clock the processor runs on: a replay runs on its own time."""
    tracked = None if settings.track_all_symbols else set(settings.symbols)
    if source.replay is not None or source.demo:
        feed = ReplayFeed(
            read_replay(source.replay) if source.replay is not None else demo_lines(),
            sink,
            speed=source.speed,
            loop=source.demo,
            shift_to_now=source.demo,
            symbols=tracked,
            line_sinks=line_sinks,
        )
        return feed, feed.clock
    binance = BinanceFeed(
        settings.binance_ws_url, tracked, sink, timing=source.timing, backoff=source.backoff
    )
    return binance, wall_clock_ms
