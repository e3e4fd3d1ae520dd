"""Which `ingest` publishes: a lease in Redis, held by one process at a time.

LEASE_KEY holds the holder's id and expires after HEATMAP_INGEST_LEASE_MS unless renewed
(every third of it). Taking it (SET NX) also takes the next fencing token
(hub.storage.fence), in one script, so every write of the holder can be refused once
another has taken over. Any other `ingest` waits as a standby, asking every fifth of the
lease, and takes over once the lease lapses: at most one lease period after the holder
died, at once when it stopped cleanly (it gives the lease back).

Losing the lease is only ever learnt from Redis: a renewal that finds another holder, or
a token that moved on. A holder that cannot reach Redis keeps its term (its writes fail
meanwhile, as in any Redis outage, and nothing is lost); once Redis answers, the renewal
says whether it still holds the lease. It still does when nobody took it meanwhile, even
after it lapsed or Redis restarted empty: the renewal takes it back with the same token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable

from redis.exceptions import RedisError

from hub.storage.fence import Fence
from hub.storage.layout import FENCE_KEY, LEASE_KEY, AnyRedis

log = logging.getLogger("hub.leadership")
LEASE_MS = 5_000

# KEYS: lease, fence; ARGV: id, ttl ms. The new token, or nil when the lease is held.
_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
"""
# KEYS: lease, fence; ARGV: id, ttl ms, token. 1 while (or again) held, 0 when lost.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
local fence = redis.call('GET', KEYS[2])
if fence and fence ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
return 1
"""
# KEYS: lease; ARGV: id.
_GIVE_BACK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_FAILURES = (RedisError, OSError)


class Lease:
    def __init__(self, redis: AnyRedis, lease_ms: int = LEASE_MS) -> None:
        self.redis = redis
        self.lease_ms = lease_ms
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.fence: Fence | None = None
        self._take = redis.register_script(_TAKE)
        self._renew = redis.register_script(_RENEW)
        self._give_back = redis.register_script(_GIVE_BACK)

    async def take(self) -> Fence | None:
        """The lease and its token, if nobody holds it; raises when Redis does not answer."""
        token = await self._take(keys=[LEASE_KEY, FENCE_KEY], args=[self.holder, self.lease_ms])
        if token is None:
            return None
        self.fence = Fence(int(token))
        return self.fence

    async def wait_for(
        self,
        stop: asyncio.Event,
        standby: bool = False,
        waiting: Callable[[], None] | None = None,
    ) -> Fence | None:
        """Take the lease as soon as it is free; None when `stop` is set first. A
        `standby` first lets a lease period go by, so a process started as the primary
        at the same time takes it. `waiting` is called once this process has to wait."""
        if standby:
            if waiting is not None:
                waiting()
            if await _stopped_within(stop, self.lease_ms / 1000):
                return None
        said = False
        while True:
            try:
                fence = await self.take()
            except _FAILURES as error:
                log.warning("lease: Redis does not answer (%s); asking again", error)
                fence = None
            if fence is not None:
                log.info("lease: taken by %s with token %d", self.holder, fence.token)
                return fence
            if not said:
                if waiting is not None:
                    waiting()
                holder = await _holder(self.redis)
                log.info("lease: held by %s; this ingest waits as a standby", holder)
                said = True
            if await _stopped_within(stop, self.lease_ms / 5000):
                return None

    async def hold(self) -> None:
        """Renew the lease until it is lost (returns then); cancel to stop holding."""
        assert self.fence is not None
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                held = await self._renew(
                    keys=[LEASE_KEY, FENCE_KEY],
                    args=[self.holder, self.lease_ms, self.fence.token],
                )
            except _FAILURES as error:
                log.warning("lease: cannot renew (%s); holding on until Redis answers", error)
                continue
            if not held:
                log.error("lease: lost; another ingest took over (token %d)", self.fence.token)
                return

    async def give_back(self) -> None:
        """Let a standby take over at once (a clean stop)."""
        with contextlib.suppress(*_FAILURES):
            await self._give_back(keys=[LEASE_KEY], args=[self.holder])


async def _holder(redis: AnyRedis) -> str:
    with contextlib.suppress(*_FAILURES):
        value = await redis.get(LEASE_KEY)
        if value:
            return str(value.decode())
    return "another ingest"


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()
