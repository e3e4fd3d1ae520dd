"""Bybit and OKX liquidation frames to events, on the exchanges' documented examples
(tests/data, copied from their API docs) and on the bad input they may send."""

from __future__ import annotations

import json

import msgspec
import pytest

from hub.errors import UpstreamError
from hub.feeds.bybit import fitting_topics, listed_perpetuals
from hub.feeds.bybit_wire import BybitDecoder, is_pong
from hub.feeds.okx_instruments import parse_contract_values
from hub.feeds.okx_liquidations import OkxLiquidationDecoder
from hub.feeds.okx_wire import decode_envelope, swap_inst_id, swap_symbol
from hub.feeds.recent import RecentKeys
from hub.models import MarkPriceUpdate, OpenInterestUpdate
from tests.conftest import DATA
from tests.fakes.bybit_server import ticker_snapshot

BYBIT = json.loads((DATA / "bybit_allLiquidation_examples.json").read_text())
OKX = json.loads((DATA / "okx_liquidation_oi_examples.json").read_text())


def encode(obj: object) -> bytes:
    return json.dumps(obj).encode()


# -- Bybit ---------------------------------------------------------------------------------


def test_bybit_documented_push_is_a_short_of_v_at_p() -> None:
    decoded = BybitDecoder().decode(encode(BYBIT["allLiquidation_push"]["example"]))
    assert decoded.anomalies == []
    [event] = decoded.events
    # S is the position side: "Sell" is a short liquidated (data/README: Bybit)
    assert (event.exchange, event.symbol, event.side) == ("bybit", "ROSEUSDT", "short")
    assert event.price == 0.04499 and event.quantity == 20000.0
    assert event.notional == pytest.approx(0.04499 * 20000)
    assert event.time == 1739502302929


def test_bybit_batch_holds_every_liquidation_and_buy_is_a_long() -> None:
    frame = {
        "topic": "allLiquidation.BTCUSDT", "type": "snapshot", "ts": 2,
        "data": [
            {"T": 1, "s": "BTCUSDT", "S": "Buy", "v": "0.5", "p": "60000", "extra": 1},
            {"T": 2, "s": "BTCUSDT", "S": "Sell", "v": "0.25", "p": "61000"},
            {"T": 3, "s": "BTCUSDT", "S": "Hold", "v": "1", "p": "1"},
            {"T": 4, "s": "BTCUSDT", "S": "Buy", "v": "0", "p": "60000"},
        ],
    }  # fmt: skip
    decoded = BybitDecoder().decode(encode(frame))
    assert [(e.side, e.quantity, e.notional) for e in decoded.events] == [
        ("long", 0.5, 30000.0),
        ("short", 0.25, 15250.0),
    ]
    assert [kind for kind, _ in decoded.anomalies] == ["malformed", "malformed"]


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b"not json", "malformed"),
        (b'{"topic":"allLiquidation.BTCUSDT","data":{"T":1}}', "malformed"),
        (b'{"topic":"allLiquidation.BTCUSDT","data":[{"T":1,"s":"BTCUSDT"}]}', "malformed"),
        (b'{"topic":"orderbook.50.BTCUSDT","data":{}}', "unknown_topic:orderbook.50.BTCUSDT"),
        (b'{"topic":"tickers.BTCUSDT","ts":1,"data":{}}', "malformed"),
        (b'{"success":false,"ret_msg":"error:handler not found","op":"subscribe"}',
         "subscribe_failed"),
        (b'{"hello":1}', "unexpected_frame"),
    ],
)  # fmt: skip
def test_bybit_bad_frames_are_named(frame: bytes, kind: str) -> None:
    decoded = BybitDecoder().decode(frame)
    assert decoded.events == [] and [k for k, _ in decoded.anomalies] == [kind]


def test_bybit_pong_is_keep_alive_and_a_subscribe_reply_is_quiet() -> None:
    pong = BYBIT["ping_pong"]["example"]["pong_linear_public_example"]
    assert is_pong(encode(pong))
    assert not is_pong(encode(BYBIT["allLiquidation_push"]["example"]))
    reply = {"success": True, "ret_msg": "", "conn_id": "x", "req_id": "1", "op": "subscribe"}
    assert BybitDecoder().decode(encode(reply)) == ([], [], 0, 0, [])


def test_bybit_instruments_keep_trading_linear_perpetuals() -> None:
    body = {
        "retCode": 0, "retMsg": "OK",
        "result": {"list": [
            {"symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading"},
            {"symbol": "BTC-27DEC26", "contractType": "LinearFutures", "status": "Trading"},
            {"symbol": "OLDUSDT", "contractType": "LinearPerpetual", "status": "Closed"},
        ], "nextPageCursor": "abc"},
    }  # fmt: skip
    assert listed_perpetuals(encode(body)) == (["BTCUSDT"], "abc")
    with pytest.raises(UpstreamError, match="10001"):
        listed_perpetuals(encode({"retCode": 10001, "retMsg": "params error"}))


def test_bybit_topics_stop_at_the_connection_bound() -> None:
    symbols = [f"S{i:05d}USDT" for i in range(2000)]
    topics, left_out = fitting_topics(symbols)
    assert sum(len(t) + 3 for t in topics) <= 21_000
    assert topics[0] == "allLiquidation.S00000USDT"
    assert len(topics) + len(left_out) == 2000 and left_out[0] == symbols[len(topics)]


def test_bybit_topics_put_liquidations_before_tickers_at_the_bound() -> None:
    symbols = [f"S{i:05d}USDT" for i in range(500)]
    topics, left_out = fitting_topics(symbols, tickers=True)
    assert sum(len(t) + 3 for t in topics) <= 21_000
    assert topics[:500] == [f"allLiquidation.{s}" for s in symbols]  # every liquidation fits
    assert topics[500] == "tickers.S00000USDT"
    assert left_out == symbols[len(topics) - 500 :]  # those without their ticker
    assert fitting_topics(["BTCUSDT"], tickers=True) == (
        ["allLiquidation.BTCUSDT", "tickers.BTCUSDT"],
        [],
    )


def ticker(kind: str, data: dict[str, str], ts: int = 1673272861686) -> bytes:
    return encode({"topic": "tickers.BTCUSDT", "type": kind, "cs": 24987956059, "ts": ts,
                   "data": data})  # fmt: skip


def test_bybit_ticker_snapshot_is_open_interest_in_base_coin_at_the_mark_price() -> None:
    decoded = BybitDecoder().decode(ticker("snapshot", ticker_snapshot("BTCUSDT")))
    assert decoded.events == [] and decoded.anomalies == []
    assert decoded.market == [
        MarkPriceUpdate("bybit", "BTCUSDT", 1673272861686, 17217.33),
        OpenInterestUpdate("bybit", "BTCUSDT", 1673272861686, 68744.761, 17217.33),
    ]


def test_bybit_ticker_deltas_carry_only_what_changed_and_merge_onto_the_last_values() -> None:
    decoder = BybitDecoder()
    decoder.decode(ticker("snapshot", ticker_snapshot("BTCUSDT")))
    # a delta without open interest: a mark price only (open interest did not change)
    moved = decoder.decode(ticker("delta", {"symbol": "BTCUSDT", "markPrice": "17300.5"}, 2))
    assert moved.market == [MarkPriceUpdate("bybit", "BTCUSDT", 2, 17300.5)]
    # open interest alone: priced at the last mark price seen, not the snapshot's
    grown = decoder.decode(ticker("delta", {"symbol": "BTCUSDT", "openInterest": "68800"}, 3))
    assert grown.market == [OpenInterestUpdate("bybit", "BTCUSDT", 3, 68800.0, 17300.5)]
    # neither: nothing for the predicted levels, and nothing counted as wrong
    quiet = decoder.decode(ticker("delta", {"symbol": "BTCUSDT", "bid1Price": "17215"}, 4))
    assert quiet.market == [] and quiet.anomalies == [] and quiet.ignored == 0


@pytest.mark.parametrize(
    "data",
    [
        {"symbol": "BTCUSDT", "markPrice": "-1"},
        {"symbol": "BTCUSDT", "openInterest": "lots"},
        {"symbol": "BTCUSDT", "openInterest": "nan"},
        {"markPrice": "17000"},
        {"symbol": "BTC/USDT", "markPrice": "17000"},
    ],
)
def test_bybit_bad_tickers_are_malformed_and_deliver_nothing(data: dict[str, str]) -> None:
    decoded = BybitDecoder().decode(ticker("delta", data))
    assert decoded.market == [] and [kind for kind, _ in decoded.anomalies] == ["malformed"]


# -- OKX -----------------------------------------------------------------------------------

OKX_OI_PUSH = encode(OKX["open_interest_push"]["example"])


def test_okx_documented_open_interest_is_oi_ccy_in_base_coin() -> None:
    decoded = OkxLiquidationDecoder().decode(OKX_OI_PUSH)  # no contract value needed
    assert decoded.events == [] and decoded.anomalies == []
    # oiCcy, not oi (contracts: 100 times as many for BTC-USDT-SWAP's ctVal 0.01)
    assert decoded.market == [
        OpenInterestUpdate("okx", "BTCUSDT", 1743041250440, 22161.1301000000309)
    ]


def test_okx_bad_or_foreign_open_interest_is_counted_not_delivered() -> None:
    push = OKX["open_interest_push"]["example"]
    item = push["data"][0]
    bad = {**push, "data": [{**item, "oiCcy": "-3"}, {**item, "ts": "soon"}]}
    decoded = OkxLiquidationDecoder().decode(encode(bad))
    assert decoded.market == [] and [k for k, _ in decoded.anomalies] == ["malformed"] * 2
    inverse = {**push, "data": [{**item, "instId": "BTC-USD-SWAP"}]}
    decoded = OkxLiquidationDecoder().decode(encode(inverse))
    assert decoded.market == [] and decoded.ignored == 1
    missing = {**push, "data": [{"instId": "BTC-USDT-SWAP", "ts": "1"}]}
    assert OkxLiquidationDecoder().decode(encode(missing)).anomalies[0][0] == "malformed"


OKX_PUSH = encode(OKX["liquidation_orders_push"]["example"])


def test_okx_documented_push_is_sz_times_ct_val_and_buy_is_a_short() -> None:
    decoder = OkxLiquidationDecoder({"IOST-USDT-SWAP": 10.0})
    decoded = decoder.decode(OKX_PUSH)
    [event] = decoded.events
    assert (event.exchange, event.symbol, event.side) == ("okx", "IOSTUSDT", "short")
    assert event.price == 0.007831
    assert event.quantity == 13 * 10.0  # contracts x contract value
    assert event.notional == pytest.approx(0.007831 * 130)
    assert event.time == 1692266434010


def test_okx_unknown_instrument_is_a_counted_skip_never_a_guess() -> None:
    decoded = OkxLiquidationDecoder({"BTC-USDT-SWAP": 0.01}).decode(OKX_PUSH)
    assert decoded.events == []
    assert decoded.anomalies == [("unknown_instrument", "IOST-USDT-SWAP")]


def test_okx_replayed_liquidations_count_once() -> None:
    decoder = OkxLiquidationDecoder({"IOST-USDT-SWAP": 10.0})
    assert len(decoder.decode(OKX_PUSH).events) == 1
    again = decoder.decode(OKX_PUSH)
    assert again.events == [] and again.duplicates == 1


def test_okx_inverse_swaps_are_ignored_and_errors_are_named() -> None:
    decoder = OkxLiquidationDecoder({"BTC-USDT-SWAP": 0.01})
    inverse = {
        "arg": {"channel": "liquidation-orders", "instType": "SWAP"},
        "data": [{"instId": "BTC-USD-SWAP", "details": [
            {"side": "sell", "sz": "1", "bkPx": "60000", "ts": "1", "posSide": "long"}]}],
    }  # fmt: skip
    assert decoder.decode(encode(inverse)).ignored == 1
    error = {"event": "error", "code": "60018", "msg": "Wrong URL or channel"}
    assert decoder.decode(encode(error)).anomalies == [
        ("error_reply", "60018: Wrong URL or channel")
    ]
    assert decoder.decode(b"pong") == ([], [], 0, 0, [])
    assert [k for k, _ in decoder.decode(b"{oops").anomalies] == ["malformed"]
    no_instrument = {"arg": {"channel": "liquidation-orders"}, "data": [{"details": []}]}
    assert [k for k, _ in decoder.decode(encode(no_instrument)).anomalies] == ["malformed"]
    books = {"arg": {"channel": "books", "instId": "BTC-USDT-SWAP"}, "data": []}
    assert decoder.decode(encode(books)) == ([], [], 0, 1, [])  # another reader's channel


def test_okx_instruments_keep_linear_contract_values() -> None:
    body = {
        "code": "0", "msg": "",
        "data": [
            {"instId": "BTC-USDT-SWAP", "ctVal": "0.01", "ctType": "linear"},
            {"instId": "BTC-USD-SWAP", "ctVal": "100", "ctType": "inverse"},
            {"instId": "BAD-USDT-SWAP", "ctVal": "", "ctType": "linear"},
        ],
    }  # fmt: skip
    assert parse_contract_values(encode(body)) == {"BTC-USDT-SWAP": 0.01}
    with pytest.raises(UpstreamError, match="51000"):
        parse_contract_values(encode({"code": "51000", "msg": "instType error", "data": []}))
    with pytest.raises(UpstreamError, match="malformed"):
        parse_contract_values(b"<html>")


def test_okx_envelope_and_symbol_names() -> None:
    envelope = decode_envelope(OKX_PUSH)
    assert envelope.arg is not None and envelope.arg.channel == "liquidation-orders"
    assert envelope.arg.instType == "SWAP" and msgspec.json.decode(envelope.data)
    assert swap_symbol("BTC-USDT-SWAP") == "BTCUSDT"
    assert swap_symbol("BTC-USD-SWAP") is None and swap_symbol("BTC-USDT") is None
    assert swap_inst_id("ethusdc") == "ETH-USDC-SWAP" and swap_inst_id("BTCEUR") is None


def test_recent_keys_forget_the_oldest() -> None:
    recent = RecentKeys(capacity=2)
    assert not recent.seen("a") and not recent.seen("b") and recent.seen("a")
    assert not recent.seen("c")  # pushes "a" out
    assert not recent.seen("a") and len(recent) == 2
