"""Which Redis server a process talks to: one URL, or the master that Sentinel names.

With REDIS_SENTINELS the settings carry a `redis+sentinel://` URL (`sentinel_url`), so
everything that only asks "is there a Redis" keeps reading `redis_url`. `connect` turns
it into a redis-py client whose connection pool asks the sentinels for the master's
address on every new connection: after a failover, the first reconnect (the broker's own,
with backoff) reaches the new master. Nothing is retried behind the caller's back, as
with a plain URL.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"


class SentinelTarget(NamedTuple):
    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False


class RedisConnection(NamedTuple):
    redis: Redis
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
    if urlsplit(url).scheme != SENTINEL_SCHEME:
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
