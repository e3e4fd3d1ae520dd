"""The durable event log on Redis: one Stream of accepted events per symbol
(`hub:{SYMBOL}:events`, hub.storage.layout).

`ingest` appends every event it accepts; a restarted `ingest` reads the streams back to
rebuild its processor, and `web` processes read them for event lists and exports.

Entries are batches (`hub.storage.batch`): each write cycle puts one entry per symbol
holding the rows it took since the last, so 30 days of a busy symbol are read back as a
few hundred thousand column blocks, not millions of JSON objects. An entry's id is chosen
here, `{ms}-{arrival}`: `ms` the newest event time of the batch (never below the stream's
last), `arrival` the arrival number of its last row. Ids only grow, so a retried write of
the same batch is refused by Redis as not newer ("equal or smaller"), which counts as
written: a retry never doubles an entry. Since `ms` is at or after every event time of
its batch, the stream is trimmed by event time (`MINID`, each sweep), and a reader going
backwards can stop at the first entry older than what it wants.

At real rates most entries hold one row, and reading millions of them back costs far more
than their rows (a Redis reply and a decode each). So each sweep moves a symbol's entries,
once the oldest not yet moved is `COMPACT_AFTER_MS` old, into its archive
(`hub:{SYMBOL}:archive`): a Stream of large batches, each with the id of the last entry it
took. The archive's newest id is the mark up to which the stream is archived: readers take
the archive up to it and the stream after it. The stream keeps what was archived until the
next compaction, so a reader that saw the previous mark still finds what it reads next.

Writes go through a bounded in-memory buffer drained by one task, so the feed never waits
on Redis. When Redis is unreachable the buffer keeps filling (oldest dropped past its
bound) and the task retries with backoff (`Outage`: the loss and the return are logged
once each, and the checkpoint's writes wait for the same backoff); once Redis answers
again it writes the buffer in order. If the buffer overflowed, or Redis came back empty
(a restart without persistence: the instance marker is gone), the log is rewritten from
what the processor holds, so nothing already accepted is lost. After any outage it also
checks that each stream it wrote still ends where it left it: a failover to a replica
that had not yet received the last writes loses them (replication is asynchronous), and
they are written again from what the processor holds (the log is repairable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

import msgspec
import numpy as np
from redis.exceptions import RedisError

from hub.analytics.rows import Named, events_of, merge, rows_of
from hub.errors import Fenced
from hub.models import LiquidationEvent
from hub.storage.batch import decode_batch, encode_batch
from hub.storage.fence import Fence, check_fence, raise_fenced
from hub.storage.layout import (
    FENCE_CHECK,
    MARKER_KEY,
    AnyRedis,
    GroupedScript,
    archive_key,
    layout_of,
    stream_key,
)
from hub.storage.outage import Outage

log = logging.getLogger("hub.storage")
WRITE_BATCH = 5_000  # rows a write cycle takes from the buffer
REWRITE_CHUNK = 10_000  # rows per entry when the whole log is written again
READ_PAGE = 500  # entries per read
CLOCK_SLACK_MS = 60_000  # entries of the old per-event format are ids of their write time
COMPACT_AFTER_MS = 6 * 3_600_000  # a stream's oldest unarchived entry this old: archive it
ARCHIVE_ROWS = 20_000  # at most per archive entry (a few hundred kB)
# Fenced: retried like an outage, harmlessly, until the lease's holder ends the term.
_FAILURES = (RedisError, OSError, Fenced)
_legacy_decoder = msgspec.json.Decoder(LiquidationEvent)
# XADD that takes an id Redis already holds as written: an earlier, failed-looking write
# of ours put that entry there.
_ADD_ONCE = """
local function add(key, id, payload)
  local reply = redis.pcall('XADD', key, id, 'b', payload)
  if type(reply) == 'table' and reply.err
      and not string.find(reply.err, 'equal or smaller', 1, true) then
    return reply.err
  end
end
"""
# KEYS: the tokens, ARGV[3] keys to delete, then the streams of the entries; ARGV from 4:
# each entry's id and batch.
_APPEND = (
    FENCE_CHECK
    + _ADD_ONCE
    + """
local deletes = tonumber(ARGV[3])
for i = fences + 1, fences + deletes do redis.call('DEL', KEYS[i]) end
local a = 4
for i = fences + deletes + 1, #KEYS do
  local err = add(KEYS[i], ARGV[a], ARGV[a + 1])
  if err then return redis.error_reply(err) end
  a = a + 2
end
return 1
"""
)
# KEYS: the token, the archive, the stream; ARGV[3] the stream's MINID after archiving
# ('' none), then each archive entry's id and batch.
_ARCHIVE = (
    FENCE_CHECK
    + _ADD_ONCE
    + """
for a = 4, #ARGV, 2 do
  local err = add(KEYS[fences + 1], ARGV[a], ARGV[a + 1])
  if err then return redis.error_reply(err) end
end
if ARGV[3] ~= '' then redis.call('XTRIM', KEYS[fences + 2], 'MINID', ARGV[3]) end
return 1
"""
)


class EventLogStatus(msgspec.Struct):
    connected: bool = False
    written: int = 0
    buffered: int = 0
    dropped_from_buffer: int = 0
    rewrites: int = 0
    repaired: int = 0  # liquidations written again after Redis lost them (a failover)
    last_error: str | None = None


class RedisEventLog:
    def __init__(
        self,
        redis: AnyRedis,
        holdings: Callable[[], Mapping[str, Named]],
        max_buffer: int = 200_000,
    ) -> None:
        """`holdings` gives every row the processor holds, per symbol."""
        self.redis = redis
        self.layout = layout_of(redis)
        self._append = GroupedScript(redis, _APPEND)
        self._archive_entries = GroupedScript(redis, _ARCHIVE)
        self.holdings = holdings
        self.max_buffer = max_buffer
        self.outage = Outage("event log", log)
        self.status = EventLogStatus()
        self._pending: deque[tuple[int, LiquidationEvent]] = deque()
        self._last_ms: dict[str, int] = {}  # per stream, the ms of the last id written
        self._written: dict[str, int] = {}  # per stream, the arrival of the last row written
        self._verify_tails = False  # after an outage: did Redis keep what it acknowledged?
        self.failures = 0  # failed attempts ever: each may have lost what was acknowledged
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._rewrite = False
        self._marker = uuid.uuid4().hex
        self._lock = asyncio.Lock()  # one writer at a time keeps each stream in order
        # Nothing is written before the log was read back and taken over (`claim`): the
        # buffer keeps what comes meanwhile, and a log not yet read is never rewritten.
        self.claimed = asyncio.Event()
        self.fence: Fence | None = None  # set while this process holds the ingest lease

    # -- writing ------------------------------------------------------------------------

    def append(self, arrival: int, event: LiquidationEvent) -> None:
        if len(self._pending) >= self.max_buffer:
            self._pending.popleft()
            self.status.dropped_from_buffer += 1
            self._rewrite = True  # the processor still holds what the buffer let go
        self._pending.append((arrival, event))
        self.status.buffered = len(self._pending)
        self._idle.clear()
        self._wake.set()

    async def claim(self) -> None:
        """Mark this Redis as written by us, so a restart that empties it is noticed;
        writing starts."""
        await self.redis.set(MARKER_KEY, self._marker)
        self.status.connected = True
        self.claimed.set()
        self._wake.set()

    async def run(self, check_interval: float = 2.0) -> None:
        """Write what is appended; every `check_interval` also check Redis kept our data."""
        await self.claimed.wait()
        while True:
            with contextlib.suppress(TimeoutError):
                # not wait_for: on 3.11 it can swallow a cancel racing a wake (gh-86296)
                async with asyncio.timeout(check_interval):
                    await self._wake.wait()
            self._wake.clear()
            while True:
                try:
                    async with self._lock:
                        await self._write_some()
                except _FAILURES as error:
                    await asyncio.sleep(self.failed(error))
                    continue
                self._answered()
                if not self._pending and not self._rewrite:
                    break
            self.status.buffered = len(self._pending)
            self._idle.set()

    async def flushed(self) -> None:
        """Wait until everything appended so far is written (tests, shutdown)."""
        await self._idle.wait()

    def _answered(self) -> None:
        self.status.connected = True
        self.outage.succeeded()

    def failed(self, error: Exception) -> float:
        """A write failed: the state, and the delay before the next attempt."""
        self.status.connected = False
        delay = self.outage.failed(error)
        self.status.last_error = self.outage.last_error
        self._verify_tails = True
        self.failures += 1
        return delay

    async def write_pending(self) -> None:
        """Write everything appended so far, now; raises when Redis does not take it (the
        background loop keeps retrying). A checkpoint saved after this names only logged
        events."""
        if not self.claimed.is_set():
            raise RuntimeError("the event log is not taken over yet")
        async with self._lock:
            while self._pending or self._rewrite:
                await self._write_some()
                self._answered()
        if not self._pending:
            self._idle.set()

    async def _write_some(self) -> None:
        # A deposed ingest writes nothing more: every append checks the fencing token in
        # its own script (`_add`), so only a rewrite, which also sets the marker,
        # checks it first (one round trip less on every write of a busy hub).
        if await self.redis.get(MARKER_KEY) != self._marker.encode():
            if self.status.written:
                log.warning("event log: Redis lost our data (restarted?); rewriting it")
            self._rewrite = True
        if self._rewrite:
            await check_fence(self.redis, self.fence)
            await self._rewrite_all()
            return
        if self._verify_tails:
            await self._repair_tails()
            self._verify_tails = False
        if not self._pending:
            return
        taken = [self._pending[i] for i in range(min(WRITE_BATCH, len(self._pending)))]
        per_symbol: dict[str, list[tuple[int, LiquidationEvent]]] = {}
        for arrival, event in taken:
            per_symbol.setdefault(event.symbol, []).append((arrival, event))
        batches = [(symbol, rows_of(items)) for symbol, items in per_symbol.items()]
        await self._add(batches)
        for _ in taken:
            self._pending.popleft()
        self.status.written += len(taken)
        self.status.buffered = len(self._pending)

    async def _add(self, batches: list[tuple[str, Named]], replace: str | None = None) -> None:
        """One entry per batch; an entry Redis already holds counts as written. `replace`:
        a symbol whose stream is deleted first. One fenced script per slot (hub.storage
        .layout): a deposed ingest's write is refused whole there."""
        fence = self.fence
        token = "" if fence is None else fence.token
        per_symbol: dict[str, list[Named]] = {}
        for symbol, named in batches:
            per_symbol.setdefault(symbol, []).append(named)
        calls = []
        for group in self.layout.groups([*([replace] if replace else []), *per_symbol]):
            fences = [] if fence is None else self.layout.fence_keys(group)
            deletes = [stream_key(replace), archive_key(replace)] if replace in group else []
            streams: list[str] = []
            args: list[bytes | str | int] = [token, len(fences), len(deletes)]
            for symbol in group:
                for named in per_symbol.get(symbol, ()):
                    streams.append(stream_key(symbol))
                    args += [self._id(symbol, named), encode_batch(named)]
            calls.append(([*fences, *deletes, *streams], args))
        raise_fenced(await self._append(calls))

    def _id(self, symbol: str, named: Named) -> str:
        ms = max(self._last_ms.get(symbol, 0), int(named.rows.time.max()))
        arrival = int(named.rows.arrival.max())
        self._last_ms[symbol] = ms
        self._written[symbol] = max(self._written.get(symbol, 0), arrival)
        return f"{ms}-{arrival}"

    async def _repair_tails(self) -> None:
        """Write again what Redis acknowledged and then lost: after a failover to a replica
        that had not yet received the last writes (replication is asynchronous), a stream
        ends before what this process wrote. An entry's id names its last row's arrival,
        so the rows missing are those held with a later arrival, up to the last written."""
        symbols = list(self._written)
        tails = await _newest_ids(self.redis, [stream_key(symbol) for symbol in symbols])
        holdings: Mapping[str, Named] | None = None
        for symbol, tail in zip(symbols, tails, strict=True):
            kept = int(tail.partition(b"-")[2]) if tail is not None else 0
            if kept >= self._written[symbol]:
                continue
            holdings = self.holdings() if holdings is None else holdings
            named = holdings.get(symbol)
            if named is None:
                continue
            rows = named.rows
            lost = np.flatnonzero((rows.arrival > kept) & (rows.arrival <= self._written[symbol]))
            order = lost[np.argsort(rows.arrival[lost], kind="stable")]
            await self._add_chunked(symbol, named, order)
            self.status.repaired += len(order)
            # What the failed writes tried (up to `_written`) is written now: retried with
            # what came since, those rows would be in the log twice.
            upto = self._written[symbol]
            self._pending = deque(
                item for item in self._pending if item[1].symbol != symbol or item[0] > upto
            )
            log.warning(
                "event log: Redis lost the last %d liquidations of %s (a failover?); written again",
                len(order),
                symbol,
            )

    async def _add_chunked(
        self, symbol: str, named: Named, order: np.ndarray, replace: bool = False
    ) -> None:
        """The rows of `named` at `order`, REWRITE_CHUNK to an entry, 20 entries a trip;
        `replace`: the stream is deleted first (even with no rows)."""
        chunks = [
            (symbol, Named(named.rows.take(order[i : i + REWRITE_CHUNK]), named.exchanges))
            for i in range(0, len(order), REWRITE_CHUNK)
        ]
        for start in range(0, max(len(chunks), 1) if replace else len(chunks), 20):
            await self._add(chunks[start : start + 20], symbol if replace and start == 0 else None)

    async def _rewrite_all(self) -> None:
        holdings = self.holdings()
        self._pending.clear()  # every pending event still held is in `holdings`
        for symbol, named in holdings.items():
            rows = named.rows
            self._last_ms.pop(symbol, None)
            self._written.pop(symbol, None)
            await self._add_chunked(
                symbol, named, np.argsort(rows.arrival, kind="stable"), replace=True
            )
            self.status.written += len(rows)
        await self.redis.set(MARKER_KEY, self._marker)
        self._rewrite = False
        self.status.rewrites += 1

    async def trim(self, symbols: Iterable[str], oldest_ms: int) -> None:
        """Drop the entries whose events are all older than `oldest_ms` (retention)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for symbol in symbols:
                pipe.xtrim(stream_key(symbol), minid=oldest_ms, approximate=False)
                pipe.xtrim(archive_key(symbol), minid=oldest_ms, approximate=False)
            await pipe.execute()

    async def compact(self, symbols: Iterable[str], now: int) -> int:
        """Archive the streams whose oldest unarchived entry is `COMPACT_AFTER_MS` old;
        the number of symbols archived."""
        symbols = list(symbols)
        async with self._lock:  # no write lands between a stream's read and its archiving
            marks = await _marks(self.redis, symbols)
            async with self.redis.pipeline(transaction=False) as pipe:
                for symbol in symbols:
                    pipe.xrange(stream_key(symbol), min=_after(marks[symbol]), count=1)
                oldest = await pipe.execute()
            due = [
                symbol
                for symbol, first in zip(symbols, oldest, strict=True)
                if first and _ms(first[0][0]) <= now - COMPACT_AFTER_MS
            ]
            for symbol in due:
                await self._archive(symbol, marks[symbol])
        return len(due)

    async def _archive(self, symbol: str, mark: bytes | None) -> None:
        """One script: the stream's entries after `mark` into archive entries, and the
        entries the previous compaction archived (up to `mark`) out of the stream."""
        key = stream_key(symbol)
        chunks: list[tuple[bytes, Named]] = []
        parts: list[Named] = []
        held = 0
        last = b""
        async for last, named in _entries(self.redis, key, _after(mark)):
            parts.append(named)
            held += len(named.rows)
            if held >= ARCHIVE_ROWS:
                chunks.append((last, merge(parts)))
                parts, held = [], 0
        if parts:
            chunks.append((last, merge(parts)))
        fence = self.fence
        fences = [] if fence is None else self.layout.fence_keys([symbol])
        args: list[bytes | str | int] = [
            "" if fence is None else fence.token,
            len(fences),
            "" if mark is None else _after_id(mark),
        ]
        for entry_id, named in chunks:
            args += [entry_id, encode_batch(named)]
        keys = [*fences, archive_key(symbol), key]
        raise_fenced(await self._archive_entries([(keys, args)]))


# -- reading ----------------------------------------------------------------------------


async def read_all(redis: AnyRedis, symbol: str, since: int = 0) -> Named:
    """The rows of `symbol` with entries from `since` on (ms; 0: all), in log order."""
    return merge([named async for named in entries_from(redis, symbol, since)])


async def entries_from(redis: AnyRedis, symbol: str, since: int) -> AsyncIterator[Named]:
    """The log's entries with ids from `since - CLOCK_SLACK_MS` on, oldest first, decoded
    (an unreadable entry is skipped, counted in the log): the archive up to its mark, then
    the stream after it."""
    lower = str(max(0, since - CLOCK_SLACK_MS))
    mark = (await _marks(redis, [symbol]))[symbol]
    if mark is not None:
        async for _, named in _entries(redis, archive_key(symbol), lower, mark.decode()):
            yield named
        if int(lower) <= _ms(mark):
            lower = _after(mark)
    async for _, named in _entries(redis, stream_key(symbol), lower):
        yield named


async def newest_ids(redis: AnyRedis, symbols: list[str]) -> dict[str, bytes | None]:
    """The id of each symbol's newest stream entry (None: none yet): where reading the
    tail starts (`read_tails`)."""
    ids = await _newest_ids(redis, [stream_key(symbol) for symbol in symbols])
    return dict(zip(symbols, ids, strict=True))


async def read_tails(
    redis: AnyRedis, after: Mapping[str, bytes | None]
) -> dict[str, tuple[bytes | None, list[Named]]]:
    """Each symbol's stream entries after the id given (None: from the first), oldest
    first, decoded: the rows and the id to read on from. One round trip a page."""
    cursors = dict(after)
    found: dict[str, tuple[bytes | None, list[Named]]] = {s: (c, []) for s, c in cursors.items()}
    while cursors:
        symbols = list(cursors)
        async with redis.pipeline(transaction=False) as pipe:
            for symbol in symbols:
                pipe.xrange(stream_key(symbol), min=_after(cursors[symbol]), count=READ_PAGE)
            pages = await pipe.execute()
        for symbol, entries in zip(symbols, pages, strict=True):
            if entries:
                rows = found[symbol][1]
                rows.extend(named for _, named in _decode(stream_key(symbol), entries))
                found[symbol] = (entries[-1][0], rows)
            if len(entries) < READ_PAGE:
                del cursors[symbol]
            else:
                cursors[symbol] = entries[-1][0]
    return found


async def _entries(
    redis: AnyRedis, key: str, lower: str, upper: str = "+"
) -> AsyncIterator[tuple[bytes, Named]]:
    """Entries of one stream between two ids (`(` before an id excludes it), with their
    ids, oldest first, a page at a time."""
    while True:
        entries = await redis.xrange(key, min=lower, max=upper, count=READ_PAGE)
        for entry_id, named in _decode(key, entries):
            yield entry_id, named
        if len(entries) < READ_PAGE:
            return
        lower = f"({entries[-1][0].decode()}"


async def _marks(redis: AnyRedis, symbols: list[str]) -> dict[str, bytes | None]:
    """Each symbol's archive mark: the id of the last stream entry archived."""
    tips = await _newest_ids(redis, [archive_key(symbol) for symbol in symbols])
    return dict(zip(symbols, tips, strict=True))


async def _newest_ids(redis: AnyRedis, keys: list[str]) -> list[bytes | None]:
    """The id of each stream's newest entry (None: empty or absent), in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.xrevrange(key, count=1)
        newest = await pipe.execute()
    return [entries[0][0] if entries else None for entries in newest]


def _after(mark: bytes | None) -> str:
    return "-" if mark is None else f"({mark.decode()}"


def _after_id(mark: bytes) -> str:
    """The smallest id above `mark` (XTRIM's MINID keeps ids from it on)."""
    ms, seq = mark.split(b"-")
    return f"{int(ms)}-{int(seq) + 1}"


def _ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


async def read_window(
    redis: AnyRedis, symbol: str, since: int, side: str | None, limit: int | None = None
) -> list[LiquidationEvent]:
    """Events with time >= since (and `side`), newest first, at most `limit`, reading the
    stream backwards a page at a time and only as far as needed: an entry's id is at or
    after its events' times (old-format entries: their write time, up to CLOCK_SLACK_MS
    after), so the read stops at ids older than `since`, and, with a limit, once the ids
    read are older than the limit-th newest event found."""
    found: list[LiquidationEvent] = []
    floor = str(max(0, since - CLOCK_SLACK_MS))
    mark = (await _marks(redis, [symbol]))[symbol]
    archived = mark is not None and _ms(mark) >= int(floor)
    ranges = [(stream_key(symbol), "+", _after(mark) if archived else floor)]
    if archived:
        ranges.append((archive_key(symbol), mark.decode(), floor))
    for key, upper, lower in ranges:
        while True:
            entries = await redis.xrevrange(key, max=upper, min=lower, count=READ_PAGE)
            for _, named in _decode(key, entries):
                rows = named.rows
                keep = rows.time >= since
                if side is not None:
                    keep &= rows.short == (side == "short")
                found.extend(events_of(rows.take(keep), named.exchanges, symbol))
            done = len(entries) < READ_PAGE
            if entries and limit is not None and len(found) >= limit:
                found.sort(key=_newest_first)
                if _ms(entries[-1][0]) < found[limit - 1].time - CLOCK_SLACK_MS:
                    return found[:limit]
            if done:
                break
            upper = f"({entries[-1][0].decode()}"  # exclusive: continue below the last entry
    found.sort(key=_newest_first)
    return found if limit is None else found[:limit]


def _newest_first(event: LiquidationEvent) -> int:
    return -event.time


def _decode(key: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[bytes, Named]]:
    """Entries with their ids; the old format's, one event each, as one batch of the last
    one's id."""
    decoded: list[tuple[bytes, Named]] = []
    legacy: list[tuple[int, LiquidationEvent]] = []
    for entry_id, fields in entries:
        try:
            if b"b" in fields:
                decoded.append((entry_id, decode_batch(fields[b"b"])))
            else:  # one event per entry, JSON: the format before batches
                ms, seq = entry_id.split(b"-")
                event = _legacy_decoder.decode(fields[b"e"])
                # An arrival number from the id: in log order, and below 2**53.
                legacy.append((int(ms) * 1_000 + int(seq), event))
        except (KeyError, ValueError, msgspec.DecodeError):
            log.warning("event log %s: skipped an unreadable entry %s", key, entry_id)
    if legacy:
        decoded.append((entries[-1][0], rows_of(legacy)))
    return decoded
