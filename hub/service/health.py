"""Per-source status entries and the health verdict drawn from them (pure: `now` is given).

An upstream outage must not look like a quiet market: a live source that is disconnected,
or silent (connected, yet no frame for `silent_after_ms`: e.g. a URL that accepts a
subscription and then sends nothing), makes `/health` say `degraded` and name it. A
replay is not an upstream that can fail, so its sources never degrade health.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from hub.feeds.base import FeedStatus

SILENT_AFTER_MS = 60_000


def source_entry(
    status: FeedStatus, now: int, live: bool, silent_after_ms: int = SILENT_AFTER_MS
) -> dict[str, Any]:
    """A status entry: the feed's counters plus the names docs/rest.md gives them
    (`messages`, `last_message_age_ms`) and the derived `silent`."""
    last = status.last_frame_at
    heard = max(last or 0, status.connected_since or 0)
    silent = live and status.connected and heard > 0 and now - heard >= silent_after_ms
    return {
        **msgspec.structs.asdict(status),
        "messages": status.frames,
        "last_message_age_ms": None if last is None else max(0, now - last),
        "live": live,
        "silent": silent,
    }


def source_reasons(sources: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Why the live sources make the process degraded; empty when they are fine."""
    reasons = []
    for name, entry in sources.items():
        if not entry.get("live"):
            continue
        if not entry.get("connected"):
            error = entry.get("last_error")
            reasons.append(f"{name}: disconnected" + (f" ({error})" if error else ""))
        elif entry.get("silent"):
            age = entry.get("last_message_age_ms")
            since = "since connecting" if age is None else f"for {age // 1000} s"
            reasons.append(f"{name}: silent (no message {since})")
    return reasons


def verdict(reasons: Iterable[str]) -> dict[str, Any]:
    """The `/health` body's data."""
    reasons = list(reasons)
    return {"status": "degraded", "reasons": reasons} if reasons else {"status": "ok"}
