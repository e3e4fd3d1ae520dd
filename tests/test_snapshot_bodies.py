"""REST heatmap bodies: encoded once per channel position, made again when seq moves."""

from __future__ import annotations

import msgspec

from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
from hub.api.bodies import SnapshotBodies
from hub.fanout.fanout import Fanout
from hub.models import LiquidationEvent

NOW = 1_796_000_000_000
CHANNEL = "heatmap:BTCUSDT:1h"


def liquidation(price: float, time: int) -> LiquidationEvent:
    return LiquidationEvent("binance", "BTCUSDT", "long", price, 0.5, price * 0.5, time)


def test_body_is_encoded_once_per_seq_and_follows_the_replica() -> None:
    processor = LiquidationProcessor(ProcessorConfig(), epoch="e1")
    processor.track("BTCUSDT", 0)
    fanout = Fanout(clock=lambda: NOW)
    bodies = SnapshotBodies(fanout)
    assert bodies.body(CHANNEL) is None, "no snapshot yet"

    def feed(messages: list) -> None:
        for message in messages:
            fanout.publish_message(message)

    feed(processor.snapshots_of("BTCUSDT", NOW))
    first = bodies.body(CHANNEL)
    assert first is not None and bodies.body(CHANNEL) is first and bodies.encoded == 1
    for i in range(3):
        processor.apply(liquidation(60_000.0 + 25 * i, NOW + i), NOW + i)
        feed(processor.flush(NOW + i))
        body = bodies.body(CHANNEL)
        assert body is not None and body is bodies.body(CHANNEL)
        assert bodies.encoded == 2 + i, "one encoding per new seq, however many requests"
        decoded = msgspec.json.decode(body)
        assert decoded["success"] is True
        replica = fanout.snapshot(CHANNEL)
        assert replica is not None
        assert decoded["data"] == msgspec.json.decode(msgspec.json.encode(replica))
        assert decoded["data"]["seq"] == i + 1
        assert decoded["data"]["statistics"]["event_count"] == i + 1
