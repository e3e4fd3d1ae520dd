"""Part 3 of `bench_history.py`: its timed steps (`timed_steps`, through the processor
API every revision since f0adcb5 has), and their run on git revision f0adcb5, whose
windows were recomputed from their events at every flush: the baseline.

``python bench/history_baseline.py TREE COUNT STEPS`` imports `hub` from TREE (that
revision's, extracted by `bench_history.py`), loads the same COUNT BTCUSDT events
(`history_market.month_of_btc`) as that revision restored a log without checkpoint
(`restore_book(processor, symbol, events, None, now)`, which applies every event, with
its cap `max_events` raised to hold them), and prints the timings as JSON.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
MAX_EVENTS = 1_000_000  # that revision's cap per symbol (10,000 by default)


def timed_steps(
    processor: Any,
    fanout: Any,
    bodies: Any,
    encode_message: Callable[[Any], bytes],
    events: list[Any],
    symbol: str,
) -> dict[str, Any]:
    """Part 3's steps, through the API every revision since f0adcb5 has: HANDFUL events
    `apply`-ed, `now` moved on by FLUSH_STEP_MS, `flush` timed, every message given to the
    fan-out, the 30d REST body and the 30d snapshot's encoding timed. The first half of
    the steps flush the book with all its windows, the second half with the 30d one alone.
    ms of CPU per step (`process_time`: on a shared machine, wall time also counts the
    moments the process waits for a core); `held`: what the 30d window holds at the end."""
    from bench.history_market import FLUSH_END, FLUSH_STEP_MS, HANDFUL

    book = processor.books[symbol]
    channel = f"heatmap:{symbol}:30d"
    steps = len(events) // HANDFUL
    result: dict[str, Any] = {"book": [], "30d": [], "body": [], "encode": [], "published": 0}
    encoder = msgspec.json.Encoder()
    gc.collect()
    for step in range(steps):
        if step == steps // 2:
            book.windows = {"30d": book.windows["30d"]}
        now = FLUSH_END + (step + 1) * FLUSH_STEP_MS
        for event in events[step * HANDFUL : (step + 1) * HANDFUL]:
            processor.apply(event, now)
        began = time.process_time()
        messages = processor.flush(now)
        result["book" if step < steps // 2 else "30d"].append(_ms_since(began))
        for message in messages:
            result["published"] += message.ch == channel
            fanout.publish(encode_message(message))
        began = time.process_time()
        bodies.body(channel)
        result["body"].append(_ms_since(began))
        began = time.process_time()
        encoder.encode(book.windows["30d"].snapshot())
        result["encode"].append(_ms_since(began))
    result["held"] = book.windows["30d"].snapshot().statistics.event_count
    return result


def _ms_since(began: float) -> float:
    return (time.process_time() - began) * 1_000


def baseline(count: int, steps: int) -> dict[str, Any]:
    """The steps on the revision whose `hub` is first on the path (f0adcb5's API)."""
    from bench.history_market import EXCHANGES, FLUSH_END, month_of_btc
    from hub.analytics.checkpoint import restore_book
    from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
    from hub.api.bodies import SnapshotBodies
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
    restore_book(processor, symbol, events(held), None, now)
    fanout = Fanout(lambda: now)  # its clock only stamps history entries
    bodies = SnapshotBodies(fanout)
    for message in processor.flush(now) + processor.snapshots_of(symbol, now):
        fanout.publish(encode_message(message))
    result = timed_steps(processor, fanout, bodies, encode_message, events(new), symbol)
    result["hub"] = str(Path(sys.modules["hub"].__file__ or "").parent)
    return result


def main() -> None:
    tree, count, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sys.path[:0] = [tree, str(ROOT)]  # that revision's hub first; bench from here
    print(msgspec.json.encode(baseline(count, steps)).decode())


if __name__ == "__main__":
    main()
