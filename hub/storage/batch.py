"""A batch of one symbol's logged rows as bytes: the payload of a Redis event log entry.

Each column is its numpy array's raw little-endian bytes inside one MessagePack map, so
writing a flush's events is one encode and reading 30 days back is a `frombuffer` per
column per batch, with no object per event either way. Each row carries its arrival
number (hub.analytics.store), which a checkpoint names.
"""

from __future__ import annotations

import msgspec
import numpy as np

from hub.analytics.rows import DTYPES, Named, Rows

_WIRE_DTYPES = tuple(np.dtype(dtype).newbyteorder("<") for dtype in DTYPES)


class EventBatch(msgspec.Struct, frozen=True, array_like=True, gc=False):
    exchanges: list[str]
    columns: list[bytes]  # one per `Rows` field, in order


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(EventBatch)


def encode_batch(named: Named) -> bytes:
    rows, exchanges = named
    columns = [
        np.ascontiguousarray(column, dtype).tobytes()
        for column, dtype in zip(rows, _WIRE_DTYPES, strict=True)
    ]
    return _encoder.encode(EventBatch(exchanges, columns))


def decode_batch(payload: bytes) -> Named:
    """Raises `ValueError` for bytes that are not a batch."""
    try:
        batch = _decoder.decode(payload)
    except msgspec.DecodeError as error:
        raise ValueError(f"not an event batch: {error}") from None
    if len(batch.columns) != len(_WIRE_DTYPES):
        raise ValueError(
            f"an event batch has {len(_WIRE_DTYPES)} columns, got {len(batch.columns)}"
        )
    columns = [
        np.frombuffer(raw, dtype).astype(plain)
        for raw, dtype, plain in zip(batch.columns, _WIRE_DTYPES, DTYPES, strict=True)
    ]
    if len({len(column) for column in columns}) != 1:
        raise ValueError("an event batch has columns of different lengths")
    rows = Rows(*columns)
    if len(rows) and int(rows.exchange.max()) >= len(batch.exchanges):
        raise ValueError("an event batch names an exchange it does not list")
    return Named(rows, batch.exchanges)
