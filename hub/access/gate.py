"""Who may use a serving process, and how much: keys, the limits, their counters.

One `AccessGate` per process that serves clients (`serve`, `web`). The REST middleware
(`hub.api.access`) and the WebSocket endpoint ask it at a request's or a connection's
start, never per delivered message.

Keys are off unless HUB_API_KEYS_FILE is set. The file is read at start (a bad or
missing file stops the process, exit 2) and looked at every second after: a change
takes effect at once, and the WebSocket connections of a revoked key are closed (the
`on_revoked` listeners). A file that turns bad keeps the last good keys, and says so on
status and `/health`, rather than locking every client out.

HUB_ADMIN_TOKEN keeps working when keys are on: it counts as a key of scope `admin`
named `admin-token` (so the same header opens the admin endpoints before and after keys
are turned on), and an `admin` key opens them too.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from redis.asyncio import Redis

from hub.access.keys import Grant, KeyFileError, KeyStore, file_signature, read_key_file
from hub.access.limits import Limiter, MemoryLimiter, retry_after_s
from hub.access.limits_redis import RedisLimiter
from hub.config import Settings
from hub.errors import ConfigError

log = logging.getLogger("hub.access")

ADMIN_TOKEN = Grant("admin-token", "admin")
POLL_S = 1.0  # within the 5 s a change of the keys file is promised to take


class AccessStats(msgspec.Struct):
    unauthorized_rest: int = 0  # 401: no key, or an unknown one
    unauthorized_ws: int = 0  # close 4401
    forbidden_rest: int = 0  # 403: the key may not do this
    rate_limited_rest: int = 0  # 429
    refused_ip: int = 0  # WebSocket connections over the per-address limit
    refused_key: int = 0  # WebSocket connections over the per-key limit (close 4429)
    revoked_closes: int = 0  # WebSocket connections closed because their key was revoked


def identity(grant: Grant | None, address: str) -> str:
    """Whose limits a request counts against: its key's, else its address's."""
    return f"key:{grant.name}" if grant is not None else f"ip:{address}"


class AccessGate:
    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        self.settings = settings
        self.keys: KeyStore | None = None
        self.keys_error: str | None = None
        path = settings.api_keys_file
        self._signature = None if path is None else file_signature(path)
        if path is not None:
            if self._signature is None:
                raise ConfigError(
                    "HUB_API_KEYS_FILE",
                    f"{path} does not exist; create it with `heatmap-hub keys add NAME`",
                )
            try:
                self.keys = read_key_file(path)
            except KeyFileError as error:
                raise ConfigError("HUB_API_KEYS_FILE", str(error)) from None
        self.limiter: Limiter = MemoryLimiter() if redis is None else RedisLimiter(redis)
        self.stats = AccessStats()
        self.on_revoked: list[Callable[[set[str]], None]] = []
        self._watching: asyncio.Task[None] | None = None

    @property
    def keys_required(self) -> bool:
        return self.keys is not None

    @property
    def guards_requests(self) -> bool:
        """Whether REST requests need looking at: keys or a request rate are on."""
        return self.keys is not None or self.settings.rest_rate_limit > 0

    def authenticate(self, presented: str | None) -> Grant | None:
        """The grant of a presented key (or of the admin token); None for no or a bad key."""
        if presented is None or self.keys is None:
            return None
        token = self.settings.admin_token
        if token is not None and hmac.compare_digest(
            presented.encode("utf-8", "surrogatepass"), token.encode()
        ):
            return ADMIN_TOKEN
        return self.keys.lookup(presented)

    async def admit_request(self, who: str, now_ms: float) -> int:
        """0 when `who` may make a REST request now, else the seconds to wait."""
        rate = self.settings.rest_rate_limit
        if rate <= 0:
            return 0
        wait = await self.limiter.admit_request(who, rate, now_ms)
        return retry_after_s(wait) if wait > 0 else 0

    async def acquire(self, who: str, limit: int) -> bool:
        return await self.limiter.acquire_connection(who, limit)

    def release(self, who: str) -> None:
        self.limiter.release_connection(who)

    # -- the keys file --------------------------------------------------------------------

    def reload(self) -> None:
        """Read the keys file again if it changed; tell the listeners which keys went."""
        path = self.settings.api_keys_file
        if path is None or self.keys is None:
            return
        signature = file_signature(path)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            if signature is None:
                raise KeyFileError(f"{path} is gone")
            fresh = read_key_file(path)
        except KeyFileError as error:
            if self.keys_error != str(error):
                log.error("keys file: %s; keeping the %d keys read before", error, len(self))
            self.keys_error = str(error)
            return
        revoked = fresh.revoked_since(self.keys)
        self.keys, self.keys_error = fresh, None
        log.info("keys file read again: %d keys, %d revoked", len(self), len(revoked))
        if revoked:
            for listener in self.on_revoked:
                listener(revoked)

    def __len__(self) -> int:
        return 0 if self.keys is None else len(self.keys.entries)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            try:
                self.reload()
            except Exception:  # a listener's failure must not stop the watching
                log.exception("reloading the keys file failed")

    # -- the process's life ---------------------------------------------------------------

    def start(self) -> None:
        if self.keys is not None:
            self._watching = asyncio.get_running_loop().create_task(self._watch())
        if isinstance(self.limiter, RedisLimiter):
            self.limiter.start()

    async def stop(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            await asyncio.gather(self._watching, return_exceptions=True)
        if isinstance(self.limiter, RedisLimiter):
            await self.limiter.stop()

    def status(self) -> dict[str, Any]:
        limiter = self.limiter
        return {
            "keys": len(self) if self.keys is not None else None,
            "keys_error": self.keys_error,
            "rest_rate_limit": self.settings.rest_rate_limit,
            "limits_shared": isinstance(limiter, RedisLimiter) and limiter.shared,
            **msgspec.structs.asdict(self.stats),
        }

    def health_reasons(self) -> list[str]:
        return [] if self.keys_error is None else [f"keys file: {self.keys_error}"]
