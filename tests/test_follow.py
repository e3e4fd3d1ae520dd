"""A warm standby's processor (hub.analytics.follow): following the leader's log and
checkpoints, it takes over exactly where a restore from the log would, and costs what
changed, not what the windows hold.

A leader processor takes the demo session, flushing every 2 s (the long windows at their
own pace) and checkpointing at every flush; a follower reads its checkpoints, then its log,
every few flushes, as the standby does from Redis. At a moment between two flushes the
leader dies: one processor is restored from the log and the last checkpoint as `ingest`
restores one, the other is the follower taking over. Both then take the rest of the
session: every message they send must be the same.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hub.analytics import checkpoint
from hub.analytics.follow import Follower
from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
from hub.analytics.rows import rows_of
from hub.fanout.codec import encode_message
from hub.models import ChannelMessage, LiquidationEvent
from tests.test_checkpoint import Logged, new_processor, restored, session

FLUSH_MS = 2_000
POLL_EVERY = 3  # flushes between two reads of the standby
FIRST_ARRIVAL = 10**15  # the new process numbers its events from here


def sent(messages: list[ChannelMessage]) -> list[Any]:
    """Messages as clients decode them (a JSON object's key order aside)."""
    return [msgspec.json.decode(encode_message(m)) for m in messages]


class Standby:
    """The follower, fed as the standby feeds it: checkpoints first, then the log."""

    def __init__(self) -> None:
        self.follower = Follower(ProcessorConfig(), epoch="standby")
        self.read: dict[str, int] = {}  # per symbol, the log entries read

    def poll(self, saved: dict[str, bytes], log: Logged) -> None:
        for symbol, entries in log.items():
            start = self.read.get(symbol, 0)
            # A page read again overlaps what was read: the follower skips it.
            start = max(0, start - 3)
            self.follower.take(symbol, rows_of(entries[start:]))
            self.read[symbol] = len(entries)
        for symbol in log:
            self.follower.move(symbol, saved.get(symbol))

    def take_over(
        self, saved: dict[str, bytes], log: Logged, now: int
    ) -> tuple[LiquidationProcessor, list[ChannelMessage]]:
        self.poll(saved, log)
        processor = self.follower.processor
        processor.first_arrival = FIRST_ARRIVAL
        checkpoint.restore_channels(processor, saved[checkpoint.CHANNELS_FIELD])
        messages: list[ChannelMessage] = []
        for symbol in sorted(log):
            resumed, again = self.follower.take_over(symbol, saved.get(symbol), now)
            assert resumed, f"{symbol}: expected the stream to carry on"
            messages.extend(again)
        # Books flush in the order they were tracked, which orders the `*` channels'
        # cluster alerts of one flush: the restored processor tracked them sorted.
        processor.books = dict(sorted(processor.books.items()))
        return processor, messages


def lead(
    timed: list[tuple[int, LiquidationEvent]], standby: Standby
) -> tuple[LiquidationProcessor, Logged, dict[str, bytes], int]:
    """The leader over `timed`, the standby following it; returns the leader, its log,
    its last checkpoint and the time of its last flush."""
    leader = new_processor({event.symbol for _, event in timed})
    positions = checkpoint.Positions()
    log: Logged = {}
    saved: dict[str, bytes] = {}
    last_flush, flushes = timed[0][0], 0
    for now, event in timed:
        applied = leader.apply(event, now)
        if applied.event is not None:
            log.setdefault(event.symbol, []).append((applied.arrival, applied.event))
        if now - last_flush >= FLUSH_MS:
            leader.flush(now)
            saved.update(positions(leader))
            last_flush, flushes = now, flushes + 1
            if flushes % POLL_EVERY == 0:
                standby.poll(saved, log)
    return leader, log, saved, last_flush


def carry_on(
    processor: LiquidationProcessor, timed: list[tuple[int, LiquidationEvent]], last_flush: int
) -> list[Any]:
    """What `processor` sends for the rest of the session, flushing as the leader did."""
    out: list[ChannelMessage] = []
    for now, event in timed:
        out.extend(processor.apply(event, now).messages)
        if now - last_flush >= FLUSH_MS:
            out.extend(processor.flush(now))
            last_flush = now
    out.extend(processor.flush(timed[-1][0] + 60_000))  # every window due
    return sent(out)


def by_channel(messages: list[Any]) -> dict[str, list[Any]]:
    """Each channel's messages in order (books flush in no particular order)."""
    channels: dict[str, list[Any]] = {}
    for message in messages:
        channels.setdefault(message["ch"], []).append(message)
    return channels


def moved(timed: list[tuple[int, LiquidationEvent]]) -> list[tuple[int, LiquidationEvent]]:
    """The session with BTCUSDT's market moved: 6 % up in the second third (the grid
    recentres), 80 % up in the last (a new epoch)."""
    out = []
    for index, (now, event) in enumerate(timed):
        factor = 1.0
        if event.symbol == "BTCUSDT":
            factor = (
                1.0 if index < len(timed) // 3 else 1.06 if index < 2 * len(timed) // 3 else 1.8
            )
        price = round(event.price * factor, 1)
        out.append(
            (now, msgspec.structs.replace(event, price=price, notional=price * event.quantity))
        )
    return out


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("market", "part"), [("demo", 0.6), ("moved", 0.85)])
def test_the_standby_takes_over_where_a_restore_would(market: str, part: float) -> None:
    timed = session() if market == "demo" else moved(session())
    cut = int(len(timed) * part)
    standby = Standby()
    leader, log, saved, last_flush = lead(timed[:cut], standby)
    follower = standby.follower
    assert follower.steps > 10 * len(log), (
        f"expected the follower to follow most checkpoints step by step; {follower.steps} "
        f"steps for {len(log)} symbols"
    )
    if market == "moved":
        assert follower.starts > len(log), (
            f"expected BTCUSDT's new grid to start its book again; {follower.starts} starts"
        )
    now = timed[cut - 1][0]
    cold = restored(leader, log, saved, now)
    cold_again: list[ChannelMessage] = []
    # What `restored` re-sent is not returned by it: restore once more to compare them.
    again_processor = new_processor(set(log), epoch="again")
    checkpoint.restore_channels(again_processor, saved[checkpoint.CHANNELS_FIELD])
    for symbol in sorted(log):
        _, messages = checkpoint.restore_book(
            again_processor, symbol, rows_of(log[symbol]), saved.get(symbol), now
        )
        cold_again.extend(messages)
    warm, warm_again = standby.take_over(saved, log, now)
    assert sent(warm_again) == sent(cold_again), (
        "expected the events after the checkpoint re-sent as a restore re-sends them"
    )
    rest = timed[cut:]
    want, got = (
        by_channel(carry_on(cold, rest, last_flush)),
        by_channel(carry_on(warm, rest, last_flush)),
    )
    assert set(got) == set(want), f"expected messages on {sorted(want)}, got {sorted(got)}"
    for channel, expected in want.items():
        seen = got[channel]
        assert len(seen) == len(expected), (
            f"{channel}: expected {len(expected)} messages, got {len(seen)}"
        )
        for index, (one, other) in enumerate(zip(expected, seen, strict=True)):
            differing = sorted(k for k in one if one[k] != other.get(k))
            assert one == other, (
                f"{channel} message {index}: {differing} differ: expected {one}, got {other}"
            )


def test_a_standby_behind_the_log_waits_for_the_rows_a_checkpoint_names() -> None:
    # The checkpoint of a flush whose events the standby has not read yet (it read the log
    # before that flush) is taken at the next read, once the rows are there.
    timed = session()[:3_000]
    standby = Standby()
    leader, log, saved, _ = lead(timed, standby)
    follower = standby.follower
    symbol = max(log, key=lambda s: len(log[s]))
    before = follower.steps
    follower.move(symbol, saved[symbol])  # the rows since the last poll are not taken
    position = checkpoint.decode_position(saved[symbol])
    assert position is not None
    unread = position.arrival > max(arrival for arrival, _ in log[symbol][: standby.read[symbol]])
    if unread:
        assert follower.steps == before, "expected no step to a checkpoint of unread rows"
    standby.poll(saved, log)
    assert follower.steps > before or not unread
    assert leader.books[symbol].flushed is not None
