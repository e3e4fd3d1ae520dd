"""Encoding of channel messages: once per message and format, never once per client.

The processor's messages cross the broker as JSON bytes; a JSON subscriber is handed
those very bytes, a MessagePack subscriber the one re-encoding made for the message,
and both as complete WebSocket frames made once and shared by every subscriber.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec

from hub.fanout.frames import BINARY, TEXT, frame
from hub.models import (
    Bin,
    ChannelMessage,
    Cluster,
    Density,
    DensityRun,
    HeatmapDiff,
    HeatmapSnapshot,
    LiquidationEvent,
    PredictedDiff,
    PredictedSnapshot,
    RawChannelMessage,
    Statistics,
    WindowCoverage,
)
from hub.rounding import output

Format = Literal["json", "msgpack"]
FORMATS: tuple[Format, ...] = ("json", "msgpack")
T = TypeVar("T")

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_raw_decoder = msgspec.json.Decoder(RawChannelMessage)
_snapshot_decoder = msgspec.json.Decoder(HeatmapSnapshot)
_predicted_snapshot_decoder = msgspec.json.Decoder(PredictedSnapshot)
_predicted_diff_decoder = msgspec.json.Decoder(PredictedDiff)


class _DiffBody(msgspec.Struct, gc=False):
    """A diff without its density, decoded apart (a replica applies a run of diffs'
    densities together)."""

    time: int
    bins: list[Bin] = []
    clusters: list[Cluster] | None = None
    statistics: Statistics | None = None
    reference_price: float | None = None
    coverage: WindowCoverage | None = None


class DiffDensity(msgspec.Struct, gc=False):
    density: Density | None = None
    density_patch: list[DensityRun] | None = None


_diff_body_decoder = msgspec.json.Decoder(_DiffBody)
_diff_density_decoder = msgspec.json.Decoder(DiffDensity)
_any_json = msgspec.json.Decoder()


def encode_message(message: ChannelMessage) -> bytes:
    """The one encoding of a channel message (MessagePack is made from it), rounded
    (hub.rounding). Heatmap streams and liquidations, nearly all that a busy hub publishes,
    come rounded from where they are made (the windows, the feeds' normalization): rounding
    them again here cost a third of ingest's CPU at 2,000 liquidations/s."""
    if isinstance(message.data, HeatmapSnapshot | HeatmapDiff | LiquidationEvent):
        return _json_encoder.encode(message)
    return _json_encoder.encode(output(message))


def decode_header(payload: bytes) -> RawChannelMessage:
    """Channel, type, seq and epoch of an encoded message; `data` stays encoded."""
    return _raw_decoder.decode(payload)


def decode_snapshot(data: msgspec.Raw) -> HeatmapSnapshot:
    return _snapshot_decoder.decode(data)


def decode_predicted_snapshot(data: msgspec.Raw) -> PredictedSnapshot:
    return _predicted_snapshot_decoder.decode(data)


def decode_predicted_diff(data: msgspec.Raw) -> PredictedDiff:
    return _predicted_diff_decoder.decode(data)


def decode_diff_body(data: msgspec.Raw) -> _DiffBody:
    return _diff_body_decoder.decode(data)


def decode_diff_density(data: msgspec.Raw) -> DiffDensity:
    return _diff_density_decoder.decode(data)


def encode(value: Any, fmt: Format) -> bytes:
    """A reply to a client's request: its `id` goes back exactly as it came."""
    return _json_encoder.encode(value) if fmt == "json" else _msgpack_encoder.encode(value)


def json_to_msgpack(payload: bytes) -> bytes:
    return _msgpack_encoder.encode(_any_json.decode(payload))


class EncodedMessage(msgspec.Struct, gc=False, eq=False):
    """A channel message with its encodings, each made at most once (`of` makes one).

    Untracked by the garbage collector, which is safe: it holds bytes, structs that are
    untracked too and a dict of frames, so it can be part of no reference cycle. Channel
    histories hold about 100,000 of them, renewed every minute or two; tracked, they
    survived into the oldest generation at a thousand or more a second. That made full
    collections come more often, and each one longer, for every client of the process.
    """

    json: bytes
    header: RawChannelMessage
    _msgpack: bytes | None = None
    _text: str | None = None
    _wire: dict[Format, bytes] = {}
    _decoded: Any = None

    @classmethod
    def of(cls, payload: bytes) -> EncodedMessage:
        return cls(payload, decode_header(payload))

    def encoded(self, fmt: Format) -> bytes:
        if fmt == "json":
            return self.json
        if self._msgpack is None:
            self._msgpack = json_to_msgpack(self.json)
        return self._msgpack

    def frame(self, fmt: Format) -> str | bytes:
        """What goes on the socket: one shared str for JSON text frames, bytes for MessagePack."""
        if fmt == "msgpack":
            return self.encoded("msgpack")
        if self._text is None:
            self._text = self.json.decode()
        return self._text

    def wire(self, fmt: Format) -> bytes:
        """The complete WebSocket frame of this message in `fmt`, made once for all clients."""
        framed = self._wire.get(fmt)
        if framed is None:
            opcode = TEXT if fmt == "json" else BINARY
            framed = self._wire[fmt] = frame(self.encoded(fmt), opcode)
        return framed

    def decoded(self, kind: type[T]) -> T:
        """`data` decoded as `kind`, once for all the subscribers that need to look inside."""
        if self._decoded is None:
            self._decoded = msgspec.json.decode(self.header.data, type=kind)
        return self._decoded
