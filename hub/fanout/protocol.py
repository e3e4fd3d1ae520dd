"""The WebSocket protocol of one client, without I/O (after python-websockets and h11).

`Session.receive(frame, now)` takes what the client sent; `Session.deliver(...)` takes a
channel message; both only queue, and call `on_ready` so the I/O driver knows there is
something to write. The driver takes complete, shared WebSocket frames with
`take_frames()` (or messages for an ASGI server with `next_frame()`), only as fast as
the client reads, and closes the socket when `close` is set. Nothing here awaits, so
the fan-out can hand a message to ten thousand sessions without waiting on any of them.

Decisions:
- The outbound queue is bounded. On overflow the oldest entry goes; if it belonged to a
  heatmap channel, every queued message of that channel goes with it and one marker
  takes their place, which becomes a fresh snapshot when the client reads that far
  (conflation: a slow reader gets the present, not a backlog). Liquidation and alert
  losses show as a seq jump. Still over the limit after `slow_close_ms`: close 1013.
- Requests are rate limited per second; over the limit is an `error`, still over after
  `abuse_close_ms` is close 1008. A frame over `max_frame_bytes` is close 1009.
- A connection opened with an API key carries the key's `grant`: a subscription to a
  channel it does not allow is a `forbidden` error. The key itself was checked before
  the session existed; nothing of it is looked at per delivered message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, NamedTuple, Protocol

import msgspec

from hub.channels import Channel, parse_channel
from hub.errors import ProtocolError, clip, echo
from hub.fanout.codec import EncodedMessage, Format, encode
from hub.fanout.frames import BINARY, TEXT, frame
from hub.models import Alert


class Limits(msgspec.Struct, frozen=True):
    max_subscriptions: int = 200
    max_frame_bytes: int = 64 * 1024
    max_requests_per_second: int = 50
    abuse_close_ms: int = 10_000
    max_queue: int = 1_000
    slow_close_ms: int = 10_000


class Close(NamedTuple):
    code: int
    reason: str


class AlertFilter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    min_z: float | None = None
    min_notional: float | None = None
    kinds: list[Literal["cluster_new", "cluster_growth", "large_liquidation", "cascade"]] | None = (
        None
    )
    side: Literal["long", "short"] | None = None

    def admits(self, alert: Alert) -> bool:
        return (
            (self.min_z is None or alert.z_score >= self.min_z)
            and (self.min_notional is None or alert.notional >= self.min_notional)
            and (self.kinds is None or alert.kind in self.kinds)
            and (self.side is None or alert.side == self.side)
        )


class Position(msgspec.Struct, frozen=True):
    epoch: str
    seq: int


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    op: str
    id: int | float | str | None = None
    channels: list[str] = []
    filter: AlertFilter | None = None
    since: dict[str, Position] = {}


class ChannelGrant(Protocol):
    """What a session asks of its API key (`hub.access.keys.Grant`)."""

    name: str

    def admits_channel(self, channel: str) -> bool: ...


class Directory(Protocol):
    """What a session needs from the fan-out; plain calls, no awaits."""

    def check(self, channel: Channel) -> None:
        """Raise `ProtocolError('unknown_symbol', ...)` for a symbol nobody tracks."""

    def join(self, session: Session, channel: str, since: Position | None) -> list[EncodedMessage]:
        """Subscribe; returns the catch-up messages (a snapshot, or the missed history)."""

    def leave(self, session: Session, channel: str) -> None: ...

    def fresh_snapshot(self, channel: str) -> EncodedMessage | None: ...

    def notice(self, channel: str) -> Mapping[Format, bytes] | None:
        """The channel's standing status message (ingest down), encoded per format."""


class _Resync(NamedTuple):
    channel: str


Outgoing = EncodedMessage | bytes | _Resync  # a channel message, an encoded reply, a marker


def _channel_of(item: Outgoing) -> str | None:
    """The channel an outbox item belongs to; None for a reply."""
    if isinstance(item, EncodedMessage):
        return item.header.ch
    if isinstance(item, _Resync):
        return item.channel
    return None


_json_any = msgspec.json.Decoder()
_msgpack_any = msgspec.msgpack.Decoder()


class Session:
    # Slots: a session is touched once per delivery, and ten thousand of them stay compact
    # (one cache line less to fetch per delivery than with a __dict__).
    __slots__ = (
        "__weakref__",
        "_abuse_since",
        "_outbox",
        "_overflow_since",
        "_resyncing",
        "_stalled_since",
        "_window_requests",
        "_window_start",
        "close",
        "directory",
        "dropped",
        "format",
        "grant",
        "limits",
        "on_ready",
        "subscriptions",
    )

    def __init__(
        self,
        fmt: Format,
        directory: Directory,
        limits: Limits,
        now: int,
        grant: ChannelGrant | None = None,
    ) -> None:
        self.format = fmt
        self.directory = directory
        self.limits = limits
        self.grant = grant  # None: no key was needed
        self.subscriptions: dict[str, AlertFilter | None] = {}
        self.close: Close | None = None
        self.dropped = 0
        # Items, not (channel, item) pairs: a tuple per delivery is an allocation the
        # collector counts, at 20,000 deliveries a second. `_channel_of` tells the channel.
        self._outbox: deque[Outgoing] = deque()
        self._resyncing: set[str] = set()
        self._overflow_since: int | None = None
        self._stalled_since: int | None = None
        self._window_start = now
        self._window_requests = 0
        self._abuse_since: int | None = None
        self.on_ready: Callable[[], None] = _nothing  # the I/O driver's wake-up

    # -- inbound ----------------------------------------------------------------------

    def receive(self, frame: str | bytes, now: int) -> None:
        if self.close is not None:
            return
        size = len(frame)
        if isinstance(frame, str) and not frame.isascii():
            size = len(frame.encode("utf-8", "surrogatepass"))  # the limit is in bytes
        if size > self.limits.max_frame_bytes:
            self.close = Close(1009, f"frame over {self.limits.max_frame_bytes} bytes")
            return
        if not self._admit_request(now):
            return
        body = None
        try:
            body = self._decode(frame)
            self._handle(body, now)
        except ProtocolError as error:
            request_id = _echo_id(body.get("id")) if isinstance(body, dict) else None
            self._reply(
                {"op": "error", "id": request_id, "code": error.code, "message": error.message},
                now,
            )

    def _admit_request(self, now: int) -> bool:
        if now - self._window_start >= 1000:
            # calm again: the last window was within the limit, or a whole second was silent
            if (
                self._window_requests <= self.limits.max_requests_per_second
                or now - self._window_start >= 2000
            ):
                self._abuse_since = None
            self._window_start = now
            self._window_requests = 0
        self._window_requests += 1
        if self._window_requests <= self.limits.max_requests_per_second:
            return True
        if self._abuse_since is None:
            self._abuse_since = now
        if now - self._abuse_since >= self.limits.abuse_close_ms:
            self.close = Close(1008, "request rate limit exceeded for too long")
        elif self._window_requests == self.limits.max_requests_per_second + 1:
            self._reply(
                {
                    "op": "error",
                    "id": None,
                    "code": "rate_limited",
                    "message": f"over {self.limits.max_requests_per_second} requests/s",
                },
                now,
            )
        return False

    def _decode(self, frame: str | bytes) -> Any:
        try:
            if isinstance(frame, str):
                return _json_any.decode(frame)
            return _msgpack_any.decode(frame)
        except (msgspec.DecodeError, RecursionError, UnicodeError):
            raise ProtocolError(
                "bad_request", "a request is one JSON (or MessagePack) object"
            ) from None

    def _handle(self, body: Any, now: int) -> None:
        if not isinstance(body, dict):
            raise ProtocolError("bad_request", "a request is one JSON (or MessagePack) object")
        try:
            request = msgspec.convert(body, Request)
        except msgspec.ValidationError as error:
            detail = clip(str(error), 160)  # msgspec quotes the offending value in full
            raise ProtocolError("bad_request", f"invalid request: {detail}") from None
        if request.id is not None and _echo_id(request.id) is None:
            raise ProtocolError("bad_request", "'id' is a string or a number within int64")
        if request.op == "ping":
            self._reply({"op": "pong", "id": request.id}, now)
        elif request.op == "subscribe":
            self._subscribe(request, now)
        elif request.op == "unsubscribe":
            names = [c.name for c in self._channels(request.channels)]
            for name in names:
                if self.subscriptions.pop(name, 0) != 0:
                    self.directory.leave(self, name)
                    self._purge(name)  # nothing of it follows the reply
            self._reply({"op": "unsubscribed", "id": request.id, "channels": names}, now)
        else:
            raise ProtocolError(
                "unknown_op", f"unknown op {echo(request.op)}; use subscribe, unsubscribe or ping"
            )

    def _channels(self, names: list[str]) -> list[Channel]:
        if not names:
            raise ProtocolError("bad_request", "'channels' must list at least one channel")
        return list({parse_channel(name): None for name in names})

    def _subscribe(self, request: Request, now: int) -> None:
        channels = self._channels(request.channels)
        for channel in channels:
            self.directory.check(channel)
            if self.grant is not None and not self.grant.admits_channel(channel.name):
                raise ProtocolError(
                    "forbidden", f"key {self.grant.name!r} may not subscribe to {channel.name}"
                )
        if request.filter is not None and any(c.kind != "alerts" for c in channels):
            raise ProtocolError("bad_request", "'filter' applies to alerts channels only")
        new = [c.name for c in channels if c.name not in self.subscriptions]
        if len(self.subscriptions) + len(new) > self.limits.max_subscriptions:
            raise ProtocolError(
                "too_many_subscriptions",
                f"at most {self.limits.max_subscriptions} subscriptions per connection",
            )
        since = {parse_channel(name).name: pos for name, pos in request.since.items()}
        self._reply(
            {"op": "subscribed", "id": request.id, "channels": [c.name for c in channels]}, now
        )
        for channel in channels:
            name = channel.name
            self.subscriptions[name] = request.filter
            if name in new or name in since:
                catch_up = self.directory.join(self, name, since.get(name))
                self._catch_up(channel, catch_up, replace=name not in new)
                notice = self.directory.notice(name)
                if notice is not None:
                    self.notify(name, notice, now)

    def _catch_up(self, channel: Channel, messages: list[EncodedMessage], replace: bool) -> None:
        """Queue what `join` returned, within the queue limit. A catch-up reaches the
        channel's present, so on a resumed subscription it replaces what was queued."""
        if not messages:
            return
        name = channel.name
        alert_filter = self.subscriptions.get(name)
        if alert_filter is not None:  # a resumed alerts channel gets only what it asked for
            messages = [m for m in messages if alert_filter.admits(_alert_of(m))]
        if replace:
            self._purge(name)
        room = self.limits.max_queue - len(self._outbox)
        if len(messages) > max(room, 1):
            if channel.kind in ("heatmap", "predicted"):  # too much history: a snapshot instead
                self._resyncing.add(name)
                self._queue(_Resync(name))
                return
            self.dropped += len(messages) - max(room, 0)
            messages = messages[len(messages) - max(room, 0) :]
        for message in messages:
            self._queue(message)

    # -- outbound ---------------------------------------------------------------------

    def _reply(self, body: dict[str, Any], now: int) -> None:
        if not self._make_room(now):
            return
        self._outbox.append(encode(body, self.format))
        self.on_ready()

    def notify(self, channel: str, notice: Mapping[Format, bytes], now: int) -> None:
        """Queue a status message of a subscribed channel. It has no seq, so like a reply
        it is never dropped for room; there is one per change of ingest's state."""
        if channel in self.subscriptions and self._make_room(now):
            self._outbox.append(notice[self.format])
            self.on_ready()

    def deliver(self, channel: str, message: EncodedMessage, now: int) -> bool:
        """Queue a channel message; False when the session is not subscribed or filters it."""
        # Once per subscriber and message: the common case is one lookup and one append.
        alert_filter = self.subscriptions.get(channel, _UNSUBSCRIBED)
        if alert_filter is _UNSUBSCRIBED or self.close is not None:
            return False
        if alert_filter is not None and not alert_filter.admits(_alert_of(message)):
            return False
        resyncing = self._resyncing
        if resyncing and channel in resyncing:
            return True  # the queued resync marker will bring this channel up to date
        if len(self._outbox) < self.limits.max_queue:
            self._overflow_since = None
        else:
            if not self._make_room(now):
                return False
            if channel in resyncing:
                return True  # making room conflated this very channel: the marker covers it
        self._outbox.append(message)
        self.on_ready()
        return True

    def _queue(self, message: EncodedMessage | _Resync) -> None:
        self._outbox.append(message)
        self.on_ready()

    def _make_room(self, now: int) -> bool:
        """Below the queue limit, or drop the oldest to stay at it; False once closed."""
        if len(self._outbox) < self.limits.max_queue:
            self._overflow_since = None
            return True
        self._overflow(now)
        return self.close is None

    def stalled(self, now: int) -> None:
        """The client has not taken what was written to it for a while (its transport's
        buffer is full). Still so after `slow_close_ms`: close 1013. A deliver that finds
        the queue full applies the same rule, but a client whose every channel is already
        conflated is sent nothing more, so only this call can tell it is gone."""
        if self._stalled_since is None:
            self._stalled_since = now
        elif now - self._stalled_since >= self.limits.slow_close_ms and self.close is None:
            self.close = Close(1013, "client too slow: it stopped reading")
            self._outbox.clear()
            self.on_ready()

    def flowing(self) -> None:
        """The client reads again."""
        self._stalled_since = None

    def _overflow(self, now: int) -> None:
        if self._overflow_since is None:
            self._overflow_since = now
        elif now - self._overflow_since >= self.limits.slow_close_ms:
            self.close = Close(1013, "client too slow: outbound queue over its limit")
            self._outbox.clear()
            self.on_ready()  # the driver sends the close, however stuck the client is
            return
        # Only channel messages are dropped. A reply has no seq, so its loss could not be
        # seen (a client would wait for its pong for ever); replies are bounded by the
        # request rate limit. A resync marker is kept too, or its channel would stay
        # silent for good; markers are at most one per heatmap subscription.
        index = next(
            (i for i, item in enumerate(self._outbox) if isinstance(item, EncodedMessage)),
            None,
        )
        if index is None:
            return
        oldest = self._outbox[index]
        del self._outbox[index]
        self.dropped += 1
        if oldest.header.type in ("diff", "snapshot"):
            channel = oldest.header.ch
            self.dropped += self._purge(channel)
            self._resyncing.add(channel)
            self._outbox.append(_Resync(channel))

    def _purge(self, channel: str) -> int:
        """Forget everything queued for `channel`, its resync marker included."""
        kept = deque(item for item in self._outbox if _channel_of(item) != channel)
        removed = len(self._outbox) - len(kept)
        self._outbox = kept
        self._resyncing.discard(channel)
        return removed

    def pending(self) -> int:
        return len(self._outbox)

    def next_frame(self) -> str | bytes | None:
        """The next message to send through an ASGI server: a str for JSON text frames,
        bytes for MessagePack binary frames; None when nothing is queued."""
        item = self._next_item()
        if item is None:
            return None
        if isinstance(item, EncodedMessage):
            return item.frame(self.format)
        return item.decode() if self.format == "json" else item

    def drain(self) -> Iterable[str | bytes]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def take_frames(self, budget: int) -> bytes:
        """Complete WebSocket frames to write as they are, up to about `budget` bytes (at
        least one frame when any is queued; empty when none is). A lone channel message is
        the very bytes object every other subscriber gets, neither copied nor listed; only
        replies are framed for this session."""
        first = b""
        more: list[bytes] | None = None
        size = 0
        outbox, fmt = self._outbox, self.format
        while outbox and size < budget:  # once per delivery: the common case inline
            item = outbox.popleft()
            if isinstance(item, _Resync):
                item = self._resynced(item)
                if item is None:
                    continue
            if isinstance(item, EncodedMessage):
                framed = item.wire(fmt)
            else:
                framed = frame(item, TEXT if fmt == "json" else BINARY)
            if not first:
                first = framed
            elif more is None:
                more = [first, framed]
            else:
                more.append(framed)
            size += len(framed)
        return first if more is None else b"".join(more)

    def _next_item(self) -> EncodedMessage | bytes | None:
        """The next channel message (a resync marker turned into its fresh snapshot) or
        encoded reply, or None."""
        while self._outbox:
            item = self._outbox.popleft()
            if isinstance(item, _Resync):
                fresh = self._resynced(item)
                if fresh is None:
                    continue
                return fresh
            return item
        return None

    def _resynced(self, marker: _Resync) -> EncodedMessage | None:
        """The fresh snapshot a resync marker stands for; None when the channel was left
        or has none."""
        self._resyncing.discard(marker.channel)
        if marker.channel not in self.subscriptions:
            return None
        return self.directory.fresh_snapshot(marker.channel)


def _nothing() -> None:
    return None


_UNSUBSCRIBED: Any = object()  # a subscription's filter is None or a filter, never this


_ID_MIN, _ID_MAX = -(2**63), 2**63 - 1


def _echo_id(value: object) -> int | float | str | None:
    """`value` when it can be echoed as an `id` (a string, or a number that every client
    and both formats can carry), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, int) and not _ID_MIN <= value <= _ID_MAX:
        return None
    return value


def _alert_of(message: EncodedMessage) -> Alert:
    return message.decoded(Alert)
