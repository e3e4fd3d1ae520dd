"""Checkpoint restore and the alerts around it: a restarted processor resumes the stream
without alerting the clusters the process before it had alerted, and alerts what is new.

The bundled demo session goes through a processor ("before") with a flush every 30 s, as
in `test_processor`. Half-way, its positions are saved and a second processor ("after")
is restored from them and from the events the first one held, as `ingest` does from the
durable log. Both then take the rest of the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import msgspec
import pytest

from hub.analytics import checkpoint
from hub.analytics.processor import ALERT_WINDOW, LiquidationProcessor, ProcessorConfig
from hub.analytics.rows import rows_of
from hub.channels import heatmap_channel
from hub.feeds.binance_wire import parse_frame
from hub.feeds.replay import read_replay
from hub.models import Alert, ChannelMessage, LiquidationEvent
from tests.test_processor import Recorder, assert_same_snapshot

DEMO = Path(__file__).parent.parent / "hub" / "data" / "demo_session.jsonl"
FLUSH_MS = 30_000


def cluster_alerts(messages: list[ChannelMessage]) -> list[Alert]:
    return [
        m.data
        for m in messages
        if m.ch == "alerts:*" and isinstance(m.data, Alert) and m.data.kind.startswith("cluster")
    ]


def new_clusters(alerts: list[Alert]) -> list[tuple[str, int, float, float]]:
    return [(a.symbol, a.time, a.price, a.notional) for a in alerts if a.kind == "cluster_new"]


def session() -> list[tuple[int, LiquidationEvent]]:
    """(receive time, event) of every liquidation of the demo session."""
    timed = []
    for line in read_replay(DEMO):
        parsed = parse_frame(line.raw)
        assert parsed.event is not None, parsed
        timed.append((line.t, parsed.event))
    return timed


Logged = dict[str, list[tuple[int, LiquidationEvent]]]  # the durable log's stand-in


def new_processor(symbols: set[str], epoch: str = "before") -> LiquidationProcessor:
    processor = LiquidationProcessor(ProcessorConfig(), epoch=epoch)
    for symbol in sorted(symbols):
        processor.track(symbol, 0)
    return processor


def run(
    processor: LiquidationProcessor,
    timed: list[tuple[int, LiquidationEvent]],
    last_flush: int,
    held: Logged | None = None,
    every: int = FLUSH_MS,
    recorder: Recorder | None = None,
) -> tuple[list[Alert], int]:
    """Apply `timed`, flushing `every` ms; returns the cluster alerts and the time of the
    last flush. Accepted events are appended to `held` (the durable log's stand-in), and
    every message goes to `recorder` (the clients) when given."""
    alerts: list[Alert] = []
    for now, event in timed:
        applied = processor.apply(event, now)
        messages = applied.messages
        if held is not None and applied.event is not None:
            held.setdefault(applied.event.symbol, []).append((applied.arrival, applied.event))
        if now - last_flush >= every:
            flushed = processor.flush(now)
            alerts += cluster_alerts(flushed)
            messages = messages + flushed
            last_flush = now
        if recorder is not None:
            recorder.take(messages, now)
    return alerts, last_flush


class Before(NamedTuple):
    """A processor ("before") that took the first part of the demo session."""

    processor: LiquidationProcessor
    held: Logged  # the events it accepted, with their arrival numbers
    alerts: list[Alert]  # its cluster alerts
    last_flush: int
    rest: list[tuple[int, LiquidationEvent]]  # the session's remaining events


def before_restart(part: float, every: int = FLUSH_MS, recorder: Recorder | None = None) -> Before:
    timed = session()
    processor = new_processor({event.symbol for _, event in timed})
    held: Logged = {}
    cut = int(len(timed) * part)
    alerts, last_flush = run(processor, timed[:cut], timed[0][0], held, every, recorder)
    return Before(processor, held, alerts, last_flush, timed[cut:])


def restored(
    before: LiquidationProcessor,
    held: Logged,
    saved: dict[str, bytes],
    now: int,
    resume: bool = True,
) -> LiquidationProcessor:
    """A processor restored as `ingest` restores one: from the checkpoint and the events
    `before` held (the durable log's stand-in); every symbol's stream must be resumed, or
    (`resume` False) none."""
    after = new_processor(set(before.books), epoch="after")
    checkpoint.restore_channels(after, saved[checkpoint.CHANNELS_FIELD])
    for symbol in sorted(before.books):
        resumed, _ = checkpoint.restore_book(
            after, symbol, rows_of(held.get(symbol, [])), saved.get(symbol), now
        )
        assert resumed == resume, f"{symbol}: expected resumed={resume}, got {resumed}"
    return after


def test_a_restored_processor_does_not_alert_standing_clusters_again() -> None:
    past = before_restart(0.5)
    before, last_flush = past.processor, past.last_flush
    assert any(a.kind == "cluster_new" for a in past.alerts), (
        "expected the first half of the demo to raise cluster alerts, to test their memory"
    )
    after = restored(before, past.held, checkpoint.Positions()(before), last_flush)

    # Both flush at the same moment: the same events (those applied since the last flush
    # are news to both), so the same clusters are new, whatever was standing before.
    first = after.flush(last_flush)
    reference = cluster_alerts(before.flush(last_flush))
    standing = [
        cluster
        for m in first
        if m.ch.startswith("heatmap:") and m.ch.endswith(f":{ALERT_WINDOW}")
        for cluster in (m.data.clusters or [])  # type: ignore[attr-defined]
        if cluster.risk != "low"
    ]
    assert len(standing) > len(reference), (
        f"expected more clusters standing at the checkpoint ({len(standing)}) than new ones "
        f"({len(reference)}), or the test could not tell a re-alert from news"
    )
    again = [(a.kind, a.symbol, a.price, a.notional) for a in cluster_alerts(first)]
    expected = [(a.kind, a.symbol, a.price, a.notional) for a in reference]
    assert again == expected, (
        f"expected only the alerts the process before the restart raises at the same flush, "
        f"{expected}; got {again}"
    )

    # What is new after the restart is alerted as the process before it would have.
    continued, _ = run(before, past.rest, last_flush)
    resumed_alerts, _ = run(after, past.rest, last_flush)
    expected_new = new_clusters(continued)
    got_new = new_clusters(resumed_alerts)
    assert expected_new, "expected the second half of the demo to raise new clusters"
    assert got_new == expected_new, f"expected new clusters {expected_new}, got {got_new}"


def test_a_restored_book_keeps_its_grid_through_the_events_after_the_checkpoint() -> None:
    # The events applied after the checkpoint's flush are applied again on restore. With
    # the market price not carried over, the first of them pulled it from 0 towards the
    # price: the density axis moved far from the market, or a new epoch began.
    past = before_restart(0.5)
    before = past.processor
    after = restored(before, past.held, checkpoint.Positions()(before), past.last_flush)
    for symbol, book in before.books.items():
        assert book.grid is not None
        expected = (book.grid.epoch, book.grid.reference_price, book.market_price)
        again = after.books[symbol]
        assert again.grid is not None
        got = (again.grid.epoch, again.grid.reference_price, again.market_price)
        assert got == expected, f"{symbol}: expected (epoch, reference, market) {expected}, {got=}"


@pytest.mark.timeout(300)  # the demo session twice, every message checked as clients do
def test_every_window_resumes_where_its_clients_are() -> None:
    # Flushing every 2 s, the long windows (published at their own pace, the 30-day one
    # every 45 s) stand at an earlier point than the checkpoint's flush: each resumes from
    # its own last publish, so the diffs after the restart apply to what clients hold.
    clients = Recorder()
    past = before_restart(0.5, every=2_000, recorder=clients)
    before = past.processor
    lagging = [
        (symbol, name)
        for symbol, book in before.books.items()
        for name, window in book.windows.items()
        if window.pending
    ]
    assert lagging, "expected a window with changes it had not yet published at the checkpoint"
    after = restored(before, past.held, checkpoint.Positions()(before), past.last_flush)
    run(after, past.rest, past.last_flush, every=2_000, recorder=clients)
    end = past.rest[-1][0] + 60_000  # every window due
    clients.take(after.flush(end), end)
    for symbol, book in after.books.items():
        for name, window in book.windows.items():
            state = clients.states[heatmap_channel(symbol, name)]
            assert state.replica is not None
            assert state.epoch == before.books[symbol].epoch, f"{symbol} {name}: new epoch"
            assert_same_snapshot(state.replica.snapshot(), window.snapshot(), f"{symbol} {name}")


def test_a_checkpoint_of_an_older_format_starts_a_new_epoch_with_every_event() -> None:
    # Checkpoints written before arrival numbers named events by a string watermark; such
    # a position cannot name a row of the log, so the book starts afresh from all of it.
    past = before_restart(1 / 3)
    before = past.processor
    saved = checkpoint.Positions()(before)
    old = {
        field: raw if field == checkpoint.CHANNELS_FIELD else _in_the_old_format(raw)
        for field, raw in saved.items()
    }
    after = restored(before, past.held, old, past.last_flush, resume=False)
    after.flush(past.last_flush)
    before.flush(past.last_flush)  # what it took since its last flush, as `after` did
    for symbol, book in before.books.items():
        again = after.books[symbol]
        assert again.grid is not None and book.grid is not None
        assert again.grid.epoch != book.grid.epoch, symbol
        assert len(again.store) == len(book.store), symbol
        want = book.windows["1h"].snapshot().statistics.event_count
        assert again.windows["1h"].snapshot().statistics.event_count == want, symbol


def _in_the_old_format(raw: bytes) -> bytes:
    fields = msgspec.json.decode(raw)
    seqs = {name: window[0] for name, window in fields.pop("windows").items()}
    del fields["arrival"], fields["market_price"]
    return msgspec.json.encode({**fields, "watermark": "binance|1|long|1.0|1.0", "seqs": seqs})


def test_positions_encoded_again_only_for_books_that_flushed() -> None:
    timed = session()
    symbols = {event.symbol for _, event in timed}
    processor = new_processor(symbols)
    positions = checkpoint.Positions()
    half = len(timed) // 2
    _, last_flush = run(processor, timed[:half], 0)
    first = positions(processor)
    _, last_flush = run(processor, timed[half : half + 40], last_flush, every=1)
    second = positions(processor)
    assert second == checkpoint.Positions()(processor), "the same bytes as encoded afresh"
    moved = {event.symbol for _, event in timed[half : half + 40]}
    for symbol in symbols - moved:
        assert second[symbol] is first[symbol], f"{symbol} did not flush: kept as encoded"
    assert any(second[s] != first[s] for s in moved), f"{sorted(moved)} flushed: re-encoded"


def test_a_restored_book_stays_quiet_until_its_long_windows_are_due() -> None:
    # A restored window's coverage counts as unsent until its first publish, which a
    # long window makes at its own pace (the 30d one up to 45 s later): that must not
    # wake the book at every flush meanwhile, as it did (a restored hub then needed a
    # sixth more CPU than a new one for the first 45 s).
    past = before_restart(0.5)
    after = restored(
        past.processor, past.held, checkpoint.Positions()(past.processor), past.last_flush
    )
    flushes = 200
    woken = {symbol: 0 for symbol in after.books}
    for step in range(1, flushes + 1):
        now = past.last_flush + 50 * step
        for symbol, book in after.books.items():
            woken[symbol] += not (book.quiet and now < book.quiet_until)
        after.flush(now)
    busy = {symbol: count for symbol, count in woken.items() if count > flushes // 4}
    assert not busy, (
        f"expected a restored book with nothing arriving to wake at most every fourth of "
        f"{flushes} flushes (for what leaves, clusters, and its windows as they fall due); "
        f"woken: {woken}"
    )
