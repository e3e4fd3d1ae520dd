"""Fan-out: the hub against its Python peers, delivering `liquidations:{SYMBOL}` messages.

Run from the repository root: ``python bench/bench_fanout.py`` (a few minutes), or
``python bench/bench_fanout.py --smoke`` (tiny N, every server kind, exit 0 when each
delivered something; CI runs it). Install the `bench` extra for the peers
(``pip install -e '.[bench]'``); without python-socketio that server is skipped, without
uvloop the peers and clients run on asyncio's own loop (both are said in the output).

Servers, each started afresh for every run, against the same upstream look-alike and
load clients (runs outer, servers inner, so a table's rows are minutes apart):
- `hub serve`: ``python -m hub serve`` (in-memory broker), the hub's public CLI and /ws.
- `hub serve (100 ms writes)`: the same with HUB_WS_WRITE_DELAY_MS=100 (a client's frames
  held up to 100 ms to share a write: CPU traded for latency).
- `hub web+ingest`: ``ingest`` publishing to a private redis-server, one ``web`` serving.
- `socketio`, `broadcast`, `write floor`: the peers of `bench/fanout_peers.py` (the last
  is no server to run: one write a delivery and nothing else, the floor of the others).

Setting: N clients over 5 symbols, each subscribed to one `liquidations:{SYMBOL}` channel
(N/5 subscribers a channel). Offered deliveries/s = upstream events/s x subscribers per
symbol. Runs: 1k at 20k/s, 10k at 20k/s, 1k clients saturated (far more offered than any
server delivers). Per run: the clients connect and subscribe, idle RSS is read, then a
warm-up, a measured interval [t0, t1], and a drain (until no message came for 2 s).
- delivered/s: messages arriving at clients within [t0, t1], per second.
- complete: of the messages the upstream sent in [t0, t1] (x subscribers), the share that
  arrived by the end of the drain.
- latency percentiles: over the messages that arrived in [t0, t1], from the upstream's
  send time to the client's receipt (this machine's wall clock, in µs); for a server that
  falls behind, how far behind it is.
- CPU µs/delivery: utime+stime of the serving process (/proc/PID/stat) over [t0, t1] per
  delivery; "all" adds every server-side process (ingest and redis-server for web+ingest).
- KiB/idle conn: (RSS with the N clients connected and subscribed, nothing flowing) minus
  (RSS before they connected), over N.
- closed: client connections the server closed during the run (e.g. as too slow).
- client µs/msg: the load workers' CPU per message, to show they are not the bottleneck.
- others: the share of the machine's CPU taken by processes outside this bench during
  [t0, t1] (/proc/stat): the machine is shared, and wall-clock figures suffer from it.
Figures are printed; nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench.bench_redis_hop import machine_busy
from bench.fanout_load import upstream_process, uvloop
from bench.fanout_servers import (
    SERVERS,
    START_TIMEOUT,
    SYMBOLS,
    WRITE_DELAY_MS,
    Clients,
    Server,
    ask,
    clients,
    cpu_seconds,
    cpu_times,
    rss_kib,
    started,
)

DRAIN_MAX = 15.0  # s after t1 to wait for messages still on their way
DRAIN_QUIET = 2.0  # ...and no new message for this long ends the drain (a busy server pauses)


@dataclass(frozen=True)
class Run:
    name: str
    clients: int
    offered: float  # deliveries/s
    warmup: float
    seconds: float


@dataclass(frozen=True)
class Plan:
    runs: list[Run]
    workers: int
    settle: float  # s between connecting and reading idle RSS


AT_20K = Run("1k clients, 20k/s", 1_000, 20_000, 2.0, 5.0)
MANY = Run("10k clients, 20k/s", 10_000, 20_000, 3.0, 5.0)
SATURATED = Run("1k clients, saturated (150k/s offered)", 1_000, 150_000, 2.0, 5.0)
FULL = Plan([AT_20K, MANY, SATURATED], workers=4, settle=2.0)
RUN_KEYS = {"1k": AT_20K, "10k": MANY, "saturated": SATURATED}
SMOKE = Plan([Run("smoke: 20 clients, 200/s", 20, 200, 0.3, 1.0)], workers=2, settle=0.2)


# -- one run -----------------------------------------------------------------------------


@dataclass
class Row:
    server: str
    offered: float  # deliveries/s actually offered in [t0, t1]
    delivered: float
    complete: float
    cpu_us: float  # serving process, per delivery
    kernel_us: float  # the part of cpu_us spent in the kernel (the writes, mostly)
    cpu_all_us: float
    client_us: float  # the load clients' CPU per message they received
    others: float  # share of the machine's CPU time taken by processes outside the bench
    p50: float
    p99: float
    max: float
    closed: int
    idle_kib: float


def measure(
    run: Run, server: Server, crowd: Clients, upstream: Connection, upstream_pid: int, idle: float
) -> Row:
    subscribers = run.clients / len(SYMBOLS)
    ask(upstream, "rate", run.offered / subscribers)
    time.sleep(run.warmup)
    crowd.ask_all("reset")
    ask(upstream, "stamps")  # forget the warm-up's
    workers = [p.pid for p in crowd.processes if p.pid is not None]
    bench_pids = [*workers, upstream_pid, os.getpid()]
    machine0, cpu0 = machine_busy(), [cpu_seconds(pid) for pid in server.pids]
    kernel0 = cpu_times(server.pids[0])[1]
    clients0, bench0 = sum(map(cpu_seconds, workers)), sum(map(cpu_seconds, bench_pids))
    t0 = time.time_ns() // 1_000
    time.sleep(run.seconds)
    t1 = time.time_ns() // 1_000
    machine1, cpu1 = machine_busy(), [cpu_seconds(pid) for pid in server.pids]
    kernel1 = cpu_times(server.pids[0])[1]
    clients1, bench1 = sum(map(cpu_seconds, workers)), sum(map(cpu_seconds, bench_pids))
    ask(upstream, "rate", 0)
    stamps = ask(upstream, "stamps")[1]
    drain(crowd)
    replies = crowd.ask_all("report")
    sent = np.concatenate([np.frombuffer(r[1], dtype=np.int64) for r in replies])
    received = np.concatenate([np.frombuffer(r[2], dtype=np.int64) for r in replies])
    closed = sum(r[3] for r in replies)
    upstream_sent = np.concatenate([np.frombuffer(b, dtype=np.int64) for b in stamps.values()])
    offered = int(((upstream_sent >= t0) & (upstream_sent < t1)).sum()) * subscribers
    sent_in_window = int(((sent >= t0) & (sent < t1)).sum())
    # Over what arrived in the interval: for a server that keeps up, the same messages as
    # those sent in it; for one that falls behind, how far behind it is.
    arrived_in_window = (received >= t0) & (received < t1)
    arrived = int(arrived_in_window.sum())
    latency_ms = (received[arrived_in_window] - sent[arrived_in_window]) / 1_000
    seconds = (t1 - t0) / 1e6
    deliveries = max(arrived, 1)
    used = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    others = float("nan")
    if machine0 is not None and machine1 is not None:
        ours = sum(used) + bench1 - bench0
        others = (machine1[0] - machine0[0] - ours) / (machine1[1] - machine0[1])
    pct = np.percentile(latency_ms, [50, 99]) if latency_ms.size else [np.nan, np.nan]
    return Row(
        server=server.name,
        offered=offered / seconds,
        delivered=arrived / seconds,
        complete=sent_in_window / offered if offered else 0.0,
        cpu_us=used[0] / deliveries * 1e6,
        kernel_us=(kernel1 - kernel0) / deliveries * 1e6,
        cpu_all_us=sum(used) / deliveries * 1e6,
        client_us=(clients1 - clients0) / deliveries * 1e6,
        others=others,
        p50=float(pct[0]),
        p99=float(pct[1]),
        max=float(latency_ms.max()) if latency_ms.size else float("nan"),
        closed=closed,
        idle_kib=idle,
    )


def drain(crowd: Clients) -> None:
    """Until no message arrived for DRAIN_QUIET s, at most DRAIN_MAX s."""
    deadline = time.monotonic() + DRAIN_MAX
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        total = sum(r[1] for r in crowd.ask_all("count"))
        if total != last:
            last, quiet_since = total, time.monotonic()
        elif time.monotonic() - quiet_since >= DRAIN_QUIET:
            return
        time.sleep(0.1)


# -- report ------------------------------------------------------------------------------

HEADER = (
    f"{'server':<26} {'offered/s':>9} {'delivered/s':>11} {'complete':>8} "
    f"{'CPU us/deliv':>12} {'kernel':>6} {'(all procs)':>11} "
    f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
    f"{'closed':>6} {'KiB/idle conn':>13} {'client us/msg':>13} {'others':>6}"
)


def line(row: Row) -> str:
    return (
        f"{row.server:<26} {row.offered:>9,.0f} {row.delivered:>11,.0f} "
        f"{row.complete:>8.2%} {row.cpu_us:>12.2f} "
        f"{row.kernel_us:>6.2f} {row.cpu_all_us:>11.2f} "
        f"{row.p50:>8.2f} {row.p99:>8.2f} {row.max:>8.1f} {row.closed:>6} "
        f"{row.idle_kib:>13.1f} {row.client_us:>13.2f} {row.others:>6.0%}"
    )


def table(run: Run, rows: dict[str, Row]) -> str:
    title = f"{run.name}: {run.clients:,} clients, {run.clients // len(SYMBOLS):,} a symbol"
    title += f"; warm-up {run.warmup:g} s, measured {run.seconds:g} s"
    return "\n".join([title, HEADER, *(line(row) for row in rows.values())])


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else a / b


def verdict(value: float | None, text: str, met: bool | None) -> str:
    if value is None:
        return f"{text}: n/a (a server is missing from the run)"
    return f"{text}: {value:.2f}x -> {'met' if met else 'NOT met'}"


def summary(results: dict[str, dict[str, Row]]) -> list[str]:
    def row(run: str, server: str) -> Row | None:
        return results.get(run, {}).get(server)

    def field(run: str, server: str, name: str) -> float | None:
        found = row(run, server)
        return None if found is None else float(getattr(found, name))

    at20k, saturated, many = AT_20K.name, SATURATED.name, MANY.name
    cpu = ratio(field(at20k, "hub serve", "cpu_us"), field(at20k, "broadcast", "cpu_us"))
    rate = ratio(
        field(saturated, "hub serve", "delivered"), field(saturated, "socketio", "delivered")
    )
    web = ratio(field(at20k, "hub web+ingest", "cpu_us"), field(at20k, "hub serve", "cpu_us"))
    web_all = ratio(
        field(at20k, "hub web+ingest", "cpu_all_us"), field(at20k, "hub serve", "cpu_all_us")
    )
    lines = [
        verdict(cpu, "hub serve CPU per delivery / broadcast's, 1k at 20k/s (<= 0.7x)",
                cpu is not None and cpu <= 0.7),
        verdict(rate, "hub serve delivered/s / socketio's, saturated (>= 5x)",
                rate is not None and rate >= 5),
        verdict(web, "hub web CPU per delivery / serve's, 1k at 20k/s (<= 1.3x)",
                web is not None and web <= 1.3),
    ]  # fmt: skip
    if web_all is not None:
        lines.append(f"  (web + ingest + redis-server / serve: {web_all:.2f}x)")
    floor = ratio(field(at20k, "write floor", "cpu_us"), field(at20k, "broadcast", "cpu_us"))
    floor_kernel = ratio(
        field(at20k, "write floor", "kernel_us"), field(at20k, "broadcast", "cpu_us")
    )
    if floor is not None and floor_kernel is not None:
        lines.append(
            f"  write floor CPU per delivery / broadcast's, 1k at 20k/s: {floor:.2f}x, of which "
            f"the kernel {floor_kernel:.2f}x (one write a delivery and nothing else: no server "
            "sending each message on its own write goes below it)"
        )
    for name in WRITE_DELAY_MS:
        delayed, peer = row(at20k, name), row(at20k, "broadcast")
        if delayed is not None and peer is not None:
            lines.append(
                f"{name}, 1k at 20k/s: CPU per delivery {delayed.cpu_us / peer.cpu_us:.2f}x "
                f"broadcast's, p50 {delayed.p50:.1f} ms / p99 {delayed.p99:.1f} ms (latency "
                "traded for CPU: HUB_WS_WRITE_DELAY_MS)"
            )
    hub, peer = row(many, "hub serve"), row(many, "broadcast")
    if hub is None or peer is None:
        lines.append("10k clients at 20k/s, hub serve against broadcast: n/a")
    else:
        met = hub.complete >= 1.0 and hub.p99 < peer.p99
        lines.append(
            f"10k clients at 20k/s: hub serve delivered {hub.complete:.2%} of what was "
            f"offered, p99 {hub.p99:.2f} ms against broadcast's {peer.p99:.2f} ms (all "
            f"delivered, p99 below) -> {'met' if met else 'NOT met'}"
        )
    for run in (AT_20K, MANY):
        idle = ", ".join(f"{s} {r.idle_kib:.1f}" for s, r in results.get(run.name, {}).items())
        lines.append(f"RSS per idle connection, {run.clients:,} clients (KiB): {idle}")
    return lines


# -- main --------------------------------------------------------------------------------


def bench(plan: Plan, servers: list[str]) -> dict[str, dict[str, Row]]:
    results: dict[str, dict[str, Row]] = {run.name: {} for run in plan.runs}
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    feeder = context.Process(target=upstream_process, args=(SYMBOLS, theirs))
    feeder.start()
    try:
        if not ours.poll(START_TIMEOUT):
            raise RuntimeError("the upstream look-alike did not start")
        url = ours.recv()[1]
        assert feeder.pid is not None
        # Runs outer, servers inner: the servers a table compares are measured minutes
        # apart, under much the same load from the rest of the machine.
        for run in plan.runs:
            for name in servers:
                row = run_one(run, plan, name, url, ours, feeder.pid)
                if row is not None:
                    results[run.name][name] = row
    finally:
        with contextlib.suppress(OSError):
            ours.send(("stop",))
        feeder.join(10)
        if feeder.is_alive():
            feeder.kill()
            feeder.join(5)
    return results


def run_one(
    run: Run, plan: Plan, name: str, url: str, upstream: Connection, upstream_pid: int
) -> Row | None:
    """One run on a fresh server: no backlog or leftover state from the run before."""
    try:
        with started(name, url, upstream) as server:
            before = rss_kib(server.pids[0])
            with clients(server, SERVERS.index(name), run.clients, plan.workers) as crowd:
                time.sleep(plan.settle)
                idle = (rss_kib(server.pids[0]) - before) / run.clients
                row = measure(run, server, crowd, upstream, upstream_pid, idle)
    except RuntimeError as error:
        print(f"[{run.name}] {name}: FAILED: {error}", flush=True)
        return None
    print(f"[{run.name}] {line(row)}", flush=True)
    return row


def raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < needed:
        print(f"warning: open files limited to {soft} (< {needed}): raise the hard limit")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny N over every server kind")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma list")
    parser.add_argument(
        "--runs", default=",".join(RUN_KEYS), help=f"comma list of {', '.join(RUN_KEYS)}"
    )
    args = parser.parse_args()
    keys = [k.strip() for k in args.runs.split(",") if k.strip()]
    if unknown_runs := set(keys) - set(RUN_KEYS):
        parser.error(f"unknown runs {sorted(unknown_runs)}; choose from {list(RUN_KEYS)}")
    plan = SMOKE if args.smoke else Plan([RUN_KEYS[k] for k in keys], FULL.workers, FULL.settle)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"unknown servers {sorted(unknown)}; choose from {SERVERS}")
    try:
        import socketio  # noqa: F401
    except ImportError:
        if "socketio" in servers:
            servers.remove("socketio")
            print("socketio: skipped, python-socketio is not installed (the `bench` extra)")
    # The busiest process is a server: a socket a client (each worker holds a share).
    raise_open_files(max(run.clients for run in plan.runs) + 1_000)
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.2f}; clients and peers on "
        f"{'uvloop' if uvloop is not None else 'asyncio (uvloop not installed)'}"
    )
    busy = machine_busy()
    results = bench(plan, servers)
    for run in plan.runs:
        print()
        print(table(run, results[run.name]))
    if not args.smoke:
        print()
        print("\n".join(summary(results)))
    after = machine_busy()
    if busy is not None and after is not None:
        share = (after[0] - busy[0]) / max(after[1] - busy[1], 1e-9)
        print(
            f"\nthe machine's CPUs were {share:.0%} busy during the run (every process, this "
            f"bench's included); load average now {os.getloadavg()[0]:.2f}"
        )
    missing = [s for s in servers if any(
        s not in rows or rows[s].delivered <= 0 for rows in results.values()
    )]  # fmt: skip
    if missing:
        print(f"nothing delivered by: {', '.join(missing)}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
