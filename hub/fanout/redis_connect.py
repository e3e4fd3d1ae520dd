"""Which Redis a process talks to: one server, the master that Sentinel names, or a
Redis Cluster.

With REDIS_SENTINELS the settings carry a `redis+sentinel://` URL (`sentinel_url`), so
everything that only asks "is there a Redis" keeps reading `redis_url`. `connect` turns
it into a redis-py client whose connection pool asks the sentinels for the master's
address on every new connection: after a failover, the first reconnect (the broker's own,
with backoff) reaches the new master. Nothing is retried behind the caller's back, as
with a plain URL.

A `redis://` URL that names a node of a Redis Cluster is detected at start (INFO says
`cluster_enabled:1`; `redis+cluster://` or `rediss+cluster://` says so without asking,
for a cluster that may be down when the process starts): the client is then redis-py's
RedisCluster, which routes each key to the shard owning its slot, and the keys are laid
out for it (hub.storage.layout). Unlike a single server's client it retries a command a
few times, re-reading the slots between attempts: that is how it follows a failover or a
moved slot.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

import redis as sync_redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from hub.storage.layout import AnyRedis

log = logging.getLogger("hub.broker")
SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}  # -> the plain one
# A cluster command's attempts, the slots read again before each: a failover's new
# master is usually known within the second after the old one is declared failed.
CLUSTER_RETRY = Retry(ExponentialBackoff(cap=0.5, base=0.1), 3)


class SentinelTarget(NamedTuple):
    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False


class RedisConnection(NamedTuple):
    redis: AnyRedis
    sentinel: Sentinel | None  # closed with the client


def sentinel_url(sentinels: tuple[tuple[str, int], ...], master: str, base_url: str | None) -> str:
    """The URL that stands for `master` as the sentinels know it; `base_url` (REDIS_URL,
    optional) lends its database number, credentials and TLS, not its host."""
    base = urlsplit(base_url or "redis://")
    credentials = base.netloc.rpartition("@")[0]
    hosts = ",".join(
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in sentinels
    )
    db = base.path.strip("/") or "0"
    query = "?ssl=1" if base.scheme == "rediss" else ""
    netloc = f"{credentials}@{hosts}" if credentials else hosts
    return f"{SENTINEL_SCHEME}://{netloc}/{quote(master, safe='')}/{db}{query}"


def parse_sentinel_url(url: str) -> SentinelTarget:
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    master, _, db = parts.path.strip("/").partition("/")
    return SentinelTarget(
        sentinels=[parse_host_port(item) for item in hosts.split(",")],
        master=unquote(master),
        db=int(db or 0),
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=parts.query == "ssl=1",
    )


def parse_host_port(item: str) -> tuple[str, int]:
    """`host:port` or `[v6 address]:port`; raises ValueError."""
    host, _, port = item.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise ValueError(item)
    return host, int(port)


def connect(url: str, **options: Any) -> RedisConnection:
    """A client of the server `url` names, with redis-py `options` for its connections."""
    scheme = urlsplit(url).scheme
    if scheme in CLUSTER_SCHEMES or (scheme in ("redis", "rediss") and is_cluster(url)):
        options = {**options, "retry": CLUSTER_RETRY}
        plain = CLUSTER_SCHEMES.get(scheme, scheme) + url.removeprefix(scheme)
        return RedisConnection(RedisCluster.from_url(plain, **options), None)
    if scheme != SENTINEL_SCHEME:
        return RedisConnection(Redis.from_url(url, **options), None)
    target = parse_sentinel_url(url)
    timeouts = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel = Sentinel(target.sentinels, sentinel_kwargs={**timeouts, "protocol": 2})
    redis = sentinel.master_for(
        target.master,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.ssl,
        **options,
    )
    return RedisConnection(redis, sentinel)


@functools.cache
def is_cluster(url: str) -> bool:
    """Whether `url` names a node of a Redis Cluster (asked once per process); a server
    that does not answer within a second counts as a single one (its outage is logged
    by whoever uses it: this would only say it twice)."""
    try:
        with sync_redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            info: dict[str, Any] = client.info("cluster")
    except (RedisError, OSError) as error:
        log.debug(
            "Redis at %s did not answer (%s): taken for a single server; a cluster's URL "
            "can say so itself (redis+cluster://)",
            urlsplit(url).hostname,
            error,
        )
        return False
    return bool(info.get("cluster_enabled"))
