"""Replay files (SPEC): JSON Lines of `{"t": RECEIVED_MS, "source": ..., "raw": FRAME}`,
and `{"t", "source", "rest": PATH, "raw": BODY}` for a polled REST answer (open interest).

`ReplayFeed` plays a file through the same frame parser as the live feed, paced by the
recorded receive times divided by `speed` (0: as fast as possible). Its `clock` is the
replay's own time, so windows and ageing behave as they did when the frames arrived.
With `loop` and `shift_to_now` (the demo), the file is first laid in the past, ending
now, in one fast pass, then each further pass plays live from the present: event times
and the clock are the wall clock's, so a fresh machine opens on a full, live heatmap.

Market data (mark prices, open interest) goes to `market_sink`, shifted like events.

`Recorder` writes the frames a live feed receives, byte for byte, in the same format.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import msgspec

from hub.errors import ConfigError
from hub.feeds.base import EventSink, Feed, FeedStatus
from hub.feeds.binance_market import OPEN_INTEREST_PATH, parse_mark_price_frame, parse_open_interest
from hub.feeds.binance_wire import parse_frame
from hub.feeds.open_interest import MarketSink
from hub.models import MarkPriceUpdate, OpenInterestUpdate

log = logging.getLogger("hub.feeds")
# A fast replay yields to the server after this much work: a liquidation counts 4 (it
# moves the heatmaps, whose flush is what a yield costs), any other line 1.
FAST_SLICE = 1_024
PARSERS = {"binance": parse_frame}
MARKET_PARSERS = {"binance": parse_mark_price_frame}
REST_PARSERS = {("binance", OPEN_INTEREST_PATH): parse_open_interest}


class ReplayLine(msgspec.Struct, frozen=True):
    t: int
    source: str
    raw: msgspec.Raw
    rest: str | None = None  # the path of a polled REST answer


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


class ReplayFeed(Feed):
    def __init__(
        self,
        lines: list[ReplayLine],
        sink: EventSink,
        speed: float = 1.0,
        loop: bool = False,
        shift_to_now: bool = False,
        symbols: set[str] | None = None,
        wall_clock: Callable[[], float] = time.time,
        market_sink: MarketSink | None = None,
    ) -> None:
        self.lines = lines
        self.sink = sink
        self.market_sink = market_sink
        self.speed = speed
        self.loop = loop
        self.shift_to_now = shift_to_now
        self.symbols = symbols
        self.wall_clock = wall_clock
        self.status = FeedStatus(name="replay", url=f"replay of {len(lines)} frames")
        self.finished = asyncio.Event()
        self._shift = 0
        self._now = lines[0].t

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

    async def run(self) -> None:
        self.status.connected = True
        try:
            if self.shift_to_now:
                await self._play_once(backfill=True)
            while True:
                await self._play_once()
                if not self.loop:
                    break
        finally:
            self.status.connected = False
            self.finished.set()

    async def _play_once(self, backfill: bool = False) -> None:
        """One pass. A backfill pass lays the whole file in the past, ending now, as fast
        as possible, so a fresh demo opens on a full heatmap instead of an empty one."""
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
        if self.loop and not backfill:
            # A pause the length of a typical gap, so the loop seam looks like the data.
            await asyncio.sleep(1.0 / max(self.speed, 1.0))

    def _play(self, line: ReplayLine) -> bool:
        """Play one line; True when it delivered a liquidation."""
        self.status.frames += 1
        self.status.last_frame_at = self._now
        if line.rest is not None:
            self._play_rest(line, line.rest)
            return False
        parser = PARSERS.get(line.source)
        if parser is None:
            self.status.count_anomaly(f"unknown_source:{line.source[:20]}", line.source[:40])
            return False
        parsed = parser(line.raw)
        if parsed.event is None:
            if parsed.anomaly is not None and self._play_market(line):
                return False
            if parsed.anomaly is not None:
                self.status.malformed += parsed.anomaly == "malformed"
                self.status.count_anomaly(parsed.anomaly, parsed.detail)
            return False
        event = parsed.event
        if self.symbols is not None and event.symbol not in self.symbols:
            self.status.ignored += 1
            return False
        if self._shift:
            event = msgspec.structs.replace(event, time=event.time + self._shift)
        self.status.events += 1
        self.sink(event)
        return True

    def _play_market(self, line: ReplayLine) -> bool:
        """Deliver a market data frame (not a liquidation); False when it is not one."""
        parser = MARKET_PARSERS.get(line.source)
        if parser is None:
            return False
        parsed = parser(line.raw)
        if not parsed.updates:
            return False
        for update in parsed.updates:
            self._deliver_market(update)
        return True

    def _play_rest(self, line: ReplayLine, path: str) -> None:
        parser = REST_PARSERS.get((line.source, path))
        if parser is None:
            self.status.count_anomaly(f"unknown_rest:{path[:40]}", f"{line.source} {path[:80]}")
            return
        try:
            update = parser(line.raw)
        except ValueError as error:
            self.status.malformed += 1
            self.status.count_anomaly("malformed", str(error))
            return
        self._deliver_market(update)

    def _deliver_market(self, update: OpenInterestUpdate | MarkPriceUpdate) -> None:
        if self.market_sink is None:
            return
        if self.symbols is not None and update.symbol not in self.symbols:
            self.status.ignored += 1
            return
        if self._shift:
            update = msgspec.structs.replace(update, time=update.time + self._shift)
        self.market_sink(update)


class Recorder:
    """A frame listener that appends each frame to a replay file as it arrives."""

    def __init__(self, out: IO[bytes], source: str) -> None:
        self.out = out
        self.source = source.encode()
        self.written = 0

    def __call__(self, received_ms: int, frame: bytes) -> None:
        try:
            if not isinstance(msgspec.json.decode(frame), dict):
                return
        except msgspec.DecodeError:
            return  # SPEC: a replay line's raw is a JSON object
        self.out.write(b'{"t":%d,"source":"%s","raw":%s}\n' % (received_ms, self.source, frame))
        self.out.flush()
        self.written += 1

    def rest(self, received_ms: int, path: str, body: bytes) -> None:
        """A REST listener: one polled answer, with its path (SPEC's `rest` line)."""
        try:
            decoded = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return
        if not isinstance(decoded, dict):
            return
        body = body.strip()
        if b"\n" in body:  # one line per answer: a pretty-printed body is compacted
            body = msgspec.json.encode(decoded)
        rest = msgspec.json.encode(path)
        self.out.write(
            b'{"t":%d,"source":"%s","rest":%s,"raw":%s}\n' % (received_ms, self.source, rest, body)
        )
        self.out.flush()
        self.written += 1
