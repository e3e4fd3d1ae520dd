"""Replay files: JSON Lines of `{"t": RECEIVED_MS, "source": ..., "raw": FRAME}`, and
`{"t", "source", "rest": PATH, "raw": BODY}` for a REST response a feed polled (the format
is described for users in docs/operations.md, "Recording and replaying").

`ReplayFeed` plays one or more files, merged by `t`, through each source's `Decoder` (the
live feeds' own), paced by the recorded receive times divided by `speed` (0: as fast as
possible). Its `clock` is the replay's own time, so windows and ageing behave as they did
when the frames arrived. With `loop` and `shift_to_now` (the demo), the file is first laid
in the past, ending now, in one fast pass, then each further pass plays live from the
present: event times and the clock are the wall clock's, so a fresh machine opens on a
full, live heatmap. Each pass (a lap) starts where the last ended: its prices are scaled
per symbol by (last price / first price) ** lap, quantities by the inverse so notionals
stay as recorded; a lap that restarted at the first prices would jump by the whole
session's move at once and fire a cascade alert on every symbol.

Market data (mark prices, open interest: Binance's own lines, and what Bybit's tickers and
OKX's open-interest pushes decode to) goes to `market_sink`, moved like the events.

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
LAP_DIGITS = 6  # a lap's scaled prices and sizes, at about an exchange's own precision
MARKET_PARSERS = {"binance": parse_mark_price_frame}
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
        self._lap_ratios = lap_ratios(lines, self.exchanges) if loop else {}
        self._decoders: dict[str, Decoder] = {}
        self._shift = 0
        self._now = lines[0].t

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

    async def run(self) -> None:
        self._set_connected(True)
        try:
            if self.shift_to_now:
                await self._play_once(backfill=True)
            while True:
                await self._play_once()
                if not self.loop:
                    break
        finally:
            self._set_connected(False)
            self.finished.set()

    async def _play_once(self, backfill: bool = False) -> None:
        """One pass. A backfill pass lays the whole file in the past, ending now, as fast
        as possible, so a fresh demo opens on a full heatmap instead of an empty one."""
        # Fresh decoders each pass: OKX's would take a lap's liquidations for replays.
        self._decoders = {source: DECODERS[source]() for source in self.sources}
        first = self.lines[0].t
        started = self.wall_clock()
        if self.shift_to_now:
            anchor = self.lines[-1].t if backfill else first
            self._shift = int(started * 1000) - anchor
        speed = 0.0 if backfill else self.speed
        work = FAST_SLICE
        for line in self.lines:
            if speed > 0:
                due = started + (line.t - first) / 1000 / self.speed
                delay = due - self.wall_clock()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif work >= FAST_SLICE:
                work = 0
                await asyncio.sleep(0)  # let the server breathe during a fast replay
            self._now = line.t + self._shift
            work += 4 if self._play(line) else 1
        self.lap += 1
        if self.loop and not backfill:
            # A pause the length of a typical gap, so the loop seam looks like the data.
            await asyncio.sleep(1.0 / max(self.speed, 1.0))

    def _play(self, line: ReplayLine) -> bool:
        """Play one line; True when it delivered a liquidation."""
        self.status.frames += 1
        self.status.last_frame_at = self._now
        sink = self.line_sinks.get(line.source)
        if sink is not None:
            sink(line)
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
        if self._shift or self.lap:
            decoded = decoded._replace(events=[self._moved(e) for e in decoded.events])
        deliver(status, decoded, self.symbols, self.sink)
        for update in decoded.market:
            self._deliver_market(update)
        self.status.events = sum(s.events for s in self.sources.values())
        return bool(decoded.events)

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
        changes: dict[str, float | int] = {"time": update.time + self._shift}
        scale = self._lap_ratios.get(update.symbol, 1.0) ** self.lap
        if scale != 1.0 and update.price is not None:
            # on this lap's price level, as events are
            changes["price"] = round_significant(update.price * scale, LAP_DIGITS)
        self.market_sink(msgspec.structs.replace(update, **changes))

    def _moved(self, event: LiquidationEvent) -> LiquidationEvent:
        """The event shifted to the present and scaled onto this lap's price level."""
        ratio = self._lap_ratios.get(event.symbol, 1.0)
        if self.lap and ratio != 1.0:
            scale = ratio**self.lap
            return msgspec.structs.replace(
                event,
                time=event.time + self._shift,
                price=round_significant(event.price * scale, LAP_DIGITS),
                quantity=round_significant(event.quantity / scale, LAP_DIGITS),
            )
        return msgspec.structs.replace(event, time=event.time + self._shift)


def lap_ratios(lines: list[ReplayLine], exchanges: Iterable[str]) -> dict[str, float]:
    """Per symbol, the last liquidation price of the file over the first."""
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
    return {symbol: last[symbol] / first[symbol] for symbol in first}


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
