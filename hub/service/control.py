"""Control messages between `ingest` and `web` processes, over the broker.

`web` asks, on CONTROL_TOPIC, for fresh snapshots (at start, after a Redis reconnect, on
a seq gap) and forwards admin symbol changes; `ingest` answers a snapshot request by
publishing the snapshots on the channels' own topics, after a flush, so every process
sees them in order with the diffs. `ingest` announces its tracked symbols on
SYMBOLS_TOPIC and keeps them in SYMBOLS_KEY, so a `web` process that starts later (or
reconnects) knows which topics to subscribe to.
"""

from __future__ import annotations

from typing import Literal

import msgspec

# Hash-tagged as every topic is (hub.fanout.broker.topic_for): a cluster gives each its slot.
CONTROL_TOPIC = "hub:{~control}"
SYMBOLS_TOPIC = "hub:{~symbols}"
SYMBOLS_KEY = "hub:symbols"
STATUS_KEY = "hub:ingest-status"
STATUS_TTL_S = 10  # written every second: gone 10 s after ingest stopped writing it


class ControlRequest(msgspec.Struct, frozen=True):
    op: Literal["snapshot", "add_symbols", "remove_symbols"]
    channels: list[str] = []
    symbols: list[str] = []


class SymbolsAnnouncement(msgspec.Struct, frozen=True):
    symbols: list[str]


_request_decoder = msgspec.json.Decoder(ControlRequest)
_symbols_decoder = msgspec.json.Decoder(SymbolsAnnouncement)
_encoder = msgspec.json.Encoder()


def encode(message: ControlRequest | SymbolsAnnouncement) -> bytes:
    return _encoder.encode(message)


def decode_request(payload: bytes) -> ControlRequest:
    return _request_decoder.decode(payload)


def decode_symbols(payload: bytes) -> SymbolsAnnouncement:
    return _symbols_decoder.decode(payload)
