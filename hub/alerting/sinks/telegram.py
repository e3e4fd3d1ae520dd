"""Telegram: the Bot API's `sendMessage` (`{api_url}/bot{token}/sendMessage`).

Telegram answers `{"ok": true, "result": ...}`, or `{"ok": false, "error_code": N,
"description": ...}`; a flood limit is 429 with `"parameters": {"retry_after": N}` (seconds).
The token is part of the URL: it never leaves this module in a reason or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from hub.alerting.sinks.base import Answer, Post, Sink, http_answer
from hub.errors import clip
from hub.models import Alert


class _Parameters(msgspec.Struct):
    retry_after: float | None = None


class _Reply(msgspec.Struct):
    ok: bool = False
    description: str = ""
    parameters: _Parameters | None = None


class TelegramSink(Sink):
    def post(self, alert: Alert, now: float) -> Post:
        body = msgspec.json.encode(
            {
                "chat_id": self.config.chat_id,
                "text": self.text(alert),
                "disable_web_page_preview": True,
            }
        )
        url = f"{self.config.api_url.rstrip('/')}/bot{self.config.token}/sendMessage"
        return Post(url, body, {"Content-Type": "application/json"})

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        by_status = http_answer(status, headers)
        try:
            reply = msgspec.json.decode(body, type=_Reply)
        except msgspec.DecodeError:
            return by_status
        if reply.ok and by_status.delivered:
            return by_status
        retry_after = by_status.retry_after
        if reply.parameters is not None and reply.parameters.retry_after is not None:
            retry_after = reply.parameters.retry_after
        reason = f"HTTP {status}: {clip(reply.description.replace(self.config.token, '***'))}"
        return Answer(False, by_status.retry, retry_after, reason)
