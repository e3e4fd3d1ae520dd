"""Complete history in bounded memory (issue 22): what 30 days of every liquidation cost.

Run from the repository root: ``python bench/bench_history.py`` (every part; part 4 alone
takes an hour), ``--parts load,live,flush,channels`` and ``--parts demo`` to run them
apart, ``--smoke`` for every part at a tiny scale in about a minute (the test suite runs
it). Each figure is printed beside its target, and beside its baseline where there is one;
a summary table closes the run. Nothing is asserted about time: a figure off its target is
printed as such. The machine's load average is printed with each part.

1. load: 30 days of liquidations for 300 symbols (`history_market.py`: BTCUSDT about
   30,000 a day, ETHUSDT 15,000, mid caps at thousands, a long tail of ~100; 5.1 million
   in all) written straight into a real `redis-server` in the event log's own format: a
   stream per symbol (`stream_key`), one entry per symbol per 50 ms holding that
   stretch's rows (`encode_batch`), as the log's writer batches them (at everyday rates
   that is nearly always one row an entry), ids `{ms}-{arrival}`, written in pipelines,
   and what the hourly sweeps' compaction makes of them: the 6-hour stretches up to the
   last compaction in the archive (`archive_key`, at most ARCHIVE_ROWS rows an entry);
   and a coverage beside them (`hub:{*}:state`, `~coverage`) from before the 30 days, so
   the windows are complete. Then a real `heatmap-hub ingest` process (REDIS_URL, the 300
   symbols, Binance only, on a local look-alike, no liquidity, no data directory) starts
   twice: first on the log as written (no checkpoint: every book a new epoch), then,
   after a SIGTERM, again on what the first left (its checkpoints: streams resumed).
   Restored: the first time `ingest` writes its status key (`hub:ingest-status`), which
   its status loop does once the history is read back, every book rebuilt and the first
   flush and every snapshot published; measured from just before the process is spawned,
   polling every 50 ms. Also shown: when it logged the last `history: ... restored` line
   (books rebuilt, before the first flush), its CPU time until restored, and its VmRSS
   then (and VmHWM, its peak so far). Targets: restored <= 60 s, RSS <= 1.5 GB.
   `--days` shortens the history of parts 1 and 2.
2. live: on the restarted `ingest`, the look-alike pushes 2,000 liquidations/s across the
   symbols in the same skew for 60 s (one forceOrder frame each on `!forceOrder@arr`, as
   Binance sends them; sent in 10 ms ticks). Accepted: the per-symbol `events` and
   `processor.rejected` of the status key, after against before, beside what was sent.
   CPU: the process's utime+stime over the 60 s, as a share of one core, and until it
   has taken everything. Latency: the probe symbol (PROBEUSDT, one of the 300; its
   history ends 3 h before, so its 1h window holds only probes) gets one liquidation
   every 100 ms and nothing else; this process subscribes to its topic (SSUBSCRIBE
   through `RedisBroker`) and a probe has arrived when a `heatmap:PROBEUSDT:1h` diff's
   `statistics.event_count` includes it: p50/p99 of that minus its send time (and of its
   `liquidations:` message, which needs no flush). Also shown: how far the feed fell
   behind (the feed's `frames` on the status key, read each second, against the frames
   pushed by the time ingest wrote the key, which its TTL tells). Targets: every one accepted,
   CPU <= 70 %, p99 <= 250 ms.
3. flush: in this process, a `LiquidationProcessor` whose BTCUSDT book holds 900,000
   events over 30 days (loaded as a restore without checkpoint does: `restore_book`).
   Each step adds 5 new events, moves `now` on by 45 s (the 30d window's pace, so it is
   due every step) and flushes. Timed: `flush` of the book (all nine windows due), `flush`
   with the 30d window alone, and the REST snapshot body of the 30d channel
   (`SnapshotBodies.body` over a `Fanout` fed every message, as `web` serves it). Median
   and p99 of each call's CPU time (`process_time`: the machine is shared, and wall time
   would count the moments this process waits for a core). Targets: flush <= 5 ms,
   snapshot <= 10 ms. Baseline: the same on git revision f0adcb5 (`history_baseline.py`,
   in its own process, on that revision's `hub` extracted with `git archive`), whose
   windows are recomputed from their events.
4. demo: `heatmap-hub serve --demo` on a free port with its data directory in a temporary
   one; VmRSS every 30 s for an hour (`--demo-minutes`). Minute 10 against minute 60:
   target within +-10 %.
5. channels: in this process, a `Fanout` fed by a `LiquidationProcessor` tracking 300
   symbols at 2,000 events/s of simulated time for 120 simulated seconds, flushed every
   50 ms of it, every message encoded (`encode_message`) and given to `Fanout.publish`.
   What the channel histories hold: the budget's own count (`fanout.history.held`) and
   tracemalloc's (the memory freed by emptying every history; the processor runs first,
   untraced, and the fan-out is fed its messages afterwards, traced). Target: 64 MiB.
   Also shown: the processor's CPU time for the 120 s.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import itertools
import math
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np
import redis
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench import history_market as market_model
from bench.fanout_servers import cpu_seconds, free_port, get_ok, rss_kib, stop
from bench.history_baseline import timed_steps
from bench.history_market import (
    DAY_MS,
    EXCHANGES,
    FLUSH_END,
    HANDFUL,
    PROBE,
    Liquidations,
    Symbol,
)
from bench.trees import extract_hub
from hub.analytics.checkpoint import restore_book
from hub.analytics.coverage import CoverageState
from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
from hub.analytics.rows import Named, Rows, events_of
from hub.api.bodies import SnapshotBodies
from hub.channels import heatmap_channel
from hub.fanout.broker import topic_for
from hub.fanout.broker_redis import RedisBroker
from hub.fanout.codec import decode_diff_body, decode_header, decode_snapshot, encode_message
from hub.fanout.fanout import Fanout
from hub.feeds.binance import MAX_STREAMS
from hub.feeds.binance_wire import stream_name
from hub.models import LiquidationEvent
from hub.service.control import STATUS_KEY, STATUS_TTL_S
from hub.service.history import COVERAGE_FIELD
from hub.storage.batch import encode_batch
from hub.storage.event_log import ARCHIVE_ROWS, COMPACT_AFTER_MS
from hub.storage.layout import GLOBAL, archive_key, state_key, stream_key
from tests.fakes.binance_server import ALL_MARKET, FakeBinance, force_order
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("load", "live", "flush", "demo", "channels")
BASELINE = "f0adcb5"
ENTRY_MS = 50  # the log writer's batches: a symbol's rows of one write cycle
PIPELINE = 10_000  # commands per pipeline when loading
HEAD_ROOM_MS = 15 * 60_000  # the history starts this much inside retention: none is swept
PROBE_QUIET_MS = 3 * 3_600_000  # the probe symbol's history ends this long before the rest
PROBE_EVERY_MS = 100
TICK_S = 0.01
SETTLE_S = 180.0  # after sending, how long the ingest may take to catch up
FLUSH_MS = 50  # HEATMAP_FLUSH_MS's default, part 5's flush interval
MB = 1e6

RESTORE_TARGET_S = 60.0
RSS_TARGET_MB = 1_500.0
CPU_TARGET = 0.70
P99_TARGET_MS = 250.0
FLUSH_TARGET_MS = 5.0
SNAPSHOT_TARGET_MS = 10.0
DEMO_TOLERANCE = 0.10
HISTORIES_TARGET_MIB = 64.0  # HUB_HISTORY_BYTES's default bound
MIB = 1 << 20


class Scale(NamedTuple):
    symbols: int = 300
    days: float = 30.0
    live_rate: float = 2_000.0
    live_seconds: float = 60.0
    flush_events: int = 900_000
    flush_steps: int = 200  # half with all windows, half with the 30d one alone
    baseline_steps: int = 40
    channel_seconds: float = 120.0
    demo_every_s: float = 30.0
    restore_deadline_s: float = 1_800.0


FULL = Scale()
SMOKE = Scale(
    symbols=20,
    days=0.2,
    live_rate=200.0,
    live_seconds=5.0,
    flush_events=20_000,
    flush_steps=20,
    baseline_steps=6,
    channel_seconds=5.0,
    demo_every_s=5.0,
    restore_deadline_s=200.0,
)


class Figure(NamedTuple):
    part: str
    measure: str
    value: str
    target: str = ""
    baseline: str = ""
    met: bool | None = None


def show(figure: Figure) -> Figure:
    verdict = {True: "ok", False: "MISSED", None: ""}[figure.met]
    beside = f"  (baseline {figure.baseline})" if figure.baseline else ""
    target = f"  target {figure.target}" if figure.target else ""
    print(f"  {figure.measure}: {figure.value}{target}{beside}  {verdict}".rstrip(), flush=True)
    return figure


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def percentile(values: list[float], q: float) -> float:
    # "higher": no interpolation, so a probe never seen (inf) reads as such
    return float(np.percentile(values, q, method="higher")) if values else math.nan


def peak_kib(pid: int) -> int:
    return rss_kib(pid, "VmHWM")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def rows_of(liquidations: Liquidations, first_arrival: int) -> Rows:
    return Rows(*market_model.row_columns(liquidations, first_arrival))


# -- 1. load ------------------------------------------------------------------------------


class Loaded(NamedTuple):
    events: dict[str, int]  # per symbol
    entries: int
    seconds: float
    last_price: dict[str, float]
    redis_mb: float


def write_history(url: str, market: list[Symbol], scale: Scale) -> Loaded:
    """Every symbol's history as the event log holds it, and a coverage from before it."""
    rng = np.random.default_rng(22)
    client = redis.Redis.from_url(url)
    began = time.monotonic()
    end = wall_ms()
    start = end - int(scale.days * DAY_MS) + HEAD_ROOM_MS
    events: dict[str, int] = {}
    last_price: dict[str, float] = {}
    entries = 0
    pipe = client.pipeline(transaction=False)
    for symbol in market:
        until = end - PROBE_QUIET_MS if symbol.name == PROBE else end
        liquidations = market_model.liquidations(symbol, start, until, rng)
        rows = rows_of(liquidations, first_arrival=start * 1_000)
        events[symbol.name] = len(rows)
        last_price[symbol.name] = float(liquidations.price[-1]) if len(rows) else symbol.price
        key = stream_key(symbol.name)
        bounds = list(_entries(liquidations.time))
        # What a month of sweeps leaves (`RedisEventLog.compact`): every COMPACT_AFTER_MS
        # stretch up to the last compaction in archive entries, the stream after it, and
        # the stretch that compaction took still in the stream too.
        mark = start + (end - start) // COMPACT_AFTER_MS * COMPACT_AFTER_MS - COMPACT_AFTER_MS
        previous = mark - COMPACT_AFTER_MS
        for _, chunk in itertools.groupby(
            (b for b in bounds if rows.time[b[1] - 1] < mark),
            key=lambda b: (int(rows.time[b[1] - 1]) - start) // COMPACT_AFTER_MS,
        ):
            stretch = list(chunk)
            for at in range(0, stretch[-1][1] - stretch[0][0], ARCHIVE_ROWS):
                first = stretch[0][0] + at
                last = min(first + ARCHIVE_ROWS, stretch[-1][1])
                batch = Named(rows.take(slice(first, last)), EXCHANGES)
                entry_id = f"{rows.time[last - 1]}-{rows.arrival[last - 1]}"
                pipe.xadd(archive_key(symbol.name), {"b": encode_batch(batch)}, id=entry_id)
                entries += 1
        for first, last in bounds:
            if rows.time[last - 1] < previous:
                continue
            batch = Named(rows.take(slice(first, last)), EXCHANGES)
            entry_id = f"{rows.time[last - 1]}-{rows.arrival[last - 1]}"
            pipe.xadd(key, {"b": encode_batch(batch)}, id=entry_id)
            entries += rows.time[last - 1] >= mark
            if len(pipe) >= PIPELINE:
                pipe.execute()
        if len(events) % 50 == 0 or len(events) == len(market):
            print(f"  loaded {len(events)} symbols, {sum(events.values()):,} events", flush=True)
    pipe.execute()
    since = start - 3_600_000
    coverage = {symbol.name: CoverageState(since) for symbol in market}
    client.hset(state_key(GLOBAL), COVERAGE_FIELD, msgspec.json.encode(coverage))
    used = int(client.info("memory")["used_memory"])
    client.close()
    return Loaded(events, entries, time.monotonic() - began, last_price, used / MB)


def _entries(times: np.ndarray) -> Iterator[tuple[int, int]]:
    """(first, last) row of each entry: the rows of one ENTRY_MS stretch."""
    cuts = np.flatnonzero(np.diff(times // ENTRY_MS)) + 1
    bounds = [0, *cuts.tolist(), len(times)]
    return itertools.pairwise(bounds) if len(times) else iter(())


class Started(NamedTuple):
    process: subprocess.Popen[bytes]
    serving_s: float
    cpu_s: float  # the process's CPU time until then
    rebuilt_s: float
    rss_mb: float
    peak_mb: float
    status: dict[str, Any]


def ingest_env(url: str, market: list[Symbol], binance_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEATMAP_", "HUB_"))}
    return env | {
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": url,
        "HEATMAP_SYMBOLS": ",".join(symbol.name for symbol in market),
        "HEATMAP_EXCHANGES": "binance",
        "BINANCE_WS_URL": binance_url,
        "BINANCE_REST_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens
        "HEATMAP_LIQUIDITY": "off",
        "HEATMAP_DATA_DIR": "off",
    }


async def start_ingest(
    client: Redis, env: dict[str, str], log: Path, deadline_s: float
) -> Started | None:
    """Spawn `ingest` and wait until it is restored (see the module doc); None when it
    was not by the deadline (the process is stopped)."""
    await client.delete(STATUS_KEY)
    spawned_wall = time.time()
    spawned = time.monotonic()
    with log.open("wb") as out:
        command = [sys.executable, "-m", "hub", "ingest"]
        process = await asyncio.to_thread(
            subprocess.Popen, command, env=env, stdout=out, stderr=out
        )
    raw = None
    while time.monotonic() - spawned < deadline_s and process.poll() is None:
        raw = await client.get(STATUS_KEY)
        if raw is not None:
            break
        await asyncio.sleep(0.05)
    if raw is None:
        if process.poll() is None:
            cpu_s, peak = cpu_seconds(process.pid), peak_kib(process.pid) * 1024 / MB
            stop(process)
            print(
                f"  ingest not restored within {deadline_s:.0f} s, after {cpu_s:.0f} s of CPU "
                f"(peak RSS {peak:,.0f} MB)"
            )
        else:
            text = await asyncio.to_thread(log.read_text)
            print(f"  ingest exited with {process.returncode}; its log:\n{text}")
        return None
    serving_s = time.monotonic() - spawned
    cpu_s = cpu_seconds(process.pid)
    rss, peak = rss_kib(process.pid) * 1024 / MB, peak_kib(process.pid) * 1024 / MB
    lines = (await asyncio.to_thread(log.read_text)).splitlines()
    rebuilt = [_logged_at(line) for line in lines if " restored " in line]
    rebuilt_s = max(rebuilt) - spawned_wall if rebuilt else math.nan
    status = msgspec.json.decode(raw)
    return Started(process, serving_s, cpu_s, rebuilt_s, rss, peak, status)


def _logged_at(line: str) -> float:
    """The wall time of a log line (`%(asctime)s` first: local time, milliseconds)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def held_events(status: dict[str, Any]) -> dict[str, int]:
    return {symbol: entry["events"] for symbol, entry in status["symbols"].items()}


def restore_figures(name: str, started: Started | None, loaded: Loaded) -> list[Figure]:
    part = f"1 load ({name})"
    if started is None:
        return [show(Figure(part, "restored", "not within the deadline", "<= 60 s", met=False))]
    held = sum(held_events(started.status).values())
    expected = sum(loaded.events.values())
    return [
        show(
            Figure(
                part,
                "restored (status key written)",
                f"{started.serving_s:.1f} s",
                f"<= {RESTORE_TARGET_S:.0f} s",
                met=started.serving_s <= RESTORE_TARGET_S,
            )
        ),
        show(Figure(part, "books rebuilt (last 'restored' line)", f"{started.rebuilt_s:.1f} s")),
        show(Figure(part, "ingest CPU until restored", f"{started.cpu_s:.1f} s")),
        show(Figure(part, "events held once restored", f"{held:,} of {expected:,}")),
        show(
            Figure(
                part,
                "RSS once restored",
                f"{started.rss_mb:,.0f} MB (peak {started.peak_mb:,.0f} MB)",
                f"<= {RSS_TARGET_MB:,.0f} MB",
                met=started.rss_mb <= RSS_TARGET_MB and started.peak_mb <= RSS_TARGET_MB,
            )
        ),
    ]


class History(NamedTuple):
    """A `redis-server` holding a generated history (`write_history`)."""

    url: str
    market: list[Symbol]
    loaded: Loaded


@contextlib.contextmanager
def history_server(scale: Scale, heading: str) -> Iterator[History]:
    """A real `redis-server` with `scale`'s history written in the log's format."""
    market = market_model.symbols(scale.symbols)
    server = RedisServer()
    server.start()
    try:
        print(f"{heading}: {len(market)} symbols over {scale.days:g} days ({load_average()})")
        yield History(server.url, market, write_history(server.url, market, scale))
    finally:
        server.stop()


def part_load_and_live(scale: Scale, live: bool) -> list[Figure]:
    with history_server(scale, "1. load") as (url, market, loaded):
        figures = [
            show(
                Figure(
                    "1 load",
                    "written to Redis",
                    f"{sum(loaded.events.values()):,} events in {loaded.entries:,} entries, "
                    f"{loaded.seconds:.0f} s, Redis {loaded.redis_mb:,.0f} MB",
                )
            )
        ]
        figures += asyncio.run(_ingest_parts(url, market, loaded, scale, live))
        return figures


async def _ingest_parts(
    url: str, market: list[Symbol], loaded: Loaded, scale: Scale, live: bool
) -> list[Figure]:
    client = Redis.from_url(url)
    figures: list[Figure] = []
    async with contextlib.aclosing(client), FakeBinance() as fake:
        with tempfile.TemporaryDirectory(prefix="bench-history-") as scratch:
            env = ingest_env(url, market, fake.base_url)
            started: Started | None = None
            connections = 0
            for number, name in enumerate(("first start, new epochs", "restart, streams resumed")):
                if started is not None:
                    stop(started.process)
                    connections = fake.connection_count_total
                print(f"  {name} ({load_average()})")
                log = Path(scratch) / f"ingest-{number}.log"
                started = await start_ingest(client, env, log, scale.restore_deadline_s)
                figures += restore_figures(name, started, loaded)
                if started is None:
                    return figures
            assert started is not None
            try:
                if live:
                    print(f"2. live: {scale.live_rate:,.0f}/s for {scale.live_seconds:g} s")
                    await _connected_again(fake, connections, market)
                    figures += await live_part(fake, url, client, started, market, loaded, scale)
            finally:
                stop(started.process)
    return figures


async def _connected_again(fake: FakeBinance, before: int, market: list[Symbol]) -> None:
    """The restarted ingest's liquidation stream is open (not the first one's, closing)."""
    deadline = time.monotonic() + 60
    while fake.connection_count_total <= before:
        if time.monotonic() > deadline:
            raise RuntimeError("the restarted ingest did not connect to the look-alike")
        await asyncio.sleep(0.05)
    many = len(market) > MAX_STREAMS
    await fake.wait_for_subscription(ALL_MARKET if many else stream_name(PROBE), timeout=60)


# -- 2. live ------------------------------------------------------------------------------


class Cascade(NamedTuple):
    offsets: list[int]  # ms from the start
    frames: list[tuple[str, str, str, str]]  # symbol, side, price, quantity
    sent: dict[str, int]


def cascade(market: list[Symbol], loaded: Loaded, scale: Scale) -> Cascade:
    """The live stream: each symbol's walk carries on from its history, and no two
    liquidations of a symbol are the same (the store would refuse the second)."""
    rng = np.random.default_rng(23)
    offsets, which = market_model.live_order(market, scale.live_rate, scale.live_seconds, rng)
    frames: list[tuple[str, str, str, str]] = [("", "", "", "")] * len(offsets)
    seen: set[tuple[str, int, str, str, str]] = set()
    sent: dict[str, int] = {}
    for symbol, at, walk in market_model.walks(market, offsets, which, loaded.last_price, rng):
        lot = 0.001 if symbol.price >= 1.0 else 1.0
        for position, price, quantity, short in zip(
            at.tolist(),
            walk.price.tolist(),
            walk.quantity.tolist(),
            walk.short.tolist(),
            strict=True,
        ):
            side = "BUY" if short else "SELL"  # Binance: a BUY order closes a short
            text = f"{price:.{symbol.decimals}f}"
            at_ms = int(offsets[position])
            while (key := (symbol.name, at_ms, side, text, f"{quantity:.3f}")) in seen:
                quantity += lot
            seen.add(key)
            frames[position] = key[0], side, text, key[4]
        sent[symbol.name] = len(at)
    return Cascade(offsets.tolist(), frames, sent)


class ProbeWatch:
    """What arrives on the probe symbol's topic: (time, event_count) of each
    `heatmap:PROBE:1h` message and (time, epoch) of every one, and the arrival time of
    each `liquidations:PROBE` one."""

    def __init__(self) -> None:
        self.counts: list[tuple[float, int]] = []
        self.epochs: list[tuple[float, str]] = []
        self.liquidations: list[float] = []
        self.channel = heatmap_channel(PROBE, "1h")

    @classmethod
    async def started(cls, url: str) -> tuple[ProbeWatch, RedisBroker, asyncio.Task[None]]:
        """A watch reading the probe's topic (subscribed once this returns): the watch,
        its broker (close it) and the reading task (cancel it)."""
        broker = RedisBroker(url)
        await broker.subscribe({topic_for(heatmap_channel(PROBE, "1h"))})
        watch = cls()
        watching = asyncio.create_task(watch.run(broker))
        while not broker.status().connected:  # noqa: ASYNC110 - a status field, no event
            await asyncio.sleep(0.05)
        return watch, broker, watching

    async def run(self, broker: RedisBroker) -> None:
        loop = asyncio.get_running_loop()
        async for _, payload in broker.messages():
            now = loop.time()
            header = decode_header(payload)
            if header.ch == f"liquidations:{PROBE}":
                self.liquidations.append(now)
            elif header.ch == self.channel:
                self.epochs.append((now, header.epoch))
                if header.type == "snapshot":
                    statistics = decode_snapshot(header.data).statistics
                else:
                    statistics = decode_diff_body(header.data).statistics
                if statistics is not None:
                    self.counts.append((now, statistics.event_count))

    def seen(self) -> int:
        return self.counts[-1][1] if self.counts else 0

    def latencies(self, sent: list[float]) -> list[float]:
        """Per probe (in order, the window's count going 1, 2, ...): first message whose
        count includes it, minus its send time; ms."""
        found: list[float] = []
        counts = iter(self.counts)
        at, count = next(counts, (math.nan, -1))
        for number, sent_at in enumerate(sent, 1):
            while count < number:
                at, count = next(counts, (math.nan, math.inf))
            found.append((at - sent_at) * 1_000)
        return found


async def live_part(
    fake: FakeBinance,
    url: str,
    client: Redis,
    ingest: Started,
    market: list[Symbol],
    loaded: Loaded,
    scale: Scale,
) -> list[Figure]:
    stream = cascade(market, loaded, scale)
    watch, broker, watching = await ProbeWatch.started(url)
    before = await _status(client)
    pid = ingest.process.pid
    print(f"  sending ({load_average()})")
    loop = asyncio.get_running_loop()
    probes = int(scale.live_seconds * 1_000 / PROBE_EVERY_MS)
    cpu_before, bench_before = cpu_seconds(pid), time.process_time()
    began = loop.time()
    sending = await send_cascade(fake, client, stream, market, loaded, probes, before)
    seconds = loop.time() - began
    probe_sent = sending.probe_sent
    cpu = (cpu_seconds(pid) - cpu_before) / seconds
    bench_cpu = (time.process_time() - bench_before) / seconds
    expected = dict(stream.sent)
    expected[PROBE] = expected.get(PROBE, 0) + probes
    after = await _settled(client, before, sum(expected.values()), watch, probes)
    caught_up = loop.time() - began
    work = (cpu_seconds(pid) - cpu_before) / seconds
    watching.cancel()
    await broker.close()
    held_before, held_after = held_events(before), held_events(after)
    accepted = {s: held_after.get(s, 0) - held_before.get(s, 0) for s in held_after}
    short = {s: (n, accepted.get(s, 0)) for s, n in expected.items() if accepted.get(s, 0) != n}
    rejected = after["processor"]["rejected"] - before["processor"]["rejected"]
    unpublished = after["processor"]["unpublished"] - before["processor"]["unpublished"]
    total = sum(expected.values())
    diffs = watch.latencies(probe_sent)
    liquidation_ms = [
        (arrived - sent_at) * 1_000
        for arrived, sent_at in zip(watch.liquidations, probe_sent, strict=False)
    ]
    liquidation_ms += [math.nan] * (len(probe_sent) - len(liquidation_ms))
    figures = [
        show(
            Figure(
                "2 live",
                "accepted",
                f"{sum(accepted.values()):,} of {total:,} sent in {seconds:.1f} s, "
                f"{rejected} rejected, {len(short)} symbols off; "
                f"{unpublished:,} messages unpublished (dropped after a failed publish)",
                "all",
                met=not short and rejected == 0,
            )
        ),
        show(
            Figure(
                "2 live",
                "ingest CPU while sending",
                f"{cpu:.0%} of one core",
                f"<= {CPU_TARGET:.0%}",
                met=cpu <= CPU_TARGET,
            )
        ),
        show(
            Figure(
                "2 live",
                "ingest CPU until caught up",
                f"{work * seconds:.0f} s in {caught_up:.0f} s: {work:.0%} of the {seconds:.0f} s",
            )
        ),
        show(
            Figure(
                "2 live",
                "backlog",
                f"ingest's feed at most {sending.backlog:,} frames behind (as its status said); "
                f"the look-alike at most {sending.lag_ms:,.0f} ms behind its schedule, "
                f"{bench_cpu:.0%} CPU"
                + (f"; status key missing {sending.stalled} s" if sending.stalled else ""),
            )
        ),
        latency_figure("probe -> its 1h diff", diffs, met=True),
        latency_figure("probe -> its liquidation message", liquidation_ms, met=None),
    ]
    if short:
        print(f"  symbols off (sent, accepted): {dict(list(short.items())[:10])}")
    print(f"  ({load_average()})")
    return figures


class Sending(NamedTuple):
    probe_sent: list[float]  # loop time each probe was pushed
    lag_ms: float  # the most the look-alike fell behind its schedule
    backlog: int  # the most frames pushed and not yet read by ingest's feed
    stalled: int  # seconds the status key was missing (ingest silent for 10 s)


async def send_cascade(
    fake: FakeBinance,
    client: Redis,
    stream: Cascade,
    market: list[Symbol],
    loaded: Loaded,
    probes: int,
    before: dict[str, Any],
) -> Sending:
    """Push the cascade and the probes on their schedule, in TICK_S ticks; once a second,
    how far ingest's feed is behind (its `frames` on the status key)."""
    loop = asyncio.get_running_loop()
    probe_price = loaded.last_price[PROBE]
    probe_decimals = next(s.decimals for s in market if s.name == PROBE)
    frames_before = _feed_frames(before)
    probe_sent: list[float] = []
    lag_ms = 0.0
    backlog = 0
    stalled = 0
    began, began_wall = loop.time(), wall_ms()
    sent = 0
    second = 0
    # (time, frames pushed by then): the status key is up to a second old when read, so
    # what ingest had read is set beside what had been pushed when it was written.
    pushed: list[tuple[float, int]] = [(began, 0)]
    while sent < len(stream.offsets) or len(probe_sent) < probes:
        elapsed = (loop.time() - began) * 1_000
        if sent < len(stream.offsets):
            lag_ms = max(lag_ms, elapsed - stream.offsets[sent])
        while sent < len(stream.offsets) and stream.offsets[sent] <= elapsed:
            symbol, side, price, quantity = stream.frames[sent]
            trade = began_wall + stream.offsets[sent]
            await fake.push(force_order(symbol, side, price, quantity, trade_time=trade))
            sent += 1
        while len(probe_sent) < probes and len(probe_sent) * PROBE_EVERY_MS <= elapsed:
            number = len(probe_sent)
            price = f"{probe_price * (1 + 1e-4 * (number % 100)):.{probe_decimals}f}"
            trade = began_wall + number * PROBE_EVERY_MS
            probe_sent.append(loop.time())
            await fake.push(force_order(PROBE, "SELL", price, "1.000", trade_time=trade))
        pushed.append((loop.time(), sent + len(probe_sent)))
        if elapsed >= (second + 1) * 1_000:
            second += 1
            async with client.pipeline(transaction=True) as pipe:
                raw, ttl_ms = await pipe.get(STATUS_KEY).pttl(STATUS_KEY).execute()
            if raw is None:  # expired: ingest has not written it for 10 s
                stalled += 1
            else:
                written = loop.time() - (STATUS_TTL_S * 1_000 - ttl_ms) / 1_000
                then = pushed[bisect.bisect_right(pushed, (written, math.inf)) - 1][1]
                read = _feed_frames(msgspec.json.decode(raw)) - frames_before
                backlog = max(backlog, then - read)
        await asyncio.sleep(TICK_S)
    return Sending(probe_sent, lag_ms, backlog, stalled)


async def _status(client: Redis) -> dict[str, Any]:
    """ingest's status key, once it is there (it expires after 10 s of silence)."""
    deadline = time.monotonic() + 60
    while (raw := await client.get(STATUS_KEY)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("ingest wrote no status for a minute")
        await asyncio.sleep(0.1)
    decoded: dict[str, Any] = msgspec.json.decode(raw)
    return decoded


def _feed_frames(status: dict[str, Any]) -> int:
    return int(status["sources"]["binance"]["frames"])


def latency_figure(measure: str, latencies: list[float], met: bool | None) -> Figure:
    """p50 and p99 (a probe never seen counts as infinitely late)."""
    late = [math.inf if math.isnan(ms) else ms for ms in latencies]
    p99 = percentile(late, 99)
    missing = sum(math.isinf(ms) for ms in late)
    value = f"p50 {percentile(late, 50):,.0f} ms, p99 {p99:,.0f} ms of {len(late)} probes"
    if missing:
        value += f", {missing} never seen"
    target = f"p99 <= {P99_TARGET_MS:.0f} ms" if met is not None else ""
    return show(Figure("2 live", measure, value, target, met=p99 <= P99_TARGET_MS if met else None))


async def _settled(
    client: Redis, before: dict[str, Any], more: int, watch: ProbeWatch, probes: int
) -> dict[str, Any]:
    """The status once it holds `more` events more than `before` and the last probe's
    diff came, or after SETTLE_S."""
    wanted = sum(held_events(before).values()) + more
    deadline = time.monotonic() + SETTLE_S
    status = before
    while True:
        raw = await client.get(STATUS_KEY)  # None: expired, ingest silent for 10 s
        status = status if raw is None else msgspec.json.decode(raw)
        done = sum(held_events(status).values()) >= wanted and watch.seen() >= probes
        if done or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


# -- 3. flush ---------------------------------------------------------------------------


def part_flush(scale: Scale, baseline: str) -> list[Figure]:
    print(f"3. flush: BTCUSDT with {scale.flush_events:,} events over 30 days ({load_average()})")
    held, new = market_model.month_of_btc(scale.flush_events, scale.flush_steps)
    ours = flush_timings(held, new)
    theirs: dict[str, Any] | None = None
    if baseline:
        print(f"  baseline {baseline} ({load_average()})")
        theirs = baseline_timings(baseline, scale)
    print(f"  ({load_average()})")
    part = f"3 flush ({ours['held']:,} held)"

    def figure(measure: str, key: str, target: float) -> Figure:
        median, p99 = percentile(ours[key], 50), percentile(ours[key], 99)
        before = ""
        if theirs is not None:
            before = (
                f"{percentile(theirs[key], 50):.2f} / {percentile(theirs[key], 99):.2f} ms"
                f" at {theirs['held']:,}"
            )
        return show(
            Figure(
                part,
                measure,
                f"median {median:.2f} ms, p99 {p99:.2f} ms",
                f"<= {target:g} ms",
                before,
                met=p99 <= target,
            )
        )

    return [
        figure("flush, all nine windows due", "book", FLUSH_TARGET_MS),
        figure("flush, the 30d window alone", "30d", FLUSH_TARGET_MS),
        figure("REST snapshot body, 30d", "body", SNAPSHOT_TARGET_MS),
        figure("encode the window's snapshot, 30d", "encode", SNAPSHOT_TARGET_MS),
    ]


def flush_timings(held: Liquidations, new: Liquidations) -> dict[str, Any]:
    """`timed_steps` on a book loaded as a restore without checkpoint loads it."""
    symbol = "BTCUSDT"
    processor = LiquidationProcessor(ProcessorConfig(), epoch="bench")
    processor.track(symbol, FLUSH_END - 31 * DAY_MS)
    now = FLUSH_END
    restore_book(processor, symbol, Named(rows_of(held, 1), EXCHANGES), None, now)
    fanout = Fanout(lambda: now)  # its clock only stamps history entries
    bodies = SnapshotBodies(fanout)
    for message in processor.flush(now) + processor.snapshots_of(symbol, now):
        fanout.publish(encode_message(message))
    events = events_of(rows_of(new, len(held) + 1), EXCHANGES, symbol)
    timings = timed_steps(processor, fanout, bodies, encode_message, events, symbol)
    if timings["published"] != len(events) // HANDFUL:
        print(f"  the 30d window published {timings['published']} diffs in each step's stead")
    return timings


def baseline_timings(revision: str, scale: Scale) -> dict[str, Any]:
    """Part 3 on `revision`'s hub, in its own process (`history_baseline.py`)."""
    with tempfile.TemporaryDirectory(prefix="bench-history-baseline-") as tree:
        extract_hub(revision, Path(tree))
        child = ROOT / "bench" / "history_baseline.py"
        count, steps = str(scale.flush_events), str(scale.baseline_steps)
        done = subprocess.run(
            [sys.executable, str(child), tree, count, steps],
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, Any] = msgspec.json.decode(done.stdout)
    return result


# -- 5. channels --------------------------------------------------------------------------


def part_channels(scale: Scale) -> list[Figure]:
    """What the channel histories of a fan-out hold at 300 symbols and 2,000 events/s."""
    print(
        f"5. channels: {scale.symbols} symbols, {scale.live_rate:,.0f} events/s for "
        f"{scale.channel_seconds:g} s of simulated time ({load_average()})"
    )
    market = market_model.symbols(scale.symbols)
    events = _simulated_cascade(market, scale)
    began = time.process_time()
    published = _published(market, events, scale)
    cpu = time.process_time() - began
    # The fan-out is fed afterwards, traced: tracing the processor too would take hours.
    gc.collect()
    tracemalloc.start()
    now = FLUSH_END
    fanout = Fanout(lambda: now)
    for at, payload in published:
        now = at
        fanout.publish(bytes(memoryview(payload)))  # a copy, made while traced
    del published
    gc.collect()
    held = fanout.history.held
    messages = sum(len(state.history) for state in fanout.channels.values())
    traced = tracemalloc.get_traced_memory()[0]
    for state in fanout.channels.values():
        state.history.clear()
    gc.collect()
    histories = traced - tracemalloc.get_traced_memory()[0]
    channels = len(fanout.channels)
    del fanout
    gc.collect()
    whole = traced - tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"  {len(events):,} events, {channels:,} channels ({load_average()})")
    part = "5 channels"
    return [
        show(
            Figure(
                part,
                "histories, the budget's count",
                f"{held / MIB:.1f} MiB ({messages:,} messages)",
                f"<= {HISTORIES_TARGET_MIB:g} MiB",
                met=held / MIB <= HISTORIES_TARGET_MIB,
            )
        ),
        show(
            Figure(
                part,
                "histories, tracemalloc",
                f"{histories / MIB:.1f} MiB",
                f"<= {HISTORIES_TARGET_MIB:g} MiB",
                met=histories / MIB <= HISTORIES_TARGET_MIB,
            )
        ),
        show(Figure(part, "whole fan-out (with replicas), tracemalloc", f"{whole / MIB:.1f} MiB")),
        show(
            Figure(
                part,
                "processor CPU (apply, flush, encode)",
                f"{cpu:.0f} s for {scale.channel_seconds:g} s of events: "
                f"{cpu / scale.channel_seconds:.1f} cores",
            )
        ),
    ]


def _published(
    market: list[Symbol], events: list[LiquidationEvent], scale: Scale
) -> list[tuple[int, bytes]]:
    """(simulated time, encoded message) of everything the processor emits for `events`,
    flushed every FLUSH_MS."""
    processor = LiquidationProcessor(ProcessorConfig(), epoch="bench")
    for symbol in market:
        processor.track(symbol.name, FLUSH_END - 31 * DAY_MS)
    published: list[tuple[int, bytes]] = []
    index = 0
    for step in range(1, int(scale.channel_seconds * 1_000 / FLUSH_MS) + 1):
        now = FLUSH_END + step * FLUSH_MS
        while index < len(events) and events[index].time <= now:
            messages = processor.apply(events[index], now).messages
            published.extend((now, encode_message(message)) for message in messages)
            index += 1
        published.extend((now, encode_message(message)) for message in processor.flush(now))
    return published


def _simulated_cascade(market: list[Symbol], scale: Scale) -> list[LiquidationEvent]:
    rng = np.random.default_rng(25)
    offsets, which = market_model.live_order(market, scale.live_rate, scale.channel_seconds, rng)
    times = FLUSH_END + offsets
    events: list[LiquidationEvent | None] = [None] * len(times)
    prices = {symbol.name: symbol.price for symbol in market}
    for symbol, at, walk in market_model.walks(market, times, which, prices, rng):
        for position, event in zip(
            at.tolist(), events_of(rows_of(walk, 1), EXCHANGES, symbol.name), strict=True
        ):
            events[position] = event
    return [event for event in events if event is not None]


# -- 4. demo ------------------------------------------------------------------------------


def part_demo(minutes: float, every_s: float) -> list[Figure]:
    """VmRSS of `serve --demo` every `every_s` from its start; minute 10 of 60 is the
    sample at a sixth of the run."""
    print(f"4. demo: serve --demo for {minutes:g} min, RSS every {every_s:g} s ({load_average()})")
    port = free_port()
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-history-demo-") as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HEATMAP_", "HUB_"))}
        env.pop("REDIS_URL", None)
        env |= {"PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "PORT": str(port)}
        env["HEATMAP_DATA_DIR"] = data_dir
        command = [sys.executable, "-m", "hub", "serve", "--demo", "--log-level", "warning"]
        began = time.monotonic()
        process = subprocess.Popen(command, env=env)
        try:
            while not get_ok(f"http://127.0.0.1:{port}/health"):
                if process.poll() is not None or time.monotonic() - began > 60:
                    raise RuntimeError(f"serve --demo did not answer /health ({process.poll()})")
                time.sleep(0.2)
            for number in range(1, int(minutes * 60 / every_s) + 1):
                time.sleep(max(0.0, began + number * every_s - time.monotonic()))
                if process.poll() is not None:
                    raise RuntimeError(f"serve --demo exited with {process.returncode}")
                at = time.monotonic() - began
                samples.append((at, rss_kib(process.pid) * 1024 / MB))
                print(
                    f"  {at / 60:6.1f} min  RSS {samples[-1][1]:7.1f} MB  ({load_average()})",
                    flush=True,
                )
        finally:
            stop(process)
    tenth = samples[max(0, len(samples) // 6 - 1)]
    last = samples[-1]
    ratio = last[1] / tenth[1]
    return [
        show(
            Figure(
                "4 demo",
                f"RSS at {tenth[0] / 60:.1f} and {last[0] / 60:.1f} min",
                f"{tenth[1]:.0f} MB, {last[1]:.0f} MB: {ratio - 1:+.1%}",
                f"within +-{DEMO_TOLERANCE:.0%}",
                met=abs(ratio - 1) <= DEMO_TOLERANCE,
            )
        )
    ]


# -- summary ------------------------------------------------------------------------------


def summary(figures: list[Figure]) -> None:
    print(f"\nsummary ({load_average()}, {os.cpu_count()} cores)")
    widths = [30, 40, 52, 18, 24]
    header = ("part", "measure", "figure", "target", "baseline")
    print("  ".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True)) + "  verdict")
    for figure in figures:
        verdict = {True: "ok", False: "MISSED", None: ""}[figure.met]
        cells = (figure.part, figure.measure, figure.value, figure.target, figure.baseline)
        print("  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)) + f"  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help="comma list: " + ", ".join(PARTS))
    parser.add_argument("--smoke", action="store_true", help="every part at a tiny scale")
    parser.add_argument("--demo-minutes", type=float, default=60.0)
    parser.add_argument(
        "--days", type=float, help="history of parts 1 and 2 (default 30; smoke 0.2)"
    )
    parser.add_argument("--baseline", default=BASELINE, help="git revision; '' for none")
    parser.add_argument(
        "--rate",
        type=float,
        help="liquidations/s of parts 2 and 5 (default 2,000): where a machine saturates",
    )
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    scale = SMOKE if args.smoke else FULL
    if args.days is not None:
        scale = scale._replace(days=args.days)
    if args.rate is not None:
        scale = scale._replace(live_rate=args.rate)
    demo_minutes = 0.5 if args.smoke else args.demo_minutes
    print(f"bench_history{' --smoke' if args.smoke else ''}: {', '.join(sorted(parts))}")
    figures: list[Figure] = []
    if parts & {"load", "live"}:
        figures += part_load_and_live(scale, live="live" in parts)
    if "flush" in parts:
        figures += part_flush(scale, args.baseline)
    if "channels" in parts:
        figures += part_channels(scale)
    if "demo" in parts:
        figures += part_demo(demo_minutes, scale.demo_every_s)
    summary(figures)


if __name__ == "__main__":
    main()
