"""Query filters shared by the REST endpoints that list events (`exchange=`).

`exchange` is a comma list of exchange names (case-insensitive). A name the hub does not
know is a 400 naming it; a known exchange that is not configured simply matches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request

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


def of_exchanges(
    events: Iterable[LiquidationEvent], exchanges: frozenset[str] | None
) -> list[LiquidationEvent]:
    if exchanges is None:
        return list(events)
    return [event for event in events if event.exchange in exchanges]
