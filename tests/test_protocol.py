"""The WebSocket protocol core (`Session` + `Fanout`) without sockets: requests in, frames
and close decisions out, against docs/protocol.md."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from hub.fanout import channel_state
from hub.fanout.codec import Format
from hub.fanout.protocol import Limits
from hub.models import ChannelMessage, LiquidationEvent
from tests.protocol_kit import EPOCH, SYMBOL, Client, HeatmapModel, new_hub

FORMATS: list[Format] = ["json", "msgpack"]
HEATMAP = f"heatmap:{SYMBOL}:1h"


def channel_messages(frames: list[dict[str, Any]], channel: str) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("ch") == channel]


def replies(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if "op" in f]


# -- ops and ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("request_id", [7, 0, -3, "abc", "", 1.5])
def test_every_op_echoes_id(fmt: Format, request_id: Any) -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, fmt)
    assert client.request({"op": "ping", "id": request_id}) == [{"op": "pong", "id": request_id}]
    reply, snapshot = client.request(
        {"op": "subscribe", "id": request_id, "channels": ["heatmap:btcusdt"]}
    )
    assert reply == {"op": "subscribed", "id": request_id, "channels": [HEATMAP]}
    assert snapshot["type"] == "snapshot"
    assert client.request({"op": "unsubscribe", "id": request_id, "channels": [HEATMAP]}) == [
        {"op": "unsubscribed", "id": request_id, "channels": [HEATMAP]}
    ]
    [error] = client.request({"op": "subscribe", "id": request_id, "channels": ["nope:X"]})
    assert error["op"] == "error" and error["id"] == request_id
    [error] = client.request({"op": "dance", "id": request_id})
    assert error == {
        "op": "error",
        "id": request_id,
        "code": "unknown_op",
        "message": error["message"],
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_or_null_id_is_echoed_as_null(fmt: Format) -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, fmt)
    assert client.request({"op": "ping"}) == [{"op": "pong", "id": None}]
    assert client.request({"op": "ping", "id": None}) == [{"op": "pong", "id": None}]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bad_id", [True, False, [1], {"a": 1}, [], {}])
def test_bad_id_is_an_error_with_null_id(fmt: Format, bad_id: Any) -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, fmt)
    for op in ("ping", "subscribe", "unsubscribe"):
        [error] = client.request({"op": op, "id": bad_id, "channels": [HEATMAP]})
        assert error["op"] == "error"
        assert error["id"] is None
        assert error["code"] == "bad_request"
    assert client.session.subscriptions == {}


@pytest.mark.parametrize("fmt", FORMATS)
def test_id_beyond_int64_is_an_error_in_either_format(fmt: Format) -> None:
    # a JSON request may reach a MessagePack connection; MessagePack cannot carry 2**70
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, fmt)
    client.raw(json.dumps({"op": "ping", "id": 2**70}))
    [error] = client.read()
    assert error["op"] == "error" and error["id"] is None and error["code"] == "bad_request"
    client.raw(json.dumps({"op": "dance", "id": -(2**70)}))
    [error] = client.read()
    assert error["id"] is None and error["code"] == "bad_request"
    client.raw(json.dumps({"op": "ping", "id": 2**63 - 1}))
    assert client.read() == [{"op": "pong", "id": 2**63 - 1}]


@pytest.mark.parametrize("fmt", FORMATS)
def test_either_request_format_is_accepted_and_replies_use_the_connections(
    fmt: Format,
) -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, fmt)
    client.raw(json.dumps({"op": "ping", "id": 1}))
    client.raw(msgspec.msgpack.encode({"op": "ping", "id": 2}))
    assert client.read() == [{"op": "pong", "id": 1}, {"op": "pong", "id": 2}]


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "{",
        '{"op": "ping"',
        "",
        b"\xc1",  # never used in MessagePack
        b"\xa2\xff\xfe",  # a MessagePack str that is not UTF-8
        b"",
    ],
)
def test_not_json_or_msgpack_is_bad_request(frame: str | bytes) -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock)
    client.raw(frame)
    [error] = client.read()
    assert error["op"] == "error" and error["id"] is None and error["code"] == "bad_request"
    assert client.session.close is None


@pytest.mark.parametrize("body", [[], [{"op": "ping"}], 1, "ping", None, 1.5, True])
def test_not_an_object_is_bad_request(body: Any) -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock)
    [error] = client.request(body)
    assert error["code"] == "bad_request" and error["id"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"id": 1},
        {"op": 5, "id": 1},
        {"op": "ping", "id": 1, "extra": True},
        {"op": "subscribe", "id": 1, "channels": HEATMAP},
        {"op": "subscribe", "id": 1, "channels": [5]},
        {"op": "subscribe", "id": 1, "channels": []},
        {"op": "subscribe", "id": 1},
        {"op": "unsubscribe", "id": 1, "channels": []},
        {"op": "subscribe", "id": 1, "channels": [HEATMAP], "since": []},
        {"op": "subscribe", "id": 1, "channels": [HEATMAP], "since": {HEATMAP: {"seq": 1}}},
    ],
)
def test_malformed_request_is_bad_request_with_id(body: dict[str, Any]) -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock)
    [error] = client.request(body)
    assert error == {"op": "error", "id": 1, "code": "bad_request", "message": error["message"]}
    assert client.session.subscriptions == {}


def test_unknown_op() -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock)
    [error] = client.request({"op": "SUBSCRIBE", "id": 4, "channels": [HEATMAP]})
    assert error["code"] == "unknown_op" and error["id"] == 4
    assert "subscribe" in error["message"]


@pytest.mark.parametrize(
    ("channel", "code"),
    [
        ("trades:BTCUSDT", "bad_channel"),  # unknown kind
        ("HEATMAP:BTCUSDT", "bad_channel"),
        ("heatmap", "bad_channel"),
        ("", "bad_channel"),
        ("heatmap:BTCUSDT:2h", "bad_window"),
        ("heatmap:BTCUSDT:1H", "bad_window"),
        ("heatmap:BTCUSDT:", "bad_window"),
        ("heatmap:BTCUSDT:1h:x", "bad_channel"),
        ("liquidations:BTCUSDT:1h", "bad_channel"),
        ("heatmap:DOGEUSDT", "unknown_symbol"),
        ("alerts:DOGEUSDT", "unknown_symbol"),
        ("heatmap:*", "bad_channel"),  # wildcard heatmap
        ("heatmap:*:1h", "bad_channel"),
        ("liquidity:*", "bad_channel"),
        ("heatmap:BTC-USDT", "bad_channel"),
        ("heatmap:" + "A" * 200, "bad_channel"),
    ],
)
def test_channel_errors(channel: str, code: str) -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock)
    [error] = client.request({"op": "subscribe", "id": "x", "channels": [HEATMAP, channel]})
    assert error == {"op": "error", "id": "x", "code": code, "message": error["message"]}
    assert client.session.subscriptions == {}, "a refused request subscribes to nothing"
    assert fanout.subscribers == {}


def test_too_many_subscriptions_is_configurable() -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, limits=Limits(max_subscriptions=3))
    names = ["liquidations:*", "alerts:*", f"alerts:{SYMBOL}", f"liquidations:{SYMBOL}"]
    assert client.request({"op": "subscribe", "id": 1, "channels": names[:3]})[0]["op"] == (
        "subscribed"
    )
    [error] = client.request({"op": "subscribe", "id": 2, "channels": names[3:]})
    assert error["code"] == "too_many_subscriptions" and error["id"] == 2
    # all or nothing: one new channel over the limit refuses the whole request
    [error] = client.request({"op": "subscribe", "id": 3, "channels": names[2:]})
    assert error["code"] == "too_many_subscriptions"
    assert set(client.session.subscriptions) == set(names[:3])
    # subscribing again to held channels is no new subscription
    assert client.request({"op": "subscribe", "id": 4, "channels": names[:3]})[0]["op"] == (
        "subscribed"
    )
    client.request({"op": "unsubscribe", "id": 5, "channels": names[:1]})
    [reply] = client.request({"op": "subscribe", "id": 6, "channels": names[3:]})
    assert reply == {"op": "subscribed", "id": 6, "channels": names[3:]}


def test_default_subscription_limit_is_200() -> None:
    symbols = tuple(f"S{i}USDT" for i in range(40))
    clock, fanout, _ = new_hub(symbols)
    client = Client(fanout, clock)
    names = [f"heatmap:{s}:{w}" for s in symbols for w in ("5m", "15m", "1h", "4h", "12h")]
    assert len(names) == 200
    assert client.request({"op": "subscribe", "id": 1, "channels": names})[0]["op"] == (
        "subscribed"
    )
    [error] = client.request({"op": "subscribe", "id": 2, "channels": ["liquidations:*"]})
    assert error["code"] == "too_many_subscriptions"


@pytest.mark.parametrize(
    "channels", [[HEATMAP], [f"liquidations:{SYMBOL}"], ["alerts:*", "liquidations:*"]]
)
def test_filter_on_a_non_alerts_channel_is_refused(channels: list[str]) -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock)
    [error] = client.request(
        {"op": "subscribe", "id": 1, "channels": channels, "filter": {"min_z": 1}}
    )
    assert error["code"] == "bad_request" and "alerts" in error["message"]
    assert client.session.subscriptions == {}


@pytest.mark.parametrize(
    "bad_filter",
    [
        {"min_z": "high"},
        {"min_notional": [1]},
        {"kinds": ["cluster_vanished"]},
        {"kinds": "cluster_new"},
        {"side": "up"},
        {"colour": "red"},
        5,
        ["min_z"],
    ],
)
def test_bad_filter_field_is_refused(bad_filter: Any) -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock)
    [error] = client.request(
        {"op": "subscribe", "id": 9, "channels": ["alerts:*"], "filter": bad_filter}
    )
    assert error["code"] == "bad_request" and error["id"] == 9
    assert client.session.subscriptions == {}


# -- subscribe, deliver, unsubscribe --------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "canonical"),
    [
        ("heatmap:btcusdt", HEATMAP),
        ("heatmap:BtcUsdt:1h", HEATMAP),
        ("heatmap:btcusdt:5m", f"heatmap:{SYMBOL}:5m"),
        ("liquidations:btcusdt", f"liquidations:{SYMBOL}"),
        ("alerts:btcusdt", f"alerts:{SYMBOL}"),
        ("liquidity:btcusdt", f"liquidity:{SYMBOL}"),
        ("alerts:*", "alerts:*"),
    ],
)
def test_channel_names_are_answered_in_canonical_form(asked: str, canonical: str) -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock)
    reply = client.subscribe(asked, canonical)
    assert reply["channels"] == [canonical], "duplicates after canonicalisation collapse"
    assert set(client.session.subscriptions) == {canonical}


def test_subscribe_gives_snapshot_then_diffs_in_seq_order() -> None:
    clock, fanout, feed = new_hub()
    for _ in range(3):
        feed.diff()
    client = Client(fanout, clock)
    client.subscribe("heatmap:btcusdt")
    for _ in range(5):
        clock.advance(50)
        feed.diff()
    frames = client.read()
    assert [(f["type"], f["seq"]) for f in frames] == [("snapshot", 3)] + [
        ("diff", s) for s in range(4, 9)
    ]
    assert all(f["ch"] == HEATMAP and f["epoch"] == EPOCH for f in frames)
    model = HeatmapModel()
    for frame in frames:
        model.apply(frame)
    snapshot = fanout.snapshot(HEATMAP)
    assert snapshot is not None and model.matches(snapshot)
    # bins with count 0 are gone
    feed.diff(bins=[(105.0, 0.0, 0.0, 0)])
    [frame] = client.read()
    model.apply(frame)
    assert 105.0 not in model.bins and model.matches(fanout.snapshot(HEATMAP))  # type: ignore[arg-type]


def test_subscribe_before_the_first_snapshot_gets_it_when_it_comes() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock)
    reply = client.subscribe(f"heatmap:{SYMBOL}:4h")
    assert reply["channels"] == [f"heatmap:{SYMBOL}:4h"] and client.read() == []
    feed.snapshot(window="4h", seq=12)
    feed.diff(window="4h")
    assert [(f["type"], f["seq"]) for f in client.read()] == [("snapshot", 12), ("diff", 13)]


def test_subscribing_again_sends_no_second_snapshot_and_no_duplicates() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock)
    client.subscribe(HEATMAP)
    client.subscribe("heatmap:btcusdt", request_id=2)
    feed.diff()
    assert [f["type"] for f in client.read()] == ["snapshot", "diff"]


def test_liquidations_and_wildcards() -> None:
    clock, fanout, feed = new_hub((SYMBOL, "ETHUSDT"))
    one, every = Client(fanout, clock), Client(fanout, clock)
    one.subscribe(f"liquidations:{SYMBOL}")
    every.subscribe("liquidations:*")
    btc = feed.liquidation(SYMBOL)
    eth = feed.liquidation("ETHUSDT", side="short")
    [frame] = one.read()
    assert frame == {
        "ch": f"liquidations:{SYMBOL}",
        "type": "liquidation",
        "seq": 1,
        "epoch": EPOCH,
        "data": msgspec.to_builtins(btc),
    }
    frames = every.read()
    assert [(f["ch"], f["seq"]) for f in frames] == [("liquidations:*", 1), ("liquidations:*", 2)]
    assert [msgspec.convert(f["data"], LiquidationEvent) for f in frames] == [btc, eth]


def test_unsubscribe_stops_delivery() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock)
    client.subscribe(HEATMAP, f"liquidations:{SYMBOL}")
    client.read()
    feed.diff()
    feed.liquidation()
    frames = client.request({"op": "unsubscribe", "id": 3, "channels": ["heatmap:btcusdt"]})
    assert replies(frames) == [{"op": "unsubscribed", "id": 3, "channels": [HEATMAP]}]
    assert HEATMAP not in fanout.subscribers
    feed.diff()
    feed.liquidation()
    frames += client.read()
    assert channel_messages(frames, HEATMAP) == []
    assert [f["seq"] for f in channel_messages(frames, f"liquidations:{SYMBOL}")] == [1, 2]
    # unsubscribing from what one does not hold is no error
    [reply] = client.request({"op": "unsubscribe", "id": 4, "channels": ["alerts:*"]})
    assert reply == {"op": "unsubscribed", "id": 4, "channels": ["alerts:*"]}


def test_nothing_of_a_channel_follows_its_unsubscribed_reply() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock)
    client.subscribe(f"liquidations:{SYMBOL}")
    feed.liquidation()
    feed.liquidation()
    client.send({"op": "unsubscribe", "id": 2, "channels": [f"liquidations:{SYMBOL}"]})
    assert client.read() == [
        {"op": "unsubscribed", "id": 2, "channels": [f"liquidations:{SYMBOL}"]}
    ]


def test_resubscribing_after_unsubscribe_starts_from_a_fresh_snapshot() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock, limits=Limits(max_queue=3))
    client.subscribe(HEATMAP)
    for _ in range(5):
        feed.diff()  # overflows: a resync marker is queued
    client.request({"op": "unsubscribe", "id": 2, "channels": [HEATMAP]})
    feed.diff()
    client.subscribe(HEATMAP, request_id=3)
    feed.diff()
    frames = channel_messages(client.read(), HEATMAP)
    model = HeatmapModel()
    for frame in frames:
        model.apply(frame)
    assert [(f["type"], f["seq"]) for f in frames] == [("snapshot", 6), ("diff", 7)]
    assert model.matches(fanout.snapshot(HEATMAP))  # type: ignore[arg-type]


def test_detach_leaves_every_channel() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock)
    client.subscribe(HEATMAP, "alerts:*")
    fanout.detach(client.session)
    assert fanout.subscribers == {} and client.session not in fanout.sessions
    feed.diff()
    assert fanout.stats.deliveries == 0


# -- alert filters ------------------------------------------------------------------------

ALERTS: list[dict[str, Any]] = [
    {"kind": "cluster_new", "z_score": 1.9, "notional": 500_000.0, "side": "long"},
    {"kind": "cluster_new", "z_score": 2.0, "notional": 99_999.0, "side": "short"},
    {"kind": "cluster_growth", "z_score": 2.5, "notional": 100_000.0, "side": "short"},
    {"kind": "large_liquidation", "z_score": 3.5, "notional": 2_000_000.0, "side": "long"},
    {"kind": "cascade", "z_score": 0.5, "notional": 150_000.0, "side": None},
]


@pytest.mark.parametrize(
    ("alert_filter", "admitted"),
    [
        (None, [0, 1, 2, 3, 4]),
        ({}, [0, 1, 2, 3, 4]),
        ({"min_z": 2.0}, [1, 2, 3]),
        ({"min_notional": 100_000}, [0, 2, 3, 4]),
        ({"kinds": ["cluster_new", "cascade"]}, [0, 1, 4]),
        ({"kinds": []}, []),
        ({"side": "short"}, [1, 2]),
        ({"side": "long"}, [0, 3]),
        ({"min_z": 2.0, "min_notional": 100_000}, [2, 3]),
        ({"min_z": 2.0, "kinds": ["cluster_new"]}, [1]),
        ({"min_z": 2.0, "min_notional": 100_000, "kinds": ["cluster_growth"], "side": "long"}, []),
        ({"min_notional": 100_000, "side": "long", "kinds": ["large_liquidation"]}, [3]),
    ],
)
@pytest.mark.parametrize("channel", ["alerts:*", f"alerts:{SYMBOL}"])
def test_alert_filters_combine_with_and(
    alert_filter: dict[str, Any] | None, admitted: list[int], channel: str
) -> None:
    clock, fanout, feed = new_hub()
    client, everything = Client(fanout, clock), Client(fanout, clock)
    extra = {} if alert_filter is None else {"filter": alert_filter}
    assert client.subscribe(channel, **extra)["op"] == "subscribed"
    everything.subscribe(channel)
    sent = [feed.alert(**spec) for spec in ALERTS]
    frames = client.read()
    assert [f["data"]["id"] for f in frames] == [sent[i].id for i in admitted]
    assert all(f["ch"] == channel and f["type"] == "alert" for f in frames)
    # a filter is per connection: the other client gets every alert
    assert len(everything.read()) == len(ALERTS)


def test_a_new_subscribe_replaces_the_filter() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock)
    client.subscribe("alerts:*", filter={"min_z": 3})
    feed.alert(z_score=1.0)
    assert client.read() == []
    client.subscribe("alerts:*", request_id=2)
    feed.alert(z_score=1.0)
    assert len(client.read()) == 1


# -- resume -------------------------------------------------------------------------------


def _client_at(clock: Any, fanout: Any, diffs: int, feed: Any) -> HeatmapModel:
    """A first connection that saw the snapshot and `diffs` diffs, then went away."""
    client = Client(fanout, clock)
    client.subscribe(HEATMAP)
    for _ in range(diffs):
        feed.diff()
    model = HeatmapModel()
    for frame in client.read():
        model.apply(frame)
    fanout.detach(client.session)
    return model


def test_resume_replays_missed_diffs_in_order() -> None:
    clock, fanout, feed = new_hub()
    model = _client_at(clock, fanout, 3, feed)
    for _ in range(4):
        clock.advance(100)
        feed.diff()
    client = Client(fanout, clock)
    reply = client.subscribe(
        "heatmap:btcusdt", since={"heatmap:btcusdt": {"epoch": EPOCH, "seq": model.seq}}
    )
    assert reply["channels"] == [HEATMAP]
    feed.diff()
    frames = client.read()
    assert [(f["type"], f["seq"]) for f in frames] == [("diff", s) for s in range(4, 9)]
    for frame in frames:
        model.apply(frame)
    assert model.matches(fanout.snapshot(HEATMAP))  # type: ignore[arg-type]


def test_resume_when_up_to_date_sends_nothing() -> None:
    clock, fanout, feed = new_hub()
    model = _client_at(clock, fanout, 2, feed)
    client = Client(fanout, clock)
    client.subscribe(HEATMAP, since={HEATMAP: {"epoch": EPOCH, "seq": model.seq}})
    assert client.read() == []
    feed.diff()
    assert [f["seq"] for f in client.read()] == [3]


@pytest.mark.parametrize(
    "position",
    [
        {"epoch": "another-epoch", "seq": 2},  # the history was reset
        {"epoch": EPOCH, "seq": 99},  # ahead of the server: not this history
        {"epoch": EPOCH, "seq": -5},
    ],
)
def test_resume_from_a_position_not_held_gives_a_fresh_snapshot(
    position: dict[str, Any],
) -> None:
    clock, fanout, feed = new_hub()
    for _ in range(4):
        feed.diff()
    client = Client(fanout, clock)
    client.subscribe(HEATMAP, since={HEATMAP: position})
    assert [(f["type"], f["seq"]) for f in client.read()] == [("snapshot", 4)]


def test_resume_from_a_seq_too_old_gives_a_fresh_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(channel_state, "HISTORY_MIN_MESSAGES", 5)
    monkeypatch.setattr(channel_state, "HISTORY_MIN_MS", 0)  # then only the last 5 are held
    clock, fanout, feed = new_hub()
    model = _client_at(clock, fanout, 1, feed)
    for _ in range(10):
        clock.advance(1)
        feed.diff()
    client = Client(fanout, clock)
    client.subscribe(HEATMAP, since={HEATMAP: {"epoch": EPOCH, "seq": model.seq}})
    frames = client.read()
    assert [(f["type"], f["seq"]) for f in frames] == [("snapshot", 11)]
    # just within what is held: the diffs
    client = Client(fanout, clock)
    client.subscribe(HEATMAP, since={HEATMAP: {"epoch": EPOCH, "seq": 6}})
    assert [(f["type"], f["seq"]) for f in client.read()] == [("diff", s) for s in range(7, 12)]


def test_resume_from_before_a_new_snapshot_gives_the_snapshot() -> None:
    clock, fanout, feed = new_hub()
    model = _client_at(clock, fanout, 2, feed)
    feed.snapshot(seq=10, bins=[(90.0, 1.0, 2.0, 3)])  # a new epoch's first snapshot
    client = Client(fanout, clock)
    client.subscribe(HEATMAP, since={HEATMAP: {"epoch": EPOCH, "seq": model.seq}})
    [frame] = client.read()
    assert (frame["type"], frame["seq"]) == ("snapshot", 10)


def test_resume_of_liquidations_replays_the_missed_ones() -> None:
    clock, fanout, feed = new_hub()
    for _ in range(5):
        feed.liquidation()
    client = Client(fanout, clock)
    client.subscribe(
        f"liquidations:{SYMBOL}", since={f"liquidations:{SYMBOL}": {"epoch": EPOCH, "seq": 2}}
    )
    assert [f["seq"] for f in client.read()] == [3, 4, 5]


def test_resume_of_liquidations_across_an_upstream_seq_jump() -> None:
    # the broker lost seq 3 and 4: what is held after the position is still replayed
    clock, fanout, _ = new_hub()
    channel = f"liquidations:{SYMBOL}"
    event = LiquidationEvent("binance", SYMBOL, "long", 100.0, 1.0, 100.0, clock.now)
    for seq in (1, 2, 5, 6):
        fanout.publish_message(ChannelMessage(channel, "liquidation", seq, EPOCH, event))
    client = Client(fanout, clock)
    client.subscribe(channel, since={channel: {"epoch": EPOCH, "seq": 2}})
    assert [f["seq"] for f in client.read()] == [5, 6]


def test_resumed_alerts_are_filtered_like_live_ones() -> None:
    clock, fanout, feed = new_hub()
    for notional in (50_000.0, 2_000_000.0, 10_000.0, 3_000_000.0):
        feed.alert(notional=notional)
    client = Client(fanout, clock)
    channel = f"alerts:{SYMBOL}"
    client.subscribe(
        channel,
        filter={"min_notional": 1_000_000},
        since={channel: {"epoch": EPOCH, "seq": 0}},
    )
    assert [f["data"]["notional"] for f in client.read()] == [2_000_000.0, 3_000_000.0]


def test_since_for_a_channel_not_asked_for_is_ignored() -> None:
    clock, fanout, feed = new_hub()
    feed.liquidation()
    client = Client(fanout, clock)
    client.subscribe("alerts:*", since={HEATMAP: {"epoch": EPOCH, "seq": 0}})
    assert client.read() == [] and set(client.session.subscriptions) == {"alerts:*"}


def test_a_long_catch_up_stays_within_the_queue_limit() -> None:
    clock, fanout, feed = new_hub()
    for _ in range(30):
        feed.diff()
        feed.liquidation()
    client = Client(fanout, clock, limits=Limits(max_queue=5))
    client.subscribe(HEATMAP, since={HEATMAP: {"epoch": EPOCH, "seq": 0}})
    assert client.session.pending() <= 5
    [frame] = client.read()
    assert (frame["type"], frame["seq"]) == ("snapshot", 30), "too much history: a snapshot"
    channel = f"liquidations:{SYMBOL}"
    client.subscribe(channel, request_id=2, since={channel: {"epoch": EPOCH, "seq": 0}})
    assert client.session.pending() <= 5
    seqs = [f["seq"] for f in client.read()]
    assert seqs == list(range(31 - len(seqs), 31)) and 0 < len(seqs) < 5, "the newest, a jump"


# -- formats and encoding --------------------------------------------------------------------


def test_msgpack_frames_carry_the_same_data_as_json_frames() -> None:
    clock, fanout, feed = new_hub()
    text, binary = Client(fanout, clock, "json"), Client(fanout, clock, "msgpack")
    channels = [HEATMAP, f"liquidations:{SYMBOL}", "alerts:*"]
    for client in (text, binary):
        client.subscribe(*channels)
    feed.diff(bins=[(100.5, 1e-9, 123456.789, 7), (101.0, 0.0, 0.0, 0)])
    feed.liquidation(notional=12_345.678)
    feed.alert(kind="cascade", z_score=-0.0, notional=1e21)
    text_frames, binary_frames = text.frames(), binary.frames()
    assert all(isinstance(f, str) for f in text_frames)
    assert all(isinstance(f, bytes) for f in binary_frames)
    assert len(text_frames) == len(binary_frames) == 4
    for t, b in zip(text_frames, binary_frames, strict=True):
        assert json.loads(t) == msgspec.msgpack.decode(b)


def test_a_message_is_encoded_once_for_every_session() -> None:
    clock, fanout, feed = new_hub()
    clients = [Client(fanout, clock, fmt) for fmt in ("json", "json", "msgpack", "msgpack")]
    for client in clients:
        client.subscribe(HEATMAP, f"liquidations:{SYMBOL}")
    feed.diff()
    feed.liquidation()
    frames = [client.frames() for client in clients]
    for i in range(3):  # snapshot on join, the diff, the liquidation
        assert frames[0][i] is frames[1][i], "the same str object for both JSON sessions"
        assert frames[2][i] is frames[3][i], "the same bytes object for both msgpack sessions"
        assert isinstance(frames[0][i], str) and isinstance(frames[2][i], bytes)


# -- slow clients --------------------------------------------------------------------------


def test_a_slow_client_queue_is_bounded_and_conflated() -> None:
    clock, fanout, feed = new_hub()
    limit = 8
    client = Client(fanout, clock, limits=Limits(max_queue=limit))
    client.subscribe(HEATMAP, f"liquidations:{SYMBOL}")
    model = HeatmapModel()
    for frame in client.read():
        model.apply(frame)
    for _ in range(100):
        clock.advance(10)
        feed.diff()
        feed.liquidation()
        assert client.session.pending() <= limit
    assert client.session.dropped > 0 and client.session.close is None
    frames = client.read()
    heatmap = channel_messages(frames, HEATMAP)
    assert [(f["type"], f["seq"]) for f in heatmap] == [("snapshot", 100)], "one fresh snapshot"
    for frame in heatmap:
        model.apply(frame)
    assert model.matches(fanout.snapshot(HEATMAP))  # type: ignore[arg-type]
    liquidations = [f["seq"] for f in channel_messages(frames, f"liquidations:{SYMBOL}")]
    assert liquidations == sorted(liquidations) and liquidations[-1] == 100
    assert liquidations[0] > 1, "the loss shows as a seq jump"
    assert len(liquidations) < limit
    # and it goes on from the present
    feed.diff()
    feed.liquidation()
    frames = client.read()
    for frame in channel_messages(frames, HEATMAP):
        model.apply(frame)
    assert model.matches(fanout.snapshot(HEATMAP))  # type: ignore[arg-type]
    assert [f["seq"] for f in channel_messages(frames, f"liquidations:{SYMBOL}")] == [101]


def test_no_diff_follows_the_fresh_snapshot_that_replaced_it() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock, limits=Limits(max_queue=3))
    client.subscribe(HEATMAP)
    client.read()
    model = HeatmapModel()
    model.apply(json.loads(fanout.fresh_snapshot(HEATMAP).frame("json")))  # type: ignore[union-attr, arg-type]
    for _ in range(4):
        feed.diff()
    for frame in client.read():
        model.apply(frame)  # asserts each diff follows on
    feed.diff()
    for frame in client.read():
        model.apply(frame)
    assert model.matches(fanout.snapshot(HEATMAP))  # type: ignore[arg-type]


def test_a_resync_marker_survives_later_overflows() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock, limits=Limits(max_queue=4))
    client.subscribe(HEATMAP, f"liquidations:{SYMBOL}")
    model = HeatmapModel()
    for frame in client.read():
        model.apply(frame)
    for _ in range(5):
        feed.diff()  # the heatmap backlog becomes one marker
    for _ in range(10):
        feed.liquidation()  # the marker becomes the oldest entry, repeatedly
        assert client.session.pending() <= 4
    for frame in channel_messages(client.read(), HEATMAP):
        model.apply(frame)
    assert model.seq == 5
    feed.diff()
    for frame in channel_messages(client.read(), HEATMAP):
        model.apply(frame)
    assert model.seq == 6 and model.matches(fanout.snapshot(HEATMAP))  # type: ignore[arg-type]


def test_a_client_that_only_misses_heatmap_diffs_is_never_too_slow() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock, limits=Limits(max_queue=4, slow_close_ms=1_000))
    client.subscribe(HEATMAP)
    client.read()
    for _ in range(200):
        clock.advance(50)
        feed.diff()
        assert client.session.pending() <= 4
    assert client.session.close is None
    [frame] = client.read()
    assert (frame["type"], frame["seq"]) == ("snapshot", 200)


def test_still_over_the_limit_after_slow_close_ms_is_close_1013() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock, limits=Limits(max_queue=4, slow_close_ms=1_000))
    client.subscribe(f"liquidations:{SYMBOL}")
    first_overflow = None
    while client.session.close is None:
        clock.advance(100)
        feed.liquidation()
        assert client.session.pending() <= 4
        if first_overflow is None and client.session.dropped:
            first_overflow = clock.now
        assert clock.now < 5 * 1_000 + 1_700_000_000_000, "never closed"
    assert first_overflow is not None
    assert client.session.close.code == 1013
    assert clock.now - first_overflow >= 1_000
    assert client.session.next_frame() is None, "nothing more is sent to a closed client"
    feed.liquidation()
    assert client.session.pending() == 0


def test_a_client_that_catches_up_is_not_closed() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock, limits=Limits(max_queue=4, slow_close_ms=1_000))
    client.subscribe(f"liquidations:{SYMBOL}")
    for step in range(100):
        clock.advance(100)
        feed.liquidation()
        if step % 8 == 7:  # overflows for most of each 800 ms, then reads everything
            client.read()
    assert client.session.close is None and client.session.dropped > 0


def test_replies_to_a_client_that_never_reads_are_bounded_too() -> None:
    # Replies are never dropped (they carry no seq: a lost pong could not be seen), so the
    # queue may pass max_queue by the replies of the grace period, and no further: the
    # client is closed with 1013 once it has been over the limit for slow_close_ms.
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, limits=Limits(max_queue=5, slow_close_ms=2_000))
    for _ in range(100):
        clock.advance(100)
        client.send({"op": "ping", "id": 1})
        assert client.session.pending() <= 5 + 2_000 // 100 + 1
        if client.session.close is not None:
            break
    assert client.session.close is not None and client.session.close.code == 1013


def test_a_slow_client_loses_channel_messages_but_never_a_reply() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock, limits=Limits(max_queue=5, slow_close_ms=60_000))
    client.subscribe(f"liquidations:{SYMBOL}")
    for request_id in range(20):
        feed.liquidation()
        client.send({"op": "ping", "id": request_id})
    frames = client.read()
    assert [f["id"] for f in frames if f.get("op") == "pong"] == list(range(20))
    assert len([f for f in frames if "ch" in f]) < 20  # the channel messages were trimmed


# -- frame size and request rate ----------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_oversize_frame_is_close_1009(fmt: Format) -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, fmt, limits=Limits(max_frame_bytes=100))
    padding = "x" * (100 - len(json.dumps({"op": "ping", "id": ""})))
    fits = json.dumps({"op": "ping", "id": padding})
    assert len(fits) == 100
    client.raw(fits)
    assert client.session.close is None and len(client.read()) == 1
    client.raw(fits + " ")
    assert client.session.close is not None and client.session.close.code == 1009
    client.raw(json.dumps({"op": "ping", "id": 1}))
    assert client.read() == [], "nothing is read after the close"


def test_oversize_is_counted_in_bytes() -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, limits=Limits(max_frame_bytes=100))
    frame = json.dumps({"op": "ping", "id": "é" * 60}, ensure_ascii=False)
    assert len(frame) < 100 < len(frame.encode())
    client.raw(frame)
    assert client.session.close is not None and client.session.close.code == 1009
    client = Client(fanout, clock, limits=Limits(max_frame_bytes=100))
    client.raw(b"\x00" * 101)
    assert client.session.close is not None and client.session.close.code == 1009


def test_default_frame_limit_is_64_kib() -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock)
    client.raw(json.dumps({"op": "ping", "id": 1}).ljust(64 * 1024))
    assert client.session.close is None and client.read() == [{"op": "pong", "id": 1}]
    client.raw(json.dumps({"op": "ping", "id": 1}).ljust(64 * 1024 + 1))
    assert client.session.close is not None and client.session.close.code == 1009


RATE = Limits(max_requests_per_second=5, abuse_close_ms=3_000)


def _codes(frames: list[dict[str, Any]]) -> list[str]:
    return [f.get("code", f["op"]) for f in frames]


def test_over_the_rate_is_one_rate_limited_error() -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, limits=RATE)
    for i in range(30):
        client.send({"op": "ping", "id": i})
    frames = client.read()
    assert _codes(frames) == ["pong"] * 5 + ["rate_limited"]
    assert frames[-1]["id"] is None
    assert client.session.close is None


def test_continued_abuse_is_close_1008() -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, limits=RATE)
    first_over = None
    errors = 0
    while client.session.close is None:
        for _ in range(3):  # 30 requests/s
            client.send({"op": "ping", "id": 1})
        frames = client.read()
        errors += _codes(frames).count("rate_limited")
        if first_over is None and errors:
            first_over = clock.now
        assert clock.advance(100) < 1_700_000_000_000 + 10_000, "never closed"
    assert first_over is not None
    assert client.session.close.code == 1008
    assert 3_000 <= clock.now - first_over <= 4_100
    assert errors <= 5, "at most one rate_limited error per second"


def test_a_client_that_calms_down_is_not_closed() -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, limits=RATE)
    for _ in range(20):
        client.send({"op": "ping", "id": 1})
    assert _codes(client.read()).count("rate_limited") == 1
    clock.advance(1_000)
    for _ in range(100):  # 25 s at 4 requests/s
        clock.advance(250)
        client.send({"op": "ping", "id": 2})
    assert client.session.close is None
    assert _codes(client.read()) == ["pong"] * 100


def test_silence_counts_as_calm() -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock, limits=RATE)
    for _ in range(20):
        client.send({"op": "ping", "id": 1})
    clock.advance(5_000)  # silent for longer than abuse_close_ms
    for _ in range(20):
        client.send({"op": "ping", "id": 1})
    assert client.session.close is None
    assert _codes(client.read()).count("rate_limited") == 2


def test_default_rate_limit_is_50_per_second() -> None:
    clock, fanout, _ = new_hub()
    client = Client(fanout, clock)
    for _ in range(51):
        client.send({"op": "ping", "id": 1})
    assert _codes(client.read()) == ["pong"] * 50 + ["rate_limited"]
