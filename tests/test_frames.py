"""Server frames made once and shared: checked against python-websockets' own parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from hub.fanout.codec import EncodedMessage, encode_message
from hub.fanout.frames import BINARY, TEXT, frame
from hub.models import ChannelMessage


def parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None, extensions=[])
    try:
        next(parser)
    except StopIteration as done:
        parsed: Frame = done.value
    else:
        raise AssertionError("the parser wanted more bytes than the frame holds")
    assert reader.at_eof(), "bytes left over after the frame"
    return parsed


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
@pytest.mark.parametrize(("opcode", "expected"), [(TEXT, Opcode.TEXT), (BINARY, Opcode.BINARY)])
def test_every_length_encoding_parses_back(size: int, opcode: int, expected: Opcode) -> None:
    payload = b"a" * size
    parsed = parse(frame(payload, opcode))
    assert (parsed.opcode, parsed.fin, bytes(parsed.data)) == (expected, True, payload)


@given(st.binary(max_size=70_000))
def test_any_payload_round_trips(payload: bytes) -> None:
    assert bytes(parse(frame(payload, BINARY)).data) == payload


def test_a_message_is_framed_once_per_format() -> None:
    message = EncodedMessage.of(
        encode_message(ChannelMessage("liquidations:BTCUSDT", "liquidation", 1, "e", {"x": 1}))
    )
    assert message.wire("json") is message.wire("json")
    assert message.wire("msgpack") is message.wire("msgpack")
    assert bytes(parse(message.wire("json")).data) == message.json
    assert parse(message.wire("msgpack")).opcode is Opcode.BINARY
