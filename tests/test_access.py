"""The pure parts of access control: keys and their file, channel patterns, redaction, the
request-rate arithmetic and the connection counts; and the Redis limiter against a real
redis-server, which must give the same answers as the one in memory."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from hub.access import limits_redis
from hub.access.gate import ADMIN_TOKEN, AccessGate
from hub.access.keys import (
    Grant,
    KeyFileError,
    KeyStore,
    channel_pattern,
    key_hash,
    read_key_file,
    redact,
    update_key_file,
)
from hub.access.limits import MemoryLimiter, gcra, retry_after_s
from hub.access.limits_redis import CONNECTIONS, INSTANCES, RedisLimiter
from hub.config import Settings
from hub.errors import ConfigError
from tests.redis_server import RedisServer

# -- keys ---------------------------------------------------------------------------------


def test_a_new_key_is_kept_as_its_hash_only(tmp_path: Path) -> None:
    path = str(tmp_path / "keys.json")
    made: list[str] = []

    def add(store: KeyStore) -> KeyStore:
        changed, key = store.added("desk", "read", None, 1)
        made.append(key)
        return changed

    update_key_file(path, add)
    text = Path(path).read_text()
    assert made[0] not in text, "the key itself must never be written"
    assert key_hash(made[0]) in text
    assert os.stat(path).st_mode & 0o077 == 0, "the keys file is readable by its owner only"
    store = read_key_file(path)
    assert store.lookup(made[0]) == Grant("desk", "read")
    assert store.lookup(made[0] + "x") is None
    assert store.lookup("") is None


def test_names_are_unique_and_revoking_an_unknown_name_says_so() -> None:
    store, _ = KeyStore([]).added("desk", "read", None, 1)
    with pytest.raises(LookupError, match="exists"):
        store.added("desk", "admin", None, 2)
    with pytest.raises(LookupError, match="no key named 'ops'"):
        store.removed("ops")
    with pytest.raises(ValueError, match="not a key name"):
        store.added("has space", "read", None, 3)


def test_revoked_since_names_removed_and_replaced_keys() -> None:
    before, _ = KeyStore([]).added("a", "read", None, 1)
    before, _ = before.added("b", "read", None, 1)
    before, _ = before.added("c", "read", None, 1)
    after, _ = before.removed("a").removed("b").added("b", "read", None, 2)  # b: a new key
    assert after.revoked_since(before) == {"a", "b"}


@pytest.mark.parametrize(
    "content, words",
    [
        (b"{", "not a keys file"),
        (b'{"keys": [{"name": "a"}]}', "not a keys file"),
        (b'{"keys": [{"name": "a", "scope": "root", "hash": "x"}]}', "not a keys file"),
        (
            b'{"keys": [{"name": "a", "scope": "read", "hash": "x"},'
            b' {"name": "a", "scope": "read", "hash": "y"}]}',
            "twice",
        ),
    ],
)
def test_a_bad_keys_file_says_what_is_wrong(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=words):
        read_key_file(str(path))
    with pytest.raises(ConfigError, match="HUB_API_KEYS_FILE"):
        AccessGate(Settings(api_keys_file=str(path)))


def test_a_missing_keys_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; create it with"):
        AccessGate(Settings(api_keys_file=str(tmp_path / "none.json")))


def test_an_empty_keys_file_holds_no_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(b"")
    gate = AccessGate(Settings(api_keys_file=str(path)))
    assert gate.keys_required and len(gate) == 0
    assert gate.authenticate("hub_anything") is None


def test_the_admin_token_counts_as_an_admin_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(b"")
    gate = AccessGate(Settings(api_keys_file=str(path), admin_token="s3cret"))
    assert gate.authenticate("s3cret") == ADMIN_TOKEN and ADMIN_TOKEN.admin
    assert gate.authenticate("s3cre") is None
    keyless = AccessGate(Settings(admin_token="s3cret"))
    assert keyless.authenticate("s3cret") is None, "without keys, REST needs no key at all"


def test_reload_keeps_the_last_good_keys_when_the_file_turns_bad(tmp_path: Path) -> None:
    path = str(tmp_path / "keys.json")
    keys: list[str] = []

    def add(name: str) -> None:
        def change(store: KeyStore) -> KeyStore:
            changed, key = store.added(name, "read", None, 1)
            keys.append(key)
            return changed

        update_key_file(path, change)

    add("a")
    gate = AccessGate(Settings(api_keys_file=path))
    revoked: list[set[str]] = []
    gate.on_revoked.append(revoked.append)
    add("b")
    gate.reload()
    assert gate.authenticate(keys[1]) == Grant("b", "read")
    Path(path).write_text("{ not json")
    gate.reload()
    assert gate.authenticate(keys[0]) is not None, "a bad file must not lock everyone out"
    assert gate.keys_error and "not a keys file" in gate.keys_error
    assert gate.health_reasons() == [f"keys file: {gate.keys_error}"]
    Path(path).write_bytes(KeyStore([]).added("b", "read", None, 1)[0].encode())
    gate.reload()
    assert gate.keys_error is None and gate.health_reasons() == []
    assert gate.authenticate(keys[0]) is None and gate.authenticate(keys[1]) is None
    assert revoked == [{"a", "b"}]


# -- channel patterns ---------------------------------------------------------------------


def test_channel_patterns_are_canonical_and_checked() -> None:
    assert channel_pattern("heatmap:btcusdt:*") == "heatmap:BTCUSDT:*"
    assert channel_pattern(" liquidations:* ") == "liquidations:*"
    assert channel_pattern("*:ethusdt") == "*:ETHUSDT"
    bad_patterns = ("", "heatmap:", "trades:BTCUSDT", "alerts:BTCUSDT:1h", "heatmap:BTC-", "a:b:c:")
    for bad in bad_patterns:
        with pytest.raises(ValueError):
            channel_pattern(bad)


@pytest.mark.parametrize(
    "patterns, channel, admitted",
    [
        (("heatmap:BTCUSDT",), "heatmap:BTCUSDT:1h", True),
        (("heatmap:BTCUSDT:1h",), "heatmap:BTCUSDT:4h", False),
        (("heatmap:BTCUSDT:*",), "heatmap:BTCUSDT:4h", True),
        (("heatmap:BTCUSDT",), "heatmap:ETHUSDT:1h", False),
        (("liquidations:*",), "liquidations:*", True),
        (("liquidations:*",), "liquidations:SOLUSDT", True),
        (("liquidations:BTCUSDT",), "liquidations:*", False),  # the wildcard is every symbol
        (("*:ETHUSDT",), "alerts:ETHUSDT", True),
        (("*:ETHUSDT",), "alerts:BTCUSDT", False),
        (("*",), "predicted:BTCUSDT", True),
        (("heatmap:*USDC",), "heatmap:BTCUSDC:1h", True),
    ],
)
def test_a_grant_admits_the_channels_its_patterns_name(
    patterns: tuple[str, ...], channel: str, admitted: bool
) -> None:
    assert Grant("k", "read", patterns).admits_channel(channel) is admitted
    assert Grant("k", "read").admits_channel(channel), "no allow-list: every channel"


def test_a_grant_admits_the_symbols_its_patterns_name() -> None:
    grant = Grant("k", "read", ("heatmap:BTCUSDT", "alerts:*USDC"))
    assert grant.admits_symbol("BTCUSDT") and grant.admits_symbol("ETHUSDC")
    assert not grant.admits_symbol("ETHUSDT")
    assert Grant("k", "read", ("liquidations",)).admits_symbol("ETHUSDT")


def test_redact_takes_keys_out_of_log_lines() -> None:
    key = "hub_" + "A1b2-_" * 7
    line = f'127.0.0.1:5000 - "WebSocket /ws?format=json&key={key}" [accepted]'
    assert key not in redact(line) and "/ws?format=json&key=[key]" in redact(line)
    assert redact("GET /ws?key=short&format=json") == "GET /ws?key=[key]&format=json"
    assert redact(f"Bearer {key} rest") == "Bearer [key] rest"
    assert redact("nothing ?monkey=banana here") == "nothing ?monkey=banana here"
    frame = """< TEXT '{"op": "auth", "key": "t0ken"}' [30 bytes]"""
    assert redact(frame) == """< TEXT '{"op": "auth", "key":[key]}' [30 bytes]"""
    assert "t0k" not in redact("""'{"op":"auth","key":"t0k...' [9000 bytes]""")


# -- limits -------------------------------------------------------------------------------


def test_gcra_allows_a_second_of_burst_then_the_rate() -> None:
    tat = None
    for _ in range(5):  # 5 a second: a burst of 5 at one instant
        tat, wait = gcra(tat, 1000.0, 5)
        assert wait == 0 and tat is not None
    refused, wait = gcra(tat, 1000.0, 5)
    assert refused is None and wait == pytest.approx(200.0)
    assert gcra(tat, 1199.0, 5)[0] is None
    assert gcra(tat, 1200.0, 5)[1] == 0, "one interval later, one more"
    slow, _ = gcra(None, 0.0, 0.5)  # below one a second: one at a time, every 2 s
    assert gcra(slow, 1999.0, 0.5)[1] == pytest.approx(1.0)
    assert gcra(slow, 2000.0, 0.5)[1] == 0


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after_s(ms) for ms in (0.5, 1000, 1001, 99_000.1)] == [1, 1, 2, 100]


def test_memory_limiter_counts_connections_and_forgets_idle_clients() -> None:
    limiter = MemoryLimiter()
    assert limiter.acquire("ip:a", 2) and limiter.acquire("ip:a", 2)
    assert not limiter.acquire("ip:a", 2)
    limiter.release_connection("ip:a")
    assert limiter.acquire("ip:a", 2)
    limiter.release_connection("ip:a")
    limiter.release_connection("ip:a")
    assert dict(limiter.connections) == {}
    for n in range(5000):
        limiter.admit(f"ip:{n}", 1000, 0.0)
    for n in range(5000):
        limiter.admit(f"ip:later-{n}", 1000, 10_000.0)
    assert len(limiter.arrivals) < 10_000, "clients whose bucket refilled are forgotten"
    assert "ip:later-4999" in limiter.arrivals


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_redis_rate_matches_the_memory_arithmetic(redis: Redis) -> None:
    limiter = RedisLimiter(redis)
    waits = [await limiter.admit_request("ip:x", 3, 0.0) for _ in range(4)]
    assert waits[:3] == [0, 0, 0], waits
    assert 0 < waits[3] <= 334, f"the fourth of 3/s waits about 1/3 s, waited {waits[3]} ms"
    other = RedisLimiter(redis)  # another process: the same client's budget
    assert await other.admit_request("ip:x", 3, 0.0) > 0
    assert await other.admit_request("ip:y", 3, 0.0) == 0
    ttl = await redis.pttl(limits_redis.RATE + "ip:x")
    assert 0 < ttl <= 1400, f"the arrival key expires once the bucket is full again, pttl {ttl}"


async def test_redis_connections_are_counted_across_processes(redis: Redis) -> None:
    one, two = RedisLimiter(redis), RedisLimiter(redis)
    one.start()
    two.start()
    try:
        assert await one.acquire_connection("key:a", 3)
        assert await two.acquire_connection("key:a", 3)
        assert await two.acquire_connection("key:a", 3)
        assert not await one.acquire_connection("key:a", 3), "3 held over two processes"
        assert await one.acquire_connection("key:b", 3)
        two.release_connection("key:a")
        await asyncio.wait_for(asyncio.gather(*two._tasks), 5)
        assert await one.acquire_connection("key:a", 3)
        assert await redis.hgetall(CONNECTIONS + one.instance) == {b"key:a": b"2", b"key:b": b"1"}
    finally:
        await one.stop()
        await two.stop()
    assert await redis.exists(CONNECTIONS + one.instance) == 0, "a clean stop leaves no count"
    assert await redis.zcard(INSTANCES) == 0


async def test_a_silent_process_stops_counting(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits_redis, "STALE_MS", 300)
    gone, alive = RedisLimiter(redis), RedisLimiter(redis)
    assert await gone.acquire_connection("ip:a", 1)  # then never beats again
    assert not await alive.acquire_connection("ip:a", 1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not await alive.acquire_connection("ip:a", 1):
        assert loop.time() < deadline, "a process silent for STALE_MS still counted"
        await asyncio.sleep(0.05)


async def test_redis_coming_back_empty_gets_the_counts_again(
    redis_server: RedisServer, redis: Redis
) -> None:
    limiter = RedisLimiter(redis)
    assert await limiter.acquire_connection("ip:a", 5)
    assert await limiter.acquire_connection("ip:a", 5)
    await redis.flushall()  # as a Redis restarted without persistence
    async with limiter._lock:
        await limiter._sync()
    assert await redis.hget(CONNECTIONS + limiter.instance, "ip:a") == b"2"


async def test_without_redis_each_process_limits_alone(redis_server: RedisServer) -> None:
    client = Redis.from_url(redis_server.url, socket_connect_timeout=0.5, socket_timeout=0.5)
    limiter = RedisLimiter(client)
    redis_server.kill()
    try:
        assert await limiter.acquire_connection("ip:a", 1)
        assert not limiter.shared
        assert not await limiter.acquire_connection("ip:a", 1), "the limit still holds here"
        assert await limiter.admit_request("ip:a", 1, 0.0) == 0
        assert await limiter.admit_request("ip:a", 1, 0.0) > 0
        limiter.release_connection("ip:a")
    finally:
        await client.aclose()
    assert dict(limiter.local.connections) == {}
    json.dumps(limiter.local.arrivals)  # plain numbers: nothing of Redis leaked in
