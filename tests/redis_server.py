"""A real `redis-server` on a free loopback port, for integration tests.

Tests never touch a Redis already running on the machine: each gets its own process, no
persistence, in a temporary directory. `kill()` then `start()` restarts it on the same
port, which is how the broker's reconnect path is exercised.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, port: int | None = None, replica_of: int | None = None) -> None:
        """`replica_of`: the port of a master on loopback to replicate."""
        # REDIS_SERVER lets a developer point at another build; CI installs the package.
        binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found on PATH (install the redis-server package, or set "
                "REDIS_SERVER to its path): the Redis integration tests need a real server"
            )
        self.binary = binary
        self.port = port or _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = Path(tempfile.mkdtemp(prefix="hub-redis-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._replica_of = replica_of
        self.paused = False

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (or restart after `kill`) on the same port; returns once it answers PING."""
        if self.running:
            return
        deadline = time.monotonic() + START_TIMEOUT
        # A restart can lose a race for the port (another process grabbed it, or a slow
        # release); redis then exits at once, so start it again until the deadline.
        while True:
            self._process = self._spawn()
            while time.monotonic() < deadline and self._process.poll() is None:
                if _answers_ping(self.port):
                    return
                time.sleep(0.02)
            if time.monotonic() >= deadline:
                self._terminate()
                raise RuntimeError(
                    f"redis-server did not answer PING on port {self.port} within "
                    f"{START_TIMEOUT}s; log:\n{self._log_tail()}"
                )
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything cleanly."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(5)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a half-open link)."""
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _arguments(self) -> list[str]:
        arguments = [
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            "--logfile", str(self._dir / "redis.log"),
        ]  # fmt: skip
        if self._replica_of is not None:
            arguments += ["--replicaof", "127.0.0.1", str(self._replica_of)]
        return [self.binary, *arguments]

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self._arguments(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _terminate(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)

    def _log_tail(self) -> str:
        try:
            return "".join((self._dir / "redis.log").read_text().splitlines(True)[-20:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class SentinelServer(RedisServer):
    """A Redis Sentinel on a free loopback port, monitoring `master` (a port on loopback)
    as MASTER_NAME, quick to act: down after 1 s, a failover retried after 5 s."""

    MASTER_NAME = "hubmaster"

    def __init__(self, master: int, quorum: int = 2) -> None:
        super().__init__()
        self.master = master
        self.quorum = quorum

    def _arguments(self) -> list[str]:
        config = self._dir / "sentinel.conf"  # Sentinel rewrites its file: one of its own
        if not config.exists():
            name = self.MASTER_NAME
            config.write_text(
                f"port {self.port}\n"
                "bind 127.0.0.1\n"
                f"dir {self._dir}\n"
                f"logfile {self._dir / 'redis.log'}\n"
                f"sentinel monitor {name} 127.0.0.1 {self.master} {self.quorum}\n"
                f"sentinel down-after-milliseconds {name} 1000\n"
                f"sentinel failover-timeout {name} 5000\n"
                f"sentinel parallel-syncs {name} 1\n"
            )
        return [self.binary, str(config), "--sentinel"]


class ClusterNode(RedisServer):
    """One node of a Redis Cluster: quick to fail over (a master unreachable for 1 s is
    failed), and a cluster that keeps serving the slots it still covers."""

    def __init__(self) -> None:
        super().__init__()
        # Its own: the default (port + 10,000) may be taken, or past 65,535.
        self.bus_port = _free_port()

    def _arguments(self) -> list[str]:
        return [
            *super()._arguments(),
            "--cluster-enabled", "yes",
            "--cluster-port", str(self.bus_port),
            "--cluster-config-file", str(self._dir / "nodes.conf"),
            "--cluster-node-timeout", "1000",
            "--cluster-require-full-coverage", "no",
            "--cluster-replica-validity-factor", "0",
        ]  # fmt: skip


class ClusterServers:
    """A Redis Cluster of `masters` masters with one replica each, on loopback."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [ClusterNode() for _ in range(masters * 2)]
        self.masters = masters
        self.url = self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli") or "redis-cli"  # Debian's redis-server package has it
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while not all(self.state_ok(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok within 30 s")
            time.sleep(0.1)

    def owner(self, key: str) -> ClusterNode | None:
        """The master serving `key`'s slot now, as the first node that answers sees it;
        None while none does (a failover under way)."""
        for seen in self.nodes:
            if not seen.running or seen.paused:
                continue
            slot = _cli(seen.port, "CLUSTER", "KEYSLOT", key).strip()
            if not slot.isdigit():
                continue
            for line in _cli(seen.port, "CLUSTER", "NODES").splitlines():
                fields = line.split()
                if "master" not in fields[2] or "fail" in fields[2]:
                    continue
                for part in fields[8:]:
                    low, _, high = part.partition("-")
                    if low.isdigit() and int(low) <= int(slot) <= int(high or low):
                        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                        return next(node for node in self.nodes if node.port == port)
            return None
        return None

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    @staticmethod
    def state_ok(node: RedisServer) -> bool:
        return "cluster_state:ok" in _cli(node.port, "CLUSTER", "INFO")

    def __enter__(self) -> ClusterServers:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _cli(port: int, *command: str) -> str:
    """A command's reply as redis-cli prints it ('' when the node does not answer)."""
    cli = shutil.which("redis-cli") or "redis-cli"
    try:
        done = subprocess.run(
            [cli, "-p", str(port), *command], capture_output=True, text=True, timeout=5
        )
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout
