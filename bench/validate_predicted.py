"""Replay a session through the predicted-levels model and score it against the session's
realized liquidations, per symbol and overall, against a random baseline.

    python bench/validate_predicted.py                 # the bundled demo session
    python bench/validate_predicted.py FILE [FILE...]  # recorded replay files, merged by time

A liquidation is a hit when a level was open within k bins of its price at its time (or
consumed less than a minute before): see hub/analytics/predicted_validation.py for the
method and its random baseline (the same number of levels, drawn over the same span,
seeded, averaged over 200 draws). The model runs as the hub runs it: the same parsers,
the default parameters, flushed once a second of replay time.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hub.analytics.candles import MarkPrices
from hub.analytics.predicted import PredictedConfig
from hub.analytics.predicted_stream import PredictedProcessor
from hub.analytics.predicted_validation import LevelSpan, Realized, Validation, validate
from hub.feeds.binance_market import parse_mark_price_frame
from hub.feeds.binance_wire import parse_frame
from hub.feeds.replay import REST_PARSERS, ReplayLine, read_replay, read_replays
from hub.models import OpenInterestUpdate
from hub.service.sources import DATA, DEMO_REPLAY

KS = (0, 1, 2, 5)
DRAWS = 200
SEED = 0


def run(lines: list[ReplayLine]) -> tuple[PredictedProcessor, dict[str, list[Realized]]]:
    config = PredictedConfig(max_consumed=1_000_000)  # keep every crossed level for scoring
    processor = PredictedProcessor(config, "bench", MarkPrices())
    realized: dict[str, list[Realized]] = {}
    next_flush = lines[0].t
    for line in lines:
        if line.rest is not None:
            update: OpenInterestUpdate = REST_PARSERS[(line.source, line.rest)](line.raw)
            processor.track(update.symbol, line.t)
            processor.apply_open_interest(update)
        else:
            parsed = parse_frame(line.raw)
            if parsed.event is not None:
                event = parsed.event
                realized.setdefault(event.symbol, []).append(
                    Realized(event.time, event.price, event.notional)
                )
            else:
                for mark in parse_mark_price_frame(line.raw).updates:
                    processor.track(mark.symbol, line.t)
                    processor.apply_price(mark)
        if line.t >= next_flush:
            processor.flush(line.t)
            next_flush = line.t + 1_000
    processor.flush(lines[-1].t)
    return processor, realized


def score(processor: PredictedProcessor, realized: dict[str, list[Realized]], k: int) -> dict:
    rows = {}
    for symbol in sorted(realized):
        book = processor.book(symbol)
        if book is None or book.grid is None:
            continue
        spans = [LevelSpan(lv.price, lv.opened, None) for lv in book.open_levels()]
        spans += [LevelSpan(c.price, c.opened, c.consumed) for c in book.consumed_levels()]
        rows[symbol] = validate(spans, realized[symbol], book.grid.bin_width, k, DRAWS, SEED)
    return rows


def overall(rows: dict[str, Validation]) -> tuple[float, float, float, float]:
    """Hit share, drawn baseline share, lift (over the expected baseline), covered share."""
    notional = sum(r.notional for r in rows.values())
    hit = sum(r.hit_notional for r in rows.values()) / notional
    drawn = sum(r.baseline_share * r.notional for r in rows.values()) / notional
    expected = sum(r.expected_baseline_share * r.notional for r in rows.values()) / notional
    covered = sum(r.covered_share * r.notional for r in rows.values()) / notional
    return hit, drawn, hit / expected if expected else float("nan"), covered


def main(argv: list[str]) -> None:
    if argv:
        lines = sorted(
            (line for path in argv for line in read_replay(Path(path))), key=lambda line: line.t
        )
        name = ", ".join(argv)
    else:
        lines, name = (
            read_replays([DEMO_REPLAY, DATA / "demo_oi.jsonl"]),
            "bundled demo (demo_session.jsonl + demo_oi.jsonl)",
        )
    processor, realized = run(lines)
    print(f"session: {name}; {len(lines)} lines")
    for symbol in sorted(processor.streams):
        book = processor.streams[symbol].book
        print(
            f"  {symbol}: {len(book.levels)} open, {len(book.consumed)} consumed, "
            f"{book.expired} expired levels; {len(realized.get(symbol, []))} liquidations"
        )
    print()
    print(
        "| k (bins) | symbol | liquidations | notional | hit share | random baseline | lift "
        "| covered |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k in KS:
        rows = score(processor, realized, k)
        for symbol, r in rows.items():
            lift = f"{r.lift:.2f}" if r.lift is not None else "n/a"
            print(
                f"| {k} | {symbol} | {r.liquidations} | {r.notional:,.0f} | {r.hit_share:.1%} "
                f"| {r.baseline_share:.1%} | {lift} | {r.covered_share:.1%} |"
            )
        hit, drawn, lift, covered = overall(rows)
        count = sum(r.liquidations for r in rows.values())
        notional = sum(r.notional for r in rows.values())
        print(
            f"| {k} | **all** | {count} | {notional:,.0f} | **{hit:.1%}** | {drawn:.1%} "
            f"| **{lift:.2f}** | {covered:.1%} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
