"""The relay: broker messages into the fan-out, keeping every replica in step.

A replica that cannot follow on (a seq gap, a Redis reconnect after which pub/sub may
have lost messages, a process that just started) asks the processor for fresh
snapshots, and asks again every `retry_s` while it is still stale (with backoff while
the broker is down, logged once when it is lost and once when it is back). Until the
snapshot arrives the channel's clients get nothing on it rather than a silent gap.

With a `Liveness`, ingest's heartbeat is watched too (hub.service.heartbeat): silent too
long, every subscriber is told ingest is down and the broker re-subscribes (a lost
subscription looks the same as a dead ingest from here); heard again, they are told it
is up. A heartbeat's position other than a replica's makes that channel stale, as a gap
does (a replica ahead of it is forgotten first: ingest went back, see `_heartbeat`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from hub.channels import WINDOWS, heatmap_channel, predicted_channel
from hub.fanout.broker import RESYNC_TOPIC, Broker, topic_for
from hub.fanout.fanout import Fanout
from hub.service.control import (
    CONTROL_TOPIC,
    SYMBOLS_TOPIC,
    ControlRequest,
    decode_symbols,
)
from hub.service.heartbeat import HEARTBEAT_TOPIC, Liveness, beat_topic, is_beat
from hub.service.heartbeat import decode as decode_heartbeat
from hub.storage.outage import Outage

log = logging.getLogger("hub.relay")

Requester = Callable[[ControlRequest], Awaitable[None]]


def replicated_channels(symbols: Iterable[str]) -> list[str]:
    """The snapshot + diff channels of these symbols: a replica of each is kept."""
    return [
        channel
        for symbol in sorted(symbols)
        for channel in (
            *(heatmap_channel(symbol, window) for window in WINDOWS),
            predicted_channel(symbol),
        )
    ]


class Relay:
    def __init__(
        self,
        broker: Broker,
        fanout: Fanout,
        request: Requester,
        load_symbols: Callable[[], Awaitable[set[str]]] | None = None,
        retry_s: float = 2.0,
        liveness: Liveness | None = None,
    ) -> None:
        self.broker = broker
        self.fanout = fanout
        self.request = request
        self.load_symbols = load_symbols
        self.retry_s = retry_s
        self.resyncs = 0
        self.broker_state = Outage("relay", log)
        self.liveness = liveness

    async def start(self) -> None:
        """Learn the symbols (web) and subscribe to their topics before the first message."""
        if self.load_symbols is not None:
            await self.track(await self.load_symbols(), replace=True)

    async def track(self, symbols: set[str], replace: bool = False) -> None:
        new = symbols - self.fanout.symbols
        if replace:
            if self.liveness is not None:  # their beats stop: not a silent shard
                self.liveness.forget(beat_topic(s) for s in self.fanout.symbols - symbols)
            self.fanout.symbols = set(symbols)
        else:
            self.fanout.symbols |= symbols
        topics = {topic_for(f"x:{s}") for s in symbols} | {
            topic_for("x:*"),
            SYMBOLS_TOPIC,
            HEARTBEAT_TOPIC,
        }
        if self.broker.sharded_topics:  # beats per symbol (hub.service.heartbeat)
            topics |= {beat_topic(s) for s in symbols} | {beat_topic("*")}
        await self.broker.subscribe(topics)
        if new:
            # Stale until the snapshot arrives, so `_retry_stale` asks again: the answer to
            # this first request is lost when the subscriber link is not up yet (a `web`
            # process asks in `start`, before `run` opens it).
            channels = replicated_channels(new)
            self.fanout.stale.update(channels)
            await self._ask(channels)

    async def run(self) -> None:
        helpers = [asyncio.create_task(self._retry_stale())]
        if self.liveness is not None:
            helpers.append(asyncio.create_task(self._watch_ingest(self.liveness)))
        try:
            async for topic, payload in self.broker.messages():
                try:
                    await self._take(topic, payload)
                except Exception:  # one bad message must not stop the relay
                    log.exception("relay: failed on a message of %s", topic)
        finally:
            for helper in helpers:
                helper.cancel()

    async def _take(self, topic: str, payload: bytes) -> None:
        if topic == RESYNC_TOPIC:
            self.resyncs += 1
            if self.load_symbols is not None:
                await self.track(await self.load_symbols(), replace=True)
            channels = replicated_channels(self.fanout.symbols)
            self.fanout.stale.update(channels)
            await self._ask(channels)
        elif is_beat(topic):
            await self._heartbeat(topic, payload)
        elif topic == SYMBOLS_TOPIC:
            await self.track(set(decode_symbols(payload).symbols), replace=True)
        elif topic != CONTROL_TOPIC:
            stale = len(self.fanout.stale)
            self.fanout.publish(payload)
            if len(self.fanout.stale) > stale:
                await self._ask(sorted(self.fanout.stale))

    async def _heartbeat(self, topic: str, payload: bytes) -> None:
        if self.liveness is None:
            return
        if self.liveness.heard(asyncio.get_running_loop().time(), topic):
            log.info("relay: ingest is heard again")
            self.fanout.ingest_changed("up")
        behind = []
        for name, (epoch, seq) in decode_heartbeat(payload).positions.items():
            state = self.fanout.channels.get(name)
            if state is None or state.replica is None or name in self.fanout.stale:
                continue  # never started here, or already waiting for a snapshot
            if state.epoch == epoch and state.seq > seq:
                # Ahead of ingest: it resumed from an older checkpoint, so what this process
                # holds past `seq` was never the stream's; the same seqs will carry other data.
                state.forget()
            if state.epoch != epoch or state.seq != seq:
                behind.append(name)
        if behind:
            log.info("relay: %d channels out of step with ingest's heartbeat", len(behind))
            self.fanout.stale.update(behind)
            await self._ask(behind)

    async def _watch_ingest(self, liveness: Liveness) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(0.1, liveness.silent_s / 10))
            if liveness.check(loop.time()):
                log.warning("relay: no heartbeat from ingest for %.1f s", liveness.silent_s)
                self.fanout.ingest_changed("down")
                await self.broker.resubscribe()
            elif silent := liveness.silent_topics(loop.time()):
                log.warning(
                    "relay: no heartbeat on %d topics (e.g. %s) for %.1f s; subscribing afresh",
                    len(silent),
                    silent[0],
                    liveness.silent_s,
                )
                await self.broker.resubscribe()

    async def _ask(self, channels: list[str]) -> None:
        if channels:
            await self.request(ControlRequest("snapshot", channels=channels))

    async def _retry_stale(self) -> None:
        while True:
            await asyncio.sleep(self.retry_s)
            if self.fanout.stale and self.broker_state.due():
                try:
                    await self._ask(sorted(self.fanout.stale))
                except Exception as error:  # the broker is down; a later round retries
                    self.broker_state.failed(error)
                else:
                    self.broker_state.succeeded()
