"""A generic webhook: the alert's channel `data` as the JSON body, signed.

`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body, keyed with the secret>` (the
shape GitHub uses, so existing verifiers work) and `X-Hub-Timestamp` (Unix seconds when
sent). The body carries the alert's `id`: a receiver that checks the signature, refuses
an old timestamp and drops an id it has seen cannot be fed a replay. Any non-2xx answer
is tried again.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import msgspec

from hub.alerting.sinks.base import Answer, Post, Sink, http_answer
from hub.models import Alert

SIGNATURE_HEADER = "X-Hub-Signature-256"
TIMESTAMP_HEADER = "X-Hub-Timestamp"
_encoder = msgspec.json.Encoder()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSink(Sink):
    def post(self, alert: Alert, now: float) -> Post:
        body = _encoder.encode(alert)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self.config.secret, body),
            TIMESTAMP_HEADER: str(int(now)),
        }
        return Post(self.config.url, body, headers)

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        return http_answer(status, headers, retry_any=True)
