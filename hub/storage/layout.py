"""Where the hub keeps things in Redis: every key and topic of a symbol in one hash slot.

A Redis Cluster shards the keyspace by hash slot, and one script or transaction may only
touch keys of one slot. So every name of a symbol carries the symbol as its hash tag
(`{BTCUSDT}`): its topic `hub:{BTCUSDT}` (hub.fanout.broker), its event stream and
archive, its checkpoint and its copy of the fencing token all belong to the shard that
owns `BTCUSDT`'s slot, and a flush's writes for the symbol are one script there. What
belongs to no one symbol (the `*` channels, the checkpoint's shared fields) has the tag
`{*}`; the lease and the token itself `{ingest}` (hub.storage.fence).

On one server (or a Sentinel-watched master) slots mean nothing: a flush is one script
over every symbol, checked against the one token. In a cluster (`Layout.cluster`) it is
one script per slot, pipelined (redis-py sends each node its share in one round trip),
each checked against the copy of the token in its slot, which every write with a newer
token raises, and which a new lease holder raises for every symbol it knows before it
reads the history (`stamp_fences`): a deposed holder's write then finds a newer token on
every symbol the new holder restored.

Keys of the layout before clusters were supported (`hub:events:BTCUSDT`, `hub:positions`
…) are moved to these names by the first `ingest` that finds them (`migrate_legacy`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError

log = logging.getLogger("hub.storage")

AnyRedis = Redis | RedisCluster
GLOBAL = "*"  # the tag of what belongs to no one symbol
FENCE_KEY = "hub:{ingest}:fence"
LEASE_KEY = "hub:{ingest}:lease"
MARKER_KEY = "hub:instance"


def tagged(symbol: str) -> str:
    return f"hub:{{{symbol}}}"


def stream_key(symbol: str) -> str:
    return f"{tagged(symbol)}:events"


def archive_key(symbol: str) -> str:
    return f"{tagged(symbol)}:archive"


def state_key(symbol: str) -> str:
    """The checkpoint of `symbol` (GLOBAL: the shared fields)."""
    return f"{tagged(symbol)}:state"


def state_owner(field: str) -> str:
    """Whose state hash a checkpoint field goes in: a book's position is its symbol's,
    the shared fields (`~coverage`, `~channels` …) GLOBAL's."""
    return GLOBAL if field.startswith("~") else field


class Layout(NamedTuple):
    cluster: bool = False

    def fence_keys(self, tags: Iterable[str]) -> list[str]:
        """The keys a write for `tags` (of one slot) checks its token against: the token
        itself on one server; in a cluster each tag's copy, since writes to one slot
        come in other groupings (a flush of one symbol, of two that share the slot)."""
        if not self.cluster:
            return [FENCE_KEY]
        return [f"{tagged(tag)}:fence" for tag in dict.fromkeys(tags)]

    def groups(self, tags: Iterable[str]) -> list[list[str]]:
        """`tags` in the groups one script may write together: one per hash slot in a
        cluster, all of them on one server. Order within a group is kept."""
        tags = list(dict.fromkeys(tags))
        if not self.cluster:
            return [tags] if tags else []
        slots: dict[int, list[str]] = {}
        for tag in tags:
            slots.setdefault(key_slot(tagged(tag).encode()), []).append(tag)
        return list(slots.values())


ONE_SERVER = Layout()


def layout_of(redis: AnyRedis) -> Layout:
    return Layout(cluster=isinstance(redis, RedisCluster))


# The prelude of every fenced script: ARGV[1] the token ('' with no lease), ARGV[2] how
# many of the first KEYS are tokens to check. A newer token there refuses the write; an
# older one (a slot not yet written in this term, or a Redis that lost it) is raised.
FENCED_REPLY = "FENCED"  # the start of a script's error when the token is stale
FENCE_CHECK = f"""
local token = tonumber(ARGV[1])
local fences = tonumber(ARGV[2])
if token then
  for i = 1, fences do
    local held = tonumber(redis.call('GET', KEYS[i]) or '0')
    if held > token then
      return redis.error_reply('{FENCED_REPLY} another ingest holds the lease')
    end
    if held < token then redis.call('SET', KEYS[i], ARGV[1]) end
  end
end
"""
_STAMP = FENCE_CHECK + "return 1"


class GroupedScript:
    """A script whose calls each write one slot's keys: one call by EVALSHA (loaded when
    missing), several pipelined. Registered once: its digest is not computed per call."""

    def __init__(self, redis: AnyRedis, source: str) -> None:
        self.redis = redis
        self.source = source
        self._script = redis.register_script(source)

    async def __call__(
        self, calls: Sequence[tuple[list[str], list[bytes | str | int]]]
    ) -> list[object]:
        """Replies in order; an error reply is returned, not raised."""
        if len(calls) == 1:
            keys, args = calls[0]
            try:
                return [await self._script(keys=keys, args=args)]
            except ResponseError as error:  # a reply, as in the pipeline below
                return [error]
        # EVAL, not EVALSHA: a replica promoted by a failover may not have the script
        # cached, and Redis keeps a compiled EVAL'd script by its digest anyway.
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.execute_command("EVAL", self.source, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))


async def stamp_fences(redis: AnyRedis, layout: Layout, tags: Iterable[str], token: int) -> None:
    """Raise the token copy of every tag's slot to `token` (a cluster only): from here on a
    holder of an older token can write none of them."""
    if not layout.cluster:
        return
    calls: list[tuple[list[str], list[bytes | str | int]]] = []
    for group in layout.groups([GLOBAL, *tags]):
        keys = layout.fence_keys(group)
        calls.append((keys, [token, len(keys)]))
    for reply in await GroupedScript(redis, _STAMP)(calls):
        if isinstance(reply, Exception):
            raise reply


_LEGACY_STREAM = "hub:events:"
_LEGACY_ARCHIVE = "hub:archive:"
_LEGACY_STATE = "hub:positions"


async def migrate_legacy(redis: AnyRedis, layout: Layout) -> int:
    """Move the keys of the layout before this one to their names here (one server
    only: that layout never worked on a cluster); how many keys moved."""
    if layout.cluster:
        return 0
    moved = 0
    for prefix, name in ((_LEGACY_STREAM, stream_key), (_LEGACY_ARCHIVE, archive_key)):
        async for key in redis.scan_iter(match=f"{prefix}*", count=1_000):
            symbol = key.decode()[len(prefix) :]
            await redis.rename(key, name(symbol))
            moved += 1
    fields = await redis.hgetall(_LEGACY_STATE)
    if fields:
        per_owner: dict[str, dict[bytes, bytes]] = {}
        for field, value in fields.items():
            per_owner.setdefault(state_owner(field.decode()), {})[field] = value
        async with redis.pipeline(transaction=True) as pipe:
            for owner, mapping in per_owner.items():
                pipe.hset(state_key(owner), mapping=mapping)
            pipe.delete(_LEGACY_STATE)
            await pipe.execute()
        moved += 1
    if moved:
        log.warning("history: moved %d keys of the previous layout to hash-tagged names", moved)
    return moved
