"""`heatmap-hub keys add|revoke|list`: the keys file, changed from the command line.

`add` prints the new key alone on stdout (so `KEY=$(heatmap-hub keys add desk)` works)
and what it did on stderr: the key is never shown again, the file keeps only its hash.
Running processes pick a change up within seconds (`hub.access.gate`); nothing needs a
restart. A name that exists (add) or does not (revoke) is exit 1; a bad name, pattern or
file is a configuration error, exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from hub.access.keys import (
    SCOPES,
    KeyFileError,
    KeyStore,
    channel_pattern,
    read_key_file,
    update_key_file,
)
from hub.config import Settings
from hub.errors import ConfigError

EXIT_NO_SUCH_KEY = 1


def add_arguments(keys: argparse.ArgumentParser) -> None:
    actions = keys.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="make a new key and print it (once)")
    add.add_argument("name", metavar="NAME", help="a name for whom the key is for")
    add.add_argument(
        "--scope",
        choices=SCOPES,
        default="read",
        help="read: REST and subscribing; admin: also tracking and dropping symbols "
        "(default: read)",
    )
    add.add_argument(
        "--channels",
        metavar="LIST",
        help="channel patterns the key may read, comma-separated, '*' in any part, "
        "e.g. 'heatmap:BTCUSDT,liquidations:*' (default: every channel)",
    )
    revoke = actions.add_parser(
        "revoke", help="revoke a key: its clients are refused within seconds"
    )
    revoke.add_argument("name", metavar="NAME")
    actions.add_parser("list", help="list the keys (names, scopes, channels; never the keys)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    path = settings.api_keys_file
    if path is None:
        raise ConfigError("HUB_API_KEYS_FILE", "not set: name the keys file (or --api-keys-file)")
    try:
        if args.action == "list":
            print(_listing(read_key_file(path)))
            return 0
        if args.action == "add":
            return _add(path, args)
        update_key_file(path, lambda store: store.removed(args.name))
        print(f"revoked key {args.name!r} in {path}", file=sys.stderr)
        return 0
    except KeyFileError as error:
        raise ConfigError("HUB_API_KEYS_FILE", str(error)) from None
    except LookupError as error:
        print(f"heatmap-hub: {error.args[0]}", file=sys.stderr)
        return EXIT_NO_SUCH_KEY
    except OSError as error:
        raise ConfigError("HUB_API_KEYS_FILE", f"cannot write {path}: {error.strerror}") from None


def _add(path: str, args: argparse.Namespace) -> int:
    channels = None
    if args.channels is not None:
        try:
            channels = tuple(channel_pattern(p) for p in args.channels.split(",") if p.strip())
        except ValueError as error:
            raise ConfigError("--channels", str(error)) from None
        if not channels:
            raise ConfigError("--channels", "lists no pattern; leave it out for every channel")
    made: list[str] = []

    def add(store: KeyStore) -> KeyStore:
        try:
            changed, key = store.added(args.name, args.scope, channels, int(time.time() * 1000))
        except ValueError as error:
            raise ConfigError("NAME", str(error)) from None
        made.append(key)
        return changed

    update_key_file(path, add)
    print(made[0])
    print(
        f"added key {args.name!r} ({args.scope}) to {path}; this is the only time it is shown",
        file=sys.stderr,
    )
    return 0


def _listing(store: KeyStore) -> str:
    rows = [("NAME", "SCOPE", "CREATED (UTC)", "CHANNELS")]
    for entry in store.entries:
        created = datetime.fromtimestamp(entry.created_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        rows.append((entry.name, entry.scope, created, ",".join(entry.channels or ("*",))))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    )
