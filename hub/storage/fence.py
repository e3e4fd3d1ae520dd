"""The fencing token: what lets Redis refuse the writes of an `ingest` that lost the lease.

Each `ingest` that takes the lease (hub.service.leadership) gets a token from INCR on
FENCE_KEY, which then holds the token of the latest holder. A write that must never come
from a deposed holder carries its token and is refused unless FENCE_KEY still holds it:
atomically, inside a script, for publishes and the checkpoint (hub.fanout.broker_redis);
in a transaction watching FENCE_KEY for the event log's appends and rewrites
(hub.storage.event_log). A paused or cut-off process that
wakes up after another took over therefore cannot publish conflicting seqs, move the
checkpoint, or rewrite the log.
"""

from __future__ import annotations

from typing import NamedTuple

from redis.asyncio import Redis

from hub.errors import Fenced

FENCE_KEY = "hub:ingest-fence"
FENCED_REPLY = "FENCED"  # the start of a script's error when the token is stale


class Fence(NamedTuple):
    token: int


async def check_fence(redis: Redis, fence: Fence | None) -> None:
    """Raise `Fenced` unless `fence` (None: no lease in use) is the latest token."""
    if fence is not None and await redis.get(FENCE_KEY) != str(fence.token).encode():
        raise Fenced(f"token {fence.token} is no longer the latest: another ingest took over")
