"""The Bitget, Gate, HTX, Deribit and BitMEX decoders on each exchange's frames from the
data files (tests/data/*_liquidation_examples.json: documented, fixture and observed
frames) and on the bad input they may send: sides, sizes, symbol mapping, malformed
frames, replays counted once, and what the sampled feeds deliver."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from hub.errors import UpstreamError
from hub.feeds.bitget_wire import BitgetDecoder
from hub.feeds.bitmex_wire import BitmexDecoder, parse_instruments
from hub.feeds.deribit_wire import (
    DeribitDecoder,
    instrument_of,
    is_keep_alive,
    keep_alive_answer,
    symbol_of,
)
from hub.feeds.gate_wire import GateDecoder, contract_of, parse_contracts
from hub.feeds.htx_wire import HtxDecoder, parse_open_interest, pong
from hub.models import MarkPriceUpdate, OpenInterestUpdate
from tests.conftest import DATA


def examples(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}_liquidation_examples.json").read_text())


BITGET, GATE, HTX = examples("bitget"), examples("gateio"), examples("htx")
DERIBIT, BITMEX = examples("deribit"), examples("bitmex")


def encode(obj: object) -> bytes:
    return json.dumps(obj).encode()


def kinds(anomalies: list[tuple[str, str]]) -> list[str]:
    return [kind for kind, _ in anomalies]


# -- Bitget ----------------------------------------------------------------------------------

BITGET_DOC = BITGET["examples"][0]["frame"]
BITGET_FIXTURE = BITGET["examples"][1]["frame"]


def test_bitget_documented_push_buy_is_a_long_and_amount_is_quote_notional() -> None:
    [event] = BitgetDecoder().decode(encode(BITGET_DOC)).events
    assert (event.exchange, event.symbol, event.side) == ("bitget", "BTCUSDT", "long")
    assert event.price == 89000.0 and event.notional == pytest.approx(37.722858)
    assert event.quantity == pytest.approx(37.722858 / 89000)  # amount / price, in BTC
    assert event.time == 1736371332162


def test_bitget_fixture_push_holds_two_symbols_timed_by_their_rows_not_the_push() -> None:
    decoded = BitgetDecoder().decode(encode(BITGET_FIXTURE))
    assert [(e.symbol, e.side) for e in decoded.events] == [("APEUSDT", "long"), ("IPUSDT", "long")]
    # round base quantities: `amount` is quote notional (the field table's unit)
    assert [round(e.quantity, 6) for e in decoded.events] == [83.1, 286.5]
    # rows 10.6 s and 20.2 s older than the push: each at its own time
    assert [e.time for e in decoded.events] == [1777358886549, 1777358876983]
    assert all(e.time < BITGET_FIXTURE["ts"] for e in decoded.events)


def test_bitget_sample_is_delivered_whole_and_sell_is_a_short() -> None:
    # The sampled feed sends at most the largest long and short per symbol and second;
    # a push holding both sides of one symbol gives both, nothing is assumed of the rate.
    rows = [
        {"symbol": "BTCUSDT", "side": "buy", "price": "60000", "amount": "60000", "ts": "1"},
        {"symbol": "BTCUSDT", "side": "sell", "price": "60100", "amount": "30050", "ts": "1"},
    ]
    decoded = BitgetDecoder().decode(encode({**BITGET_DOC, "data": rows}))
    assert [(e.side, e.quantity) for e in decoded.events] == [("long", 1.0), ("short", 0.5)]


def test_bitget_replayed_rows_count_once_and_other_product_lines_are_ignored() -> None:
    decoder = BitgetDecoder()
    assert len(decoder.decode(encode(BITGET_FIXTURE)).events) == 2
    again = decoder.decode(encode(BITGET_FIXTURE))
    assert again.events == [] and again.duplicates == 2
    coin = {**BITGET_DOC, "arg": {"instType": "coin-futures", "topic": "liquidation"}}
    assert BitgetDecoder().decode(encode(coin)) == ([], [], 0, 1, [])


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b"{oops", "malformed"),
        (encode({**BITGET_DOC, "data": [{**BITGET_DOC["data"][0], "side": "long"}]}), "malformed"),
        (encode({**BITGET_DOC, "data": [{**BITGET_DOC["data"][0], "amount": "-1"}]}), "malformed"),
        (encode({**BITGET_DOC, "data": [{**BITGET_DOC["data"][0], "ts": "soon"}]}), "malformed"),
        (encode({**BITGET_DOC, "data": [{"symbol": "BTCUSDT"}]}), "malformed"),
        (encode({"event": "error", "code": "30001", "msg": "no channel"}), "error_reply"),
        (encode({"arg": {"instType": "usdt-futures", "topic": "books"}, "data": [{}]}),
         "unknown_topic:books"),
        (encode({"hello": 1}), "unexpected_frame"),
    ],
)  # fmt: skip
def test_bitget_bad_frames_are_named(frame: bytes, kind: str) -> None:
    decoded = BitgetDecoder().decode(frame)
    assert decoded.events == [] and kinds(decoded.anomalies) == [kind]


def test_bitget_acks_and_pongs_are_quiet_and_tickers_give_open_interest() -> None:
    decoder = BitgetDecoder()
    assert decoder.decode(encode(BITGET["subscribe"]["ack_example_second_transcription"])) == (
        [], [], 0, 0, []
    )  # fmt: skip
    assert decoder.decode(b"pong") == ([], [], 0, 0, [])
    arg = {"instType": "usdt-futures", "topic": "ticker", "symbol": "BTCUSDT"}
    snapshot = {"arg": arg, "action": "snapshot", "ts": 5,
                "data": [{"markPrice": "76631.3", "openInterest": "29539.3825"}]}  # fmt: skip
    assert decoder.decode(encode(snapshot)).market == [
        MarkPriceUpdate("bitget", "BTCUSDT", 5, 76631.3),
        OpenInterestUpdate("bitget", "BTCUSDT", 5, 29539.3825, 76631.3),
    ]
    update = {**snapshot, "action": "update", "ts": 6, "data": [{"openInterest": "29600"}]}
    assert decoder.decode(encode(update)).market == [
        OpenInterestUpdate("bitget", "BTCUSDT", 6, 29600.0, 76631.3)
    ]


# -- Gate ------------------------------------------------------------------------------------

GATE_ENGLISH, GATE_ZH_SECONDS, _, GATE_BATCH, _, GATE_LIVE = GATE["examples"]
MULTIPLIERS = {"BTC_USDT": 0.0001, "HEI_USDT": 10.0, "LAB_USDT": 1.0}


def gate_frame(example: dict[str, Any], contract: str | None = None) -> bytes:
    frame = copy.deepcopy(example["frame"])
    if contract is not None:
        for row in frame["result"]:
            row["contract"] = contract
    return encode(frame)


def test_gate_reads_the_english_doc_shape_and_leaves_inverse_contracts_out() -> None:
    decoder = GateDecoder(MULTIPLIERS)
    inverse = decoder.decode(gate_frame(GATE_ENGLISH))  # BTC_USD: the BTC-settled, inverse
    assert inverse.events == [] and inverse.ignored == 1
    [event] = decoder.decode(gate_frame(GATE_ENGLISH, "BTC_USDT")).events
    # size -124 contracts: a sell order, so a long; 124 x 0.0001 BTC
    assert (event.exchange, event.symbol, event.side) == ("gate", "BTCUSDT", "long")
    assert event.quantity == pytest.approx(0.0124) and event.price == 215.1
    assert event.time == 1541486601123


def test_gate_reads_decimal_sizes_times_in_seconds_and_batches() -> None:
    [event] = GateDecoder(MULTIPLIERS).decode(gate_frame(GATE_ZH_SECONDS)).events
    assert event.quantity == pytest.approx(124.5 * 0.0001)
    assert event.time == 1541486601000  # the example's `time` is seconds
    batch = GateDecoder(MULTIPLIERS).decode(gate_frame(GATE_BATCH)).events
    assert [(e.quantity, e.time) for e in batch] == [
        (pytest.approx(0.01245), 1541486601123),
        (pytest.approx(0.00105), 1541486601456),
    ]


def test_gate_live_frames_are_bare_objects_with_string_prices() -> None:
    decoder = GateDecoder(MULTIPLIERS)
    events = [e for f in GATE_LIVE["frames"] for e in decoder.decode(encode(f)).events]
    assert [(e.symbol, e.side, e.quantity, e.price) for e in events] == [
        ("HEIUSDT", "long", 230.0, 0.13827),
        ("HEIUSDT", "long", 90.0, 0.13761),
        ("LABUSDT", "long", 9.0, 0.11824),
    ]
    assert events[0].time == 1786327033531


def test_gate_positive_size_is_a_short_and_unknown_contracts_are_never_guessed() -> None:
    row = {"contract": "BTC_USDT", "price": "60000", "size": "250", "time": 1_000}
    push = {"channel": "futures.public_liquidates", "event": "update", "result": row}
    [event] = GateDecoder(MULTIPLIERS).decode(encode(push)).events
    assert event.side == "short" and event.quantity == pytest.approx(0.025)
    unknown = GateDecoder(MULTIPLIERS).decode(
        encode({**push, "result": {**row, "contract": "X_USDT"}})
    )
    assert unknown.events == [] and unknown.anomalies == [("unknown_instrument", "X_USDT")]
    decoder = GateDecoder(MULTIPLIERS)
    decoder.decode(encode(push))
    assert decoder.decode(encode(push)).duplicates == 1


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b"not json", "malformed"),
        (encode({"channel": "futures.public_liquidates", "event": "update",
                 "result": {"contract": "BTC_USDT", "price": "1", "size": 0, "time": 1}}),
         "malformed"),
        (encode({"channel": "futures.public_liquidates", "event": "update",
                 "result": {"contract": "BTC_USDT", "size": -1}}), "malformed"),
        (encode({"channel": "futures.public_liquidates", "event": "subscribe",
                 "error": {"code": 2, "message": "invalid argument"}, "result": None}),
         "error_reply"),
        (encode({"channel": "futures.tickers", "event": "update", "result": []}),
         "unknown_channel:futures.tickers"),
    ],
)  # fmt: skip
def test_gate_bad_frames_are_named(frame: bytes, kind: str) -> None:
    decoded = GateDecoder(MULTIPLIERS).decode(frame)
    assert decoded.events == [] and kinds(decoded.anomalies) == [kind]


def test_gate_acks_pongs_contracts_and_contract_stats() -> None:
    decoder = GateDecoder()
    assert decoder.decode(encode(GATE["subscribe"]["ack_example"])) == ([], [], 0, 0, [])
    assert decoder.decode(encode(GATE["heartbeat"]["app_pong_example"])) == ([], [], 0, 0, [])
    assert decoder.take_rest("/api/v4/futures/usdt/contracts", encode(
        [GATE["contract_size"]["example_response"]]
    ))  # fmt: skip
    assert decoder.multipliers == {"BTC_USDT": 0.0001}
    with pytest.raises(UpstreamError, match="malformed"):
        parse_contracts(b'{"label": "INVALID"}')
    stats = copy.deepcopy(GATE["open_interest"]["websocket"]["push_example"])
    [update] = decoder.decode(encode(stats)).market
    assert update == OpenInterestUpdate("gate", "BTCUSDT", 1603865400000, 124724 * 0.0001, 8865.0)
    assert contract_of("BTCUSDT") == "BTC_USDT" and contract_of("BTCUSDC") is None


# -- HTX -------------------------------------------------------------------------------------

HTX_DOC, HTX_2020, HTX_COIN = (e["frame"] for e in HTX["examples"])


def test_htx_documented_push_sell_close_is_a_long_of_amount_coins() -> None:
    [event] = HtxDecoder().decode(encode(HTX_DOC)).events
    assert (event.exchange, event.symbol, event.side) == ("htx", "O3USDT", "long")
    assert event.quantity == 432 and event.price == 0.7858
    assert event.notional == pytest.approx(339.4656)  # trade_turnover
    assert event.time == 1639122193172


def test_htx_frames_of_2020_and_other_contracts() -> None:
    [event] = HtxDecoder().decode(encode(HTX_2020)).events  # no contract_type yet
    assert (event.symbol, event.quantity) == ("BTCUSDT", 0.227)
    coin = HtxDecoder().decode(encode(HTX_COIN))  # ETH-USD, coin-margined: not read
    assert coin.events == [] and coin.ignored == 1
    dated = copy.deepcopy(HTX_DOC)
    dated["data"][0] |= {"contract_code": "BTC-USDT-211203", "business_type": "futures",
                         "contract_type": "this_week"}  # fmt: skip
    assert HtxDecoder().decode(encode(dated)).ignored == 1
    buy = copy.deepcopy(HTX_DOC)
    buy["data"][0]["direction"] = "buy"
    assert HtxDecoder().decode(encode(buy)).events[0].side == "short"


def test_htx_replays_count_once_and_bad_rows_are_named() -> None:
    decoder = HtxDecoder()
    decoder.decode(encode(HTX_DOC))
    assert decoder.decode(encode(HTX_DOC)).duplicates == 1
    no_amount = copy.deepcopy(HTX_DOC)
    del no_amount["data"][0]["amount"]
    assert kinds(HtxDecoder().decode(encode(no_amount)).anomalies) == ["malformed"]
    refused = {"op": "sub", "cid": "1", "topic": "public.BTC-USDT.liquidation_orders",
               "err-code": 2014, "err-msg": "larger scope already subscribed"}  # fmt: skip
    assert kinds(HtxDecoder().decode(encode(refused)).anomalies) == ["error_reply"]
    assert HtxDecoder().decode(encode(HTX["subscribe"]["ack_example"])) == ([], [], 0, 0, [])
    assert kinds(HtxDecoder().decode(b'{"op":"close","ts":1}').anomalies) == ["server_close"]
    assert kinds(HtxDecoder().decode(b"\x1f\x8b").anomalies) == ["malformed"]


def test_htx_pings_are_answered_with_the_same_ts() -> None:
    assert pong(encode(HTX["heartbeat"]["server_ping"])) == '{"op":"pong","ts":"1492420473058"}'
    assert pong(encode(HTX_DOC)) is None and pong(b'{"ping":18212558000}') is None


def test_htx_open_interest_is_halved_to_one_side_in_base_coin() -> None:
    row = HTX["open_interest"]["example_response_first_row"]
    decoded = parse_open_interest(encode({"status": "ok", "data": [row], "ts": 7}))
    [update] = decoded.market
    assert (update.exchange, update.symbol, update.time) == ("htx", "BTCUSDT", 7)
    assert update.oi == pytest.approx(78.696 / 2)  # amount sums both sides
    assert update.price == pytest.approx(3823138.2456 / 78.696)
    with pytest.raises(UpstreamError, match="status"):
        parse_open_interest(encode({"status": "error", "err_msg": "busy"}))


# -- Deribit ---------------------------------------------------------------------------------

DERIBIT_T, DERIBIT_M = (e["frame"] for e in DERIBIT["examples"])


def deribit_trade(frame: dict[str, Any], **changes: Any) -> bytes:
    frame = copy.deepcopy(frame)
    frame["params"]["data"][0] |= changes
    return encode(frame)


def test_deribit_taker_liquidation_follows_the_direction_and_usd_becomes_btc() -> None:
    [event] = DeribitDecoder().decode(encode(DERIBIT_T)).events
    # T: the taker sold to close: a long; 1120 USD at 4469.5
    assert (event.exchange, event.symbol, event.side) == ("deribit", "BTCUSDT", "long")
    assert event.quantity == pytest.approx(1120 / 4469.5)
    assert event.notional == pytest.approx(1120) and event.time == 1584058044032


def test_deribit_maker_liquidation_is_the_opposite_of_the_taker() -> None:
    [event] = DeribitDecoder().decode(encode(DERIBIT_M)).events
    # M with the taker buying: the maker's liquidation order sold, so a long (not a short)
    assert event.side == "long" and event.quantity == pytest.approx(2500 / 4458.5)


def test_deribit_both_sides_liquidated_is_two_events() -> None:
    decoded = DeribitDecoder().decode(deribit_trade(DERIBIT_T, liquidation="MT"))
    assert sorted(e.side for e in decoded.events) == ["long", "short"]
    assert [e.quantity for e in decoded.events] == [pytest.approx(1120 / 4469.5)] * 2


def test_deribit_linear_perpetuals_are_usdc_in_base_coin_and_the_rest_is_left_out() -> None:
    frame = deribit_trade(DERIBIT_T, instrument_name="BTC_USDC-PERPETUAL", amount=0.25)
    [event] = DeribitDecoder().decode(frame).events
    assert (event.symbol, event.quantity) == ("BTCUSDC", 0.25)
    dated = DeribitDecoder().decode(deribit_trade(DERIBIT_T, instrument_name="BTC-27JUN25"))
    assert dated.events == [] and dated.ignored == 1
    ordinary = copy.deepcopy(DERIBIT_T)
    del ordinary["params"]["data"][0]["liquidation"]
    assert DeribitDecoder().decode(encode(ordinary)) == ([], [], 0, 0, [])  # not counted
    assert instrument_of("BTCUSDT") == "BTC-PERPETUAL"
    assert instrument_of("ethusdc") == "ETH_USDC-PERPETUAL" and instrument_of("BTCEUR") is None
    assert symbol_of("SOL_USDC-PERPETUAL") == ("SOLUSDC", False)


def test_deribit_replays_count_once_and_bad_input_is_named() -> None:
    decoder = DeribitDecoder()
    decoder.decode(encode(DERIBIT_T))
    assert decoder.decode(encode(DERIBIT_T)).duplicates == 1
    bad_flag = DeribitDecoder().decode(deribit_trade(DERIBIT_T, liquidation="X"))
    assert kinds(bad_flag.anomalies) == ["malformed"]
    raw_refused = DERIBIT["subscribe"]["raw_without_auth_error"]
    assert DeribitDecoder().decode(encode(raw_refused)).anomalies == [
        ("error_reply", "13778: raw_subscriptions_not_available_for_unauthorized")
    ]
    assert kinds(DeribitDecoder().decode(b"[1,2]").anomalies) == ["malformed"]


def test_deribit_heartbeats_are_keep_alive_and_test_requests_are_answered() -> None:
    test_request = b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}'
    answer = json.loads(keep_alive_answer(test_request) or "{}")
    assert answer["method"] == "public/test" and answer["jsonrpc"] == "2.0"
    assert is_keep_alive(b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}')
    reply = json.dumps({"jsonrpc": "2.0", "id": answer["id"], "result": {"version": "1"}})
    assert is_keep_alive(reply.encode()) and not is_keep_alive(encode(DERIBIT_T))
    assert keep_alive_answer(encode(DERIBIT_T)) is None


def test_deribit_incremental_ticker_open_interest_in_usd_is_converted_at_the_mark() -> None:
    decoder = DeribitDecoder()
    data = DERIBIT["open_interest"]["websocket"]["push_data_example"]["data"]
    push = {"jsonrpc": "2.0", "method": "subscription",
            "params": {"channel": "incremental_ticker.BTC-PERPETUAL", "data": data}}  # fmt: skip
    mark, oi = decoder.decode(encode(push)).market
    assert mark == MarkPriceUpdate("deribit", "BTCUSDT", 1623060194301, 36446.51)
    assert isinstance(oi, OpenInterestUpdate) and oi.oi == pytest.approx(502097590 / 36446.51)
    change = {**push, "params": {**push["params"], "data": {
        "type": "change", "instrument_name": "BTC-PERPETUAL", "timestamp": 1623060195301,
        "open_interest": 502100000}}}  # fmt: skip
    [grown] = decoder.decode(encode(change)).market
    assert isinstance(grown, OpenInterestUpdate) and grown.price == 36446.51


# -- BitMEX ----------------------------------------------------------------------------------

BITMEX_INSTRUMENTS = [
    BITMEX["contract_size"]["example_instrument_row_excerpt"],
    {"symbol": "XBTUSDT", "rootSymbol": "XBT", "quoteCurrency": "USDT", "typ": "FFWCSX",
     "isInverse": False, "isQuanto": False, "multiplier": 1,
     "underlyingToPositionMultiplier": 1_000_000},
    {"symbol": "ETHUSD", "rootSymbol": "ETH", "quoteCurrency": "USD", "typ": "FFWCSX",
     "isInverse": False, "isQuanto": True, "multiplier": 100},
    {"symbol": "XBTZ26", "rootSymbol": "XBT", "quoteCurrency": "USD", "typ": "FFCCSX",
     "isInverse": True, "multiplier": -100000000, "underlyingToSettleMultiplier": -100000000},
]  # fmt: skip
CONTRACTS = parse_instruments(encode(BITMEX_INSTRUMENTS))
FIXTURE_INSERT, FIXTURE_DELETE = BITMEX["examples"][0]["frames"]


def lifecycle(index: int) -> list[bytes]:
    return [encode(f) for f in BITMEX["examples"][index]["frames"]]


def test_bitmex_contract_sizes_follow_bitmex_rule() -> None:
    assert set(CONTRACTS) == {"XBTUSD", "XBTUSDT"}  # no quanto, no dated future
    assert CONTRACTS["XBTUSD"] == ("BTCUSDT", 1.0, True)  # 1 USD a contract
    assert CONTRACTS["XBTUSDT"] == ("BTCUSDT", 1e-6, False)  # 1e-6 XBT a contract
    with pytest.raises(UpstreamError):
        parse_instruments(b'{"error": "x"}')


def test_bitmex_fixture_insert_buy_is_a_short_of_usd_contracts_timed_on_arrival() -> None:
    decoder = BitmexDecoder(CONTRACTS)
    [event] = decoder.decode(encode(FIXTURE_INSERT), received_ms=5_000).events
    assert (event.exchange, event.symbol, event.side) == ("bitmex", "BTCUSDT", "short")
    assert event.quantity == pytest.approx(9214 / 10106) and event.price == 10106
    assert event.notional == pytest.approx(9214) and event.time == 5_000
    assert decoder.decode(encode(FIXTURE_DELETE), received_ms=5_100) == ([], [], 0, 0, [])


@pytest.mark.parametrize("index", [1, 2, 3])
def test_bitmex_an_order_counts_once_at_its_insert_whatever_follows(index: int) -> None:
    decoder = BitmexDecoder(CONTRACTS)
    events = [e for f in lifecycle(index) for e in decoder.decode(f, received_ms=1).events]
    [event] = events  # updates (fills, a rise, a new price) and the delete add nothing
    first = BITMEX["examples"][index]["frames"][0]["data"][0]
    assert event.price == first["price"]
    assert event.side == ("long" if first["side"] == "Sell" else "short")


def test_bitmex_linear_contracts_and_a_reconnect_partial() -> None:
    decoder = BitmexDecoder(CONTRACTS)
    [linear] = decoder.decode(lifecycle(3)[0], received_ms=1).events
    assert linear.quantity == pytest.approx(0.15)  # 150,000 contracts of 1e-6 XBT
    partial = {**BITMEX["subscribe"]["partial_example"], "data": [FIXTURE_INSERT["data"][0]]}
    assert len(decoder.decode(encode(partial), received_ms=2).events) == 1  # met mid-life
    again = decoder.decode(encode(partial), received_ms=3)  # the next connection's partial
    assert again.events == [] and again.duplicates == 1


def test_bitmex_without_a_receive_time_the_last_timestamp_stands_in() -> None:
    decoder = BitmexDecoder(CONTRACTS)
    untimed = decoder.decode(encode(FIXTURE_INSERT))
    assert untimed.events == [] and kinds(untimed.anomalies) == ["untimed"]
    welcome = {"info": "Welcome", "version": "2.0.0", "timestamp": "2024-11-13T10:34:26.741Z"}
    assert decoder.decode(encode(welcome)) == ([], [], 0, 0, [])
    [event] = decoder.decode(lifecycle(1)[0]).events
    assert event.time == 1731494066741


def test_bitmex_bad_and_unknown_rows_are_named_and_instruments_give_linear_open_interest() -> None:
    decoder = BitmexDecoder(CONTRACTS)
    unknown = {**FIXTURE_INSERT, "data": [{**FIXTURE_INSERT["data"][0], "symbol": "DOGEUSD"}]}
    assert decoder.decode(encode(unknown), received_ms=1).anomalies == [
        ("unknown_instrument", "DOGEUSD")
    ]
    no_side = {**FIXTURE_INSERT, "data": [{**FIXTURE_INSERT["data"][0], "side": None}]}
    assert kinds(decoder.decode(encode(no_side), received_ms=1).anomalies) == ["malformed"]
    error = {"status": 400, "error": "Unknown table: liquidations", "request": {}}
    assert kinds(decoder.decode(encode(error)).anomalies) == ["error_reply"]
    assert decoder.decode(b"pong") == ([], [], 0, 0, [])
    at = "2024-11-13T10:34:26.741Z"
    rows = [{"symbol": "XBTUSDT", "openInterest": 2_000_000_000, "markPrice": 60000.5,
             "timestamp": at},
            {"symbol": "XBTUSD", "openInterest": 983043322, "timestamp": at}]  # fmt: skip
    decoded = decoder.decode(encode({"table": "instrument", "action": "update", "data": rows}))
    assert decoded.market == [
        MarkPriceUpdate("bitmex", "BTCUSDT", 1731494066741, 60000.5),
        OpenInterestUpdate("bitmex", "BTCUSDT", 1731494066741, 2000.0, 60000.5),
    ]
    assert decoded.ignored == 1  # the inverse one's: one symbol is not counted twice
