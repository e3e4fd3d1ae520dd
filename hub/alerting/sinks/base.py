"""What every sink shares: the request (`Post`), the reading of an answer (`Answer`), and
the rules of the chat services' answers: 2xx is delivered, 429 and 5xx are worth another
try (after `Retry-After` when given), any other 4xx is a mistake in the configuration (a
bad token, an unknown chat) that another try would not mend.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import NamedTuple

from hub.alerting.config import SinkConfig
from hub.alerting.text import message
from hub.models import Alert

RETRIED_STATUSES = frozenset({408, 425, 429})


class Post(NamedTuple):
    url: str
    body: bytes
    headers: dict[str, str]


class Answer(NamedTuple):
    delivered: bool
    retry: bool  # worth another try
    retry_after: float | None  # seconds, as the service asked
    reason: str  # for status and logs: never a secret


def retry_after_header(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """`Retry-After` in seconds: a number, or an HTTP date."""
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def http_answer(status: int, headers: Mapping[str, str], retry_any: bool = False) -> Answer:
    """The answer by status alone; `retry_any`: every non-2xx is retried (the webhook)."""
    if 200 <= status < 300:
        return Answer(True, False, None, "")
    retry = retry_any or status >= 500 or status in RETRIED_STATUSES
    return Answer(False, retry, retry_after_header(headers), f"HTTP {status}")


class Sink:
    """One configured destination; `post` builds the request for an alert."""

    def __init__(self, config: SinkConfig, public_url: str | None) -> None:
        self.config = config
        self.public_url = public_url

    @property
    def name(self) -> str:
        return self.config.name

    def text(self, alert: Alert) -> str:
        return message(alert, self.public_url)

    def post(self, alert: Alert, now: float) -> Post:
        raise NotImplementedError

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        return http_answer(status, headers)
