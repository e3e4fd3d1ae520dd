"""API keys: what a key grants, and the keys file that holds them (HUB_API_KEYS_FILE).

A key is 32 random bytes, shown once when it is made (`heatmap-hub keys add`); the file
keeps its SHA-256 and never the key. A slow password hash (bcrypt, scrypt) would add
nothing: a key is not a password a person chose, and 256 random bits cannot be guessed
from their hash. A presented key is found by its hash in one dict look-up, so checking
one costs the same whatever the number of keys.

A key's grant is its `scope` (`read`: REST and subscribing; `admin`: that, and the admin
endpoints) and an optional allow-list of channel patterns. A pattern is a channel name
whose parts may hold `*` (any run of characters); parts it leaves out match anything, so
`heatmap:BTCUSDT` allows every window and `*:BTCUSDT` everything of one symbol.

The file is JSON written whole (to a temporary file, then renamed), so a process that
re-reads it never sees half a change; `update_key_file` takes a lock so that two
`keys add` at once do not lose one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from typing import Literal

import msgspec

Scope = Literal["read", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "admin")
KEY_PREFIX = "hub_"
NAME_SHAPE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PART_SHAPE = re.compile(r"[A-Za-z0-9*]{1,40}")
_KINDS = ("heatmap", "liquidations", "alerts", "liquidity", "predicted")
# A `key=` query value, an `auth` request's "key" (what a debug log of frames shows), and
# anything shaped like one of our keys wherever it appears.
_KEY_IN_TEXT = re.compile(
    r"(?<=[?&]key=)[^&\s\"']+|(?<=\"key\":)\s*\"[^\"]*\"?|\bhub_[A-Za-z0-9_-]{20,}"
)


class KeyFileError(ValueError):
    """The keys file cannot be read or does not hold keys; the message says why."""


class KeyEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    scope: Scope
    hash: str  # "sha256:" + hex digest of the key
    created_ms: int = 0
    channels: tuple[str, ...] | None = None  # None: every channel


class KeyFileBody(msgspec.Struct, forbid_unknown_fields=True):
    keys: list[KeyEntry] = []


class Grant(msgspec.Struct, frozen=True):
    """What a presented key may do."""

    name: str
    scope: Scope
    channels: tuple[str, ...] | None = None

    @property
    def admin(self) -> bool:
        return self.scope == "admin"

    def admits_channel(self, channel: str) -> bool:
        """May this key subscribe to `channel` (a canonical name, `heatmap:BTCUSDT:1h`)?"""
        if self.channels is None:
            return True
        parts = channel.split(":")
        return any(_matches(pattern.split(":"), parts) for pattern in self.channels)

    def admits_symbol(self, symbol: str) -> bool:
        """May this key read `symbol` over REST: does some pattern name it (or `*`)?"""
        if self.channels is None:
            return True
        return any(fnmatchcase(symbol, _symbol_part(pattern)) for pattern in self.channels)


def _symbol_part(pattern: str) -> str:
    parts = pattern.split(":")
    return parts[1] if len(parts) > 1 else "*"


def _matches(pattern: list[str], parts: list[str]) -> bool:
    if len(pattern) > len(parts):
        return False
    return all(fnmatchcase(part, glob) for glob, part in zip(pattern, parts, strict=False))


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def redact(text: str) -> str:
    """`text` with every key in it (a `key=` parameter, a `hub_...` key) replaced."""
    return _KEY_IN_TEXT.sub("[key]", text)


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def channel_pattern(raw: str) -> str:
    """A channel pattern in canonical case (`heatmap:btcusdt:*` -> `heatmap:BTCUSDT:*`);
    ValueError saying what is wrong otherwise."""
    parts = raw.strip().split(":")
    if not 1 <= len(parts) <= 3 or not all(_PART_SHAPE.fullmatch(p) for p in parts):
        raise ValueError(
            f"{raw!r} is not a channel pattern like 'heatmap:BTCUSDT:*' or 'liquidations:*'"
        )
    kind = parts[0].lower()
    if "*" not in kind and kind not in _KINDS:
        raise ValueError(f"{raw!r}: {kind!r} is not one of {', '.join(_KINDS)} (or '*')")
    if len(parts) == 3 and kind != "heatmap":
        raise ValueError(f"{raw!r}: only heatmap channels have a third part, the window")
    return ":".join([kind, *(p.upper() for p in parts[1:2]), *parts[2:]])


class KeyStore:
    """The keys of one version of the file, by hash."""

    def __init__(self, entries: list[KeyEntry]) -> None:
        self.entries = entries
        self._by_hash = {
            entry.hash: Grant(entry.name, entry.scope, entry.channels) for entry in entries
        }

    @classmethod
    def decode(cls, data: bytes) -> KeyStore:
        if not data.strip():
            return cls([])  # an empty file is a file with no keys yet
        try:
            body = msgspec.json.decode(data, type=KeyFileBody)
        except msgspec.DecodeError as error:
            raise KeyFileError(f"not a keys file: {str(error)[:160]}") from None
        names = [entry.name for entry in body.keys]
        if len(set(names)) != len(names):
            raise KeyFileError("a key name appears twice")
        return cls(body.keys)

    def encode(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(KeyFileBody(self.entries))) + b"\n"

    def lookup(self, key: str) -> Grant | None:
        return self._by_hash.get(key_hash(key))

    def hashes(self) -> dict[str, str]:
        """name -> hash: a name whose hash changed or vanished was revoked."""
        return {entry.name: entry.hash for entry in self.entries}

    def revoked_since(self, before: KeyStore) -> set[str]:
        now = self.hashes()
        return {name for name, digest in before.hashes().items() if now.get(name) != digest}

    def added(
        self, name: str, scope: Scope, channels: tuple[str, ...] | None, now_ms: int
    ) -> tuple[KeyStore, str]:
        """A store with a new key `name`, and the key (the only time it exists in full)."""
        if not NAME_SHAPE.fullmatch(name):
            raise ValueError(f"{name!r} is not a key name: 1 to 64 of A-Z a-z 0-9 . _ -")
        if name in self.hashes():
            raise LookupError(f"a key named {name!r} exists; revoke it first")
        key = new_key()
        entry = KeyEntry(name, scope, key_hash(key), now_ms, channels)
        return KeyStore([*self.entries, entry]), key

    def removed(self, name: str) -> KeyStore:
        if name not in self.hashes():
            raise LookupError(f"no key named {name!r}")
        return KeyStore([entry for entry in self.entries if entry.name != name])


def read_key_file(path: str) -> KeyStore:
    try:
        with open(path, "rb") as file:
            return KeyStore.decode(file.read())
    except OSError as error:
        raise KeyFileError(f"cannot read {path}: {error.strerror}") from None


def file_signature(path: str) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or rewritten; None when it is missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def update_key_file(path: str, change: Callable[[KeyStore], KeyStore]) -> KeyStore:
    """Apply `change` to the file's keys under a lock and write the result in its place
    (a missing file holds no keys). The file is readable by its owner only."""
    with _locked(path):
        store = read_key_file(path) if os.path.exists(path) else KeyStore([])
        changed = change(store)
        directory = os.path.dirname(os.path.abspath(path))
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".keys-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(changed.encode())
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return changed
