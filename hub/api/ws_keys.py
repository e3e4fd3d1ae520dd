"""The key of a WebSocket connection, taken once after the handshake (keys on only).

A key comes in an `Authorization: Bearer KEY` header, as `?key=KEY` (browsers cannot set
headers on a WebSocket), or, when neither is there, as the connection's first message,
`{"op": "auth", "key": KEY, "id": ...}`, answered `{"op": "authenticated", "id": ...}`.
A message is what a page uses when it would rather keep the key out of URLs. A missing,
unknown or revoked key, a first message that is not `auth`, or none within
`AUTH_WAIT_S`: close 4401, so no client waits for ever. A key over its connection limit:
close 4429. All of it happens before the session exists, so a delivered message costs
nothing more with keys on.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import msgspec
from starlette.websockets import WebSocket

from hub.access.gate import AccessGate, identity
from hub.access.keys import Grant
from hub.api.access import bearer
from hub.fanout.codec import Format, encode

AUTH_WAIT_S = 10.0
UNAUTHORIZED = 4401
TOO_MANY = 4429
_ASK = 'no key: send ?key=KEY, "Authorization: Bearer KEY", or {"op": "auth", "key": KEY} first'


class AuthRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    op: Literal["auth"]
    key: str
    id: int | str | None = None


def parse_auth(message: dict[str, object], fmt: Format) -> AuthRequest | None:
    """The `auth` request of a websocket.receive event; None when it is not one."""
    text, data = message.get("text"), message.get("bytes")
    try:
        if isinstance(text, str):
            return msgspec.json.decode(text, type=AuthRequest)
        if isinstance(data, bytes) and fmt == "msgpack":
            return msgspec.msgpack.decode(data, type=AuthRequest)
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        return None
    return None


async def admit_key(
    websocket: WebSocket, gate: AccessGate, fmt: Format, limit: int
) -> tuple[Grant, str] | None:
    """An accepted connection's grant and the limit slot it took (the caller releases
    it); None when the connection was refused and closed."""
    presented = bearer(websocket.scope["headers"]) or websocket.query_params.get("key") or None
    auth: AuthRequest | None = None
    if presented is None:
        try:
            message = await asyncio.wait_for(websocket.receive(), AUTH_WAIT_S)
        except TimeoutError:
            message = {"type": "websocket.receive"}  # refused below as no key
        if message["type"] == "websocket.disconnect":
            return None
        auth = parse_auth(message, fmt)
        if auth is None:
            gate.stats.unauthorized_ws += 1
            await websocket.close(UNAUTHORIZED, _ASK)
            return None
        presented = auth.key
    grant = gate.authenticate(presented)
    if grant is None:
        gate.stats.unauthorized_ws += 1
        await websocket.close(UNAUTHORIZED, "unknown or revoked key")
        return None
    slot = identity(grant, "")
    if not await gate.acquire(slot, limit):
        gate.stats.refused_key += 1
        await websocket.close(TOO_MANY, f"key {grant.name!r} has {limit} connections open")
        return None
    if auth is not None:
        reply = encode({"op": "authenticated", "id": auth.id}, fmt)
        if fmt == "json":
            await websocket.send_text(reply.decode())
        else:
            await websocket.send_bytes(reply)
    return grant, slot
