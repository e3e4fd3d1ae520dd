"""Ingest's heartbeat and a relay's judgement of it: the pure parts, then a real relay over
the in-memory broker, a real fan-out and sessions (tests/test_e2e_ingest_down.py has the
processes and Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from hub.fanout.broker import topic_for, topic_tag
from hub.fanout.broker_memory import MemoryBroker
from hub.fanout.codec import encode_message
from hub.fanout.fanout import Fanout
from hub.models import ChannelMessage
from hub.service.control import ControlRequest
from hub.service.heartbeat import (
    HEARTBEAT_TOPIC,
    Beats,
    Heartbeat,
    Liveness,
    beat_topic,
    decode,
)
from hub.service.relay import Relay
from hub.tasks import cancel_and_wait
from tests.conftest import eventually
from tests.protocol_kit import EPOCH, Client, Clock, Feed

pytestmark = pytest.mark.timeout(30)
CHANNEL = "heatmap:BTCUSDT:1h"


def test_liveness_goes_down_after_the_bound_and_up_when_heard() -> None:
    liveness = Liveness(silent_ms=2500)
    assert not liveness.check(100.0)  # the first check starts the count
    assert not liveness.check(102.4)
    assert liveness.silent_for(102.4) is None
    assert liveness.check(102.5), "expected down 2.5 s after the last sign of life"
    assert not liveness.check(103.0), "down is said once"
    assert liveness.silent_for(103.0) == pytest.approx(3.0)
    assert liveness.heard(103.1), "expected hearing it again to end the outage"
    assert liveness.silent_for(103.1) is None
    assert not liveness.heard(104.0)
    assert not liveness.check(106.4)


def test_first_heartbeat_is_no_recovery() -> None:
    liveness = Liveness(silent_ms=1000)
    assert not liveness.heard(5.0)
    assert liveness.state == "up"


def test_beats_carry_the_position_of_snapshot_and_diff_channels() -> None:
    beats = Beats(interval_ms=1000)
    beats.record(
        [
            ChannelMessage(CHANNEL, "snapshot", 3, "e1", None),
            ChannelMessage(CHANNEL, "diff", 4, "e1", None),
            ChannelMessage("predicted:ETHUSDT", "snapshot", 7, "e1", None),
            ChannelMessage("liquidations:BTCUSDT", "liquidation", 9, "e1", None),
        ]
    )
    assert beats.due(0.0)
    [(topic, payload)] = beats.beat(10.0)
    assert topic == HEARTBEAT_TOPIC
    assert decode(payload).positions == {CHANNEL: ("e1", 4), "predicted:ETHUSDT": ("e1", 7)}
    assert not beats.due(10.9) and beats.due(11.0), "expected the next beat one interval later"
    per_symbol = {topic: decode(payload).positions for topic, payload in beats.beat(11.0, True)}
    assert per_symbol == {
        beat_topic("BTCUSDT"): {CHANNEL: ("e1", 4)},
        beat_topic("ETHUSDT"): {"predicted:ETHUSDT": ("e1", 7)},
    }, "expected a beat per symbol, in its slot, with its own positions (a cluster)"
    assert all(topic_tag(topic) in ("BTCUSDT", "ETHUSDT") for topic in per_symbol)
    beats.forget({"ETHUSDT"})
    [(_, payload)] = beats.beat(12.0)
    assert set(decode(payload).positions) == {CHANNEL}


def test_a_beat_topic_silent_while_others_beat_is_named_once_a_bound() -> None:
    liveness = Liveness(silent_ms=1000)
    btc, eth = beat_topic("BTCUSDT"), beat_topic("ETHUSDT")
    liveness.heard(0.0, btc)
    liveness.heard(0.0, eth)
    for now in (0.5, 1.0, 1.5):
        liveness.heard(now, btc)
        assert not liveness.check(now)
    assert liveness.silent_topics(0.9) == []
    assert liveness.silent_topics(1.5) == [eth], "expected the shard of ETHUSDT named silent"
    assert liveness.silent_topics(1.6) == [], "expected a full bound before naming it again"
    liveness.forget([eth])
    liveness.heard(3.0, btc)
    assert liveness.silent_topics(3.0) == [], "expected a forgotten topic never named"


class Relayed:
    """A relay over a real in-memory broker into a real fan-out, recording its requests."""

    def __init__(self, silent_ms: int) -> None:
        self.clock = Clock()
        self.broker = MemoryBroker()
        self.fanout = Fanout(self.clock)
        self.fanout.symbols.add("BTCUSDT")
        self.requests: list[ControlRequest] = []
        self.relay = Relay(
            self.broker, self.fanout, self._request, retry_s=60, liveness=Liveness(silent_ms)
        )
        self.feed = Feed(Fanout(self.clock), self.clock)  # builds messages; its fan-out aside

    async def _request(self, request: ControlRequest) -> None:
        self.requests.append(request)

    async def send(self, message: ChannelMessage) -> None:
        await self.broker.publish(topic_for(message.ch), encode_message(message))

    async def beat(self, positions: dict[str, tuple[str, int]]) -> None:
        await self.broker.publish(HEARTBEAT_TOPIC, msgspec.json.encode(Heartbeat(positions)))


@pytest.fixture
async def relayed() -> AsyncIterator[Relayed]:
    hub = Relayed(silent_ms=300)
    task = asyncio.create_task(hub.relay.run())
    yield hub
    await cancel_and_wait([task])


def snapshot_message(feed: Feed, seq: int) -> ChannelMessage:
    """A heatmap snapshot as ingest would publish it (built by the kit, not yet relayed)."""
    return feed.snapshot(seq=seq)


async def test_a_heartbeat_ahead_of_a_replica_asks_for_its_snapshot(relayed: Relayed) -> None:
    await relayed.send(snapshot_message(relayed.feed, seq=5))
    await eventually(lambda: CHANNEL in relayed.fanout.channels)
    await relayed.beat({CHANNEL: (EPOCH, 5)})
    await relayed.beat({CHANNEL: (EPOCH, 5)})
    await eventually(lambda: relayed.broker.status().delivered == 3)
    assert relayed.requests == [], "expected no request while the replica is in step"

    # The diff of seq 6 was lost, and nothing followed it: only the heartbeat tells.
    await relayed.beat({CHANNEL: (EPOCH, 6)})
    await eventually(lambda: relayed.requests != [], seen=lambda: relayed.requests)
    assert relayed.requests == [ControlRequest("snapshot", channels=[CHANNEL])]
    assert CHANNEL in relayed.fanout.stale


async def test_a_heartbeat_of_another_epoch_asks_for_a_snapshot(relayed: Relayed) -> None:
    await relayed.send(snapshot_message(relayed.feed, seq=5))
    await relayed.beat({CHANNEL: ("epoch-2", 1)})
    await eventually(lambda: relayed.requests != [], seen=lambda: relayed.requests)
    assert relayed.requests == [ControlRequest("snapshot", channels=[CHANNEL])]


async def test_a_replica_ahead_of_the_heartbeat_starts_again_from_a_snapshot(
    relayed: Relayed,
) -> None:
    """Ingest resumed from a checkpoint older than what this process relayed: its next
    seqs will carry other data, so the replica must not take them for repeats."""
    await relayed.send(snapshot_message(relayed.feed, seq=5))
    await eventually(lambda: CHANNEL in relayed.fanout.channels)
    client = Client(relayed.fanout, relayed.clock)
    client.subscribe(CHANNEL)
    assert [m["seq"] for m in client.read()] == [5]

    await relayed.beat({CHANNEL: (EPOCH, 3)})
    await eventually(lambda: relayed.requests != [], seen=lambda: relayed.requests)
    assert relayed.requests == [ControlRequest("snapshot", channels=[CHANNEL])]
    await relayed.send(snapshot_message(relayed.feed, seq=3))  # the answer
    await eventually(lambda: relayed.fanout.channels[CHANNEL].seq == 3)
    assert [(m["type"], m["seq"]) for m in client.read()] == [("snapshot", 3)]
    assert CHANNEL not in relayed.fanout.stale


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_subscribers_are_told_when_ingest_is_silent_and_back(
    relayed: Relayed, fmt: str
) -> None:
    await relayed.send(snapshot_message(relayed.feed, seq=1))
    await eventually(lambda: CHANNEL in relayed.fanout.channels)
    client = Client(relayed.fanout, relayed.clock, fmt)  # type: ignore[arg-type]
    client.subscribe(CHANNEL)
    assert [m["type"] for m in client.read()] == ["snapshot"]

    # No heartbeat at all: down once the bound has passed.
    await eventually(lambda: relayed.fanout.ingest == "down")
    down = client.read()
    assert down == [{"ch": CHANNEL, "type": "status", "data": {"ingest": "down"}}], down

    # A client that subscribes meanwhile is told after its snapshot.
    late = Client(relayed.fanout, relayed.clock, fmt)  # type: ignore[arg-type]
    late.subscribe(CHANNEL)
    assert [(m["type"], m.get("data", {}).get("ingest")) for m in late.read()] == [
        ("snapshot", None),
        ("status", "down"),
    ]

    await relayed.beat({CHANNEL: (EPOCH, 1)})
    await eventually(lambda: relayed.fanout.ingest is None)
    up = {"ch": CHANNEL, "type": "status", "data": {"ingest": "up"}}
    assert client.read() == [up] and late.read() == [up]
    assert relayed.requests == [], "in step: nothing to resynchronise"
