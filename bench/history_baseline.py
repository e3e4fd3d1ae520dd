"""Part 3 of `bench_history.py` on git revision f0adcb5, whose windows were recomputed
from their events at every flush: the baseline of the flush and snapshot figures.

``python bench/history_baseline.py TREE COUNT STEPS`` imports `hub` from TREE (that
revision's, extracted by `bench_history.py`), holds the same COUNT BTCUSDT events
(`history_market.month_of_btc`) and prints the same timings as JSON, through that
revision's API: `LiquidationProcessor(ProcessorConfig(max_events=...), epoch)`,
`checkpoint.restore_book(processor, symbol, events, None, now)` (which applies every
event), `apply(event, now)`, `flush(now)`, and `Fanout(clock)` with `SnapshotBodies`.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
MAX_EVENTS = 1_000_000  # that revision's cap per symbol (10,000 by default)


def timings(count: int, steps: int) -> dict[str, Any]:
    from bench.history_market import EXCHANGES, FLUSH_END, FLUSH_STEP_MS, HANDFUL, month_of_btc
    from hub.analytics.checkpoint import restore_book
    from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
    from hub.api.bodies import SnapshotBodies
    from hub.channels import heatmap_channel
    from hub.fanout.codec import encode_message
    from hub.fanout.fanout import Fanout
    from hub.models import LiquidationEvent

    symbol = "BTCUSDT"
    held, new = month_of_btc(count, steps)

    def events(columns: Any) -> list[LiquidationEvent]:
        return [
            LiquidationEvent(EXCHANGES[exchange], symbol, "short" if short else "long", *values)
            for exchange, short, *values in zip(
                columns.exchange.tolist(),
                columns.short.tolist(),
                columns.price.tolist(),
                columns.quantity.tolist(),
                columns.notional.tolist(),
                columns.time.tolist(),
                strict=True,
            )
        ]

    processor = LiquidationProcessor(ProcessorConfig(max_events=MAX_EVENTS), epoch="bench")
    now = FLUSH_END
    began = time.perf_counter()
    restore_book(processor, symbol, events(held), None, now)
    book = processor.books[symbol]
    fanout = Fanout(lambda: now)
    bodies = SnapshotBodies(fanout)
    for message in processor.flush(now) + processor.snapshots_of(symbol, now):
        fanout.publish(encode_message(message))
    loaded_s = time.perf_counter() - began
    arriving = events(new)
    channel = heatmap_channel(symbol, "30d")
    result: dict[str, Any] = {"book": [], "30d": [], "body": [], "encode": []}
    encoder = msgspec.json.Encoder()
    gc.collect()
    for step in range(steps):
        if step == steps // 2:
            book.windows = {"30d": book.windows["30d"]}
        now = FLUSH_END + (step + 1) * FLUSH_STEP_MS
        for event in arriving[step * HANDFUL : (step + 1) * HANDFUL]:
            processor.apply(event, now)
        began = time.perf_counter()
        messages = processor.flush(now)
        result["book" if step < steps // 2 else "30d"].append(_ms_since(began))
        for message in messages:
            fanout.publish(encode_message(message))
        began = time.perf_counter()
        bodies.body(channel)
        result["body"].append(_ms_since(began))
        began = time.perf_counter()
        encoder.encode(book.windows["30d"].snapshot())
        result["encode"].append(_ms_since(began))
    result["held"] = book.windows["30d"].snapshot().statistics.event_count
    result["load_s"] = loaded_s
    result["hub"] = str(Path(sys.modules["hub"].__file__ or "").parent)
    return result


def _ms_since(began: float) -> float:
    return (time.perf_counter() - began) * 1_000


def main() -> None:
    tree, count, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sys.path[:0] = [tree, str(ROOT)]  # that revision's hub first; bench from here
    print(msgspec.json.encode(timings(count, steps)).decode())


if __name__ == "__main__":
    main()
