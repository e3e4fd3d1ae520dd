"""Replay files: JSON Lines of `{"t": RECEIVED_MS, "source": ..., "raw": FRAME}`, and
`{"t", "source", "rest": PATH, "raw": BODY}` for a REST response a feed polled (the format
is described for users in docs/operations.md, "Recording and replaying").

`ReplayFeed` plays one or more files, merged by `t`, through each source's `Decoder` (the
live feeds' own), paced by the recorded receive times divided by `speed` (0: as fast as
possible). Its `clock` is the replay's own time, so windows and ageing behave as they did
when the frames arrived.

With `loop` and `shift_to_now` (the demo), the file is laid on the wall clock as a
timeline of laps (`DemoTimeline`): lap k plays over [origin + k * period, ...), a line of
receive time t at (t - t0) / speed into it. A fresh start puts lap 0 just before now and
lays it in one fast pass, so a fresh machine opens on a full, live heatmap; then it plays
live. The origin is the feed's `state`, kept with the history: a restart carries the
same timeline on, laying fast only what it missed while stopped (at most one lap), never
the session again as new. Each lap starts where the last ended: an odd lap plays the
path mirrored (a price p becomes first * last / p, per symbol, the liquidated side flips
and sizes scale so notionals stay as recorded), so it ends at the session's first
prices; prices stay within the session's own range however long the demo runs, and no
lap jumps by the whole session's move (which would fire a cascade alert on every symbol).

Market data (mark prices, open interest: Binance's own lines, and what Bybit's tickers and
OKX's open-interest pushes decode to) goes to `market_sink`, moved like the events; the
OKX book and trade lines a line sink takes are mirrored too (hub.feeds.demo_mirror), so
book, trades, mark price and liquidations share one price scale at every moment.

`Recorder` writes the frames and REST bodies a live feed receives, byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import msgspec

from hub.errors import ConfigError, UpstreamError
from hub.feeds.base import Decoder, EventSink, Feed, FeedStatus, MarketSink, deliver
from hub.feeds.binance_market import OPEN_INTEREST_PATH, parse_mark_price_frame, parse_open_interest
from hub.feeds.binance_wire import BinanceDecoder
from hub.feeds.bitget_wire import BitgetDecoder
from hub.feeds.bitmex_wire import BitmexDecoder
from hub.feeds.bybit_wire import BybitDecoder
from hub.feeds.demo_mirror import LAP_DIGITS, mirror_okx_frame
from hub.feeds.deribit_wire import DeribitDecoder
from hub.feeds.gate_wire import GateDecoder
from hub.feeds.htx_wire import HtxDecoder
from hub.feeds.okx_liquidations import OkxLiquidationDecoder
from hub.models import (
    LiquidationEvent,
    MarkPriceUpdate,
    OpenInterestUpdate,
    round_significant,
)

log = logging.getLogger("hub.feeds")
# A fast replay yields to the server after this much work: a liquidation counts 4 (it
# moves the heatmaps, whose flush is what a yield costs), any other line 1.
FAST_SLICE = 1_024
LAP_GAP_MS = 1_000  # between two laps of the demo, the length of a typical gap in the data
DEMO_FAST_SPEED = 1_000.0  # the demo's live loop at `--speed 0`: no timeline without a pace
MARKET_PARSERS = {"binance": parse_mark_price_frame}
# Whole lines a line sink takes (the OKX books and trades), mirrored on an odd lap
FRAME_MIRRORS = {"okx": mirror_okx_frame}
REST_PARSERS = {("binance", OPEN_INTEREST_PATH): parse_open_interest}
DECODERS: dict[str, Callable[[], Decoder]] = {
    "binance": BinanceDecoder,
    "bybit": BybitDecoder,
    "okx": OkxLiquidationDecoder,
    "bitget": BitgetDecoder,
    "gate": GateDecoder,
    "htx": HtxDecoder,
    "deribit": DeribitDecoder,
    "bitmex": BitmexDecoder,
}


class ReplayLine(msgspec.Struct, frozen=True):
    t: int
    source: str
    raw: msgspec.Raw
    rest: str | None = None  # the path of a REST response; None for a WebSocket frame


LineSink = Callable[[ReplayLine], None]


_line_decoder = msgspec.json.Decoder(ReplayLine)


def read_replay(path: Path) -> list[ReplayLine]:
    """Every valid line of a replay file; a bad line is skipped and counted in the log."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise ConfigError("--replay", f"cannot read {path}: {error.strerror}") from None
    lines: list[ReplayLine] = []
    bad = 0
    with handle:
        for raw_line in handle:
            if not raw_line.strip():
                continue
            try:
                lines.append(_line_decoder.decode(raw_line))
            except msgspec.DecodeError:
                bad += 1
    if bad:
        log.warning("replay %s: skipped %d malformed lines", path, bad)
    if not lines:
        raise ConfigError("--replay", f"{path} holds no replay lines")
    return lines


def read_replays(paths: Iterable[Path]) -> list[ReplayLine]:
    """Several files merged by receive time (stable: a file's own order is kept)."""
    lines = [line for path in paths for line in read_replay(path)]
    lines.sort(key=lambda line: line.t)
    return lines


class ReplayFeed(Feed):
    def __init__(
        self,
        lines: list[ReplayLine],
        sink: EventSink,
        speed: float = 1.0,
        loop: bool = False,
        shift_to_now: bool = False,
        symbols: set[str] | None = None,
        exchanges: Iterable[str] = tuple(DECODERS),
        wall_clock: Callable[[], float] = time.time,
        line_sinks: dict[str, LineSink] | None = None,
        market_sink: MarketSink | None = None,
    ) -> None:
        """`line_sinks`: per source, a consumer of whole lines (the OKX order books)."""
        self.lines = lines
        self.line_sinks = line_sinks or {}
        self.market_sink = market_sink
        self.sink = sink
        self.speed = speed
        self.loop = loop
        self.shift_to_now = shift_to_now
        self.symbols = symbols
        self.exchanges = frozenset(exchanges)
        self.wall_clock = wall_clock
        self.status = FeedStatus(name="replay", url=f"replay of {len(lines)} frames")
        self.sources = {
            source: FeedStatus(name=source, url="replay")
            for source in dict.fromkeys(line.source for line in lines)
            if source in DECODERS and source in self.exchanges
        }
        self.finished = asyncio.Event()
        self.lap = 0
        self._mirrors: dict[str, float] | None = None  # made when an odd lap first needs it
        self._decoders: dict[str, Decoder] = {}
        self._now = lines[0].t
        self.timeline: DemoTimeline | None = None
        if loop and shift_to_now:
            self.timeline = DemoTimeline(lines[0].t, lines[-1].t, speed or DEMO_FAST_SPEED)
            self.timeline.start_fresh(int(wall_clock() * 1000))

    @property
    def live(self) -> bool:
        return False

    def statuses(self) -> list[FeedStatus]:
        return [self.status, *self.sources.values()]

    def clock(self) -> int:
        """The replay's present, in ms: the receive time of the latest frame played."""
        if self.shift_to_now:
            return int(self.wall_clock() * 1000)
        return self._now

    async def add_symbols(self, symbols: set[str]) -> None:
        if self.symbols is not None:
            self.symbols |= symbols

    async def remove_symbols(self, symbols: set[str]) -> None:
        if self.symbols is not None:
            self.symbols -= symbols

    def _set_connected(self, connected: bool) -> None:
        for status in self.statuses():
            status.connected = connected

    def covers_from(self, now: int) -> int:
        if self.timeline is not None:
            return self.timeline.start
        return self.lines[0].t

    def state(self) -> bytes | None:
        return None if self.timeline is None else self.timeline.state()

    def resume(self, state: bytes | None, newest: int | None, now: int) -> None:
        if self.timeline is not None:
            self.timeline.resume(state, newest, now)

    async def run(self) -> None:
        self._set_connected(True)
        try:
            if self.timeline is not None:
                await self._play_timeline(self.timeline)
            while True:
                await self._play_once()
                if not self.loop:
                    break
        finally:
            self._set_connected(False)
            self.finished.set()

    async def _play_once(self) -> None:
        """One pass of a replay, on the file's own clock."""
        # Fresh decoders each pass: OKX's would take a lap's liquidations for replays.
        self._decoders = {source: DECODERS[source]() for source in self.sources}
        first = self.lines[0].t
        started = self.wall_clock()
        work = FAST_SLICE
        for line in self.lines:
            if self.speed > 0:
                due = started + (line.t - first) / 1000 / self.speed
                delay = due - self.wall_clock()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif work >= FAST_SLICE:
                work = 0
                await asyncio.sleep(0)  # let the server breathe during a fast replay
            self._now = line.t
            work += 4 if self._play(line) else 1
        self.lap += 1

    async def _play_timeline(self, timeline: DemoTimeline) -> None:
        """The demo, forever: what lies before now at once (the backfill), the rest as
        its time comes."""
        work = FAST_SLICE
        lap = timeline.lap_at(timeline.start)
        while True:
            # Fresh decoders each lap: OKX's would take a lap's liquidations for replays.
            self._decoders = {source: DECODERS[source]() for source in self.sources}
            self.lap = lap
            for line in self.lines:
                at = timeline.at(lap, line.t)
                if at < timeline.start:
                    self._prime(line)
                    continue
                delay = at / 1000 - self.wall_clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif work >= FAST_SLICE:
                    work = 0
                    await asyncio.sleep(0)  # let the server breathe during the backfill
                self._now = at
                work += 4 if self._play(line) else 1
            lap += 1

    def _play(self, line: ReplayLine) -> bool:
        """Play one line; True when it delivered a liquidation."""
        self.status.frames += 1
        self.status.last_frame_at = self._now
        sink = self.line_sinks.get(line.source)
        if sink is not None:
            sink(self._mirrored_line(line))
        if self._play_market(line):
            return False
        status = self.sources.get(line.source)
        if status is None:
            if line.source in DECODERS:
                self.status.ignored += 1  # an exchange not configured (HEATMAP_EXCHANGES)
            elif sink is None:
                self.status.count_anomaly(f"unknown_source:{line.source[:20]}", line.source[:40])
            return False
        status.frames += 1
        status.last_frame_at = self._now
        decoder = self._decoders[line.source]
        if line.rest is not None:
            try:
                known = decoder.take_rest(line.rest, bytes(line.raw))
            except UpstreamError as error:
                status.count_anomaly("bad_rest_response", str(error))
                return False
            if not known:
                kind = f"unknown_rest:{line.rest[:40]}"
                self.status.count_anomaly(kind, f"{line.source} {line.rest[:80]}")
            return False
        decoded = decoder.decode(bytes(line.raw))
        if self.timeline is not None:
            decoded = decoded._replace(events=[self._moved(e) for e in decoded.events])
        deliver(status, decoded, self.symbols, self.sink)
        for update in decoded.market:
            self._deliver_market(update)
        self.status.events = sum(s.events for s in self.sources.values())
        return bool(decoded.events)

    def _prime(self, line: ReplayLine) -> None:
        """A line before where playing starts: not played, but a REST answer it holds (an
        exchange's contract values) is what later frames are decoded with."""
        decoder = self._decoders.get(line.source)
        if decoder is not None and line.rest is not None:
            with contextlib.suppress(UpstreamError):
                decoder.take_rest(line.rest, bytes(line.raw))

    def _play_market(self, line: ReplayLine) -> bool:
        """Deliver a market data line (open interest, a mark price); False when the line
        is something else."""
        if line.rest is not None:
            parser = REST_PARSERS.get((line.source, line.rest))
            if parser is None:
                return False  # another feed's REST answer (instruments)
            try:
                update = parser(line.raw)
            except ValueError as error:
                self.status.malformed += 1
                self.status.count_anomaly("malformed", str(error))
                return True
            self._deliver_market(update)
            return True
        market = MARKET_PARSERS.get(line.source)
        if market is None:
            return False
        parsed = market(line.raw)
        if not parsed.updates:
            return False
        for update in parsed.updates:
            self._deliver_market(update)
        return True

    def _deliver_market(self, update: OpenInterestUpdate | MarkPriceUpdate) -> None:
        if self.market_sink is None:
            return
        if self.symbols is not None and update.symbol not in self.symbols:
            self.status.ignored += 1
            return
        timeline = self.timeline
        if timeline is not None:
            changes: dict[str, float | int | None] = {"time": self._moved_time(update.time)}
            product = self._mirror(update.symbol)
            if product is not None and update.price is not None:
                changes["price"] = round_significant(product / update.price, LAP_DIGITS)
            if product is not None and isinstance(update, OpenInterestUpdate):
                share = update.taker_buy_share
                changes["taker_buy_share"] = None if share is None else 1.0 - share
            update = msgspec.structs.replace(update, **changes)
        self.market_sink(update)

    def _mirror(self, symbol: str) -> float | None:
        """On an odd lap, the product a price of `symbol` is mirrored about; else None.
        Made at the first odd lap, not at start: it decodes the whole file, and a fresh
        demo lays lap 0 first."""
        if not self.lap % 2:
            return None
        if self._mirrors is None:
            self._mirrors = mirror_products(self.lines, self.exchanges)
        return self._mirrors.get(symbol)

    def _mirrored_line(self, line: ReplayLine) -> ReplayLine:
        """A line for a line sink, on the odd lap's prices like the events."""
        mirror = FRAME_MIRRORS.get(line.source)
        if mirror is None or line.rest is not None or self.timeline is None or not self.lap % 2:
            return line
        raw = mirror(bytes(line.raw), self._mirror)
        return msgspec.structs.replace(line, raw=msgspec.Raw(raw))

    def _moved_time(self, time: int) -> int:
        """A time of the file on this lap of the demo's timeline."""
        assert self.timeline is not None
        return self.timeline.at(self.lap, time)

    def _moved(self, event: LiquidationEvent) -> LiquidationEvent:
        """The event on the demo's timeline, mirrored on an odd lap (see the module doc)."""
        time = self._moved_time(event.time)
        product = self._mirror(event.symbol)
        if product is None:
            return msgspec.structs.replace(event, time=time)
        price = round_significant(product / event.price, LAP_DIGITS)
        return msgspec.structs.replace(
            event,
            time=time,
            side="long" if event.side == "short" else "short",
            price=price,
            quantity=round_significant(event.quantity * event.price / price, LAP_DIGITS),
        )


class DemoTimeline:
    """Where the looped demo is at any moment (see the module doc). Pure: times in ms."""

    def __init__(self, first: int, last: int, speed: float) -> None:
        self.first = first
        self.speed = speed
        self.period = max(1, int((last - first + LAP_GAP_MS) / speed))
        self.origin = 0
        self.start = 0  # where playing begins: the oldest event time it lays

    def start_fresh(self, now: int) -> None:
        """Lap 0 laid just before `now`."""
        self.origin = self.start = now - self.period

    def resume(self, state: bytes | None, newest: int | None, now: int) -> None:
        """Carry on the timeline of `state`, from just after `newest` (at most one lap
        back: an older stop is a gap)."""
        origin = _origin(state)
        if origin is not None and origin <= now:
            self.origin = origin
        floor = now - self.period
        self.start = max(floor, newest + 1) if newest is not None else max(floor, self.origin)

    def state(self) -> bytes:
        return msgspec.json.encode({"demo_origin": self.origin})

    def lap_start(self, lap: int) -> int:
        return self.origin + lap * self.period

    def at(self, lap: int, t: int) -> int:
        """When the file's time `t` comes on lap `lap`."""
        return self.lap_start(lap) + int((t - self.first) / self.speed)

    def lap_at(self, time: int) -> int:
        return max(0, (time - self.origin) // self.period)


def _origin(state: bytes | None) -> int | None:
    if not state:
        return None
    try:
        origin = msgspec.json.decode(state).get("demo_origin")
    except (msgspec.DecodeError, AttributeError):
        return None
    return origin if isinstance(origin, int) else None


def mirror_products(lines: list[ReplayLine], exchanges: Iterable[str]) -> dict[str, float]:
    """Per symbol, the first liquidation price of the file times the last: an odd lap
    plays p as product / p (see the module doc)."""
    decoders = {source: factory() for source, factory in DECODERS.items() if source in exchanges}
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for line in lines:
        decoder = decoders.get(line.source)
        if decoder is None:
            continue
        if line.rest is not None:
            with contextlib.suppress(UpstreamError):  # counted when the lap plays it
                decoder.take_rest(line.rest, bytes(line.raw))
            continue
        for event in decoder.decode(bytes(line.raw)).events:
            first.setdefault(event.symbol, event.price)
            last[event.symbol] = event.price
    return {symbol: last[symbol] * first[symbol] for symbol in first}


class Recorder:
    """A frame and REST listener that appends what a feed receives to a replay file."""

    def __init__(self, out: IO[bytes], source: str) -> None:
        self.out = out
        self.source = source.encode()
        self.written = 0

    def __call__(self, received_ms: int, frame: bytes) -> None:
        if not _is_object(frame):
            return  # a replay line's raw is a JSON object (a text pong is not)
        self.out.write(b'{"t":%d,"source":"%s","raw":%s}\n' % (received_ms, self.source, frame))
        self.out.flush()
        self.written += 1

    def rest(self, received_ms: int, path: str, body: bytes) -> None:
        if not _is_object(body):
            return
        encoded_path = msgspec.json.encode(path)
        self.out.write(
            b'{"t":%d,"source":"%s","rest":%s,"raw":%s}\n'
            % (received_ms, self.source, encoded_path, body)
        )
        self.out.flush()


def _is_object(frame: bytes) -> bool:
    try:
        return isinstance(msgspec.json.decode(frame), dict)
    except msgspec.DecodeError:
        return False
