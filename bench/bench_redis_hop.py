"""What the Redis hop between `ingest` and a `web` process costs, against the in-memory broker.

Run from the repository root: ``python bench/bench_redis_hop.py`` (about 40 s on 2 quiet cores).
It starts its own redis-server on a free loopback port (never 6379) and stops it at the end.

Messages: a real processor's BTCUSDT 1h window (3,000 events held, the default 15 % range
and 0.3 % bandwidth, so the 901-value density of production) is flushed after every 5 new
events; DISTINCT of those diffs (changed bins, statistics, clusters when they moved, and
the density's changed values, as `flush()` makes them) are cycled with seq 1..N behind a snapshot at
seq 0. Every message is encoded with `encode_message` before the timed part (the cost of
encoding a full diff is printed: ingest pays it once per message, outside this hop).

Brokers: `memory` (MemoryBroker), `redis` (RedisBroker as the hub builds it; redis-py 8
speaks RESP3 by default, so pub/sub messages arrive as push messages), `redis/resp2` (the
same RedisBroker given `?protocol=2` in its URL; nothing else differs).

(1) Throughput: N diffs published with `publish_many` in batches of B (as ingest does per
    flush; the publisher yields to the loop between batches), received by a second broker
    subscribed to `topic_for(channel)` and fed to `Fanout.publish`, which applies each diff
    to the replica as a web process does. Messages/s from the first publish to the last
    diff applied. Rows "in-proc": publisher and subscriber share this event loop (one
    core does both ends). Rows "child": the publisher is a separate process, as ingest is,
    and only the web side runs here. cpu s = this process; pub s and pub cpu s = the
    child's wall and CPU time from its first publish to its last (it never waits for the
    subscriber); redis cpu s = redis-server's (INFO cpu). Redis keeps its default pub/sub
    output buffer limit (32 MB hard, 8 MB for 60 s), so a subscriber that falls far behind
    is disconnected, as a web process would be: then `resync` > 0, `applied` < N and msg/s
    says "lost". Rows "nolimit" lift that limit for the run, so the backlog queues in Redis
    and the rate is what the web side can apply.
(2) Added latency: RATE msg/s for SECONDS s, each wake-up publishing the messages then due
    (in-process publisher); per message, perf_counter_ns just before `publish_many` to just
    after `Fanout.publish` (a dict seq -> sent time). Percentiles for each broker, and the
    difference to memory.
Figures are printed; nothing is asserted about time.
"""

from __future__ import annotations

import asyncio
import gc
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec
import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
from hub.fanout.broker import RESYNC_TOPIC, Broker, topic_for
from hub.fanout.broker_memory import MemoryBroker
from hub.fanout.broker_redis import RedisBroker
from hub.fanout.codec import encode_message
from hub.fanout.fanout import Fanout
from hub.models import ChannelMessage, HeatmapDiff, LiquidationEvent
from tests.redis_server import RedisServer

CHANNEL = "heatmap:BTCUSDT:1h"
TOPIC = topic_for(CHANNEL)
EPOCH = "BTCUSDT.bench"
START = 1_795_176_000_000
HELD_EVENTS = 3_000  # in the window before the snapshot, spread over its hour
EVENTS_PER_FLUSH = 5
FLUSH_MS = 50
DISTINCT = 400  # real diffs made by the window, then cycled (a real flush costs ~0.6 ms)

N_THROUGHPUT = 20_000
N_UNBATCHED = 5_000  # batches of 1 are slow; the rate is steady long before
RATE = 2_000  # msg/s for the latency part
SECONDS = 5.0
DRAIN_TIMEOUT = 30.0  # s to wait for the last diff before calling the rest lost
QUIET_NS = 500_000_000  # after the publisher is done, this long without a message: lost
W = 26  # width of the first column


# -- the messages ------------------------------------------------------------------------


def realistic_diffs() -> tuple[bytes, list[HeatmapDiff]]:
    """The encoded snapshot (seq 0) and DISTINCT diffs of a real BTCUSDT 1h window."""
    rng = np.random.default_rng(11)
    total = HELD_EVENTS + DISTINCT * EVENTS_PER_FLUSH
    walk = 60_000.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-4, total)))
    # Liquidations land around the market price, not on it: ~5 bins of 20 USD per flush.
    prices = np.round(walk * (1.0 + rng.normal(0.0, 1.5e-3, total)), 1).tolist()
    notionals = rng.lognormal(math.log(4_000.0), 1.6, total).tolist()
    longs = (rng.random(total) < 0.55).tolist()
    processor = LiquidationProcessor(ProcessorConfig(), epoch=EPOCH)
    processor.track("BTCUSDT", START)

    def event(i: int, at: int) -> LiquidationEvent:
        side = "long" if longs[i] else "short"
        return LiquidationEvent("binance", "BTCUSDT", side, prices[i], 1.0, notionals[i], at)

    spacing = 3_600_000 // HELD_EVENTS
    for i in range(HELD_EVENTS):
        at = START + i * spacing
        processor.apply(event(i, at), at)
    now = START + HELD_EVENTS * spacing
    processor.flush(now)
    window = processor.books["BTCUSDT"].windows["1h"]
    snapshot = window.snapshot()
    snapshot.seq = 0
    encoded = encode_message(ChannelMessage(CHANNEL, "snapshot", 0, EPOCH, snapshot))
    diffs: list[HeatmapDiff] = []
    i = HELD_EVENTS
    while len(diffs) < DISTINCT:
        now += FLUSH_MS
        for _ in range(EVENTS_PER_FLUSH):
            processor.apply(event(i, now), now)
            i += 1
        diffs.extend(m.data for m in processor.flush(now) if m.ch == CHANNEL and m.type == "diff")
    return encoded, diffs


def encode_diffs(diffs: list[HeatmapDiff], n: int) -> list[bytes]:
    """Diffs seq 1..n, cycling through `diffs`, each message encoded by `encode_message`
    (the bulky `data` is encoded once per distinct diff, so making 30,000 stays fast)."""
    data = [msgspec.Raw(msgspec.json.encode(d)) for d in diffs]
    return [
        encode_message(ChannelMessage(CHANNEL, "diff", seq, EPOCH, data[(seq - 1) % len(data)]))
        for seq in range(1, n + 1)
    ]


def encode_cost_us(diffs: list[HeatmapDiff]) -> float:
    """What ingest pays per diff: encode_message of the whole message, data included."""
    began = time.perf_counter()
    for seq, diff in enumerate(diffs, 1):
        encode_message(ChannelMessage(CHANNEL, "diff", seq, EPOCH, diff))
    return (time.perf_counter() - began) / len(diffs) * 1e6


def batched(payloads: list[bytes], size: int) -> list[list[tuple[str, bytes]]]:
    return [
        [(TOPIC, p) for p in payloads[start : start + size]]
        for start in range(0, len(payloads), size)
    ]


# -- the web side: broker -> Fanout ------------------------------------------------------


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Sink:
    """Feeds every message to a Fanout, as the relay does; notes when diffs were applied."""

    last_seq: int
    fanout: Fanout = field(default_factory=lambda: Fanout(wall_ms))
    sent_ns: dict[int, int] | None = None
    latencies_ns: list[int] = field(default_factory=list)
    received: int = 0
    resyncs: int = 0
    last_ns: int = 0  # any message
    applied_ns: int = 0  # the last one that moved the replica on
    snapshot_in: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def applied(self) -> int:
        return self.fanout.stats.messages - 1  # the snapshot does not count

    async def run(self, broker: Broker) -> None:
        publish, channels = self.fanout.publish, self.fanout.channels
        sent_ns, latencies = self.sent_ns, self.latencies_ns
        previous = -1
        async for topic, payload in broker.messages():
            if topic == RESYNC_TOPIC:
                self.resyncs += 1
                continue
            publish(payload)
            now = self.last_ns = time.perf_counter_ns()
            self.received += 1
            seq = channels[CHANNEL].seq
            if seq == previous:
                continue  # a gap (or duplicate): not applied
            previous, self.applied_ns = seq, now
            if sent_ns is not None and seq in sent_ns:
                latencies.append(now - sent_ns.pop(seq))
            if seq == 0:
                self.snapshot_in.set()
            elif seq == self.last_seq:
                self.done.set()

    async def drain(self, publisher_done: asyncio.Event) -> None:
        """Until the last diff is applied, or the publisher is done and the stream has gone
        quiet (messages were lost: a Redis disconnect), or DRAIN_TIMEOUT."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for _ in range(int(DRAIN_TIMEOUT * 100)):
            if self.done.is_set() or time.monotonic() > deadline:
                return
            quiet = time.perf_counter_ns() - self.last_ns > QUIET_NS
            if publisher_done.is_set() and quiet:
                return
            await asyncio.sleep(0.01)


# -- brokers -----------------------------------------------------------------------------

Pair = tuple[Broker, Broker]  # (publisher, subscriber)


async def make_pair(url: str | None) -> Pair:
    if url is None:
        broker = MemoryBroker()
        return broker, broker
    publisher, subscriber = RedisBroker(url), RedisBroker(url)
    await subscriber.subscribe([TOPIC])
    return publisher, subscriber


async def start_sink(pair: Pair, sink: Sink, snapshot: bytes) -> asyncio.Task[None]:
    """The subscriber running and holding the snapshot: the replica is ready for diffs."""
    publisher, subscriber = pair
    task = asyncio.create_task(sink.run(subscriber))
    if isinstance(subscriber, RedisBroker):
        # `connected` turns true on the pong that follows SSUBSCRIBE: subscriptions live.
        for _ in range(1_000):
            if subscriber.status().connected:
                break
            await asyncio.sleep(0.005)
        else:
            raise RuntimeError("the subscriber did not connect to Redis within 5 s")
    await publisher.publish_many([(TOPIC, snapshot)])
    await asyncio.wait_for(sink.snapshot_in.wait(), 5.0)
    return task


async def stop_sink(pair: Pair, task: asyncio.Task[None]) -> None:
    await pair[0].close()
    if pair[1] is not pair[0]:
        await pair[1].close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def redis_cpu(url: str | None) -> float:
    if url is None:
        return 0.0
    client = redis.asyncio.Redis.from_url(url)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# -- the publisher in its own process, as ingest is --------------------------------------


def child_publisher(url: str, n: int, batch: int, conn: Connection) -> None:
    asyncio.run(_child_publisher(url, n, batch, conn))


async def _child_publisher(url: str, n: int, batch: int, conn: Connection) -> None:
    batches = batched(encode_diffs(realistic_diffs()[1], n), batch)
    broker = RedisBroker(url)
    await broker.publish_many([(f"{TOPIC}.warmup", b"")])  # connected, SPUBLISH chosen
    gc.collect()
    conn.send("ready")
    conn.recv()  # go
    cpu = time.process_time()
    began = time.perf_counter()
    for messages in batches:
        await broker.publish_many(messages)
        await asyncio.sleep(0)
    conn.send((time.perf_counter() - began, time.process_time() - cpu))
    await broker.close()


# -- (1) throughput ----------------------------------------------------------------------


@dataclass
class Case:
    name: str
    url: str | None  # None: MemoryBroker
    batch: int
    n: int
    child: bool = False
    unbuffered: bool = False  # lift Redis' pub/sub output buffer limit: no disconnect


async def buffer_limit(url: str, limit: str | None) -> str:
    """Set Redis' client-output-buffer-limit (None: leave it); returns what it was."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        was = (await client.config_get("client-output-buffer-limit"))["client-output-buffer-limit"]
        if limit is not None:
            await client.config_set("client-output-buffer-limit", limit)
    finally:
        await client.aclose()
    return str(was.decode() if isinstance(was, bytes) else was)


@dataclass
class Throughput:
    rate: float
    seconds: float
    cpu: float
    child_cpu: float | None
    child_seconds: float | None
    redis_cpu: float
    applied: int
    gaps: int
    resyncs: int


async def throughput(case: Case, snapshot: bytes, payloads: list[bytes]) -> Throughput:
    limit = None
    if case.unbuffered:
        assert case.url is not None
        limit = await buffer_limit(case.url, "pubsub 0 0 0")
    try:
        return await _throughput(case, snapshot, payloads)
    finally:
        if limit is not None:
            assert case.url is not None
            await buffer_limit(case.url, limit)


async def _throughput(case: Case, snapshot: bytes, payloads: list[bytes]) -> Throughput:
    pair = await make_pair(case.url)
    sink = Sink(last_seq=case.n)
    task = await start_sink(pair, sink, snapshot)
    publisher_done = asyncio.Event()
    child_cpu = child_seconds = None
    process = None
    if case.child:
        assert case.url is not None
        conn, child_conn = multiprocessing.Pipe()
        process = multiprocessing.get_context("spawn").Process(
            target=child_publisher, args=(case.url, case.n, case.batch, child_conn)
        )
        process.start()
        if not await asyncio.to_thread(conn.poll, 60.0):
            raise RuntimeError("the publisher process did not get ready")
        conn.recv()
    else:
        batches = batched(payloads[: case.n], case.batch)
    gc.collect()
    redis_before = await redis_cpu(case.url)
    cpu_before = time.process_time()
    began = time.perf_counter_ns()
    if process is not None:
        conn.send("go")
        finished = asyncio.create_task(asyncio.to_thread(conn.recv))
        finished.add_done_callback(lambda _: publisher_done.set())
        await sink.drain(publisher_done)
        child_seconds, child_cpu = await asyncio.wait_for(finished, DRAIN_TIMEOUT)
    else:
        publish_many = pair[0].publish_many
        for messages in batches:
            await publish_many(messages)
            await asyncio.sleep(0)  # ingest yields between flushes
        publisher_done.set()
        await sink.drain(publisher_done)
    cpu = time.process_time() - cpu_before
    redis_used = await redis_cpu(case.url) - redis_before
    if process is not None:
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)
        conn.close()
    seconds = (sink.applied_ns - began) / 1e9
    result = Throughput(
        rate=sink.applied / seconds,
        seconds=seconds,
        cpu=cpu,
        child_cpu=child_cpu,
        child_seconds=child_seconds,
        redis_cpu=redis_used,
        applied=sink.applied,
        gaps=sink.fanout.stats.gaps,
        resyncs=sink.resyncs,
    )
    await stop_sink(pair, task)
    return result


# -- (2) latency -------------------------------------------------------------------------


@dataclass
class Latency:
    ms: dict[str, float]
    sent: int
    measured: int
    mean_batch: float


async def latency(url: str | None, snapshot: bytes, payloads: list[bytes]) -> Latency:
    pair = await make_pair(url)
    n = len(payloads)
    sent_ns: dict[int, int] = {}
    sink = Sink(last_seq=n, sent_ns=sent_ns)
    task = await start_sink(pair, sink, snapshot)
    publish_many = pair[0].publish_many
    gc.collect()
    sent = wakeups = 0
    began = time.perf_counter()
    while sent < n:
        due = min(n, int((time.perf_counter() - began) * RATE) + 1)
        if due > sent:
            messages = [(TOPIC, p) for p in payloads[sent:due]]
            stamp = time.perf_counter_ns()
            for seq in range(sent + 1, due + 1):
                sent_ns[seq] = stamp
            await publish_many(messages)
            sent, wakeups = due, wakeups + 1
        await asyncio.sleep(max(0.0, began + sent / RATE - time.perf_counter()))
    done = asyncio.Event()
    done.set()
    await sink.drain(done)
    await stop_sink(pair, task)
    values = np.array(sink.latencies_ns, dtype=np.float64) / 1e6
    ms = {
        "p50": float(np.percentile(values, 50)),
        "p90": float(np.percentile(values, 90)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
    }
    return Latency(ms, n, len(values), n / max(wakeups, 1))


# -- report ------------------------------------------------------------------------------


def redis_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


async def run(server: RedisServer) -> None:
    url = server.url
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()} "
        f"({platform.machine()}, {platform.system()} {platform.release()})"
    )
    print(f"redis:   {redis_version(server.binary)}; redis-py {redis.__version__}")
    print(f"         own redis-server on 127.0.0.1:{server.port}, no persistence")

    snapshot, diffs = realistic_diffs()
    payloads = encode_diffs(diffs, N_THROUGHPUT)
    sizes = [len(p) for p in payloads[:DISTINCT]]
    bins = [len(d.bins) for d in diffs]
    points = statistics.mean(sum(len(run) for _, run in d.density_patch or ()) for d in diffs)
    share_stats = sum(d.statistics is not None for d in diffs) / len(diffs)
    share_clusters = sum(d.clusters is not None for d in diffs) / len(diffs)
    print(
        f"messages: {CHANNEL}; snapshot {len(snapshot):,} B; diffs: {points:.0f} density values, "
        f"{np.mean(bins):.1f} bins (max {max(bins)}), statistics in {share_stats:.0%}, "
        f"clusters in {share_clusters:.0%}; {np.mean(sizes):,.0f} B mean "
        f"({min(sizes):,}-{max(sizes):,})"
    )
    print(
        f"encode_message of a full diff: {encode_cost_us(diffs):.1f} us "
        "(before the timed part; ingest pays it once per message)"
    )

    brokers: dict[str, str | None] = {
        "memory": None,
        "redis": url,
        "redis/resp2": f"{url}?protocol=2",
    }
    cases = [Case(name, where, 50, N_THROUGHPUT) for name, where in brokers.items()]
    cases += [
        Case("redis child", url, 50, N_THROUGHPUT, child=True),
        Case("redis child nolimit", url, 50, N_THROUGHPUT, child=True, unbuffered=True),
        Case(
            "redis/resp2 child nolimit",
            brokers["redis/resp2"],
            50,
            N_THROUGHPUT,
            child=True,
            unbuffered=True,
        ),
    ]
    cases += [Case(name, where, 1, N_UNBATCHED) for name, where in brokers.items()]

    print()
    print("(1) throughput: publish_many -> broker -> Fanout.publish, end to end")
    print(
        f"{'broker, publisher':<{W}} {'batch':>5} {'diffs':>6} {'msg/s':>7} {'MB/s':>5} "
        f"{'wall s':>6} {'cpu s':>5} {'pub s':>5} {'pub cpu s':>9} {'redis cpu s':>11} "
        f"{'applied':>7} {'gaps':>4} {'resync':>6}"
    )
    mean_size = sum(len(p) for p in payloads) / len(payloads)
    for case in cases:
        r = await throughput(case, snapshot, payloads)
        label = case.name if case.child else f"{case.name} in-proc"
        whole = r.applied == case.n  # else the rate is not a capacity
        rate = f"{r.rate:,.0f}" if whole else "lost"
        volume = f"{r.rate * mean_size / 1e6:.0f}" if whole else "-"
        print(
            f"{label:<{W}} {case.batch:>5} {case.n:>6} {rate:>7} "
            f"{volume:>5} {r.seconds:>6.2f} {r.cpu:>5.2f} "
            f"{seconds(r.child_seconds):>5} {seconds(r.child_cpu):>9} {r.redis_cpu:>11.2f} "
            f"{r.applied:>7} {r.gaps:>4} {r.resyncs:>6}"
        )
    print("target: >= 20,000 diff msg/s from ingest through Redis to one web process")

    paced = payloads[: int(RATE * SECONDS)]
    print()
    print(
        f"(2) added latency: {RATE:,} msg/s for {SECONDS:.0f} s, perf_counter_ns just before "
        "publish_many -> just after Fanout.publish"
    )
    results = {name: await latency(where, snapshot, paced) for name, where in brokers.items()}
    print(
        f"{'broker':<{W}} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'measured':>13} {'msgs/wake':>9}"
    )
    for name, r in results.items():
        print(
            f"{name:<{W}} {r.ms['p50']:>7.3f} {r.ms['p90']:>7.3f} {r.ms['p99']:>7.3f} "
            f"{r.ms['max']:>7.3f} {f'{r.measured:,}/{r.sent:,}':>13} {r.mean_batch:>9.1f}"
        )
    for name in brokers:
        if name != "memory":
            added = {k: v - results["memory"].ms[k] for k, v in results[name].ms.items()}
            print(
                f"{f'{name} - memory':<{W}} {added['p50']:>7.3f} {added['p90']:>7.3f} "
                f"{added['p99']:>7.3f} {added['max']:>7.3f}"
            )


def machine_busy() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / ticks, sum(fields[:8]) / ticks


def own_cpu() -> float:
    """This process and its waited-for children (redis-server, the publisher processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


async def main() -> None:
    server = RedisServer()
    if server.port == 6379:
        raise RuntimeError("refusing port 6379")
    before, own_before = machine_busy(), own_cpu()
    server.start()
    try:
        await run(server)
    finally:
        server.stop()
    after = machine_busy()
    if before is not None and after is not None:
        other = after[0] - before[0] - (own_cpu() - own_before)
        print(
            f"\nother processes used {other:.1f} CPU-s of the machine's "
            f"{after[1] - before[1]:.1f} during this run (load average now "
            f"{os.getloadavg()[0]:.2f}): figures are only as quiet as that"
        )


if __name__ == "__main__":
    asyncio.run(main())
