"""Channel names, a channel's remembered state (position, history, heatmap replica) and the
fan-out's directory, without sessions' I/O."""

from __future__ import annotations

import gc
import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.analytics.candles import MarkPrices
from hub.analytics.predicted import PredictedConfig
from hub.analytics.predicted_stream import PredictedProcessor
from hub.channels import (
    DEFAULT_WINDOW,
    WINDOWS,
    Channel,
    check_window,
    heatmap_channel,
    parse_channel,
)
from hub.errors import ProtocolError
from hub.fanout import channel_state
from hub.fanout.channel_state import ChannelState, Outcome
from hub.fanout.codec import EncodedMessage, encode_message
from hub.fanout.fanout import Fanout
from hub.fanout.protocol import Position
from hub.models import (
    Bin,
    ChannelMessage,
    HeatmapDiff,
    LiquidationEvent,
    MarkPriceUpdate,
    OpenInterestUpdate,
)
from tests.protocol_kit import (
    EPOCH,
    SYMBOL,
    Client,
    Clock,
    Feed,
    HeatmapModel,
    cluster,
    new_hub,
)

HEATMAP = f"heatmap:{SYMBOL}:1h"

# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "channel"),
    [
        ("heatmap:btcusdt", Channel("heatmap", "BTCUSDT", "1h")),
        ("heatmap:BTCUSDT", Channel("heatmap", "BTCUSDT", "1h")),
        ("heatmap:EthUsdt:30d", Channel("heatmap", "ETHUSDT", "30d")),
        ("heatmap:1000PEPEUSDT:5m", Channel("heatmap", "1000PEPEUSDT", "5m")),
        ("liquidations:btcusdt", Channel("liquidations", "BTCUSDT")),
        ("liquidations:*", Channel("liquidations", "*")),
        ("alerts:solusdt", Channel("alerts", "SOLUSDT")),
        ("alerts:*", Channel("alerts", "*")),
        ("liquidity:adausdt", Channel("liquidity", "ADAUSDT")),
        ("predicted:btcusdt", Channel("predicted", "BTCUSDT")),
    ],
)
def test_parse_channel_gives_the_canonical_channel(name: str, channel: Channel) -> None:
    assert parse_channel(name) == channel
    assert parse_channel(channel.name) == channel


def test_canonical_names() -> None:
    assert parse_channel("heatmap:btcusdt").name == "heatmap:BTCUSDT:1h"
    assert parse_channel("liquidations:btcusdt").name == "liquidations:BTCUSDT"
    assert parse_channel("alerts:*").name == "alerts:*"
    assert heatmap_channel("BTCUSDT", "4h") == "heatmap:BTCUSDT:4h"
    assert DEFAULT_WINDOW == "1h"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        (5, "bad_channel"),
        (None, "bad_channel"),
        ("", "bad_channel"),
        ("heatmap", "bad_channel"),
        ("trades:BTCUSDT", "bad_channel"),
        ("Heatmap:BTCUSDT", "bad_channel"),
        ("heatmap:", "bad_channel"),
        ("heatmap:BTC USDT", "bad_channel"),
        ("heatmap:BTC/USDT", "bad_channel"),
        ("heatmap:ßUSDT", "bad_channel"),  # upper() would make it the ASCII 'SSUSDT'
        ("heatmap:ﬁusdt", "bad_channel"),  # a ligature: upper() gives 'FI'
        ("heatmap:BTCUSDT١", "bad_channel"),  # noqa: RUF001  (a non-ASCII digit)
        ("heatmap:" + "A" * 41, "bad_channel"),
        ("alerts:" + "A" * 120, "bad_channel"),
        ("heatmap:*", "bad_channel"),
        ("heatmap:*:1h", "bad_channel"),
        ("liquidity:*", "bad_channel"),
        ("heatmap:BTCUSDT:1h:extra", "bad_channel"),
        ("alerts:BTCUSDT:1h", "bad_channel"),
        ("alerts:**", "bad_channel"),
        ("heatmap:BTCUSDT:2h", "bad_window"),
        ("heatmap:BTCUSDT:60m", "bad_window"),
        ("heatmap:BTCUSDT:", "bad_window"),
        ("heatmap:BTCUSDT:1H", "bad_window"),
    ],
)
def test_parse_channel_errors(name: object, code: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_channel(name)
    assert raised.value.code == code
    assert raised.value.message


def test_windows() -> None:
    assert list(WINDOWS) == ["5m", "15m", "1h", "4h", "12h", "24h", "3d", "7d", "30d"]
    assert WINDOWS["1h"] == 3_600_000 and WINDOWS["30d"] == 30 * 86_400_000
    for window in WINDOWS:
        assert check_window(window) == window
        assert parse_channel(f"heatmap:X:{window}").window == window
    with pytest.raises(ProtocolError) as raised:
        check_window("1w")
    assert raised.value.code == "bad_window" and "5m" in raised.value.message


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=60),
        st.builds(
            ":".join,
            st.lists(
                st.one_of(
                    st.sampled_from(["heatmap", "liquidations", "alerts", "liquidity", "*"]),
                    st.sampled_from(list(WINDOWS)),
                    st.text(alphabet="abcXYZ019*ß:- ", max_size=8),
                ),
                max_size=4,
            ),
        ),
    )
)
def test_a_canonical_name_is_its_own_canonical_form(name: str) -> None:
    try:
        channel = parse_channel(name)
    except ProtocolError as error:
        assert error.code in ("bad_channel", "bad_window")
        return
    assert parse_channel(channel.name) == channel
    assert (
        channel.symbol == "*"
        or (channel.symbol.isascii() and channel.symbol.isupper())
        or (channel.symbol.isdigit())
    )
    assert (channel.window is not None) == (channel.kind == "heatmap")


# -- a channel's state -----------------------------------------------------------------------


def encoded(message: ChannelMessage) -> EncodedMessage:
    return EncodedMessage.of(encode_message(message))


def liquidation(seq: int, epoch: str = EPOCH) -> EncodedMessage:
    event = LiquidationEvent("binance", SYMBOL, "long", 100.0, 1.0, 100.0, seq)
    return encoded(ChannelMessage(f"liquidations:{SYMBOL}", "liquidation", seq, epoch, event))


def heatmap_messages(count: int, epoch: str = EPOCH) -> list[EncodedMessage]:
    """A snapshot at seq 0 and `count` diffs, as a Feed would publish them."""
    clock = Clock()
    recorder = Feed(Fanout(clock), clock, epoch)
    recorder.snapshot()
    for _ in range(count):
        recorder.diff()
    return [encoded(message) for message in recorder.sent]


def test_heatmap_state_follows_snapshot_and_diffs() -> None:
    state = ChannelState(HEATMAP)
    messages = heatmap_messages(3)
    assert state.accept(messages[1], 0) is Outcome.GAP, "no diff before a snapshot"
    assert state.replica is None
    for message in messages:
        assert state.accept(message, 0) is Outcome.ACCEPTED
    assert state.accept(messages[2], 0) is Outcome.DUPLICATE
    assert state.accept(messages[0], 0) is Outcome.DUPLICATE, "the same snapshot again"
    assert (state.epoch, state.seq, len(state.history)) == (EPOCH, 3, 3)
    assert state.replica is not None and state.replica.snapshot().seq == 3


@pytest.mark.parametrize("bad", ["gap", "repeat", "other_epoch"])
def test_a_diff_that_does_not_follow_on_is_refused_and_changes_nothing(bad: str) -> None:
    state = ChannelState(HEATMAP)
    messages = heatmap_messages(4)
    for message in messages[:3]:
        state.accept(message, 0)
    before = msgspec.to_builtins(state.replica.snapshot())  # type: ignore[union-attr]
    offending = {
        "gap": messages[4],
        "repeat": messages[2],
        "other_epoch": heatmap_messages(4, epoch="epoch-2")[3],
    }[bad]
    expected = Outcome.DUPLICATE if bad == "repeat" else Outcome.GAP
    assert state.accept(offending, 0) is expected
    assert (state.seq, len(state.history)) == (2, 2)
    assert msgspec.to_builtins(state.replica.snapshot()) == before  # type: ignore[union-attr]
    assert state.accept(messages[3], 0) is Outcome.ACCEPTED, "the right diff still follows on"


def predicted_messages() -> tuple[PredictedProcessor, list[EncodedMessage]]:
    """A predicted channel's snapshot and diffs: open interest rising, then the price
    falling through some of the long levels."""
    processor = PredictedProcessor(PredictedConfig(min_notional=1.0), "e", MarkPrices())
    processor.track(SYMBOL, 0)
    messages = []
    steps = [("price", 60_000.0), ("oi", 1_000.0), ("oi", 1_010.0), ("price", 59_600.0),
             ("oi", 1_020.0), ("price", 56_000.0)]  # fmt: skip
    for time, (kind, value) in enumerate(steps, start=1):
        if kind == "price":
            processor.apply_price(MarkPriceUpdate("binance", SYMBOL, time * 1_000, value))
        else:
            processor.apply_open_interest(
                OpenInterestUpdate("binance", SYMBOL, time * 1_000, value, 60_000.0)
            )
        messages.extend(encoded(m) for m in processor.flush(time * 1_000))
    return processor, messages


def test_predicted_state_follows_snapshot_and_diffs() -> None:
    processor, messages = predicted_messages()
    assert [m.header.type for m in messages][:1] == ["snapshot"] and len(messages) >= 4
    fanout = Fanout(Clock())
    channel = f"predicted:{SYMBOL}"
    fanout.publish(messages[2].json)
    assert channel in fanout.stale, "a diff before any snapshot is a gap"
    for message in messages:
        fanout.publish(message.json)
    replica = fanout.predicted(channel)
    assert replica is not None and channel not in fanout.stale
    assert msgspec.to_builtins(replica) == msgspec.to_builtins(processor.snapshot(SYMBOL))
    assert replica.consumed, "the price fell through some levels"
    assert fanout.snapshot(channel) is None, "not a heatmap"
    fresh = fanout.fresh_snapshot(channel)
    assert fresh is not None and fresh.header.type == "snapshot"
    assert fresh.header.seq == messages[-1].header.seq


def test_liquidation_state_passes_seq_jumps_and_resets_on_a_new_epoch() -> None:
    state = ChannelState(f"liquidations:{SYMBOL}")
    for seq in (1, 2, 5):
        assert state.accept(liquidation(seq), 0) is Outcome.ACCEPTED
    assert state.accept(liquidation(2), 0) is Outcome.DUPLICATE
    assert state.seq == 5 and state.replica is None
    assert state.since(EPOCH, 2) is not None
    assert [m.header.seq for m in state.since(EPOCH, 2) or []] == [5]
    assert [m.header.seq for m in state.since(EPOCH, 0) or []] == [1, 2, 5]
    assert state.accept(liquidation(1, epoch="epoch-2"), 0) is Outcome.ACCEPTED
    assert [m.header.seq for _, m in state.history] == [1]
    assert state.since(EPOCH, 5) is None


def test_since() -> None:
    state = ChannelState(HEATMAP)
    for message in heatmap_messages(5):
        state.accept(message, 0)
    assert state.since(EPOCH, 5) == []
    assert [m.header.seq for m in state.since(EPOCH, 2) or []] == [3, 4, 5]
    assert [m.header.seq for m in state.since(EPOCH, 0) or []] == [1, 2, 3, 4, 5]
    assert state.since(EPOCH, -1) is None, "before the snapshot: not held"
    assert state.since(EPOCH, 6) is None, "ahead: not this history"
    assert state.since("epoch-0", 2) is None


def test_history_keeps_the_last_minute_or_the_last_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(channel_state, "HISTORY_MIN_MESSAGES", 10)
    state = ChannelState(f"liquidations:{SYMBOL}")
    for seq in range(1, 31):  # 30 messages within a minute: all held
        state.accept(liquidation(seq), seq * 1_000)
    assert len(state.history) == 30
    state.accept(liquidation(31), 100_000)  # the old ones age out, down to 10
    assert [m.header.seq for _, m in state.history] == list(range(22, 32))
    assert [m.header.seq for m in state.since(EPOCH, 21) or []] == list(range(22, 32))
    assert state.since(EPOCH, 20) is None
    for seq in range(32, 100):  # a burst within a second: all of the last minute held
        state.accept(liquidation(seq), 100_500)
    assert [m.header.seq for _, m in state.history] == list(range(31, 100))


def test_history_holds_nothing_older_than_its_age_bound() -> None:
    state = ChannelState(f"liquidations:{SYMBOL}")
    for seq in range(1, 6):  # fewer than the 1,000 a channel keeps whatever their age
        state.accept(liquidation(seq), seq)
    state.accept(liquidation(6), 5 + channel_state.HISTORY_MAX_AGE_MS)
    assert [m.header.seq for _, m in state.history] == [5, 6]


def test_all_histories_together_hold_at_most_their_budget_oldest_first() -> None:
    one = liquidation(1)
    budget = channel_state.HistoryBudget(max_bytes=10 * channel_state.held_bytes(one))
    states = [ChannelState(f"liquidations:{s}", budget) for s in ("BTCUSDT", "ETHUSDT")]
    for seq in range(1, 9):  # 8 each, interleaved in time: 16 held would be over
        for offset, state in enumerate(states):
            state.accept(liquidation(seq), seq * 10 + offset)
    assert budget.held <= budget.max_bytes
    held = sorted(t for state in states for t, _ in state.history)
    assert held == [t + offset for t in range(40, 90, 10) for offset in (0, 1)], held
    assert [m.header.seq for _, m in states[0].history] == [4, 5, 6, 7, 8]
    assert [m.header.seq for _, m in states[1].history] == [4, 5, 6, 7, 8]
    assert states[0].since(EPOCH, 2) is None and states[0].since(EPOCH, 3) is not None


def test_history_gives_the_collector_nothing_to_scan() -> None:
    # A process holds some 100,000 history entries, renewed every minute or two: tracked,
    # they would make every full collection walk them, and trigger one every few minutes.
    state = ChannelState(f"liquidations:{SYMBOL}")
    for seq in range(1, 201):
        message = liquidation(seq)
        message.wire("json"), message.wire("msgpack")  # as deliveries leave it
        state.accept(message, seq)
    gc.collect()
    tracked = [e for e in state.history if gc.is_tracked(e) or gc.is_tracked(e[1])]
    assert tracked == [], (
        f"expected no history entry tracked by the garbage collector, "
        f"found {len(tracked)} of {len(state.history)}"
    )


def test_the_default_history_covers_spec_minimums() -> None:
    assert channel_state.HISTORY_MIN_MESSAGES >= 1_000
    assert channel_state.HISTORY_MIN_MS >= 60_000
    state = ChannelState(f"liquidations:{SYMBOL}")
    for seq in range(1, 1_501):  # 1,500 messages in 150 s
        state.accept(liquidation(seq), seq * 100)
    held = [m.header.seq for m in state.since(EPOCH, 500) or []]
    assert held == list(range(501, 1_501)), "the last 1,000 messages are held"


bins_strategy = st.lists(
    st.tuples(
        st.integers(90, 110).map(float),
        st.floats(0, 1e6, allow_nan=False),
        st.floats(0, 1e6, allow_nan=False),
        st.integers(0, 5),
    ),
    max_size=6,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(bins_strategy, max_size=10))
def test_replica_snapshot_equals_snapshot_plus_diffs(diffs: list[list[Bin]]) -> None:
    """The invariant, from the fan-out side: a client applying the diffs to the first
    snapshot holds exactly what the fan-out would hand a new subscriber."""
    clock = Clock()
    fanout = Fanout(clock)
    feed = Feed(fanout, clock)
    model = HeatmapModel()
    first = feed.snapshot(bins=[(95.0, 0.0, 4.0, 1), (100.0, 1.0, 2.0, 3)])
    model.apply(msgspec.to_builtins(first))
    for rows in diffs:
        clock.advance(50)
        model.apply(msgspec.to_builtins(feed.diff(bins=list({r[0]: r for r in rows}.values()))))
        snapshot = fanout.snapshot(HEATMAP)
        assert snapshot is not None and model.matches(snapshot)
        prices = [row[0] for row in snapshot.bins]
        assert prices == sorted(prices) and all(row[3] > 0 for row in snapshot.bins)
    fresh = fanout.fresh_snapshot(HEATMAP)
    assert fresh is not None
    again = HeatmapModel()
    again.apply(json.loads(fresh.json))
    assert again.matches(fanout.snapshot(HEATMAP))  # type: ignore[arg-type]


def test_replica_takes_every_changed_field() -> None:
    clock, fanout, feed = new_hub()
    clusters = [cluster(0, 1e6), cluster(1, 2e6)]
    feed.publish(
        ChannelMessage(
            HEATMAP,
            "diff",
            1,
            EPOCH,
            HeatmapDiff(time=clock.now + 5, clusters=clusters, reference_price=101.0),
        )
    )
    snapshot = fanout.snapshot(HEATMAP)
    assert snapshot is not None
    assert (snapshot.seq, snapshot.time, snapshot.reference_price) == (1, clock.now + 5, 101.0)
    assert snapshot.clusters == clusters
    assert snapshot.bins == [(100.0, 600.0, 400.0, 1)], "bins a diff does not name stay"


# -- the fan-out directory ---------------------------------------------------------------------


def test_symbols_are_known_from_heatmap_snapshots() -> None:
    clock = Clock()
    fanout = Fanout(clock)
    with pytest.raises(ProtocolError) as raised:
        fanout.check(parse_channel("liquidations:btcusdt"))
    assert raised.value.code == "unknown_symbol"
    fanout.check(parse_channel("liquidations:*"))  # a wildcard names no symbol
    Feed(fanout, clock).snapshot("BTCUSDT", window="5m")
    for name in ("heatmap:BTCUSDT:1h", "liquidations:BTCUSDT", "alerts:btcusdt"):
        fanout.check(parse_channel(name))


def test_join_gives_the_snapshot_or_the_missed_history() -> None:
    clock, fanout, feed = new_hub()
    for _ in range(3):
        feed.diff()
    client = Client(fanout, clock)
    [snapshot] = fanout.join(client.session, HEATMAP, None)
    assert (snapshot.header.type, snapshot.header.seq) == ("snapshot", 3)
    assert fanout.join(client.session, HEATMAP, Position(EPOCH, 3)) == []
    missed = fanout.join(client.session, HEATMAP, Position(EPOCH, 1))
    assert [(m.header.type, m.header.seq) for m in missed] == [("diff", 2), ("diff", 3)]
    assert fanout.join(client.session, "alerts:*", None) == [], "nothing held yet"
    assert fanout.subscribers == {HEATMAP: {client.session}, "alerts:*": {client.session}}
    fanout.leave(client.session, HEATMAP)
    fanout.leave(client.session, "alerts:*")
    fanout.leave(client.session, "alerts:*")
    assert fanout.subscribers == {}


def test_fresh_snapshot_is_encoded_once_per_seq() -> None:
    _, fanout, feed = new_hub()
    first = fanout.fresh_snapshot(HEATMAP)
    assert first is not None and fanout.fresh_snapshot(HEATMAP) is first
    assert first.frame("json") is first.frame("json")
    assert first.frame("msgpack") is first.frame("msgpack")
    feed.diff()
    second = fanout.fresh_snapshot(HEATMAP)
    assert second is not None and second is not first and second.header.seq == 1
    assert fanout.fresh_snapshot("heatmap:NOPE:1h") is None


def test_a_gap_makes_the_channel_stale_until_the_next_snapshot() -> None:
    clock, fanout, feed = new_hub()
    client = Client(fanout, clock)
    client.subscribe(HEATMAP)
    client.read()
    feed.diff()
    feed.seq[HEATMAP] += 1  # the broker lost diff 2
    feed.diff()
    feed.diff()
    assert fanout.stats.gaps == 2 and HEATMAP in fanout.stale
    assert fanout.fresh_snapshot(HEATMAP) is None, "no snapshot from a replica known stale"
    assert [f["seq"] for f in client.read()] == [1]
    late = Client(fanout, clock)
    late.subscribe(HEATMAP)
    assert late.read() == [], "nothing to give until the channel is whole again"
    feed.snapshot(seq=4, bins=[(99.0, 1.0, 1.0, 2)])
    feed.diff()
    assert HEATMAP not in fanout.stale
    for reader in (client, late):
        model = HeatmapModel()
        for frame in reader.read():
            model.apply(frame)
        assert model.matches(fanout.snapshot(HEATMAP))  # type: ignore[arg-type]


def test_stats_count_messages_and_deliveries() -> None:
    clock, fanout, feed = new_hub()
    clients = [Client(fanout, clock) for _ in range(3)]
    for client in clients:
        client.subscribe(HEATMAP)
    clients[0].subscribe("alerts:*", request_id=2, filter={"min_z": 10})
    feed.diff()
    feed.alert(z_score=1.0)  # on alerts:BTCUSDT and alerts:*, filtered out for the one client
    assert fanout.stats.messages == 4  # the snapshot, the diff, two alerts
    assert fanout.stats.deliveries == 3
