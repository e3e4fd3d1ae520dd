"""CoinGlass validation: its aggregated hourly liquidation history against the hub's own.

One request per tracked coin (`hub.feeds.coinglass`), spaced 2.5 s apart, at start and
every 5 minutes: 5 coins cost 1 request a minute, well inside the smallest plan's limit.
A 401 (key missing or wrong), a 429 (rate limited: the next round waits longer), a plan
refusal (`code` other than "0") or an unreachable host is a state on status, never a
crash. Only whole hours the hub ran through are compared (`hub.analytics.coinglass_compare`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from hub.analytics.coinglass_compare import (
    HOUR_MS,
    Check,
    Comparison,
    compare,
    hub_hours,
    reported,
)
from hub.feeds.coinglass import (
    WINDOW_HOURS,
    Refused,
    coin_of,
    coinglass_names,
    fetch_history,
)
from hub.feeds.http import HttpStatusError
from hub.models import LiquidationEvent

log = logging.getLogger("hub.coinglass")
POLL_EVERY_S = 300.0
REQUEST_SPACING_S = 2.5
MAX_BACKOFF_S = 1800.0


class CoinGlassValidation:
    def __init__(
        self,
        url: str,
        key: str,
        symbols: Callable[[], Iterable[str]],
        exchanges: list[str],
        events: Callable[[str], Iterable[LiquidationEvent]],
        clock: Callable[[], int],
        started: int,
        poll_every_s: float = POLL_EVERY_S,
        spacing_s: float = REQUEST_SPACING_S,
    ) -> None:
        self.url = url
        self.key = key
        self.symbols = symbols
        self.exchanges = coinglass_names(exchanges)
        self.events = events
        self.clock = clock
        self.started = started  # hours before the hub ran would compare as zeros
        self.poll_every_s = poll_every_s
        self.spacing_s = spacing_s
        self.connected = False
        self.messages = 0
        self.reconnects = 0  # failed rounds
        self.last_message_at: int | None = None
        self.last_error: str | None = None
        self.updated: int | None = None
        self.results: dict[str, Check] = {}
        self._backoff = poll_every_s

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self._backoff)

    async def poll_once(self) -> None:
        for index, symbol in enumerate(sorted(self.symbols())):
            if index:
                await asyncio.sleep(self.spacing_s)
            try:
                history = await fetch_history(self.url, self.key, self.exchanges, coin_of(symbol))
            except HttpStatusError as error:
                self._failed(symbol, _explain(error))
                if error.status == 429:
                    self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
                return  # the same answer would follow for every symbol
            except Refused as error:
                self._failed(symbol, f"CoinGlass refused {coin_of(symbol)}: {error}")
                continue  # a plan may cover some coins and not others
            except OSError as error:
                self._failed(symbol, f"CoinGlass unreachable: {error}")
                return
            self._compared(symbol, history)
        self._backoff = self.poll_every_s

    def _failed(self, symbol: str, error: str) -> None:
        if error != self.last_error:
            log.warning("coinglass: %s", error)
        self.last_error = error
        self.connected = False
        self.reconnects += 1

    def _compared(self, symbol: str, history: dict[int, tuple[float, float]]) -> None:
        now = self.clock()
        self.connected = True
        self.messages += 1
        self.last_message_at = now
        self.last_error = None
        current = now - now % HOUR_MS
        first = max(current - WINDOW_HOURS * HOUR_MS, self.started - self.started % HOUR_MS)
        if self.started % HOUR_MS:
            first += HOUR_MS  # the hour the hub started in is not whole
        hours = [hour for hour in range(first, current, HOUR_MS) if hour in history]
        ours = hub_hours(self.events(symbol), first, current)
        self.results[symbol] = Check(
            reported(history, current - WINDOW_HOURS * HOUR_MS, current),
            compare(history, ours, hours) if hours else None,
        )
        self.updated = now

    def status(self, now: int) -> dict[str, Any]:
        checks = self.results.values()
        own = [check.coinglass for check in checks]
        last = self.last_message_at
        return {
            "enabled": True,
            "connected": self.connected,
            "messages": self.messages,
            "reconnects": self.reconnects,
            "last_message_age_ms": None if last is None else max(0, now - last),
            "last_error": self.last_error,
            "window": f"{WINDOW_HOURS}h",
            "exchanges": self.exchanges,
            "coinglass": {
                "long_usd": round(sum(r.long_usd for r in own), 2),
                "short_usd": round(sum(r.short_usd for r in own), 2),
                "hours": sum(r.hours for r in own),
            },
            "comparison": _overall([c.comparison for c in checks if c.comparison is not None]),
            "updated": self.updated,
            "symbols": self.results,
        }


def disabled_status() -> dict[str, Any]:
    return {
        "enabled": False,
        "connected": False,
        "messages": 0,
        "reconnects": 0,
        "last_message_age_ms": None,
        "last_error": None,
        "note": "set COINGLASS_API_KEY to compare the hub's liquidations with CoinGlass",
    }


def _explain(error: HttpStatusError) -> str:
    if error.status == 401:
        return "CoinGlass 401 unauthorized: COINGLASS_API_KEY is missing or wrong"
    if error.status == 429:
        return "CoinGlass 429 rate limited: polling less often for a while"
    return f"CoinGlass answered {error}"


def _overall(comparisons: list[Comparison]) -> dict[str, Any] | None:
    """Every symbol's comparison together; None while no symbol has one."""
    if not comparisons:
        return None
    totals = {
        side: {
            "long_usd": round(sum(getattr(c, side).long_usd for c in comparisons), 2),
            "short_usd": round(sum(getattr(c, side).short_usd for c in comparisons), 2),
        }
        for side in ("coinglass", "hub")
    }
    cg_total = totals["coinglass"]["long_usd"] + totals["coinglass"]["short_usd"]
    hub_total = totals["hub"]["long_usd"] + totals["hub"]["short_usd"]
    return {
        **totals,
        "ratio": round(hub_total / cg_total, 6) if cg_total > 0 else None,
        "correlation": _mean([c.correlation for c in comparisons]),
        "hours": sum(c.hours for c in comparisons),
    }


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None
