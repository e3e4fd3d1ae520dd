"""Liquidations of one symbol as columns (`Rows`), and the way to and from events.

Held events, the durable logs and exports all move rows, not objects: a 30-day history is
millions of events, and a Python object each would cost ten times the memory and most of
the time. An exchange is a small integer indexing a list of names that travels with the
rows (`Named`): each store, log batch or file has its own list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from hub.analytics.leverage import tier_of
from hub.models import LiquidationEvent, Side


class Rows(NamedTuple):
    """Rows, column by column (views or copies). `len` is the number of rows (so
    `_replace`, which counts fields with it, is not for this tuple)."""

    time: np.ndarray  # int64, ms
    price: np.ndarray  # float64
    quantity: np.ndarray  # float64
    notional: np.ndarray  # float64
    leverage: np.ndarray  # float64; NaN where no estimate
    short: np.ndarray  # bool: the liquidated position was short
    exchange: np.ndarray  # uint8: index into the exchange names that go with the rows
    arrival: np.ndarray  # int64: the symbol's arrival number (hub.analytics.store)

    def __len__(self) -> int:
        return len(self.time)

    def take(self, which: slice | np.ndarray) -> Rows:
        return Rows(*(column[which] for column in self))


DTYPES = (np.int64, np.float64, np.float64, np.float64, np.float64, bool, np.uint8, np.int64)
EMPTY_ROWS = Rows(*(np.zeros(0, dtype) for dtype in DTYPES))


class Named(NamedTuple):
    """Rows with the exchange names their `exchange` column indexes."""

    rows: Rows
    exchanges: list[str]


def rows_of(events: Iterable[tuple[int, LiquidationEvent]]) -> Named:
    """(arrival number, event) pairs as rows, in the order given."""
    exchanges: dict[str, int] = {}
    columns: list[list[float | int | bool]] = [[] for _ in DTYPES]
    for arrival, event in events:
        code = exchanges.setdefault(event.exchange, len(exchanges))
        leverage = math.nan if event.est_leverage is None else event.est_leverage
        values = (
            event.time,
            event.price,
            event.quantity,
            event.notional,
            leverage,
            event.side == "short",
            code,
            arrival,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    rows = Rows(*(np.array(c, dtype) for c, dtype in zip(columns, DTYPES, strict=True)))
    return Named(rows, list(exchanges))


def events_of(rows: Rows, exchanges: Sequence[str], symbol: str) -> list[LiquidationEvent]:
    """`rows` as events, in row order."""
    events = []
    for time, price, quantity, notional, leverage, short, exchange in zip(
        rows.time.tolist(),
        rows.price.tolist(),
        rows.quantity.tolist(),
        rows.notional.tolist(),
        rows.leverage.tolist(),
        rows.short.tolist(),
        rows.exchange.tolist(),
        strict=True,
    ):
        side: Side = "short" if short else "long"
        estimated = leverage == leverage  # not NaN
        events.append(
            LiquidationEvent(
                exchanges[exchange],
                symbol,
                side,
                price,
                quantity,
                notional,
                time,
                leverage if estimated else None,
                tier_of(leverage) if estimated else None,
            )
        )
    return events


def merge(parts: Iterable[Named]) -> Named:
    """Several sets of rows as one (in the order given), their exchange names unified."""
    names: dict[str, int] = {}
    pieces: list[Rows] = []
    for rows, exchanges in parts:
        if not len(rows):
            continue
        recode = np.array([names.setdefault(n, len(names)) for n in exchanges], np.uint8)
        pieces.append(Rows(*rows[:6], recode[rows.exchange], rows.arrival))
    if not pieces:
        return Named(EMPTY_ROWS, [])
    merged = Rows(*(np.concatenate(columns) for columns in zip(*pieces, strict=True)))
    return Named(merged, list(names))


def in_log_order(named: Named) -> Named:
    """Rows by arrival number, each number once (a log written twice holds it twice)."""
    rows = named.rows
    _, first = np.unique(rows.arrival, return_index=True)  # sorted by arrival
    return Named(rows.take(first), named.exchanges)
