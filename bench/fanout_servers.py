"""The processes `bench_fanout.py` measures and drives: each server kind started from its
public command line, and the load-client workers.

Servers get only loopback addresses and free ports, and every process started here is
stopped on the way out, error or not. The hub is configured through its environment, as a
user would: the per-address and total connection limits (200 and 10,000 by default) are
lifted, since every load client comes from this one machine.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from bench.fanout_load import client_process
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT", "BNBUSDT"]
SERVERS = [
    "hub serve",
    "hub serve (100 ms writes)",
    "hub web+ingest",
    "socketio",
    "broadcast",
    "write floor",
]
WRITE_DELAY_MS = {"hub serve (100 ms writes)": "100"}  # HUB_WS_WRITE_DELAY_MS
DIALECT = {"socketio": "socketio"}  # everyone else speaks the hub's subscribe
START_TIMEOUT = 60.0
REPLY_TIMEOUT = 300.0  # a worker connecting thousands of clients on a loaded machine


def ask(conn: Connection, *command: object, timeout: float = REPLY_TIMEOUT) -> tuple:
    conn.send(command)
    if not conn.poll(timeout):
        raise RuntimeError(f"no reply to {command[0]!r} within {timeout:.0f} s")
    return conn.recv()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of `pid` (or another field of its status: VmHWM, the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class Server:
    """The processes of one server kind; `pids[0]` serves the clients."""

    name: str
    port: int
    processes: list[subprocess.Popen[bytes]]
    pids: list[int]


@contextlib.contextmanager
def started(name: str, upstream_url: str, upstream: Connection) -> Iterator[Server]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEATMAP_", "HUB_"))}
    env.pop("REDIS_URL", None)
    env |= {
        "PYTHONPATH": str(ROOT),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "BINANCE_WS_URL": upstream_url,
        # The upstream look-alike is Binance's; the hub reaches for nothing else.
        "HEATMAP_EXCHANGES": "binance",
        "HEATMAP_LIQUIDITY": "off",
        "BINANCE_REST_URL": f"http://127.0.0.1:{free_port()}",
        "HEATMAP_SYMBOLS": ",".join(SYMBOLS),
        # No history on disk: a benchmark's events are not the user's, and the user's own
        # `serve` may hold the default directory.
        "HEATMAP_DATA_DIR": "off",
        # The defaults (200 per address, 10,000 in all) would refuse a load test.
        "HUB_MAX_CONNECTIONS": "100000",
        "HUB_MAX_CONNECTIONS_PER_IP": "100000",
    }
    hub = [sys.executable, "-m", "hub", "--log-level", "warning"]
    peer = [sys.executable, str(ROOT / "bench" / "fanout_peers.py")]
    redis = None
    processes: list[subprocess.Popen[bytes]] = []
    opened_before = ask(upstream, "connections")[2]
    try:
        if name in ("hub serve", *WRITE_DELAY_MS):
            env["HUB_WS_WRITE_DELAY_MS"] = WRITE_DELAY_MS.get(name, "0")
            processes.append(subprocess.Popen([*hub, "serve"], env=env))
        elif name == "hub web+ingest":
            redis = RedisServer()
            redis.start()
            env["REDIS_URL"] = redis.url
            processes.append(subprocess.Popen([*hub, "web"], env=env))
            processes.append(subprocess.Popen([*hub, "ingest"], env=env))
        else:
            args = ["--port", str(port), "--upstream", upstream_url]
            args += ["--symbols", ",".join(SYMBOLS)]
            processes.append(subprocess.Popen([*peer, name, *args], env=env))
        pids = [p.pid for p in processes]
        if redis is not None and redis._process is not None:
            pids.append(redis._process.pid)
        wait_ready(name, port, processes, upstream, opened_before)
        yield Server(name, port, processes, pids)
    finally:
        for process in processes:
            stop(process)
        if redis is not None:
            redis.stop()


def wait_ready(
    name: str,
    port: int,
    processes: list[subprocess.Popen[bytes]],
    upstream: Connection,
    opened_before: int,
) -> None:
    """The server's own upstream connection is open and (for the hub) every symbol is served."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{name}: a process exited with {process.returncode}")
        _, live, ever = ask(upstream, "connections")
        # A new connection, not the last server's on its way out.
        connected = live >= 1 and ever > opened_before
        if connected and name.startswith("hub"):
            base = f"http://127.0.0.1:{port}/api/heatmap/liquidations"
            connected = all(get_ok(f"{base}/{s}?limit=1") for s in SYMBOLS)
        elif connected:
            connected = port_open(port)
        if connected:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name}: not ready within {START_TIMEOUT:.0f} s")


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@dataclass
class Clients:
    processes: list[multiprocessing.Process]
    conns: list[Connection]

    def ask_all(self, *command: object) -> list[tuple]:
        for conn in self.conns:
            conn.send(command)
        replies = []
        for conn in self.conns:
            if not conn.poll(REPLY_TIMEOUT):
                raise RuntimeError(f"a client worker did not answer {command[0]!r}")
            replies.append(conn.recv())
        return replies

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("close",))
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)


@contextlib.contextmanager
def clients(server: Server, kind_index: int, n: int, workers: int) -> Iterator[Clients]:
    """n connections over `workers` processes, client i on SYMBOLS[i % 5]; each worker from
    its own loopback address, so no run exhausts one address's ephemeral ports."""
    context = multiprocessing.get_context("spawn")
    made = Clients([], [])
    dialect = DIALECT.get(server.name, "hub")
    try:
        for w in range(workers):
            channels = [f"liquidations:{SYMBOLS[i % 5]}" for i in range(w, n, workers)]
            ours, theirs = context.Pipe()
            source = f"127.0.{kind_index + 1}.{w + 1}"
            process = context.Process(
                target=client_process, args=(dialect, server.port, source, channels, theirs)
            )
            process.start()
            made.processes.append(process)
            made.conns.append(ours)
        replies = made.ask_all("connect")
        connected = sum(r[1] for r in replies)
        if connected < n:
            errors = [r[2] for r in replies if r[2] != "[]"]
            raise RuntimeError(f"{server.name}: {connected}/{n} clients subscribed; {errors}")
        yield made
    finally:
        made.close()
