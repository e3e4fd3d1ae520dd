"""Helpers for the socket-free protocol tests: a settable clock, a feed that publishes
numbered channel messages into a `Fanout`, and a client that talks to one `Session`."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from hub.fanout.codec import Format
from hub.fanout.fanout import Fanout
from hub.fanout.protocol import Limits, Session
from hub.models import (
    Alert,
    Bin,
    ChannelMessage,
    Cluster,
    Density,
    HeatmapDiff,
    HeatmapSnapshot,
    LiquidationEvent,
    Side,
    Statistics,
)

EPOCH = "epoch-1"
SYMBOL = "BTCUSDT"
T0 = 1_700_000_000_000


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


def statistics(count: int) -> Statistics:
    return Statistics(count, 1000.0 * count, 600.0 * count, 400.0 * count, 1000.0, 0.0)


def cluster(cluster_id: int, notional: float) -> Cluster:
    return Cluster(cluster_id, 100.0, 99.0, 101.0, notional, 3, 0.5, 1.5, "moderate")


class Feed:
    """Publishes channel messages into a fan-out, numbering each channel's seq."""

    def __init__(self, fanout: Fanout, clock: Clock, epoch: str = EPOCH) -> None:
        self.fanout = fanout
        self.clock = clock
        self.epoch = epoch
        self.seq: dict[str, int] = {}
        self.sent: list[ChannelMessage] = []

    def publish(self, message: ChannelMessage) -> ChannelMessage:
        self.fanout.publish_message(message)
        self.sent.append(message)
        return message

    def snapshot(
        self,
        symbol: str = SYMBOL,
        window: str = "1h",
        seq: int = 0,
        bins: list[Bin] | None = None,
        epoch: str | None = None,
    ) -> ChannelMessage:
        channel = f"heatmap:{symbol}:{window}"
        epoch = epoch or self.epoch
        rows: list[Bin] = bins if bins is not None else [(100.0, 600.0, 400.0, 1)]
        snapshot = HeatmapSnapshot(
            symbol=symbol,
            window=window,
            seq=seq,
            epoch=epoch,
            time=self.clock.now,
            reference_price=100.0,
            bin_width=1.0,
            bins=rows,
            density=Density(85.0, 1.0, [0.0] * 31),
            clusters=[],
            statistics=statistics(sum(row[3] for row in rows)),
        )
        self.seq[channel] = seq
        return self.publish(ChannelMessage(channel, "snapshot", seq, epoch, snapshot))

    def diff(
        self,
        symbol: str = SYMBOL,
        window: str = "1h",
        bins: list[Bin] | None = None,
        clusters: list[Cluster] | None = None,
        epoch: str | None = None,
    ) -> ChannelMessage:
        channel = f"heatmap:{symbol}:{window}"
        seq = self.seq[channel] = self.seq[channel] + 1
        if bins is None:
            bins = [(100.0 + seq, 10.0 * seq, 0.0, seq)]
        data = HeatmapDiff(
            time=self.clock.now,
            bins=bins,
            clusters=clusters,
            statistics=statistics(seq),
            reference_price=100.0 + seq / 100,
        )
        return self.publish(ChannelMessage(channel, "diff", seq, epoch or self.epoch, data))

    def _fan(self, kind: str, symbol: str, type_: str, data: object) -> list[ChannelMessage]:
        """On the symbol's channel and on the `*` channel, as the processor does."""
        out = []
        for channel in (f"{kind}:{symbol}", f"{kind}:*"):
            seq = self.seq[channel] = self.seq.get(channel, 0) + 1
            out.append(self.publish(ChannelMessage(channel, type_, seq, self.epoch, data)))
        return out

    def liquidation(
        self, symbol: str = SYMBOL, notional: float = 50_000.0, side: Side = "long"
    ) -> LiquidationEvent:
        event = LiquidationEvent(
            "binance", symbol, side, 100.0, notional / 100.0, notional, self.clock.now
        )
        self._fan("liquidations", symbol, "liquidation", event)
        return event

    def alert(
        self,
        symbol: str = SYMBOL,
        kind: Any = "large_liquidation",
        z_score: float = 3.0,
        notional: float = 1_000_000.0,
        side: Side | None = "long",
    ) -> Alert:
        n = len(self.sent)
        alert = Alert(
            id=f"{symbol}:{kind}:{n}",
            kind=kind,
            symbol=symbol,
            price=100.0,
            notional=notional,
            z_score=z_score,
            risk="extreme",
            window="1h",
            time=self.clock.now,
            side=side,
        )
        self._fan("alerts", symbol, "alert", alert)
        return alert


class Client:
    """One session driven as the WebSocket loop would drive it, minus the socket."""

    def __init__(
        self, fanout: Fanout, clock: Clock, fmt: Format = "json", limits: Limits | None = None
    ) -> None:
        self.fanout = fanout
        self.clock = clock
        self.format = fmt
        self.session = Session(fmt, fanout, limits or Limits(), clock.now)
        self._held: list[str | bytes] = []  # frames read past a reply by `subscribe`
        fanout.attach(self.session)

    def send(self, body: Any) -> None:
        """A request in the connection's own format."""
        if self.format == "json":
            self.session.receive(json.dumps(body), self.clock.now)
        else:
            self.session.receive(msgspec.msgpack.encode(body), self.clock.now)

    def raw(self, frame: str | bytes) -> None:
        self.session.receive(frame, self.clock.now)

    def frames(self) -> list[str | bytes]:
        held, self._held = self._held, []
        return held + list(self.session.drain())

    def decode(self, frame: str | bytes) -> dict[str, Any]:
        """One frame, checking it has the connection's frame type."""
        if self.format == "json":
            assert isinstance(frame, str)
            decoded: dict[str, Any] = json.loads(frame)
        else:
            assert isinstance(frame, bytes)
            decoded = msgspec.msgpack.decode(frame)
        return decoded

    def read(self) -> list[dict[str, Any]]:
        """Everything queued, decoded."""
        return [self.decode(frame) for frame in self.frames()]

    def request(self, body: Any) -> list[dict[str, Any]]:
        self.send(body)
        return self.read()

    def subscribe(self, *channels: str, request_id: Any = 1, **extra: Any) -> dict[str, Any]:
        """Subscribe; returns the reply, and `read`/`frames` still return what else came."""
        self.send({"op": "subscribe", "id": request_id, "channels": list(channels), **extra})
        reply = None
        held = []
        for frame in self.frames():
            decoded = self.decode(frame)
            if reply is None and decoded.get("id") == request_id and "op" in decoded:
                reply = decoded
            else:
                held.append(frame)
        self._held = held
        assert reply is not None, "no reply to subscribe"
        return reply


class HeatmapModel:
    """What a client holds of one heatmap channel: snapshots and diffs, per docs/protocol.md."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.epoch: str | None = None
        self.bins: dict[float, list[float]] = {}
        self.statistics: Any = None
        self.clusters: Any = None
        self.reference_price: float | None = None

    def apply(self, message: dict[str, Any]) -> None:
        data = message["data"]
        if message["type"] == "snapshot":
            self.seq, self.epoch = message["seq"], message["epoch"]
            self.bins = {row[0]: list(row) for row in data["bins"]}
            self.statistics = data["statistics"]
            self.clusters = data["clusters"]
            self.reference_price = data["reference_price"]
            return
        assert message["type"] == "diff"
        assert message["epoch"] == self.epoch, "a diff of another epoch without a snapshot"
        assert self.seq is not None and message["seq"] == self.seq + 1, (
            f"diff seq {message['seq']} does not follow {self.seq}"
        )
        self.seq = message["seq"]
        for row in data.get("bins", []):
            if row[3] == 0:
                self.bins.pop(row[0], None)
            else:
                self.bins[row[0]] = list(row)
        for field in ("statistics", "clusters", "reference_price"):
            if field in data:
                setattr(self, field, data[field])

    def matches(self, snapshot: HeatmapSnapshot) -> bool:
        expected = msgspec.to_builtins(snapshot)
        return (
            self.seq == snapshot.seq
            and self.epoch == snapshot.epoch
            and [self.bins[p] for p in sorted(self.bins)] == [list(b) for b in expected["bins"]]
            and self.statistics == expected["statistics"]
            and self.clusters == expected["clusters"]
            and self.reference_price == expected["reference_price"]
        )


def new_hub(symbols: tuple[str, ...] = (SYMBOL,)) -> tuple[Clock, Fanout, Feed]:
    """A fan-out with a 1h heatmap snapshot (seq 0) for each symbol, so each is tracked."""
    clock = Clock()
    fanout = Fanout(clock=clock)
    feed = Feed(fanout, clock)
    for symbol in symbols:
        feed.snapshot(symbol)
    return clock, fanout, feed
