"""The limits of `hub.access.limits`, counted across every process sharing one Redis.

Request rates: one GCRA arrival time per client under `hub:{limits}:rate:IDENTITY`,
read and moved in one Lua script on Redis's own clock, so processes on machines whose
clocks differ still agree.

Connections: each process writes the connections it holds to its own hash,
`hub:{limits}:connections:INSTANCE` (identity -> count), and beats in the sorted set
`hub:{limits}:instances` every 2 s. Taking a slot is one script that drops the processes
silent for 10 s, sums the identity over the others and increments this process's count
when under the limit. A process that dies without a word thus stops counting 10 s later
(its hash expires too), and one that stops cleanly removes its count at once. The
process's own counts (`MemoryLimiter`) are the truth: after Redis was away, or came back
empty, the hash is written again from them.

While Redis cannot be reached, each process limits on its own (the `MemoryLimiter`), and
tries Redis again with backoff (`Outage`, up to 5 s apart) rather than on every request:
a down Redis must cost a request next to nothing, and must not refuse clients the hub
could serve. The log says once that Redis was lost, and once that it is back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.access.limits import MemoryLimiter
from hub.storage.outage import Outage
from hub.tasks import cancel_and_wait

log = logging.getLogger("hub.access")

# One hash slot for all of them ({limits}): a script reads other processes' hashes by name,
# which a Redis Cluster allows only within the slot of the keys it was given.
INSTANCES = "hub:{limits}:instances"
CONNECTIONS = "hub:{limits}:connections:"
RATE = "hub:{limits}:rate:"
STALE_MS = 10_000
HEARTBEAT_S = 2.0
_FAILURES = (RedisError, OSError, TimeoutError)

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
"""

# KEYS: the client's arrival key. ARGV: rate. Returns ms to wait ('0': admitted); the
# same arithmetic as hub.access.limits.gcra.
_RATE_SCRIPT = (
    _NOW_MS
    + """
local rate = tonumber(ARGV[1])
local interval = 1000 / rate
local tolerance = interval * (math.max(1, math.ceil(rate)) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local early = tat - now - tolerance
if early > 0 then return string.format('%.3f', early) end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1)
return '0'
"""
)

# KEYS: instances, this process's hash. ARGV: identity, limit, instance, stale ms, prefix.
_ACQUIRE_SCRIPT = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[4]))
redis.call('ZADD', KEYS[1], now, ARGV[3])
local held = 0
for _, instance in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  held = held + tonumber(redis.call('HGET', ARGV[5] .. instance, ARGV[1]) or '0')
end
if held >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""
)

_RELEASE_SCRIPT = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""

# KEYS: instances, this process's hash. ARGV: instance, stale ms, '1' to rewrite the hash
# from the (identity, count) pairs that follow. Returns 1 when the hash exists.
_BEAT_SCRIPT = (
    _NOW_MS
    + """
redis.call('ZADD', KEYS[1], now, ARGV[1])
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[2])
  for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
return redis.call('PEXPIRE', KEYS[2], ARGV[2])
"""
)


class RedisLimiter:
    def __init__(self, redis: Redis, clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis
        self.instance = secrets.token_hex(8)
        self.local = MemoryLimiter()  # this process's connections; every limit while Redis is away
        self.outage = Outage("limits", log, clock=clock)
        self._hash = CONNECTIONS + self.instance
        self._rate = redis.register_script(_RATE_SCRIPT)
        self._acquire = redis.register_script(_ACQUIRE_SCRIPT)
        self._release = redis.register_script(_RELEASE_SCRIPT)
        self._beat = redis.register_script(_BEAT_SCRIPT)
        self._dirty = False  # Redis's copy of this process's connections must be rewritten
        # Orders the changes to this process's hash: a rewrite and an increment that raced
        # on two pooled connections could lose the increment.
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._beating: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        """True while the limits are counted in Redis (False: in this process alone)."""
        return self.outage.up

    def _failed(self, error: BaseException) -> None:
        self.outage.failed(error)
        self._dirty = True

    async def admit_request(self, identity: str, rate: float, now_ms: float) -> float:
        if self.outage.due():
            try:
                wait = float(await self._rate(keys=[RATE + identity], args=[rate]))
            except _FAILURES as error:
                self._failed(error)
            else:
                self.outage.succeeded()
                return wait
        return self.local.admit(identity, rate, now_ms)

    async def acquire_connection(self, identity: str, limit: int) -> bool:
        if self.outage.due():
            try:
                async with self._lock:
                    await self._sync()
                    taken = await self._acquire(
                        keys=[INSTANCES, self._hash],
                        args=[identity, limit, self.instance, STALE_MS, CONNECTIONS],
                    )
                    if taken:
                        self.local.connections[identity] += 1
            except _FAILURES as error:
                self._failed(error)
            else:
                self.outage.succeeded()
                return bool(taken)
        return self.local.acquire(identity, limit)

    def release_connection(self, identity: str) -> None:
        self.local.release_connection(identity)
        if not self.outage.up:
            self._dirty = True  # the rewrite once Redis is back carries it
            return
        task = asyncio.get_running_loop().create_task(self._released(identity))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _released(self, identity: str) -> None:
        try:
            async with self._lock:
                if not self._dirty:  # else the next rewrite carries it
                    await self._release(keys=[self._hash], args=[identity])
        except _FAILURES as error:
            self._failed(error)

    async def _sync(self, rewrite: bool = False) -> None:
        """Beat; write this process's counts again when Redis's copy may be wrong. Called
        with the lock held."""
        rewrite = rewrite or self._dirty
        pairs: list[str | int] = []
        if rewrite:
            for identity, count in self.local.connections.items():
                pairs += [identity, count]
        exists = await self._beat(
            keys=[INSTANCES, self._hash],
            args=[self.instance, STALE_MS, "1" if rewrite else "0", *pairs],
        )
        self._dirty = False
        if not exists and self.local.connections and not rewrite:
            await self._sync(rewrite=True)  # Redis lost it (a restart, a flush)

    async def _heartbeat(self) -> None:
        while True:
            if self.outage.due():
                try:
                    async with self._lock:
                        await self._sync()
                except _FAILURES as error:
                    self._failed(error)
                else:
                    self.outage.succeeded()
            await asyncio.sleep(HEARTBEAT_S)

    def start(self) -> None:
        self._beating = asyncio.get_running_loop().create_task(self._heartbeat())

    async def stop(self) -> None:
        """Stop beating and take this process's connections out of the count."""
        await cancel_and_wait([t for t in (self._beating, *self._tasks) if t is not None])
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._hash)
                pipe.zrem(INSTANCES, self.instance)
                await pipe.execute()
        except _FAILURES:
            pass  # the hash expires and the instance goes stale on their own
