"""Plain HTTP GETs for the rare REST calls of the feeds (OKX instruments and books,
CoinGlass), in a thread: a few calls a minute do not justify an HTTP client dependency."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Mapping

TIMEOUT_S = 10.0


class HttpStatusError(OSError):
    """A non-2xx answer; `status` is the HTTP status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status


async def get(url: str, headers: Mapping[str, str] | None = None) -> bytes:
    """The body of a 2xx answer; `HttpStatusError` for another status, `OSError` when the
    server cannot be reached."""

    def fetch() -> bytes:
        request = urllib.request.Request(url, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise HttpStatusError(error.code, str(error.reason)) from None

    return await asyncio.to_thread(fetch)
