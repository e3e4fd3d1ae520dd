"""The fencing token: what lets Redis refuse the writes of an `ingest` that lost the lease.

Each `ingest` that takes the lease (hub.service.leadership) gets a token from INCR on
FENCE_KEY, which then holds the token of the latest holder. A write that must never come
from a deposed holder carries its token and is refused when a newer one is held where it
writes: atomically, inside a script (hub.storage.layout's FENCE_CHECK), for publishes and
the checkpoint (hub.fanout.broker_redis) and the event log's appends, rewrites and
archiving (hub.storage.event_log). On one server that is FENCE_KEY itself; in a cluster,
the token's copy in the slot written (hub.storage.layout). A paused or cut-off process
that wakes up after another took over therefore cannot publish conflicting seqs, move the
checkpoint, or rewrite the log.
"""

from __future__ import annotations

from typing import NamedTuple

from hub.errors import Fenced
from hub.storage.layout import FENCE_KEY, FENCED_REPLY, AnyRedis


class Fence(NamedTuple):
    token: int


async def check_fence(redis: AnyRedis, fence: Fence | None) -> None:
    """Raise `Fenced` unless `fence` (None: no lease in use) is the latest token."""
    if fence is not None and await redis.get(FENCE_KEY) != str(fence.token).encode():
        raise Fenced(f"token {fence.token} is no longer the latest: another ingest took over")


def raise_fenced(replies: list[object]) -> None:
    """Raise the first error among a fenced script's replies: `Fenced` for a stale token."""
    for reply in replies:
        if isinstance(reply, Exception):
            if str(reply).startswith(FENCED_REPLY):
                raise Fenced(str(reply)) from reply
            raise reply
