"""Which upstreams a process reads: the configured exchanges live (liquidations; open
interest with mark prices: Binance's polled, the others' on their liquidation
connections, HTX's polled by its feed), a replay file, or the bundled demo (every
`hub/data/demo_*.jsonl`, merged by receive time, every exchange it holds: the demo shows
what the hub does, whichever exchanges are configured to be read live)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from hub.config import EXCHANGES, Settings
from hub.feeds.backoff import Backoff
from hub.feeds.base import EventSink, Feed, FeedStatus, MarketSink
from hub.feeds.binance import BinanceFeed
from hub.feeds.bitget import BitgetFeed
from hub.feeds.bitmex import BitmexFeed
from hub.feeds.bybit import BybitFeed
from hub.feeds.connection import Timing
from hub.feeds.deribit import DeribitFeed
from hub.feeds.exchange import ExchangeFeed
from hub.feeds.gate import GateFeed
from hub.feeds.htx import HtxFeed
from hub.feeds.listings import binance_listing
from hub.feeds.okx import OkxLiquidationFeed
from hub.feeds.open_interest import BinanceOpenInterest
from hub.feeds.replay import LineSink, ReplayFeed, read_replay, read_replays
from hub.service.health import source_entry
from hub.service.listings import Listings

DATA = Path(__file__).parent.parent / "data"
# exchange -> (its feed, the settings fields of its WebSocket and REST URLs); Binance,
# whose streams are named in the URL, is built apart.
EXCHANGE_FEEDS: dict[str, tuple[type[ExchangeFeed], str, str | None]] = {
    "bybit": (BybitFeed, "bybit_ws_url", "bybit_rest_url"),
    "okx": (OkxLiquidationFeed, "okx_ws_url", "okx_rest_url"),
    "bitget": (BitgetFeed, "bitget_ws_url", None),
    "gate": (GateFeed, "gate_ws_url", "gate_rest_url"),
    "htx": (HtxFeed, "htx_ws_url", "htx_rest_url"),
    "deribit": (DeribitFeed, "deribit_ws_url", None),
    "bitmex": (BitmexFeed, "bitmex_ws_url", "bitmex_rest_url"),
}
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
    open_interest: bool = True  # live only: open interest and mark prices from each exchange
    oi_poll_interval: float = 10.0  # seconds between two polls of a symbol's open interest


def build_feeds(
    settings: Settings,
    source: Source,
    sink: EventSink,
    line_sinks: dict[str, LineSink] | None = None,
    market_sink: MarketSink | None = None,
) -> tuple[list[Feed], Clock]:
    """The feeds and the clock the processor runs on: a replay runs on its own time.
    `line_sinks`: per source, a consumer of whole replay lines (the OKX order books); a
    replay also carries the market data (`market_sink`); live, Bybit and OKX carry theirs
    on their liquidation connections (Binance's is `build_open_interest`)."""
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
            exchanges=EXCHANGES if source.demo else settings.exchanges,
            line_sinks=line_sinks,
            market_sink=market_sink,
        )
        return [feed], feed.clock
    feeds: list[Feed] = []
    market = market_sink if source.open_interest else None
    for exchange in settings.exchanges:
        # Each feed keeps its own tracked set: the feeds add and remove symbols separately.
        symbols = None if tracked is None else set(tracked)
        if exchange == "binance":
            feeds.append(
                BinanceFeed(settings.binance_ws_url, symbols, sink, source.timing, _backoff(source))
            )
            continue
        feed, ws_field, rest_field = EXCHANGE_FEEDS[exchange]
        rest_url = getattr(settings, rest_field) if rest_field is not None else ""
        feeds.append(
            feed(
                getattr(settings, ws_field),
                rest_url,
                symbols,
                sink,
                source.timing,
                _backoff(source),
                market_sink=market,
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


def build_open_interest(
    settings: Settings, source: Source, sink: MarketSink
) -> BinanceOpenInterest | None:
    """The live open interest and mark price source; None on a replay, which carries both,
    and when Binance is not configured."""
    live = source.replay is None and not source.demo
    if not live or not source.open_interest or "binance" not in settings.exchanges:
        return None
    symbols = set(settings.named_symbols)
    return BinanceOpenInterest(
        settings.binance_rest_url,
        settings.binance_ws_url,
        symbols,
        sink,
        all_market=settings.track_all_symbols,
        poll_interval=source.oi_poll_interval,
        timing=source.timing,
        backoff=_backoff(source),
    )


def open_interest_entry(
    binance: BinanceOpenInterest | None, feeds: list[Feed], now: int
) -> dict[str, Any] | None:
    """The `open_interest` status entry, naming the exchanges that feed it (`exchanges`);
    None when none does. The other exchanges' arrive on their liquidation connections
    (HTX's from its feed's polls), whose own entries count those messages; this entry is
    connected while every feeding source is."""
    carriers = [f.status for f in feeds if f.live and f.market_sink is not None]
    exchanges = (["binance"] if binance is not None else []) + [s.name for s in carriers]
    if not exchanges:
        return None
    carried = ", ".join(s.name for s in carriers)
    note = f"{carried}: through their liquidation feeds" if carried else ""
    if binance is not None:
        status = binance.status
        status.note = f"{status.note}; {note}" if note else status.note
    else:
        status = FeedStatus(name="open_interest", note=note)
    status.connected = all(s.connected for s in carriers) and (binance is None or status.connected)
    return {**source_entry(status, now, live=False), "exchanges": exchanges}
