"""The liquidity analyzer and insights, on hand-made books and on the generated OKX session."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.analytics.insights import insights
from hub.analytics.liquidity import LiquidityAnalyzer, LiquidityConfig, TradeFlow
from hub.analytics.order_book import OrderBook
from hub.feeds.okx_book_wire import BookFrame, parse_frame
from hub.models import Cluster, PredictedLevel

OKX = Path(__file__).parent / "data" / "okx"
CT_VAL = 0.01


def session_book() -> OrderBook:
    book = OrderBook("BTC-USDT-SWAP")
    for line in (OKX / "book_session.jsonl").read_bytes().splitlines()[:302]:
        frame = parse_frame(line)
        if isinstance(frame, BookFrame):
            book.apply(frame.action, frame.data)
    return book


def flat_book(
    mid: float = 100.0, tick: float = 0.1, size: float = 10.0, levels: int = 50
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    bids = [(round(mid - tick * (i + 1), 4), size * (1 + (i % 3) * 0.1)) for i in range(levels)]
    asks = [(round(mid + tick * (i + 1), 4), size * (1 + (i % 3) * 0.1)) for i in range(levels)]
    return bids, asks


def cluster(price: float, notional: float = 2e6, z: float = 3.0) -> Cluster:
    return Cluster(1, price, price - 0.05, price + 0.05, notional, 10, 1.0, z, "high")


def test_depth_is_the_book_notional_on_the_grid() -> None:
    book = session_book()
    result = LiquidityAnalyzer("BTCUSDT").analyze(
        book.bids.sorted(), book.asks.sorted(), CT_VAL, now=1_000, bin_width=20.0
    )
    assert result.synced and result.depth is not None
    total_bid = sum(p * s * CT_VAL for p, s in book.bids.sorted())
    assert sum(n for _, n in result.depth.bids) == pytest.approx(total_bid, rel=1e-9)
    assert all(low % 20 == 0 for low, _ in result.depth.bids + result.depth.asks)
    assert result.best_bid == 60007.8 and result.best_ask == 60022.6
    assert result.mid == pytest.approx((60007.8 + 60022.6) / 2)
    # OKX's 400 levels reach a few tenths of a percent: both bands hold the whole book
    assert result.reach_pct["bid"] < 1 and result.imbalance["5"] == result.imbalance["1"]
    assert result.imbalance["1"].bid == pytest.approx(total_bid, rel=1e-6)


def test_a_wall_must_persist_and_a_flashing_order_never_shows() -> None:
    analyzer = LiquidityAnalyzer("X", LiquidityConfig(wall_persist_ms=2_000))
    bids, asks = flat_book()
    walled = [*bids]
    walled[10] = (walled[10][0], 500.0)  # fifty times its neighbours
    assert analyzer.analyze(walled, asks, 1.0, now=0).walls == []
    assert analyzer.analyze(walled, asks, 1.0, now=1_000).walls == []
    walls = analyzer.analyze(walled, asks, 1.0, now=2_000).walls
    assert [(w.side, w.price) for w in walls] == [("bid", walled[10][0])]
    assert walls[0].z_score >= 3 and walls[0].notional == pytest.approx(500 * walled[10][0])
    flashing = [*asks]
    flashing[3] = (flashing[3][0], 800.0)
    for now in (3_000, 5_000):  # shown in one analysis, gone in the next, back again
        assert all(w.side == "bid" for w in analyzer.analyze(walled, flashing, 1.0, now).walls)
        assert all(w.side == "bid" for w in analyzer.analyze(walled, asks, 1.0, now + 1000).walls)
    assert analyzer.analyze(bids, asks, 1.0, now=10_000).walls == [], "gone: forgotten"
    assert analyzer.analyze(walled, asks, 1.0, now=11_000).walls == [], "back: proves again"


def test_imbalance_within_one_and_five_percent() -> None:
    bids = [(99.5, 10.0), (97.0, 100.0)]  # 0.5 % and 3 % below mid 100
    asks = [(100.5, 5.0), (104.0, 1.0), (110.0, 1000.0)]
    result = LiquidityAnalyzer("X").analyze(bids, asks, 2.0, now=0, bin_width=1.0)
    one, five = result.imbalance["1"], result.imbalance["5"]
    assert (one.bid, one.ask) == (pytest.approx(99.5 * 20), pytest.approx(100.5 * 10))
    assert one.ratio == pytest.approx(1990 / 1005, abs=1e-4)
    assert five.bid == pytest.approx(1990 + 19400) and five.ask == pytest.approx(1005 + 208)


def test_flow_counts_trades_at_or_above_the_percentile() -> None:
    flow = TradeFlow(LiquidityConfig(flow_percentile=90, flow_min_sample=50))
    for i in range(100):
        flow.add(i * 100, "buy" if i % 2 else "sell", 1_000.0)
    assert flow.threshold == 1_000.0
    flow.add(20_000, "buy", 50_000.0)
    flow.add(200_000, "sell", 70_000.0)  # 3 min 20 s
    flows = flow.flows(now=200_000)
    assert flows["1m"].sell == 70_000 and flows["1m"].buy == 0
    # every 1,000 is at p90 once there is a threshold: odd i from the 50th trade (i = 49) on
    assert flows["5m"].buy == pytest.approx(50_000 + 26 * 1_000)
    assert flows["1h"].sell >= 70_000
    small = TradeFlow(LiquidityConfig(flow_floor=500_000.0))
    small.add(0, "buy", 1e6)  # the first trade of the symbol: the percentile is not ready
    small.add(0, "sell", 400_000.0)
    assert small.threshold == 500_000.0, "the floor stands in until the percentile is ready"
    assert (small.flows(0)["1m"].buy, small.flows(0)["1m"].sell) == (1e6, 0.0)
    small.add(0, "sideways", 5.0)
    small.add(0, "buy", float("nan"))
    assert len(small._recent) == 2, "bad trades are ignored"


def test_zones_support_and_resistance_merge_walls_and_clusters() -> None:
    analyzer = LiquidityAnalyzer("X", LiquidityConfig(wall_persist_ms=0))
    bids, asks = flat_book()
    bids[20] = (bids[20][0], 600.0)  # 97.9
    result = analyzer.analyze(bids, asks, 1.0, now=0, bin_width=0.5, clusters=[cluster(97.8)])
    assert [z.side for z in result.zones] == ["bid"]
    assert result.zones[0].low <= 97.9 < result.zones[0].high
    top = result.support[0]
    assert top.sources == ["cluster", "wall"] and 97.8 <= top.price <= 97.9
    alone = LiquidityAnalyzer("X").analyze(*flat_book(), 1.0, now=0, clusters=[cluster(101.0)])
    assert alone.resistance[0].sources == ["cluster"]
    assert top.strength > alone.resistance[0].strength, "two sources outweigh one"


def test_insights_cluster_wall_level_wall_void_and_imbalance() -> None:
    analyzer = LiquidityAnalyzer("X", LiquidityConfig(wall_persist_ms=0))
    bids, asks = flat_book(levels=60)
    bids[20] = (bids[20][0], 600.0)  # wall at 97.9
    # asks 100.1..101.0 thinned out: a void toward a short cluster at 101.3
    asks = [(p, 0.05 if p <= 101.0 else s) for p, s in asks]
    book = analyzer.analyze(bids, asks, 1.0, now=0, bin_width=0.2)
    found = insights(
        [cluster(97.9), cluster(101.3)],
        book,
        [PredictedLevel(97.95, "long", 5e5, 25.0, opened=0)],
    )
    kinds = {(i.kind, i.side) for i in found}
    assert ("cluster_wall", "long") in kinds
    assert ("level_wall", "long") in kinds
    assert ("void", "short") in kinds
    assert ("imbalance", "short") in kinds, "bids outweigh the thinned asks"
    assert all(0 < i.strength <= 1 and i.detail for i in found)
    assert [i.strength for i in found] == sorted((i.strength for i in found), reverse=True)
    wall = next(i for i in found if i.kind == "cluster_wall")
    assert "$2.0M of long liquidations" in wall.detail and "bid wall" in wall.detail
    assert insights([cluster(97.9)], None) == []


def test_no_insight_from_a_balanced_book_without_walls() -> None:
    book = LiquidityAnalyzer("X").analyze(*flat_book(), 1.0, now=0, bin_width=0.5)
    assert insights([cluster(150.0)], book) == [], "a cluster beyond the book's reach"


def test_a_cluster_meets_only_a_wall_on_its_own_side() -> None:
    analyzer = LiquidityAnalyzer("X", LiquidityConfig(wall_persist_ms=0))
    bids, asks = flat_book()
    bids[2] = (bids[2][0], 600.0)  # bid wall at 99.7
    book = analyzer.analyze(bids, asks, 1.0, now=0, bin_width=0.2)
    wide = Cluster(1, 100.2, 99.5, 100.9, 2e6, 10, 0.0, 3.0, "high")  # above mid, spans it
    kinds = [i.kind for i in insights([wide], book)]
    assert "cluster_wall" not in kinds, f"a short cluster is not held by a bid wall: {kinds}"
    below = Cluster(1, 99.7, 99.6, 99.8, 2e6, 10, 1.0, 3.0, "high")
    assert [i.kind for i in insights([below], book)][:1] == ["cluster_wall"]
