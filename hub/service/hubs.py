"""The process shapes (docs/operations.md), as what the API layer reads (`HubView`).

- `ServeHub` (`serve`): ingest and fan-out in one process; in-memory broker, or Redis
  when REDIS_URL is set (then it is one ingest plus one web, and other web processes may
  join it).
- `WebHub` (`web`): fan-out only, fed from Redis; events come from the durable log.
- `IngestOnly` (`ingest`): no clients, the processor publishing to Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import msgspec
import numpy as np
from redis.exceptions import RedisError

from hub.access.gate import AccessGate
from hub.alerting.history import read_stream
from hub.analytics.candles import Tier
from hub.analytics.processor import LiquidationProcessor
from hub.analytics.rows import Named
from hub.config import Settings
from hub.errors import ConfigError, RequestError
from hub.fanout.broker import Broker
from hub.fanout.broker_memory import MemoryBroker
from hub.fanout.broker_redis import RedisBroker
from hub.fanout.fanout import Fanout
from hub.feeds.base import Feed
from hub.models import Alert, LiquidationEvent
from hub.service import control
from hub.service.control import ControlRequest
from hub.service.health import verdict
from hub.service.heartbeat import Liveness
from hub.service.ingest import Ingest, processor_config
from hub.service.leadership import Lease
from hub.service.relay import Relay
from hub.service.sources import Source, wall_clock_ms
from hub.service.standby import Standby
from hub.storage.candles import read_ring
from hub.storage.event_log import entries_from, read_window
from hub.storage.fence import Fence
from hub.tasks import cancel_and_wait

log = logging.getLogger("hub.ingest")
LIVE = Source()
ROWS_CHUNK = 20_000  # rows of a stream (an export) read at a time
INGEST_SILENT = "ingest: silent (no status in Redis for 10 s)"


class HubView(Protocol):
    settings: Settings
    fanout: Fanout
    access: AccessGate
    started_at: float

    def clock(self) -> int: ...

    def tracked(self) -> set[str]: ...

    async def events(
        self, symbol: str, since: int, side: str | None, limit: int | None = None
    ) -> list[LiquidationEvent]:
        """Events of `symbol` with time >= since, newest first; at most `limit`."""

    def rows(self, symbol: str, since: int) -> AsyncIterator[Named]:
        """Every event of `symbol` with time >= since, a chunk of rows at a time, oldest
        first (a `web` process: in the log's order, late arrivals where they came)."""

    async def candle_ring(self, symbol: str, tier: Tier) -> np.ndarray | None:
        """One ring of the symbol's mark-price candles (hub.analytics.candles); None when
        there is none (`web`: ingest has written none to Redis)."""

    async def alerts(
        self, symbol: str | None, kind: str | None, since: int, limit: int
    ) -> list[Alert]:
        """The recent alerts with time >= since, newest first (any symbol, kind if None)."""

    async def status(self) -> dict[str, Any]: ...

    async def health(self) -> dict[str, Any]:
        """`{"status": "ok"}`, or `{"status": "degraded", "reasons": [...]}`."""

    async def add_symbols(self, symbols: set[str]) -> None: ...

    async def remove_symbols(self, symbols: set[str]) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def flush_now(self) -> None: ...

    async def stop_intake(self) -> None:
        """Take no more upstream events (shutting down: what is queued can then drain)."""


class _Tasks:
    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def spawn(self, *coroutines: Any) -> None:
        self.tasks.extend(asyncio.create_task(c) for c in coroutines)

    async def cancel(self) -> None:
        await cancel_and_wait(self.tasks)
        self.tasks.clear()


def _process_status(
    fanout: Fanout, broker: Broker, access: AccessGate, started_at: float
) -> dict[str, Any]:
    """What every process that serves clients reports about itself."""
    return {
        "clients": len(fanout.sessions),
        "broker": broker.status(),
        "fanout": fanout.status(),
        "access": access.status(),
        "memory": {"rss_bytes": _rss_bytes()},
        "uptime_s": round(time.time() - started_at, 3),
    }


def _liveness(settings: Settings) -> Liveness | None:
    """Ingest's heartbeat is watched wherever it crosses Redis."""
    if not settings.redis_url:
        return None
    return Liveness(settings.ingest_silent_ms)


def _process_reasons(relay: Relay, access: AccessGate) -> list[str]:
    status = relay.broker.status()
    reasons = [] if status.connected else [f"{status.kind}: broker unreachable"]
    liveness = relay.liveness
    silent = None if liveness is None else liveness.silent_for(asyncio.get_running_loop().time())
    if silent is not None:
        reasons.append(f"ingest: no heartbeat for {silent:.1f} s")
    return reasons + access.health_reasons()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class ServeHub:
    def __init__(self, settings: Settings, source: Source = LIVE) -> None:
        self.settings = settings
        self.started_at = time.time()
        publisher: Broker
        if settings.redis_url:
            publisher = RedisBroker(settings.redis_url)
            self.inbound: Broker = RedisBroker(settings.redis_url)
            self.ingest = Ingest(settings, source, publisher, publisher.redis)
            self.access = AccessGate(settings, publisher.redis)
        else:
            publisher = self.inbound = MemoryBroker()
            self.ingest = Ingest(settings, source, publisher)
            self.access = AccessGate(settings)
        self.clock = self.ingest.clock
        # Sessions' limits and timers run on the wall clock: a replay's clock may be frozen
        # or twenty times fast, which would make rate limits and slow-client grace absurd.
        self.fanout = Fanout(wall_clock_ms, settings.history_bytes)
        self.relay = Relay(
            self.inbound, self.fanout, self.ingest.handle, liveness=_liveness(settings)
        )
        self._tasks = _Tasks()

    @property
    def processor(self) -> LiquidationProcessor:
        return self.ingest.processor

    @property
    def feed(self) -> Feed:
        """The first feed: the only one of a replay."""
        return self.ingest.feeds[0]

    def tracked(self) -> set[str]:
        return set(self.ingest.processor.books)

    async def events(
        self, symbol: str, since: int, side: str | None, limit: int | None = None
    ) -> list[LiquidationEvent]:
        return list(itertools.islice(self.ingest.processor.events(symbol, since, side), limit))

    async def rows(self, symbol: str, since: int) -> AsyncIterator[Named]:
        cursor = since
        while (book := self.ingest.processor.books.get(symbol)) is not None:
            chunk = book.store.copy_since(cursor, ROWS_CHUNK)
            if not len(chunk.rows):
                return
            yield chunk
            cursor = int(chunk.rows.time[-1]) + 1
            await asyncio.sleep(0)  # the store may change in between: the cursor is a time

    async def candle_ring(self, symbol: str, tier: Tier) -> np.ndarray | None:
        return self.ingest.marks.ring(symbol, tier)

    async def alerts(
        self, symbol: str | None, kind: str | None, since: int, limit: int
    ) -> list[Alert]:
        return await self.ingest.alerting.history.read(symbol, kind, since, limit)

    async def status(self) -> dict[str, Any]:
        return {
            **self.ingest.status(),
            **_process_status(self.fanout, self.inbound, self.access, self.started_at),
        }

    async def health(self) -> dict[str, Any]:
        return verdict(self.ingest.health_reasons() + _process_reasons(self.relay, self.access))

    async def add_symbols(self, symbols: set[str]) -> None:
        await self.ingest.add_symbols(symbols)

    async def remove_symbols(self, symbols: set[str]) -> None:
        await self.ingest.remove_symbols(symbols)
        self.fanout.symbols -= symbols

    async def flush_now(self) -> None:
        await self.ingest.flush_now()

    async def stop_intake(self) -> None:
        await self.ingest.stop_feeds()

    async def start(self) -> None:
        await self.relay.track(self.tracked())
        self._tasks.spawn(self.relay.run())
        self.access.start()
        await self.ingest.start(control_messages=bool(self.settings.redis_url))

    async def stop(self) -> None:
        await self.ingest.stop()
        await self._tasks.cancel()
        await self.access.stop()
        await self.ingest.broker.close()
        await self.inbound.close()


class WebHub:
    def __init__(self, settings: Settings) -> None:
        if not settings.redis_url:
            raise ConfigError("REDIS_URL", "`web` is fed from Redis: set REDIS_URL")
        self.settings = settings
        self.started_at = time.time()
        self.clock = wall_clock_ms
        self.broker = RedisBroker(settings.redis_url)
        self.redis = self.broker.redis
        self.access = AccessGate(settings, self.redis)
        self.fanout = Fanout(self.clock, settings.history_bytes)
        self.relay = Relay(
            self.broker,
            self.fanout,
            self._request,
            self._load_symbols,
            liveness=_liveness(settings),
        )
        self._tasks = _Tasks()

    async def _request(self, request: ControlRequest) -> None:
        await self.broker.publish(control.CONTROL_TOPIC, control.encode(request))

    async def _load_symbols(self) -> set[str]:
        try:
            members = await self.redis.smembers(control.SYMBOLS_KEY)
        except (RedisError, OSError):
            return set(self.fanout.symbols)
        if not members:
            # Redis restarted empty and ingest has not announced again yet (or has not
            # started): keep what we know, its announcement on SYMBOLS_TOPIC will correct it.
            return set(self.fanout.symbols)
        return {m.decode() for m in members}

    def tracked(self) -> set[str]:
        return set(self.fanout.symbols)

    async def events(
        self, symbol: str, since: int, side: str | None, limit: int | None = None
    ) -> list[LiquidationEvent]:
        return await read_window(self.redis, symbol, since, side, limit)

    async def rows(self, symbol: str, since: int) -> AsyncIterator[Named]:
        async for named in entries_from(self.redis, symbol, since):
            keep = named.rows.time >= since
            if keep.any():
                yield Named(named.rows.take(keep), named.exchanges)

    async def candle_ring(self, symbol: str, tier: Tier) -> np.ndarray | None:
        return await read_ring(self.redis, symbol, tier)

    async def _ingest_status(self) -> dict[str, Any]:
        """What ingest last published about itself; empty when it has not for 10 s."""
        with contextlib.suppress(RedisError, OSError, msgspec.DecodeError):
            raw = await self.redis.get(control.STATUS_KEY)
            if raw:
                return msgspec.json.decode(raw)
        return {}

    async def alerts(
        self, symbol: str | None, kind: str | None, since: int, limit: int
    ) -> list[Alert]:
        try:
            return await read_stream(self.redis, symbol, kind, since, limit)
        except (RedisError, OSError):
            raise RequestError(503, "alerts: Redis is unreachable") from None

    async def health(self) -> dict[str, Any]:
        ingest = await self._ingest_status()
        reasons = list(ingest.get("reasons", [])) if ingest else [INGEST_SILENT]
        return verdict(reasons + _process_reasons(self.relay, self.access))

    async def status(self) -> dict[str, Any]:
        ingest = await self._ingest_status()
        return {
            "sources": ingest.get("sources", {}),
            "symbols": ingest.get("symbols", {s: {} for s in sorted(self.fanout.symbols)}),
            "symbols_unlisted": ingest.get("symbols_unlisted", {}),
            "listings": ingest.get("listings"),
            "processor": ingest.get("processor"),
            "history": ingest.get("history"),
            "alerts": ingest.get("alerts"),
            "ingest": "reporting" if ingest else INGEST_SILENT,
            "ingest_heartbeat": None if self.relay.liveness is None else self.relay.liveness.state,
            **_process_status(self.fanout, self.broker, self.access, self.started_at),
        }

    async def add_symbols(self, symbols: set[str]) -> None:
        await self._request(ControlRequest("add_symbols", symbols=sorted(symbols)))

    async def remove_symbols(self, symbols: set[str]) -> None:
        await self._request(ControlRequest("remove_symbols", symbols=sorted(symbols)))

    async def flush_now(self) -> None:
        return None

    async def stop_intake(self) -> None:
        return None

    async def start(self) -> None:
        await self.relay.start()
        self._tasks.spawn(self.relay.run())
        self.access.start()

    async def stop(self) -> None:
        await self._tasks.cancel()
        await self.access.stop()
        await self.broker.close()


class IngestOnly:
    """`heatmap-hub ingest`: runs until cancelled, publishing only while it holds the
    lease (hub.service.leadership); until then, and after losing it, a warm standby that
    follows the leader (hub.service.standby). A term starts from the standby's books when
    it had read the history by then, else from the history, which the previous holder
    kept."""

    def __init__(self, settings: Settings, source: Source = LIVE, standby: bool = False) -> None:
        if not settings.redis_url:
            raise ConfigError("REDIS_URL", "`ingest` publishes to Redis: set REDIS_URL")
        self.settings = settings
        self.source = source
        self.standby = standby
        self.broker = RedisBroker(settings.redis_url)
        self.lease = Lease(self.broker.redis, settings.ingest_lease_ms)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while True:
                standby = Standby(self.broker.redis, self.settings, processor_config(self.settings))
                fence = await self.lease.wait_for(stop, self.standby, standby.start)
                warm = await standby.stop()
                if fence is None or not await self._term(fence, stop, standby if warm else None):
                    return
                self.standby = False  # deposed: any later turn comes as soon as it lapses
        finally:
            await self.broker.close()

    async def _term(self, fence: Fence, stop: asyncio.Event, standby: Standby | None) -> bool:
        """Publish until stopped (False) or deposed (True)."""
        self.broker.fence = fence
        ingest = Ingest(self.settings, self.source, self.broker, self.broker.redis, standby)
        assert ingest.history is not None
        ingest.history.fenced_by(fence)
        holding = asyncio.create_task(self.lease.hold())
        stopping = asyncio.create_task(stop.wait())
        try:
            await ingest.start(control_messages=True)
            await asyncio.wait({holding, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            deposed = holding.done() and not stopping.done()
            await cancel_and_wait([holding, stopping])
            if deposed:
                log.warning("ingest: stepping down; what it holds is another ingest's now")
                await ingest.abandon()
                log.info("ingest: stepped down")
            else:
                await ingest.stop()
                await self.lease.give_back()
            self.broker.fence = None
        return deposed
