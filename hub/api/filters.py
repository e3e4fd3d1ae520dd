"""Query filters shared by the REST endpoints that list events (`exchange=`, `side=`).

`exchange` is a comma list of exchange names (case-insensitive). A name the hub does not
know is a 400 naming it; a known exchange that is not configured simply matches nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import numpy as np
from starlette.requests import Request

from hub.analytics.rows import Named
from hub.config import EXCHANGES
from hub.errors import RequestError
from hub.models import LiquidationEvent


def exchange_param(request: Request) -> frozenset[str] | None:
    """The `exchange` filter; None when absent (every exchange)."""
    raw = request.query_params.get("exchange")
    if raw is None or not raw.strip():
        return None
    names = frozenset(e.strip().lower() for e in raw.split(",") if e.strip())
    unknown = sorted(names - set(EXCHANGES))
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise RequestError(400, f"exchange: {listed} not one of {', '.join(EXCHANGES)}")
    return names


async def filtered(
    chunks: AsyncIterator[Named], side: str | None, exchanges: frozenset[str] | None
) -> AsyncIterator[Named]:
    """Chunks of rows with only the rows of `side` and `exchanges` (None: all)."""
    async for rows, names in chunks:
        keep = np.ones(len(rows), bool)
        if side is not None:
            keep &= rows.short == (side == "short")
        if exchanges is not None:
            wanted = [code for code, name in enumerate(names) if name in exchanges]
            keep &= np.isin(rows.exchange, wanted)
        if keep.any():
            yield Named(rows.take(keep), names)


def of_exchanges(
    events: Iterable[LiquidationEvent], exchanges: frozenset[str] | None
) -> list[LiquidationEvent]:
    if exchanges is None:
        return list(events)
    return [event for event in events if event.exchange in exchanges]
