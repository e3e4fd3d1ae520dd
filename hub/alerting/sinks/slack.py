"""Slack: an incoming webhook (`https://hooks.slack.com/services/...`).

Slack answers 200 with the text `ok`; errors are plain-text codes with a 4xx
(`invalid_payload`, `no_service`, `channel_is_archived`, ...), a rate limit is 429 with
`Retry-After`.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from hub.alerting.sinks.base import Answer, Post, Sink, http_answer
from hub.errors import clip
from hub.models import Alert


class SlackSink(Sink):
    def post(self, alert: Alert, now: float) -> Post:
        body = msgspec.json.encode({"text": self.text(alert)})
        return Post(self.config.url, body, {"Content-Type": "application/json"})

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        answer = http_answer(status, headers)
        if not answer.delivered and 400 <= status < 500 and body:
            reason = f"HTTP {status}: {clip(body.decode(errors='replace'))}"
            return answer._replace(reason=reason)
        return answer
