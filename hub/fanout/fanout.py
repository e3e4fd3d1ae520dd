"""The fan-out: broker messages in, the same encoded frames to every subscribed session.

One `ChannelState` per channel keeps position, history and the heatmap replica; the
`Fanout` is the sessions' `Directory` (subscribe, resume, fresh snapshot). Delivery is a
plain loop of non-blocking `Session.deliver` calls: a message is encoded once per format
before the loop, and no client is awaited inside it.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from hub.channels import ANY_SYMBOL, Channel
from hub.errors import ProtocolError
from hub.fanout.channel_state import HISTORY_BYTES, ChannelState, HistoryBudget, Outcome
from hub.fanout.codec import FORMATS, EncodedMessage, Format, encode, encode_message
from hub.fanout.protocol import Position, Session
from hub.models import ChannelMessage, HeatmapSnapshot, PredictedSnapshot


class FanoutStats(msgspec.Struct):
    messages: int = 0
    deliveries: int = 0
    writes: int = 0  # flushes of a client's queued frames on the fast path (about one write each)
    gaps: int = 0
    duplicates: int = 0
    dropped: int = 0  # channel messages dropped from slow clients' queues
    slow_closes: int = 0  # clients closed with 1013 for not reading
    shared_frame_sessions: int = 0  # clients written to with shared frames (the fast path)
    asgi_sessions: int = 0  # clients on the plain ASGI send path (the fallback)
    fallback: str | None = None  # why the fast path is off for this process, if it is


class Fanout:
    def __init__(self, clock: Callable[[], int], history_bytes: int = HISTORY_BYTES) -> None:
        self.clock = clock
        self.history = HistoryBudget(history_bytes)  # what every channel's history may hold
        self.channels: dict[str, ChannelState] = {}
        self.subscribers: dict[str, set[Session]] = {}
        self.symbols: set[str] = set()
        self.sessions: set[Session] = set()
        self.stale: set[str] = set()  # replicated channels waiting for a snapshot after a gap
        self.ingest: str | None = None  # "down" while the relay hears nothing from ingest
        self.stats = FanoutStats()

    # -- from the broker ----------------------------------------------------------------

    def publish(self, payload: bytes) -> None:
        """Take one encoded channel message from the broker and deliver it."""
        message = EncodedMessage.of(payload)
        name = message.header.ch
        state = self.channels.get(name)
        if state is None:
            state = self.channels[name] = ChannelState(name, self.history)
        now = self.clock()
        outcome = state.accept(message, now)
        if outcome is Outcome.DUPLICATE:
            self.stats.duplicates += 1
            return
        if outcome is Outcome.GAP:
            self.stats.gaps += 1
            self.stale.add(name)
            return
        if state.replica is not None:
            # A snapshot, or a diff that follows on: the replica is known to be current.
            self.stale.discard(name)
        if message.header.type == "snapshot":
            self.symbols.add(name.split(":")[1])
        self.stats.messages += 1
        subscribers = self.subscribers.get(name)
        if subscribers:
            delivered = 0
            for session in subscribers:
                delivered += session.deliver(name, message, now)
            self.stats.deliveries += delivered

    def ingest_changed(self, state: str) -> None:
        """Tell every subscriber of every channel that ingest is `down` or `up` again:
        every channel comes from it. A subscriber that joins while it is down is told then."""
        self.ingest = state if state == "down" else None
        now = self.clock()
        for name, subscribers in self.subscribers.items():
            notice = _status_notice(name, state)
            for session in list(subscribers):
                session.notify(name, notice, now)

    def notice(self, channel: str) -> dict[Format, bytes] | None:
        return None if self.ingest is None else _status_notice(channel, self.ingest)

    def publish_message(self, message: ChannelMessage) -> None:
        self.publish(encode_message(message))

    def status(self) -> FanoutStats:
        """The counters, `dropped` with what the connected clients have lost so far (a
        session counts its own drops: no shared counter is touched on the way)."""
        live = sum(session.dropped for session in self.sessions)
        return msgspec.structs.replace(self.stats, dropped=self.stats.dropped + live)

    # -- the sessions' directory --------------------------------------------------------

    def attach(self, session: Session) -> None:
        self.sessions.add(session)

    def detach(self, session: Session) -> None:
        self.sessions.discard(session)
        self.stats.dropped += session.dropped
        self.stats.slow_closes += session.close is not None and session.close.code == 1013
        for name in session.subscriptions:
            self.leave(session, name)

    def check(self, channel: Channel) -> None:
        if channel.symbol != ANY_SYMBOL and channel.symbol not in self.symbols:
            raise ProtocolError("unknown_symbol", f"{channel.symbol} is not tracked here")

    def join(self, session: Session, channel: str, since: Position | None) -> list[EncodedMessage]:
        self.subscribers.setdefault(channel, set()).add(session)
        state = self.channels.get(channel)
        if state is None:
            return []
        if since is not None:
            missed = state.since(since.epoch, since.seq)
            if missed is not None:
                return missed
        if state.replica is None:
            # A liquidity message is the whole analysis: the latest stands in for a snapshot.
            latest = state.history[-1][1] if state.history else None
            return [latest] if latest is not None and latest.header.type == "liquidity" else []
        snapshot = self.fresh_snapshot(channel)
        return [snapshot] if snapshot is not None else []

    def leave(self, session: Session, channel: str) -> None:
        subscribers = self.subscribers.get(channel)
        if subscribers is not None:
            subscribers.discard(session)
            if not subscribers:
                del self.subscribers[channel]

    def fresh_snapshot(self, channel: str) -> EncodedMessage | None:
        """The replica's snapshot, encoded once per seq however many clients ask."""
        state = self.channels.get(channel)
        if state is None or state.replica is None or channel in self.stale:
            return None
        if state.snapshot_cache is None:
            snapshot = state.replica.snapshot()
            message = ChannelMessage(channel, "snapshot", snapshot.seq, snapshot.epoch, snapshot)
            state.snapshot_cache = EncodedMessage.of(encode_message(message))
        return state.snapshot_cache

    def snapshot(self, channel: str) -> HeatmapSnapshot | None:
        state = self.channels.get(channel)
        snapshot = state.replica.snapshot() if state and state.replica else None
        return snapshot if isinstance(snapshot, HeatmapSnapshot) else None

    def predicted(self, channel: str) -> PredictedSnapshot | None:
        state = self.channels.get(channel)
        snapshot = state.replica.snapshot() if state and state.replica else None
        return snapshot if isinstance(snapshot, PredictedSnapshot) else None


def _status_notice(channel: str, ingest: str) -> dict[Format, bytes]:
    body = {"ch": channel, "type": "status", "data": {"ingest": ingest}}
    return {fmt: encode(body, fmt) for fmt in FORMATS}
