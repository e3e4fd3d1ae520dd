"""The OKX order book against the generated session with planted faults, the checksum
vectors and the real 2022 recording (tests/data/okx, described in docs/liquidity.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.analytics.order_book import OrderBook, Outcome, checksum
from hub.feeds.okx_book_wire import (
    BookData,
    BookFrame,
    EventFrame,
    TradesFrame,
    parse_frame,
    parse_rest_books,
    symbol_of,
)
from hub.feeds.okx_wire import swap_inst_id

OKX = Path(__file__).parent / "data" / "okx"
EXPECTED = json.loads((OKX / "book_session.expected.json").read_text())


def frames(name: str) -> list[bytes]:
    return (OKX / name).read_bytes().splitlines()


def play(lines: list[bytes]) -> tuple[OrderBook, dict[int, Outcome]]:
    book = OrderBook("BTC-USDT-SWAP")
    outcomes: dict[int, Outcome] = {}
    for number, line in enumerate(lines, start=1):
        frame = parse_frame(line)
        if isinstance(frame, BookFrame):
            outcomes[number] = book.apply(frame.action, frame.data)
    return book, outcomes


def top25(book: OrderBook) -> tuple[list[list[str]], list[list[str]]]:
    return book.bids.top(25), book.asks.top(25)


def test_session_applies_every_good_update_and_matches_the_expected_top_25() -> None:
    book, outcomes = play(frames("book_session.jsonl")[:302])
    assert outcomes[2] is Outcome.SYNCED
    assert outcomes[182] is Outcome.HEARTBEAT, "the empty update is the documented heartbeat"
    bad = {n: o for n, o in outcomes.items() if o.broken}
    assert bad == {}, f"no fault expected before line 303, saw {bad}"
    final = EXPECTED["final_book_after_good_messages"]
    bids, asks = top25(book)
    assert bids == [level[:2] for level in final["bids_top25"]]
    assert asks == [level[:2] for level in final["asks_top25"]]
    assert (len(book.bids.levels), len(book.asks.levels)) == (400, 400)
    assert book.seq_id == final["seqId"]
    assert book.checksum() == final["checksum"]


def test_session_detects_the_bad_checksum_and_the_sequence_break() -> None:
    _, outcomes = play(frames("book_session.jsonl"))
    assert outcomes[303] is Outcome.CHECKSUM
    # the book was dropped at 303, so 304 is held until a new snapshot
    assert outcomes[304] is Outcome.HELD
    lines = frames("book_session.jsonl")
    _, outcomes = play(lines[:302] + lines[303:])
    assert outcomes[303] is Outcome.GAP, "line 304 breaks the seqId chain"


def test_checksum_zero_means_not_provided() -> None:
    book, outcomes = play(frames("book_session.checksum0.jsonl"))
    broken = [n for n, o in outcomes.items() if o.broken]
    assert broken == EXPECTED["checksum0_variant"]["detectable_bad_lines"]
    before = EXPECTED["checksum0_variant"]["book_before_the_break"]
    book, _ = play(frames("book_session.checksum0.jsonl")[:303])
    bids, asks = top25(book)
    assert bids == [level[:2] for level in before["bids_top25"]]
    assert asks == [level[:2] for level in before["asks_top25"]]
    assert book.seq_id == before["seqId"]


@pytest.mark.parametrize(
    "vector",
    json.loads((OKX / "checksum_vectors.json").read_text())["vectors"],
    ids=lambda v: v["name"],
)
def test_checksum_vectors(vector: dict) -> None:
    assert checksum(vector["bids"][:25], vector["asks"][:25]) == vector["checksum"]
    # the book sorts what it is given, and a snapshot with the right checksum syncs
    book = OrderBook("X")
    data = BookData(bids=vector["bids"][::-1], asks=vector["asks"][::-1], checksum=-1)
    assert book.apply("snapshot", data) is Outcome.CHECKSUM
    data = BookData(bids=vector["bids"][::-1], asks=vector["asks"][::-1], checksum=0)
    assert book.apply("snapshot", data) is Outcome.SYNCED
    assert book.checksum() == vector["checksum"]


def test_real_2022_frames_verify_with_their_own_checksums() -> None:
    books: dict[str, OrderBook] = {}
    outcomes: list[Outcome] = []
    trades = 0
    for line in frames("recorded_cryptofeed_2022-05-13.jsonl"):
        raw = json.dumps(json.loads(line)["raw"]).encode()
        frame = parse_frame(raw)
        if isinstance(frame, BookFrame):
            book = books.setdefault(frame.inst_id, OrderBook(frame.inst_id))
            assert frame.data.checksum != 0
            outcomes.append(book.apply(frame.action, frame.data))
        elif isinstance(frame, TradesFrame):
            trades += len(frame.trades)
    assert len(outcomes) == 290
    assert [o for o in outcomes if o not in (Outcome.SYNCED, Outcome.APPLIED)] == []
    assert trades >= 74


def rest_body(bids: list[list[str]], asks: list[list[str]], seq: int | None) -> bytes:
    data: dict = {"asks": asks, "bids": bids, "ts": "1"}
    if seq is not None:
        data["seqId"] = seq
    return json.dumps({"code": "0", "msg": "", "data": [data]}).encode()


def test_rest_book_with_seq_id_skips_held_updates_and_bridges() -> None:
    book = OrderBook("X")
    older = BookData(bids=[["99", "1", "0", "1"]], prevSeqId=5, seqId=8)
    straddling = BookData(bids=[["98", "2", "0", "1"]], prevSeqId=8, seqId=12)
    assert book.apply("update", older) is Outcome.HELD
    assert book.apply("update", straddling) is Outcome.HELD
    rest = parse_rest_books(rest_body([["100", "1", "0", "1"]], [["101", "1", "0", "1"]], 10))
    assert book.load_rest(rest) is Outcome.SYNCED
    assert sorted(book.bids.levels) == [98.0, 100.0], "8 is in the REST book, 12 is not"
    assert book.apply("update", BookData(prevSeqId=12, seqId=13)) is Outcome.APPLIED
    assert book.apply("update", BookData(prevSeqId=99, seqId=100)) is Outcome.GAP
    assert not book.synced


def test_rest_book_without_seq_id_chains_from_the_first_update() -> None:
    book = OrderBook("X")
    book.load_rest(parse_rest_books(rest_body([["100", "1", "0", "1"]], [], None)))
    assert book.apply("update", BookData(prevSeqId=40, seqId=41)) is Outcome.APPLIED
    assert book.apply("update", BookData(prevSeqId=41, seqId=42)) is Outcome.APPLIED
    assert book.apply("update", BookData(prevSeqId=50, seqId=51)) is Outcome.GAP


def test_sequence_reset_after_maintenance_is_accepted() -> None:
    book = OrderBook("X")
    book.apply("snapshot", BookData(bids=[["1", "1", "0", "1"]], prevSeqId=-1, seqId=10))
    assert book.apply("update", BookData(prevSeqId=10, seqId=15)) is Outcome.APPLIED
    assert book.apply("update", BookData(prevSeqId=15, seqId=15)) is Outcome.HEARTBEAT
    assert book.apply("update", BookData(prevSeqId=15, seqId=3)) is Outcome.RESET
    assert book.apply("update", BookData(prevSeqId=3, seqId=5)) is Outcome.APPLIED


def test_rest_errors_and_bad_frames_are_reported_not_raised() -> None:
    with pytest.raises(ValueError, match="51001"):
        parse_rest_books(b'{"code":"51001","msg":"Instrument ID does not exist","data":[]}')
    with pytest.raises(ValueError, match="malformed"):
        parse_rest_books(b"<html>")
    assert parse_frame(b"pong") is None
    assert parse_frame(b"not json").kind == "malformed"  # type: ignore[union-attr]
    assert parse_frame(b'{"arg":{"channel":"books"},"action":"x","data":[]}').kind == (  # type: ignore[union-attr]
        "unknown_book_action"
    )
    assert parse_frame(b'{"arg":{"channel":"books"},"action":"update","data":[1]}').kind == (  # type: ignore[union-attr]
        "malformed"
    )
    reply = parse_frame(b'{"event":"error","code":"60012","msg":"Invalid request","connId":"a"}')
    assert isinstance(reply, EventFrame) and reply.code == "60012"


def test_symbol_mapping() -> None:
    assert swap_inst_id("BTCUSDT") == "BTC-USDT-SWAP"
    assert swap_inst_id("BTCEUR") is None
    assert symbol_of("BTC-USDT-SWAP") == "BTCUSDT"
