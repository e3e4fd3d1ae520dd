"""The durable event log of `serve` without Redis: Arrow files under HEATMAP_DATA_DIR.

Every accepted event is appended, a batch a second, to the open segment: an Arrow IPC
stream (`*.arrows`), which a crash can only cut short at its end. Each hour (or 64 MB)
the segment is sealed: rewritten as Parquet (`events-{first}-{last}-{opened}.parquet`,
first and last the event times it holds; zstd, columns dictionary-encoded: about 12 bytes
an event), fsynced, and the stream file removed. Retention deletes the sealed files whose
events are all past it; reading back drops what is older.

Why Arrow and Parquet (pyarrow): they are columnar, so 30 days of five million events are
read back as a handful of arrays in about a second, which a per-row store (SQLite, JSON
lines) cannot do; Parquet is what every analytics tool reads, so the same code writes the
`format=parquet` export; and an IPC stream is append-only with self-delimiting batches,
so a torn write loses only the batch being written.

A file that cannot be read (corrupt, truncated, not ours) is reported on status and in
the log and skipped, with the span its name gives; everything else is read. A stream file
cut short keeps every batch before the cut.

One process writes a directory: the first takes a lock on it (`lock`), and a second one
pointed at the same directory stops at start with a configuration error rather than
interleave its segments with the first's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from hub.analytics.rows import Named, Rows
from hub.errors import ConfigError, clip
from hub.models import LiquidationEvent

log = logging.getLogger("hub.storage")
SEGMENT_MS = 3_600_000
SEGMENT_BYTES = 64 << 20
STATE_FILE = "state.json"
SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("time", pa.int64()),
        ("price", pa.float64()),
        ("quantity", pa.float64()),
        ("notional", pa.float64()),
        ("leverage", pa.float64()),
        ("short", pa.bool_()),
        ("exchange", pa.string()),
        ("arrival", pa.int64()),
    ]
)
_SEALED = re.compile(r"events-(\d+)-(\d+)-(\d+)\.parquet")
_OPEN = re.compile(r"events-(\d+)\.arrows")


class SkippedFile(msgspec.Struct, frozen=True):
    file: str
    error: str
    first: int | None = None  # event times the file's name says it held
    last: int | None = None


class DiskLogStatus(msgspec.Struct):
    directory: str
    files: int = 0
    bytes: int = 0
    written: int = 0
    buffered: int = 0
    skipped: list[SkippedFile] = []
    last_error: str | None = None


class DiskEventLog:
    def __init__(
        self,
        directory: Path,
        clock: Callable[[], int],
        segment_ms: int = SEGMENT_MS,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        """`clock` is the wall clock in ms (when a segment was opened)."""
        self.directory = directory
        self.clock = clock
        self.segment_ms = segment_ms
        self.segment_bytes = segment_bytes
        self.status = DiskLogStatus(str(directory))
        self._lock_file = _locked(directory)
        self._pending: list[tuple[int, LiquidationEvent]] = []
        self._writer: ipc.RecordBatchStreamWriter | None = None
        self._sink: Any = None
        self._path: Path | None = None
        self._opened = 0
        self._lock = asyncio.Lock()

    # -- writing ------------------------------------------------------------------------

    def append(self, arrival: int, event: LiquidationEvent) -> None:
        self._pending.append((arrival, event))
        self.status.buffered = len(self._pending)

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.write_pending()

    async def write_pending(self) -> None:
        """Write what was appended; a failure (a full disk) is reported and retried."""
        async with self._lock:
            if not self._pending:
                return
            taken, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._write, _table(taken))
            except OSError as error:
                self._pending[:0] = taken
                self.status.last_error = f"{type(error).__name__}: {clip(str(error), 200)}"
                log.warning("history: cannot write %s: %s", self.directory, error)
                return
            self.status.written += len(taken)
            self.status.buffered = len(self._pending)

    def _write(self, table: pa.Table) -> None:
        if self._writer is not None:
            full = self._sink.tell() >= self.segment_bytes
            if full or self.clock() - self._opened >= self.segment_ms:
                self._seal_open()
        if self._writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._opened = self.clock()
            self._path = self.directory / f"events-{self._opened}.arrows"
            self._sink = self._path.open("ab")
            self._writer = ipc.new_stream(self._sink, SCHEMA)
        self._writer.write_table(table)
        self._sink.flush()  # a crash of the process loses nothing written

    def _seal_open(self) -> None:
        writer, sink, path = self._writer, self._sink, self._path
        self._writer = self._sink = self._path = None
        assert writer is not None and path is not None
        writer.close()
        sink.close()
        seal(path)

    async def close(self) -> None:
        """Write what is pending, close the open segment (sealed at the next start) and
        let the directory go."""
        await self.write_pending()
        async with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._sink.close()
                self._writer = self._sink = self._path = None
            self._lock_file.close()

    # -- reading, retention -------------------------------------------------------------

    def read_all(self, oldest: int) -> dict[str, Named]:
        """Every symbol's rows with time >= `oldest`, from every readable file. Segments a
        crash left open are sealed first."""
        if not self.directory.is_dir():
            return {}
        for path in sorted(self.directory.glob("events-*.arrows")):
            if path != self._path:
                seal(path)
        tables = []
        self.status.skipped = []
        for path in sorted(self.directory.glob("events-*.parquet")):
            span = _SEALED.fullmatch(path.name)
            if span is not None and int(span[2]) < oldest:
                continue
            try:
                tables.append(pq.read_table(path, schema=SCHEMA))
            except (OSError, pa.ArrowException, ValueError) as error:
                self._skip(path, error)
        self._count_files()
        if not tables:
            return {}
        table = pa.concat_tables(tables)
        times = table.column("time").to_numpy()
        return _by_symbol(table.filter(pa.array(times >= oldest)))

    def trim(self, oldest: int) -> None:
        """Delete the sealed files whose events are all older than `oldest`."""
        if not self.directory.is_dir():
            return
        for path in self.directory.glob("events-*.parquet"):
            span = _SEALED.fullmatch(path.name)
            if span is not None and int(span[2]) < oldest:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        self._count_files()

    def _skip(self, path: Path, error: BaseException) -> None:
        span = _SEALED.fullmatch(path.name)
        first, last = (int(span[1]), int(span[2])) if span else (None, None)
        reason = f"{type(error).__name__}: {clip(str(error), 200)}"
        self.status.skipped.append(SkippedFile(path.name, reason, first, last))
        log.error("history: skipped unreadable %s (%s); the rest is read", path, reason)

    def _count_files(self) -> None:
        files = list(self.directory.glob("events-*"))
        self.status.files = len(files)
        self.status.bytes = sum(f.stat().st_size for f in files if f.exists())

    # -- state beside the log -----------------------------------------------------------

    def read_state(self) -> bytes | None:
        with contextlib.suppress(OSError):
            return (self.directory / STATE_FILE).read_bytes()
        return None

    def write_state(self, data: bytes) -> None:
        """Replace the state file atomically (write aside, then rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        aside = self.directory / f"{STATE_FILE}.new"
        aside.write_bytes(data)
        aside.replace(self.directory / STATE_FILE)


def _locked(directory: Path) -> Any:
    """The directory's lock, held for the life of the process; `ConfigError` when another
    process holds it (or the directory cannot be made)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = (directory / "lock").open("a+")
    except OSError as error:
        raise ConfigError("HEATMAP_DATA_DIR", f"cannot use {directory}: {error.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(
            "HEATMAP_DATA_DIR",
            f"{directory} is in use by another heatmap-hub process; give each its own",
        ) from None
    return handle


def seal(path: Path) -> None:
    """Rewrite an open segment as Parquet, keeping every batch before a torn end."""
    batches: list[pa.RecordBatch] = []
    try:
        with path.open("rb") as source, ipc.open_stream(source) as reader:
            batches.extend(reader)
    except (OSError, pa.ArrowException) as error:
        kept = len(batches)
        log.warning("history: %s ends in a torn write (%s); kept %d batches", path, error, kept)
    if batches:
        table = pa.Table.from_batches(batches, SCHEMA)
        times = table.column("time").to_numpy()
        match = _OPEN.fullmatch(path.name)
        opened = match[1] if match else "0"
        target = path.with_name(f"events-{times.min()}-{times.max()}-{opened}.parquet")
        aside = target.with_suffix(".parquet.new")
        pq.write_table(table, aside, compression="zstd")
        with aside.open("rb") as written:
            os.fsync(written.fileno())
        aside.replace(target)
    path.unlink()


def _table(items: list[tuple[int, LiquidationEvent]]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for arrival, event in items:
        columns["symbol"].append(event.symbol)
        columns["time"].append(event.time)
        columns["price"].append(event.price)
        columns["quantity"].append(event.quantity)
        columns["notional"].append(event.notional)
        columns["leverage"].append(
            float("nan") if event.est_leverage is None else event.est_leverage
        )
        columns["short"].append(event.side == "short")
        columns["exchange"].append(event.exchange)
        columns["arrival"].append(arrival)
    return pa.table(columns, schema=SCHEMA)


def table_of(named: Named, symbol: str) -> pa.Table:
    """Rows as a table of this log's schema."""
    rows, exchanges = named
    names = np.array(exchanges or [""], dtype=object)
    return pa.table(
        {
            "symbol": pa.array([symbol] * len(rows), pa.string()),
            "time": rows.time,
            "price": rows.price,
            "quantity": rows.quantity,
            "notional": rows.notional,
            "leverage": rows.leverage,
            "short": rows.short,
            "exchange": pa.array(names[rows.exchange], pa.string()),
            "arrival": rows.arrival,
        },
        schema=SCHEMA,
    )


def _by_symbol(table: pa.Table) -> dict[str, Named]:
    symbols = table.column("symbol").dictionary_encode().combine_chunks()
    exchanges = table.column("exchange").dictionary_encode().combine_chunks()
    symbol_codes = symbols.indices.to_numpy(zero_copy_only=False)
    exchange_codes = exchanges.indices.to_numpy(zero_copy_only=False).astype(np.uint8)
    exchange_names = exchanges.dictionary.to_pylist()
    columns = [
        table.column(name).to_numpy()
        for name in ("time", "price", "quantity", "notional", "leverage", "short")
    ]
    arrival = table.column("arrival").to_numpy()
    order = np.argsort(symbol_codes, kind="stable")
    bounds = np.searchsorted(symbol_codes[order], np.arange(len(symbols.dictionary) + 1))
    held: dict[str, Named] = {}
    for code, symbol in enumerate(symbols.dictionary.to_pylist()):
        which = order[bounds[code] : bounds[code + 1]]
        rows = Rows(*(c[which] for c in columns), exchange_codes[which], arrival[which])
        held[symbol] = Named(rows, exchange_names)
    return held
