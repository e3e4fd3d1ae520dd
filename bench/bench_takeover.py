"""A standby `ingest` taking over at scale (issue 26): how long clients go without
diffs when the leader dies holding 30 days of 300 symbols.

Run from the repository root: ``python bench/bench_takeover.py [--baseline REV]``
(about three minutes a tree; ``--smoke``: a tiny history, for the tests). Nothing is
asserted: each figure is printed, beside the baseline's when there is one.

For each tree (this one, then `--baseline`'s `hub` extracted with `git archive`): a real
`redis-server` gets the history of `bench_history.py` part 1 (300 symbols, 30 days, 5.1
million liquidations, in the event log's own format); a primary `heatmap-hub ingest`
restores it; then a second, `ingest --standby`, starts beside it. Once the standby says
it follows (this tree; a baseline standby only waits), the Binance look-alike pushes
liquidations across the symbols at `--rate` for `--seconds`, with the probe symbol's one
every 100 ms, and half-way the primary is killed (SIGKILL). Shown: how long the standby
took to be ready and its CPU and RSS while following; from the kill, when the standby
logged taking the lease and its last `restored` line; and the client's view, from
`bench_history`'s probe watch on the probe symbol's topic: the longest stretch without a
`heatmap:PROBEUSDT:1h` message around the kill, when it ended, and whether that channel
carried on in its epoch. The lease is HEATMAP_INGEST_LEASE_MS (`--lease-ms`, default 5,000): a
takeover cannot come before it lapses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench import history_market as market_model
from bench.bench_history import (
    FULL,
    SMOKE,
    Loaded,
    ProbeWatch,
    Scale,
    _logged_at,
    cascade,
    history_server,
    ingest_env,
    load_average,
    send_cascade,
    start_ingest,
)
from bench.fanout_servers import cpu_seconds, rss_kib, stop
from bench.trees import extract_hub
from tests.fakes.binance_server import FakeBinance

ROOT = Path(__file__).resolve().parent.parent
READY_DEADLINE_S = 600.0
WARM_LINE = "standby: following"


class Taken(NamedTuple):
    ready_s: float  # standby started -> following (nan: it never says so)
    standby_cpu: float  # share of a core while following, before the kill
    standby_rss_mb: float
    lease_s: float  # kill -> "lease: taken"
    restored_s: float  # kill -> the last "restored" line
    gap_s: float  # the longest stretch without a probe 1h message around the kill
    again_s: float  # kill -> the message that ended that stretch (the new leader's first)
    same_epoch: bool
    said: list[str]  # what the standby logged about following and taking over


def log_time(path: Path, text: str, last: bool = False) -> float:
    """The wall time of the first (or last) log line holding `text`; nan when none."""
    times = [_logged_at(line) for line in path.read_text().splitlines() if text in line]
    if not times:
        return math.nan
    return times[-1] if last else times[0]


async def scenario(tree: Path, scale: Scale, lease_ms: int, scratch: Path) -> Taken | None:
    with history_server(scale, "  history") as (url, market, loaded):
        client = Redis.from_url(url)
        async with contextlib.aclosing(client), FakeBinance() as fake:
            env = ingest_env(url, market, fake.base_url)
            env |= {"PYTHONPATH": str(tree), "HEATMAP_INGEST_LEASE_MS": str(lease_ms)}
            primary = await start_ingest(client, env, scratch / "primary.log", READY_DEADLINE_S)
            if primary is None:
                return None
            standby_log = scratch / "standby.log"
            with standby_log.open("wb") as out:
                standby = await asyncio.to_thread(
                    subprocess.Popen,
                    [sys.executable, "-m", "hub", "ingest", "--standby"],
                    env=env,
                    stdout=out,
                    stderr=out,
                )
            try:
                return await _take_over(
                    client,
                    fake,
                    url,
                    primary.process,
                    standby,
                    standby_log,
                    market,
                    loaded,
                    scale,
                )
            finally:
                stop(primary.process)
                stop(standby)


async def _take_over(
    client: Redis,
    fake: FakeBinance,
    url: str,
    primary: subprocess.Popen[bytes],
    standby: subprocess.Popen[bytes],
    standby_log: Path,
    market: list[market_model.Symbol],
    loaded: Loaded,
    scale: Scale,
) -> Taken:
    started = time.monotonic()
    ready_s = math.nan
    # A standby of a tree without the follow only waits: a lease period is enough.
    while time.monotonic() - started < READY_DEADLINE_S:
        text = await asyncio.to_thread(standby_log.read_text)
        if WARM_LINE in text:
            ready_s = time.monotonic() - started
            break
        if "waits as a standby" in text and time.monotonic() - started > 20:
            break
        await asyncio.sleep(0.1)
    print(f"  standby ready after {ready_s:.1f} s ({load_average()})")
    watch, broker, watching = await ProbeWatch.started(url)
    loop = asyncio.get_running_loop()
    stream = cascade(market, loaded, scale)
    probes = int(scale.live_seconds * 1_000 / 100)
    before: dict[str, Any] = {"sources": {"binance": {"frames": 0}}}
    killed: list[float] = []
    standby_cpu: list[float] = []

    async def kill_half_way() -> None:
        cpu_before, at = cpu_seconds(standby.pid), loop.time()
        await asyncio.sleep(scale.live_seconds / 2)
        standby_cpu.append((cpu_seconds(standby.pid) - cpu_before) / (loop.time() - at))
        primary.send_signal(signal.SIGKILL)
        killed.append(loop.time())
        killed.append(time.time())

    killing = asyncio.create_task(kill_half_way())
    rss_mb = rss_kib(standby.pid) * 1024 / 1e6
    await send_cascade(fake, client, stream, market, loaded, probes, before)
    await killing
    await asyncio.sleep(5)  # the probes' last diffs
    watching.cancel()
    await broker.close()
    kill_loop, kill_wall = killed
    times = [at for at, _ in watch.epochs if at >= kill_loop - 10]
    gaps = [(b - a, b) for a, b in itertools.pairwise(times) if b > kill_loop]
    gap_s, again = max(gaps, default=(math.nan, math.nan))
    epochs_before = [e for at, e in watch.epochs if at < kill_loop]
    epochs_after = {e for at, e in watch.epochs if at > kill_loop}
    return Taken(
        ready_s,
        standby_cpu[0],
        rss_mb,
        log_time(standby_log, "lease: taken") - kill_wall,
        log_time(standby_log, " restored ", last=True) - kill_wall,
        gap_s,
        again - kill_loop,
        bool(epochs_before) and epochs_after == {epochs_before[-1]},
        [
            line
            for line in (await asyncio.to_thread(standby_log.read_text)).splitlines()
            if "standby" in line and "hub.history" not in line
        ],
    )


def show(name: str, taken: Taken | None) -> None:
    if taken is None:
        print(f"  {name}: the primary did not restore in time")
        return
    print(
        f"  {name}: standby ready after {taken.ready_s:.1f} s, following at "
        f"{taken.standby_cpu:.0%} of a core, RSS {taken.standby_rss_mb:,.0f} MB\n"
        f"    after the kill: lease taken {taken.lease_s:.1f} s, books restored "
        f"{taken.restored_s:.1f} s, probe diffs again {taken.again_s:.1f} s (silent "
        f"{taken.gap_s:.1f} s), same epoch: {taken.same_epoch}",
        *(f"    {line}" for line in taken.said),
        sep="\n",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="", help="git revision; '' for none")
    parser.add_argument("--smoke", action="store_true", help="a tiny history")
    parser.add_argument("--rate", type=float, default=2_000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--lease-ms", type=int, default=5_000)
    args = parser.parse_args()
    base = SMOKE if args.smoke else FULL
    scale = base._replace(live_rate=args.rate, live_seconds=args.seconds)
    if args.smoke:
        scale = scale._replace(live_rate=50.0, live_seconds=6.0)
    trees = [("this tree", ROOT)]
    with tempfile.TemporaryDirectory(prefix="bench-takeover-") as scratch:
        if args.baseline:
            tree = extract_hub(args.baseline, Path(scratch) / "baseline")
            trees.append((f"baseline {args.baseline}", tree))
        results = []
        for name, tree in trees:
            print(f"{name}: {scale.live_rate:,.0f}/s for {scale.live_seconds:g} s, kill half-way")
            run = Path(scratch) / name.replace(" ", "-")
            run.mkdir()
            # `python -m hub` takes the package from its working directory first.
            os.chdir(tree)
            try:
                results.append((name, asyncio.run(scenario(tree, scale, args.lease_ms, run))))
            finally:
                os.chdir(ROOT)
        print(f"\nsummary ({load_average()}, {os.cpu_count()} cores)")
        for name, taken in results:
            show(name, taken)


if __name__ == "__main__":
    main()
