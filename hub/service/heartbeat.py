"""End-to-end liveness of `ingest`: its heartbeat, and how a relay judges it.

`ingest` publishes a `Heartbeat` on HEARTBEAT_TOPIC every HEATMAP_HEARTBEAT_MS, in the
same pipeline as (after) that flush's messages, carrying the position (epoch, seq) of
every snapshot + diff channel it has emitted, published or dropped. A relay that holds a
channel behind that position lost a message (or the last one, which no later diff would
reveal) and asks for a snapshot.

One heartbeat per process, not one per topic: a relay reads every topic through one
pub/sub connection, so one message proves the whole path (ingest, Redis, that
connection), and the positions it carries show a loss on any topic; per-topic beats would
cost a message per symbol and second for no more proof. A Redis Cluster is the exception
(`Broker.sharded_topics`): its shards carry topics on separate links, so a beat heard on
one proves nothing about another, and a message on one shard can arrive after a beat
sent later on another. There a beat goes to each symbol (and `*`) on a topic in its own
slot (`beat_topic`), carrying only that symbol's positions, after its messages in the
same script: a shard that goes silent (paused, or failed over) shows as beats missing
for its symbols while others still come (`Liveness.silent_topics`).

`Liveness` is the relay's judgement, pure (time is given): nothing heard for
HEATMAP_INGEST_SILENT_MS is `down`, hearing again is `up`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

from hub.models import ChannelMessage

HEARTBEAT_TOPIC = "hub:{~heartbeat}"
HEARTBEAT_MS = 1_000
# 2.5 beats: one late beat is not an outage, and /health says so within 3 s of the last.
INGEST_SILENT_MS = 2_500

IngestState = Literal["up", "down"]


class Heartbeat(msgspec.Struct, frozen=True):
    positions: dict[str, tuple[str, int]]  # channel -> (epoch, seq)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Heartbeat)


def decode(payload: bytes) -> Heartbeat:
    return _decoder.decode(payload)


def beat_topic(tag: str) -> str:
    """Where the beats of one symbol (or `*`) go, in the slot of its topic."""
    return f"hub:{{{tag}}}:beat"


def is_beat(topic: str) -> bool:
    return topic == HEARTBEAT_TOPIC or topic.endswith("}:beat")


class Beats:
    """Ingest's side: the positions emitted so far, and when the next beat is due."""

    def __init__(self, interval_ms: int = HEARTBEAT_MS) -> None:
        self.interval_ms = interval_ms
        self.positions: dict[str, tuple[str, int]] = {}
        self.next_at = 0.0  # time.monotonic() of the next beat

    def record(self, messages: Iterable[ChannelMessage]) -> None:
        for message in messages:
            if message.type in ("snapshot", "diff"):
                self.positions[message.ch] = (message.epoch, message.seq)

    def forget(self, symbols: Iterable[str]) -> None:
        gone = set(symbols)
        self.positions = {
            ch: pos for ch, pos in self.positions.items() if ch.split(":")[1] not in gone
        }

    def due(self, now_s: float) -> bool:
        return now_s >= self.next_at

    def beat(self, now_s: float, per_symbol: bool = False) -> list[tuple[str, bytes]]:
        """(topic, payload) of the beat: one with every position, or with `per_symbol`
        one per symbol with its own (see the module doc)."""
        self.next_at = now_s + self.interval_ms / 1000
        if not per_symbol:
            return [(HEARTBEAT_TOPIC, _encoder.encode(Heartbeat(self.positions)))]
        per_tag: dict[str, dict[str, tuple[str, int]]] = {}
        for channel, position in self.positions.items():
            per_tag.setdefault(channel.split(":")[1], {})[channel] = position
        return [
            (beat_topic(tag), _encoder.encode(Heartbeat(positions)))
            for tag, positions in per_tag.items()
        ]


class Liveness:
    """A relay's view of ingest: unknown until heard or silent too long, then up or down."""

    def __init__(self, silent_ms: int = INGEST_SILENT_MS) -> None:
        self.silent_s = silent_ms / 1000
        self.state: IngestState | None = None
        self.last_heard: float | None = None  # the first check starts the count of silence
        self._topics: dict[str, float] = {}  # beat topic -> when last heard there

    def heard(self, now_s: float, topic: str = HEARTBEAT_TOPIC) -> bool:
        """A heartbeat on `topic`; True when this ends an outage."""
        self.last_heard = now_s
        self._topics[topic] = now_s
        was, self.state = self.state, "up"
        return was == "down"

    def check(self, now_s: float) -> bool:
        """True when ingest has just gone silent for too long."""
        if self.last_heard is None:
            self.last_heard = now_s
        if self.state != "down" and now_s - self.last_heard >= self.silent_s:
            self.state = "down"
            return True
        return False

    def silent_topics(self, now_s: float) -> list[str]:
        """The beat topics silent too long while ingest is heard on others (a shard
        gone quiet); each is given another full bound before it is named again."""
        if self.state != "up":
            return []
        silent = [t for t, heard in self._topics.items() if now_s - heard >= self.silent_s]
        for topic in silent:
            self._topics[topic] = now_s
        return silent

    def forget(self, topics: Iterable[str]) -> None:
        """Beats no longer expected there (a symbol untracked)."""
        for topic in topics:
            self._topics.pop(topic, None)

    def silent_for(self, now_s: float) -> float | None:
        """How long ingest has been silent, while it is down."""
        if self.state != "down" or self.last_heard is None:
            return None
        return now_s - self.last_heard
