"""The processor alone through a cascade over a month of history (issue 22): the CPU that
`ingest`'s flushes need at 2,000 liquidations/s, without the feed, Redis or the event loop.

Run from anywhere: ``python bench/processor_cascade.py [--baseline REV] [--seconds S]``
(about a minute a run; `--smoke`: a few seconds, for the tests).

The 300 symbols of `bench_history.py` (`history_market`: BTC 30,000 liquidations a day down
to a tail of about 100) get their 30 days restored as `restore_book` restores an event log
without checkpoint; then `--rate` liquidations a second for `--seconds` (the symbols in
the market's skew, each price walk carried on from its history) are applied with a flush
every 50 ms of event time (HEATMAP_FLUSH_MS's default), every message encoded as ingest
encodes it. Printed: the CPU of that (process time) and its share of the cascade's span,
the messages, and the flushes' wall time (p50, p99, max). Each tree runs in a process of
its own; `--baseline` (default: none) extracts a git revision's `hub` with `git archive`
and runs it on the same events, in the same run. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from trees import extract_hub  # bench/: this script's own folder

ROOT = Path(__file__).resolve().parent.parent
FLUSH_MS = 50
LAG_MS = 40  # `now` is the flush's time plus this receive lag
SYMBOLS = 300


def measure(tree: str, rate: float, seconds: float, days: float) -> dict[str, Any]:
    """The figures for the `hub` in `tree` (imported from there)."""
    sys.path.insert(0, tree)
    sys.path.insert(0, str(ROOT / "bench"))
    import history_market as market_model

    from hub.analytics.checkpoint import restore_book
    from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
    from hub.analytics.rows import Named, Rows, events_of
    from hub.fanout.codec import encode_message

    def rows_of(walk: market_model.Liquidations, first: int) -> Rows:
        return Rows(*market_model.row_columns(walk, first))

    end = market_model.FLUSH_END
    market = market_model.symbols(SYMBOLS)
    rng = np.random.default_rng(22)
    processor = LiquidationProcessor(ProcessorConfig(), epoch="bench")
    start = end - int(days * market_model.DAY_MS) + 15 * 60_000
    last_price: dict[str, float] = {}
    restoring = time.process_time()
    for symbol in market:
        processor.track(symbol.name, start - 3_600_000)
        history = market_model.liquidations(symbol, start, end, rng)
        last_price[symbol.name] = float(history.price[-1]) if len(history) else symbol.price
        restore_book(
            processor, symbol.name, Named(rows_of(history, 1), market_model.EXCHANGES), None, end
        )
    processor.flush(end)
    restore_s = time.process_time() - restoring

    rng = np.random.default_rng(25)
    offsets, which = market_model.live_order(market, rate, seconds, rng)
    times = end + 1_000 + offsets
    events: list[Any] = [None] * len(times)
    for symbol, at, walk in market_model.walks(market, times, which, last_price, rng):
        named = events_of(rows_of(walk, 10**9), market_model.EXCHANGES, symbol.name)
        for position, event in zip(at.tolist(), named, strict=True):
            events[position] = event

    gc.collect()
    flushes: list[float] = []
    messages = 0
    next_event = 0
    now = end + 1_000
    began = time.process_time()
    while next_event < len(events):
        now += FLUSH_MS
        while next_event < len(events) and events[next_event].time <= now:
            for message in processor.apply(events[next_event], now + LAG_MS).messages:
                encode_message(message)
                messages += 1
            next_event += 1
        flushing = time.perf_counter()
        for message in processor.flush(now + LAG_MS):
            encode_message(message)
            messages += 1
        flushes.append((time.perf_counter() - flushing) * 1_000)
    cpu = time.process_time() - began
    p50, p99 = np.percentile(flushes, [50, 99]).tolist()
    return {
        "restore_cpu_s": restore_s,
        "events": len(events),
        "messages": messages,
        "cpu_s": cpu,
        "share": cpu / seconds,
        "flush_ms": (p50, p99, max(flushes)),
    }


def run(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`measure` in a child process, so each tree starts alike."""
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--tree",
            str(tree),
            "--rate",
            str(args.rate),
            "--seconds",
            str(args.seconds),
            "--days",
            str(args.days),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def show(name: str, figures: dict[str, Any]) -> None:
    p50, p99, most = figures["flush_ms"]
    print(
        f"  {name}: {figures['cpu_s']:.2f} s CPU for {figures['events']:,} events "
        f"({figures['share']:.0%} of the span), {figures['messages']:,} messages; "
        f"flush p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {most:.1f} ms "
        f"(restore {figures['restore_cpu_s']:.1f} s CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="", help="git revision; '' for none")
    parser.add_argument("--rate", type=float, default=2_000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--smoke", action="store_true", help="a tiny run: it still works")
    parser.add_argument("--tree", help=argparse.SUPPRESS)  # a child's `hub`
    args = parser.parse_args()
    if args.smoke:
        args.rate, args.seconds, args.days = 200.0, 1.0, 0.05
    if args.tree:
        print(json.dumps(measure(args.tree, args.rate, args.seconds, args.days)))
        return
    print(
        f"processor alone: {SYMBOLS} symbols, {args.days:g} days restored, then "
        f"{args.rate:,.0f}/s for {args.seconds:g} s, a flush every {FLUSH_MS} ms"
    )
    show("this tree", run(ROOT, args))
    if args.baseline:
        with tempfile.TemporaryDirectory(prefix="bench-processor-cascade-") as tree:
            show(f"baseline {args.baseline}", run(extract_hub(args.baseline, Path(tree)), args))


if __name__ == "__main__":
    main()
