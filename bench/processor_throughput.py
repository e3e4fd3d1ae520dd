"""Part (a) of `bench_processor.py`, runnable against any checkout of the hub.

``python bench/processor_throughput.py TREE EVENTS`` imports `hub` from the directory TREE
(this repository, or an older revision extracted by ``bench_processor.py --baseline``), reads
EVENTS (msgpack rows of `LiquidationEvent` fields, as `write_events` writes them) and prints
the `throughput` figures as JSON. It uses only the processor API that every revision since
the three-exchange model has: `LiquidationProcessor(ProcessorConfig(max_events=...),
epoch=...)`, `track`, `apply(event, now).messages` and `flush(now)`.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from inspect import signature
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from hub.analytics.processor import LiquidationProcessor
    from hub.models import LiquidationEvent

FLUSH_EVERY = 2_500
LAG_MS = 40  # `now` is the event time plus this receive lag


def new_processor(symbols: list[str], max_events: int) -> LiquidationProcessor:
    from hub.analytics.processor import LiquidationProcessor, ProcessorConfig

    processor = LiquidationProcessor(ProcessorConfig(max_events=max_events), epoch="bench")
    # A baseline revision before coverage tracks a symbol by its name alone.
    covered = ["covered_since"] if "covered_since" in str(signature(processor.track)) else []
    for name in symbols:
        processor.track(name, *[0 for _ in covered])
    return processor


def throughput(
    events: list[LiquidationEvent], symbols: list[str], max_events: int
) -> dict[str, float]:
    """CPU time of `apply` for every event and a `flush` every FLUSH_EVERY events."""
    processor = new_processor(symbols, max_events)
    apply, flush = processor.apply, processor.flush
    in_flush = 0.0
    messages = diffs = 0
    gc.collect()
    began = time.process_time()
    for i, event in enumerate(events, 1):
        messages += len(apply(event, event.time + LAG_MS).messages)
        if i % FLUSH_EVERY == 0:
            flushed = time.process_time()
            out = flush(event.time + LAG_MS)
            in_flush += time.process_time() - flushed
            diffs += len(out)
    total = time.process_time() - began
    return {
        "events_per_s": len(events) / total,
        "cpu_s": total,
        "flush_share": in_flush / total,
        "flush_ms": 1_000 * in_flush / max(len(events) // FLUSH_EVERY, 1),
        "messages": messages + diffs,
        "held": sum(len(book.store) for book in processor.books.values()),
    }


def write_events(path: Path, events: list[LiquidationEvent]) -> None:
    rows = [(e.exchange, e.symbol, e.side, e.price, e.quantity, e.notional, e.time) for e in events]
    path.write_bytes(msgspec.msgpack.encode(rows))


def main() -> None:
    tree, events_file, max_events = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    sys.path.insert(0, tree)
    from hub.models import LiquidationEvent

    rows = msgspec.msgpack.decode(events_file.read_bytes())
    events = [LiquidationEvent(*row) for row in rows]
    symbols = sorted({e.symbol for e in events})
    print(json.dumps(throughput(events, symbols, max_events)))


if __name__ == "__main__":
    main()
