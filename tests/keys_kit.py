"""Helpers of the access tests: a keys file with named keys, and a WebSocket client that
tells an admitted connection (it answers a ping) from a refused one (its close code)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import IO, Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hub.access.keys import KeyStore, Scope, update_key_file

WAIT_S = 20.0


def add_key(
    path: Path, name: str, scope: Scope = "read", channels: tuple[str, ...] | None = None
) -> str:
    made: list[str] = []

    def change(store: KeyStore) -> KeyStore:
        changed, key = store.added(name, scope, channels, 1)
        made.append(key)
        return changed

    update_key_file(str(path), change)
    return made[0]


def revoke_key(path: Path, name: str) -> None:
    update_key_file(str(path), lambda store: store.removed(name))


def read_all(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


def spoil(path: Path) -> None:
    """Leave the keys file as a broken editor would: not JSON."""
    path.write_text('{"keys": "oops"')


async def reply(ws: ClientConnection, request: dict[str, Any]) -> dict[str, Any]:
    """Send a request and return the next reply (skipping channel messages)."""
    await ws.send(json.dumps(request))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        if "op" in message:
            return dict(message)


async def admitted(ws: ClientConnection) -> bool:
    """True when the hub answers a ping; False when it closed the connection instead."""
    try:
        pong = await reply(ws, {"op": "ping", "id": "alive?"})
    except ConnectionClosed:
        return False
    assert pong == {"op": "pong", "id": "alive?"}, pong
    return True


async def close_code(ws: ClientConnection) -> tuple[int | None, str]:
    """The code and reason the hub closed `ws` with (waiting for it)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT_S)
    except ConnectionClosed as closed:
        received = closed.rcvd
        return (received.code, received.reason) if received else (None, "")
