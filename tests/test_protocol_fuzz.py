"""Anything a client can send: `Session.receive` never raises, every frame it queues is a
well-formed reply or channel message, and it closes only for the documented reasons (an oversize
frame: 1009; flooding for too long: 1008)."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.fanout.codec import Format
from hub.fanout.protocol import Limits, Session
from tests.protocol_kit import SYMBOL, new_hub

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = Limits(max_frame_bytes=4096, max_requests_per_second=20, abuse_close_ms=2_000)
CODES = {
    "bad_request",
    "bad_channel",
    "bad_window",
    "unknown_op",
    "unknown_symbol",
    "too_many_subscriptions",
    "rate_limited",
}
REPLY_OPS = {"pong", "subscribed", "unsubscribed", "error"}

# -- what a client might send ----------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: ints far beyond 64 bits
    st.integers(-(2**64), 2**64),
    st.floats(),  # NaN and infinities included
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=8,
)
# wrong types for request fields: flat, so that generating them stays cheap
field_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), scalars, max_size=3),
)
channel_names = st.one_of(
    st.sampled_from(
        [
            "heatmap:BTCUSDT",
            "heatmap:btcusdt:5m",
            "heatmap:ETHUSDT:1h",
            "heatmap:BTCUSDT:2h",
            "heatmap:*",
            "liquidations:*",
            f"liquidations:{SYMBOL}",
            "alerts:*",
            "alerts:btcusdt",
            "liquidity:BTCUSDT",
            "trades:BTCUSDT",
            "",
            ":",
            "heatmap::",
        ]
    ),
    st.builds(
        lambda kind, symbol, window: ":".join(p for p in (kind, symbol, window) if p is not None),
        st.sampled_from(["heatmap", "liquidations", "alerts", "liquidity", "x"]),
        st.text(max_size=10),
        st.none() | st.text(max_size=4),
    ),
)
filters = st.one_of(
    field_values,
    st.dictionaries(
        st.sampled_from(["min_z", "min_notional", "kinds", "side", "other"]),
        st.one_of(
            field_values,
            st.lists(st.sampled_from(["cluster_new", "cascade", "large_liquidation", "x"])),
            st.sampled_from(["long", "short"]),
        ),
    ),
)
positions = st.one_of(
    field_values,
    st.fixed_dictionaries(
        {"epoch": st.one_of(st.just("epoch-1"), field_values), "seq": field_values}
    ),
    st.fixed_dictionaries({"epoch": st.just("epoch-1"), "seq": st.integers()}),
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "op": st.one_of(st.sampled_from(["subscribe", "unsubscribe", "ping"]), field_values),
        "id": field_values,
        "channels": st.one_of(
            st.lists(st.one_of(channel_names, field_values), max_size=5), field_values
        ),
        "filter": filters,
        "since": st.one_of(st.dictionaries(channel_names, positions, max_size=3), field_values),
        "extra": field_values,
    },
)


def deeply_nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


nested_texts = st.builds(
    lambda depth, kind: {
        "list": deeply_nested(depth),
        "object": '{"a":' * depth + "1" + "}" * depth,
        "id": '{"op":"ping","id":' + deeply_nested(depth) + "}",
        "channels": '{"op":"subscribe","channels":' + deeply_nested(depth, '"alerts:*"') + "}",
        "unclosed": "[" * depth,
    }[kind],
    st.integers(1, 3000),
    st.sampled_from(["list", "object", "id", "channels", "unclosed"]),
)
huge_numbers = st.builds(
    lambda digits, field: '{"op":"ping","%s":%s}' % (field, digits),  # noqa: UP031
    st.sampled_from(["9" * 400, "-" + "9" * 30, "1e400", "-1e400", "1e-400", "0.1e999999"]),
    st.sampled_from(["id", "op", "channels"]),
)


def to_json(value: Any) -> str:
    return json.dumps(value)  # NaN and Infinity come out as invalid JSON: also worth sending


def to_msgpack(value: Any) -> bytes | str:
    try:
        return msgspec.msgpack.encode(value)
    except (OverflowError, TypeError):
        return to_json(value)  # ints beyond 64 bits: send those as JSON


def encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[str | bytes]:
    return st.one_of(values.map(to_json), values.map(to_msgpack))


frames = st.one_of(
    encoded(requests),
    encoded(json_values),
    st.binary(max_size=200),
    st.text(max_size=200),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=5).map(
        lambda s: '{"op":"ping","id":"' + s + '"}'
    ),
    nested_texts,
    huge_numbers,
    st.binary(min_size=4000, max_size=5000),  # around the frame limit
)

# -- what it must get back ------------------------------------------------------------------


def frame_size(frame: str | bytes) -> int:
    return len(frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame)


def check_output(session: Session) -> None:
    for frame in session.drain():
        if session.format == "json":
            assert isinstance(frame, str)
            body = json.loads(frame)
        else:
            assert isinstance(frame, bytes)
            body = msgspec.msgpack.decode(frame)
        assert isinstance(body, dict)
        if "ch" in body:
            assert set(body) == {"ch", "type", "seq", "epoch", "data"}
            assert body["ch"] in session.subscriptions
            continue
        assert body["op"] in REPLY_OPS
        request_id = body["id"]
        assert request_id is None or (
            isinstance(request_id, int | float | str) and not isinstance(request_id, bool)
        )
        if isinstance(request_id, int):
            assert -(2**63) <= request_id < 2**63
        if isinstance(request_id, float) and session.format == "json":
            assert math.isfinite(request_id)
        if body["op"] == "error":
            assert body["code"] in CODES and isinstance(body["message"], str)
        if body["op"] in ("subscribed", "unsubscribed"):
            assert all(isinstance(name, str) for name in body["channels"])


def run(fmt: Format, sent: list[tuple[int, str | bytes]]) -> None:
    """Feed the frames at their times (ms after start); check every documented outcome."""
    clock, fanout, feed = new_hub()
    feed.diff()
    feed.liquidation()
    session = Session(fmt, fanout, LIMITS, clock.now)
    fanout.attach(session)
    start = clock.now
    for at, frame in sent:
        clock.now = start + at
        closed_before = session.close
        session.receive(frame, clock.now)
        if closed_before is None and session.close is not None:
            if session.close.code == 1009:
                assert frame_size(frame) > LIMITS.max_frame_bytes
            else:
                assert session.close.code == 1008, session.close
                assert clock.now - start >= LIMITS.abuse_close_ms
        elif closed_before is None:
            assert frame_size(frame) <= LIMITS.max_frame_bytes
        if session.close is None and at % 3 == 0:
            feed.diff()
            feed.liquidation()
            feed.alert()
        check_output(session)  # the writer keeps up: a slow reader is not what is fuzzed
    assert len(session.subscriptions) <= LIMITS.max_subscriptions
    fanout.detach(session)
    assert all(session not in s for s in fanout.subscribers.values())


formats = st.sampled_from(["json", "msgpack"])


@SETTINGS
@given(formats, frames)
def test_any_single_frame(fmt: Format, frame: str | bytes) -> None:
    run(fmt, [(0, frame)])


@SETTINGS
@given(formats, st.lists(encoded(requests), min_size=1, max_size=8))
def test_any_request_sequence(fmt: Format, sequence: list[str | bytes]) -> None:
    run(fmt, [(i * 7, frame) for i, frame in enumerate(sequence)])


@SETTINGS
@given(
    formats,
    st.lists(
        st.tuples(st.integers(0, 400), st.integers(1, 40), frames),
        min_size=1,
        max_size=10,
    ),
)
def test_bursts_over_time(fmt: Format, bursts: list[tuple[int, int, str | bytes]]) -> None:
    """Bursts of the same frame with gaps between them: flooding may close (1008), and
    only after `abuse_close_ms` of it."""
    sent = []
    at = 0
    for gap, count, frame in bursts:
        at += gap
        sent += [(at, frame)] * count
    run(fmt, sent)


def test_a_flood_is_closed_only_after_abuse_close_ms() -> None:
    clock, fanout, _ = new_hub()
    session = Session("json", fanout, LIMITS, clock.now)
    start = clock.now
    ping = '{"op":"ping","id":1}'
    while session.close is None:
        clock.now += 10
        session.receive(ping, clock.now)
        assert clock.now - start < 10_000
    assert session.close.code == 1008
    assert clock.now - start >= LIMITS.abuse_close_ms
