"""The liquidity service's pacing and its out-of-sync notice, on the generated session's
frames; the monotonic clock is the test's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hub.config import Settings, load_settings
from hub.errors import ConfigError
from hub.fanout.codec import EncodedMessage, encode_message
from hub.fanout.fanout import Fanout
from hub.feeds.okx_book import OkxBookFeed
from hub.models import ChannelMessage
from hub.service.liquidity import LiquidityService
from hub.service.order_books import OrderBooks

LINES = (Path(__file__).parent / "data" / "okx" / "book_session.jsonl").read_bytes().splitlines()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service(
    clock: Clock, sent: list[ChannelMessage], ingest_clock: Callable[[], int] = lambda: 5
) -> LiquidityService:
    def make_books(on_book, on_trade) -> OrderBooks:  # type: ignore[no-untyped-def]
        return OrderBooks(
            lambda on_frame, on_open: OkxBookFeed("ws://unused", "http://unused", on_frame),
            {"BTCUSDT"},
            on_book,
            on_trade,
            contract_values={"BTC-USDT-SWAP": 0.01},
        )

    return LiquidityService(
        make_books, ingest_clock, sent.extend, lambda s: [], lambda s: 20.0, "e1", monotonic=clock
    )


def test_at_most_once_a_second_and_again_every_five_seconds_when_quiet() -> None:
    clock, sent = Clock(), []
    liquidity = service(clock, sent)
    liquidity.publish_due()
    assert sent == [], "nothing before a book is synced"
    liquidity.order_books.take_frame(LINES[1])  # the snapshot
    liquidity.publish_due()
    assert [m.seq for m in sent] == [1] and sent[0].ch == "liquidity:BTCUSDT"
    for line in LINES[2:12]:  # ten changes within the next second
        clock.now += 0.09
        liquidity.order_books.take_frame(line)
        liquidity.publish_due()
    assert len(sent) == 1, "a second has not passed"
    clock.now += 0.2
    liquidity.publish_due()
    assert [m.seq for m in sent] == [1, 2] and sent[1].data.synced
    clock.now += 4.0
    liquidity.publish_due()
    assert len(sent) == 2, "quiet, and the refresh is not due"
    clock.now += 1.1
    liquidity.publish_due()
    assert len(sent) == 3 and sent[2].epoch == "e1"


def test_a_broken_book_is_announced_once_then_nothing_until_it_is_back() -> None:
    clock, sent = Clock(), []
    liquidity = service(clock, sent)
    for line in LINES[1:303]:  # up to and with the bad checksum
        liquidity.order_books.take_frame(line)
    clock.now += 2
    liquidity.publish_due()
    assert len(sent) == 1 and not sent[0].data.synced
    assert "checksum" in sent[0].data.error
    clock.now += 10
    liquidity.publish_due()
    assert len(sent) == 1, "the notice is not repeated"
    liquidity.order_books.take_frame(LINES[1])
    clock.now += 1
    liquidity.publish_due()
    assert sent[-1].data.synced and sent[-1].seq == 2


def test_a_resync_keeps_the_walls_that_still_stand() -> None:
    """The same book after a resync: its walls were standing before, and still are."""
    now = [0]
    liquidity = service(Clock(), [], lambda: now[0])
    liquidity.order_books.take_frame(LINES[1])  # the snapshot
    first = liquidity.analyze("BTCUSDT")
    assert first is not None and first.walls == [], "a wall must stand 2 s first"
    now[0] = 3_000
    standing = liquidity.analyze("BTCUSDT")
    assert standing is not None and standing.walls, "the session's book has walls"
    for line in LINES[2:303]:  # up to and with the bad checksum: a resync
        liquidity.order_books.take_frame(line)
    assert liquidity.order_books.status.resyncs == 1
    liquidity.order_books.take_frame(LINES[1])  # the book again, as it was
    now[0] = 3_500
    again = liquidity.analyze("BTCUSDT")
    assert again is not None and again.synced
    kept = {(w.side, w.price, w.since) for w in standing.walls}
    assert kept <= {(w.side, w.price, w.since) for w in again.walls}, (
        f"expected the standing walls {sorted(kept)}, seen {again.walls}"
    )


def test_liquidity_and_coinglass_settings() -> None:
    assert Settings().liquidity == "okx"
    assert load_settings({"HEATMAP_LIQUIDITY": "OFF"}).liquidity == "off"
    with pytest.raises(ConfigError, match="HEATMAP_LIQUIDITY"):
        load_settings({"HEATMAP_LIQUIDITY": "binance"})
    with pytest.raises(ConfigError, match="COINGLASS_URL"):
        load_settings({"COINGLASS_URL": "ftp://x"})
    assert load_settings({"COINGLASS_API_KEY": "k"}).coinglass_api_key == "k"


def test_a_fan_out_holds_only_the_latest_liquidity_message() -> None:
    clock, sent = Clock(), []
    liquidity = service(clock, sent)
    for line in LINES[1:40]:
        liquidity.order_books.take_frame(line)
        clock.now += 1.0
        liquidity.publish_due()
    fanout = Fanout(lambda: 0)
    for message in sent:
        fanout.publish(encode_message(message))
    state = fanout.channels["liquidity:BTCUSDT"]
    assert [m.header.seq for _, m in state.history] == [len(sent)]
    latest = fanout.join(object(), "liquidity:BTCUSDT", None)  # type: ignore[arg-type]
    assert [m.header.seq for m in latest] == [len(sent)], "a new subscriber gets the latest"
    assert isinstance(latest[0], EncodedMessage)
