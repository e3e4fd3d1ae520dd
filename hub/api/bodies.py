"""Heatmap REST bodies, encoded once per channel position and served as bytes.

A heatmap snapshot changes only when its channel's seq (or epoch) moves, at most once a
flush, while clients may ask hundreds of times in between. The body
(`{"success": true, "data": SNAPSHOT}`) is therefore kept per channel with the
(epoch, seq) it was made at, and made again only when the fan-out's replica has moved:
a new seq invalidates it, and nothing else can change what it says (the invariant:
one seq, one snapshot).
"""

from __future__ import annotations

import msgspec

from hub.fanout.fanout import Fanout
from hub.rounding import output

_encoder = msgspec.json.Encoder()


class SnapshotBodies:
    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self._held: dict[str, tuple[str | None, int, bytes]] = {}  # channel -> epoch, seq, body
        self.encoded = 0  # bodies made (tests count them)

    def body(self, channel: str) -> bytes | None:
        """The encoded REST body of the channel's snapshot; None while there is none."""
        state = self.fanout.channels.get(channel)
        if state is None or state.replica is None:
            return None
        held = self._held.get(channel)
        if held is not None and held[0] == state.epoch and held[1] == state.seq:
            return held[2]
        snapshot = state.replica.snapshot()
        body = b'{"success":true,"data":' + _encoder.encode(output(snapshot)) + b"}"
        self._held[channel] = (state.epoch, state.seq, body)
        self.encoded += 1
        return body
