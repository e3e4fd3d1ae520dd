"""Which tracked symbols an exchange does not list, kept fresh and shown on status.

A symbol one exchange does not list is tracked on the others, and status says which
(docs/rest.md, "Status"). `Listings` holds one fetcher per exchange
(`hub.feeds.listings`), fetches every listing at start and then daily, and answers
`unlisted(tracked)`: `{SYMBOL: [exchange, ...]}`. An exchange is added by adding its
fetcher; nothing else here names one.

A failed fetch is a state, never a crash, and start never waits for it: the exchange's
`last_error` shows on status, the fetch is retried with backoff, and until one succeeds
no symbol is called unlisted on that exchange (not knowing is not "not listed").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

import msgspec

from hub.errors import UpstreamError, clip
from hub.feeds.backoff import Backoff
from hub.feeds.listings import ListingFetcher

log = logging.getLogger("hub.listings")
DAY_S = 86_400.0


class ListingStatus(msgspec.Struct):
    listed: int | None = None  # symbols the exchange lists; None until a fetch succeeded
    fetched_at: int | None = None  # ms
    fetches: int = 0
    failures: int = 0
    last_error: str | None = None


class Listings:
    def __init__(
        self,
        fetchers: Mapping[str, ListingFetcher],
        clock: Callable[[], int],
        refresh_s: float = DAY_S,
        backoff: Callable[[], Backoff] | None = None,
    ) -> None:
        self.fetchers = dict(fetchers)
        self.clock = clock
        self.refresh_s = refresh_s
        self.symbols: dict[str, set[str]] = {}  # exchange -> listed, once known
        self.status = {name: ListingStatus() for name in self.fetchers}
        make = backoff or (lambda: Backoff(base=5.0, cap=600.0, healthy_after=0.0))
        self._backoff = {name: make() for name in self.fetchers}

    async def fetch(self, exchange: str) -> bool:
        """Fetch one listing now; whether it succeeded (a failure is kept on status)."""
        status = self.status[exchange]
        status.fetches += 1
        try:
            listed = await self.fetchers[exchange]()
        except UpstreamError as error:
            status.failures += 1
            if status.last_error is None:
                log.warning("%s listing: %s; retried with backoff", exchange, error)
            status.last_error = clip(str(error), 200)
            return False
        self.symbols[exchange] = listed
        status.listed = len(listed)
        status.fetched_at = self.clock()
        status.last_error = None
        self._backoff[exchange].attempt = 0
        return True

    async def run(self) -> None:
        """Each exchange's listing at start, then every `refresh_s`; a failure is retried
        with backoff (at least a second apart, never later than the next refresh)."""
        await asyncio.gather(*(self._keep(name) for name in self.fetchers))

    async def _keep(self, exchange: str) -> None:
        while True:
            if await self.fetch(exchange):
                delay = self.refresh_s
            else:
                delay = min(max(self._backoff[exchange].next_delay(), 1.0), self.refresh_s)
            await asyncio.sleep(delay)

    def unlisted(self, tracked: Iterable[str]) -> dict[str, list[str]]:
        """Tracked symbols that some exchange, whose listing is known, does not list."""
        missing: dict[str, list[str]] = {}
        for symbol in sorted(tracked):
            names = [name for name, listed in sorted(self.symbols.items()) if symbol not in listed]
            if names:
                missing[symbol] = names
        return missing
