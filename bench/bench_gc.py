"""What the fan-out's channel histories cost the garbage collector.

Run from the repository root: ``python bench/bench_gc.py`` (a few seconds).

A process keeps up to 2,000 recent messages a channel (resumption with `since`), and
`serve` for five symbols has about sixty channels: over 100,000 held messages, renewed
every minute or two. CPython's full collection walks every object the collector tracks,
and it runs when the objects that survived into the oldest generation since the last one
reach a quarter of it. Here CHANNELS histories are filled to their cap through
`Fanout.publish`, as the relay fills them. The script reports the tracked objects the
histories add and the time of a full collection (`gc.collect()`, median of 7), beside the
same process before the histories were filled (the baseline, same run). Nothing is asserted.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from hub.fanout.channel_state import HISTORY_MAX_MESSAGES
from hub.fanout.codec import encode_message
from hub.fanout.fanout import Fanout
from hub.models import ChannelMessage, LiquidationEvent

CHANNELS = 60
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT", "BNBUSDT"]


def full_collection_ms() -> float:
    times = []
    for _ in range(7):
        began = time.perf_counter()
        gc.collect()
        times.append(1_000 * (time.perf_counter() - began))
    return statistics.median(times)


def main() -> None:
    fanout = Fanout(clock=lambda: 0)  # one instant: every history fills to its cap
    gc.collect()
    tracked_before, ms_before = len(gc.get_objects()), full_collection_ms()
    for index in range(CHANNELS):
        symbol = SYMBOLS[index % len(SYMBOLS)]
        channel = f"liquidations:{symbol}-{index}"
        for seq in range(1, HISTORY_MAX_MESSAGES + 1):
            event = LiquidationEvent("binance", symbol, "long", 60_000.0, 0.01, 600.0, seq)
            fanout.publish(encode_message(ChannelMessage(channel, "liquidation", seq, "e", event)))
    held = sum(len(state.history) for state in fanout.channels.values())
    gc.collect()
    tracked_after, ms_after = len(gc.get_objects()), full_collection_ms()
    print(f"{CHANNELS} channel histories, {held:,} messages held")
    print(f"  {'':<34} {'tracked objects':>16} {'full collection':>16}")
    print(f"  {'before filling (baseline)':<34} {tracked_before:>16,} {ms_before:>13.1f} ms")
    print(f"  {'histories full':<34} {tracked_after:>16,} {ms_after:>13.1f} ms")
    added = tracked_after - tracked_before
    print(f"  tracked objects per held message: {added / held:.2f}")


if __name__ == "__main__":
    main()
