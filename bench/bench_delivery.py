"""The Python cost of one delivery on the fast path, without the write's syscall.

Run from the repository root: ``python bench/bench_delivery.py [--baseline REV]`` (about
half a minute; two more minutes with a baseline).

N sessions subscribe to one channel, each driven by the real `SharedFrameWriter` over the
real `RawSocket`, whose protocol stands in for uvicorn's and whose transport only counts
the writes. Each round publishes liquidation messages (1,000,000 deliveries in all)
through `Fanout.publish` and
runs the `Flusher` after each, as the loop would at the end of the tick: every message
is one `deliver`, one `take_frames` and one write a session. The figure is CPU time per
delivery, best of five rounds, at 1,000 and 10,000 sessions (at 10,000 the sessions no
longer fit the CPU's caches, as in a real run).

A live delivery costs several times this: the write itself (the kernel's share of
`bench_fanout.py`'s CPU per delivery) and the cache misses it causes. This isolates the
part the hub's own code decides. ``--baseline REV`` runs the same measurement on git
revision REV's `hub` package, each in its own process, this tree and REV alternating.
``--smoke`` (10 and 100 sessions, one round) is what the test suite runs, so that the
script keeps working. Figures are printed; nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trees import extract_hub  # bench/: this script's own folder

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1_000, 10_000)
SMOKE_SIZES = (10, 100)
DELIVERIES = 1_000_000  # a round's: messages = DELIVERIES // sessions
ROUNDS = 5
CHANNEL = "liquidations:BTCUSDT"


class CountingTransport:
    __slots__ = ("writes",)

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False


class _Connection:
    extensions: list[object] = []


class StandInProtocol:
    """What `RawSocket` reads of uvicorn's WebSocket protocol, for an open connection."""

    def __init__(self) -> None:
        self.transport = CountingTransport()
        self.close_sent = False
        self.disconnected = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.conn = _Connection()


class NoLoop:
    """The Flusher's loop: the bench runs the flush itself, right after each publish."""

    def call_soon(self, callback: object) -> None:
        return None

    def call_later(self, delay: float, callback: object) -> None:
        return None


async def per_delivery(sessions: int, deliveries: int, rounds: int) -> tuple[float, int]:
    """(best CPU seconds per delivery, writes counted) for `sessions` subscribers."""
    from hub.api.uvicorn_socket import RawSocket
    from hub.api.websocket import Flusher, SharedFrameWriter
    from hub.fanout.codec import encode_message
    from hub.fanout.fanout import Fanout
    from hub.fanout.protocol import Limits, Session
    from hub.models import ChannelMessage, LiquidationEvent

    fanout = Fanout(lambda: 1_000)
    flusher = Flusher(0.0, fanout.stats)
    flusher._loop = NoLoop()  # type: ignore[assignment]
    limits = Limits()
    transports = []
    for _ in range(sessions):
        session = Session("json", fanout, limits, 0)
        protocol = StandInProtocol()
        SharedFrameWriter(session, RawSocket(protocol), flusher, fanout.clock)  # type: ignore[arg-type]
        transports.append(protocol.transport)
        fanout.attach(session)
        session.subscriptions[CHANNEL] = None
        fanout.subscribers.setdefault(CHANNEL, set()).add(session)
    event = LiquidationEvent("binance", "BTCUSDT", "long", 60_000.0, 0.1, 6_000.0, 1)
    messages = deliveries // sessions
    best = float("inf")
    for _ in range(rounds):
        fanout.channels.clear()  # each round's seqs start again from 1
        payloads = [
            encode_message(ChannelMessage(CHANNEL, "liquidation", seq, "bench", event))
            for seq in range(1, messages + 1)
        ]
        gc.collect()
        began = time.process_time()
        for payload in payloads:
            fanout.publish(payload)
            flusher._flush()
        best = min(best, (time.process_time() - began) / (messages * sessions))
    return best, sum(t.writes for t in transports)


def measure_here(smoke: bool) -> dict[str, float]:
    """us per delivery by session count; every session must have had every write."""
    sizes, deliveries, rounds = (SMOKE_SIZES, 1_000, 1) if smoke else (SIZES, DELIVERIES, ROUNDS)
    results = {}
    for sessions in sizes:
        seconds, writes = asyncio.run(per_delivery(sessions, deliveries, rounds))
        expected = rounds * (deliveries // sessions) * sessions
        if writes != expected:
            raise RuntimeError(f"{writes:,} writes, expected {expected:,}")
        results[str(sessions)] = seconds * 1e6
    return results


def measure_in(tree: Path, smoke: bool) -> dict[str, float]:
    """`measure_here` in a new process that imports `hub` from `tree`."""
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(tree), *(["--smoke"] if smoke else [])],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", metavar="REV", help="also measure git revision REV")
    parser.add_argument("--rounds", type=int, default=2, help="alternations with --baseline")
    parser.add_argument("--smoke", action="store_true", help="a few sessions, one round")
    parser.add_argument("--measure", metavar="TREE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        sys.path.insert(0, args.measure)
        print(json.dumps(measure_here(args.smoke)))
        return
    deliveries, rounds = (1_000, 1) if args.smoke else (DELIVERIES, ROUNDS)
    print(
        f"fan-out delivery path: messages to N sessions ({deliveries:,} deliveries a round), "
        f"publish + flush, writes counted (no syscall); CPU us per delivery, best of {rounds}"
    )
    trees = {"this tree": ROOT}
    with tempfile.TemporaryDirectory() as scratch:
        if args.baseline:
            trees[args.baseline] = extract_hub(args.baseline, Path(scratch) / "baseline")
        figures: dict[str, dict[str, list[float]]] = {label: {} for label in trees}
        for _ in range(args.rounds if args.baseline else 1):
            for label, tree in trees.items():
                for size, us in measure_in(tree, args.smoke).items():
                    figures[label].setdefault(size, []).append(us)
    print(f"  {'sessions':>8} " + " ".join(f"{label:>12}" for label in trees))
    for size in figures["this tree"]:
        cells = " ".join(f"{min(figures[label][size]):>12.3f}" for label in trees)
        print(f"  {int(size):>8,} {cells}")


if __name__ == "__main__":
    main()
