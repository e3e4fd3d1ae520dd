"""Discord: an incoming webhook (`https://discord.com/api/webhooks/ID/TOKEN`).

Discord answers 204 (no `?wait=true`); a rate limit is 429 with a JSON body
`{"message": ..., "retry_after": seconds, "global": bool}` and a `Retry-After` header.
`allowed_mentions` is empty, so text in an alert can never ping anyone.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from hub.alerting.sinks.base import Answer, Post, Sink, http_answer
from hub.models import Alert


class _RateLimited(msgspec.Struct):
    retry_after: float | None = None


class DiscordSink(Sink):
    def post(self, alert: Alert, now: float) -> Post:
        body = msgspec.json.encode({"content": self.text(alert), "allowed_mentions": {"parse": []}})
        return Post(self.config.url, body, {"Content-Type": "application/json"})

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        answer = http_answer(status, headers)
        if status == 429:
            try:
                retry_after = msgspec.json.decode(body, type=_RateLimited).retry_after
            except msgspec.DecodeError:
                retry_after = None
            if retry_after is not None:
                return answer._replace(retry_after=retry_after)
        return answer
