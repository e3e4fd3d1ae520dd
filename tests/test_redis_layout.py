"""Where the hub keeps things in Redis (hub.storage.layout): the groups one script may
write, and the keys of the earlier layout moved to today's names, against a real
redis-server."""

from __future__ import annotations

import msgspec
import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from hub.models import LiquidationEvent
from hub.service.history import RedisHistory
from hub.storage.event_log import RedisEventLog
from hub.storage.layout import (
    GLOBAL,
    ONE_SERVER,
    Layout,
    state_key,
    stream_key,
    tagged,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)
FIRST = LiquidationEvent("binance", "BTCUSDT", "long", 100.0, 1.0, 100.0, 1_700_000_000_000)


def test_one_server_writes_everything_in_one_script_a_cluster_one_per_slot() -> None:
    symbols = [f"S{i}USDT" for i in range(40)] + [GLOBAL]
    assert ONE_SERVER.groups(symbols) == [symbols]
    groups = Layout(cluster=True).groups([*symbols, symbols[0]])
    assert sorted(s for group in groups for s in group) == sorted(symbols), "each once"
    for group in groups:
        slots = {key_slot(tagged(symbol).encode()) for symbol in group}
        assert len(slots) == 1, f"expected one slot per group, seen {slots} for {group}"
    assert Layout(cluster=True).fence_keys(["BTCUSDT", "ETHUSDT", "BTCUSDT"]) == [
        "hub:{BTCUSDT}:fence",
        "hub:{ETHUSDT}:fence",
    ], "expected each tag's copy once (a cluster)"
    assert ONE_SERVER.fence_keys(["BTCUSDT", "ETHUSDT"]) == ["hub:{ingest}:fence"]


async def test_the_earlier_layout_is_moved_to_today_s_names_and_read_back(
    redis_server: RedisServer,
) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        events = [msgspec.structs.replace(FIRST, time=FIRST.time + n) for n in range(3)]
        writer = RedisEventLog(redis, dict)
        await writer.claim()
        for arrival, event in enumerate(events, 1):
            writer.append(arrival, event)
        await writer.write_pending()
        # As a hub of the earlier release left them.
        await redis.rename(stream_key("BTCUSDT"), "hub:events:BTCUSDT")
        await redis.hset(
            "hub:positions", mapping={"BTCUSDT": b"position", "~source": b"demo clock"}
        )

        history = RedisHistory(redis, 365 * 86_400_000, dict)
        kept = await history.read({"BTCUSDT"}, False, FIRST.time + 10)
        assert kept.rows["BTCUSDT"].rows.arrival.tolist() == [1, 2, 3]
        assert history.position("BTCUSDT") == b"position"
        assert kept.meta.source == "demo clock"
        left = sorted(k.decode() for k in await redis.keys("hub:*"))
        assert left == sorted(
            [
                "hub:instance",
                stream_key("BTCUSDT"),
                state_key("BTCUSDT"),
                state_key(GLOBAL),
            ]
        ), f"expected only today's names, seen {left}"
        again = await RedisHistory(redis, 365 * 86_400_000, dict).read(
            {"BTCUSDT"}, False, FIRST.time + 10
        )
        assert again.rows["BTCUSDT"].rows.arrival.tolist() == [1, 2, 3], "moved once"
    finally:
        await redis.aclose()
