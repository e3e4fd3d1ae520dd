"""The tracked symbols: listed to every reader, added or removed at run time by admins.

Without keys, adding and removing are off unless HUB_ADMIN_TOKEN is set; then a request
needs `Authorization: Bearer <token>`, compared in constant time so response timing tells
nothing about the token. With keys on, the access middleware has already checked the key
(the admin token counts as one of scope `admin`), and these need an `admin` grant.
"""

from __future__ import annotations

import hmac

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hub.access.keys import Grant
from hub.api.access import GRANT
from hub.api.responses import endpoint, ok
from hub.channels import is_symbol
from hub.errors import RequestError, clip, echo
from hub.service.hubs import HubView


class SymbolsBody(msgspec.Struct, forbid_unknown_fields=True):
    symbols: list[str]


class AdminApi:
    def __init__(self, hub: HubView) -> None:
        self.hub = hub

    def _authorize(self, request: Request) -> None:
        if self.hub.access.keys_required:
            grant: Grant = request.scope[GRANT]  # the middleware let no request without one in
            if not grant.admin:
                self.hub.access.stats.forbidden_rest += 1
                raise RequestError(403, f"key {grant.name!r} has scope read; this needs admin")
            return
        token = self.hub.settings.admin_token
        if token is None:
            raise RequestError(404, "admin endpoints are off (HUB_ADMIN_TOKEN is not set)")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise RequestError(401, "a valid 'Authorization: Bearer <token>' is required")

    async def _symbols(self, request: Request) -> set[str]:
        self._authorize(request)
        try:
            body = msgspec.json.decode(await request.body(), type=SymbolsBody)
        except msgspec.DecodeError as error:
            detail = clip(str(error), 160)
            raise RequestError(400, f'body: expected {{"symbols": [...]}}: {detail}') from None
        symbols = {s.upper() for s in body.symbols}
        bad = sorted(s for s in symbols if not is_symbol(s))
        if not symbols:
            raise RequestError(400, "symbols: none given")
        if bad:
            raise RequestError(400, f"symbols: {len(bad)} not symbols, such as {echo(bad[0])}")
        return symbols

    def _tracked(self) -> Response:
        return ok({"symbols": sorted(self.hub.tracked())})

    @endpoint
    async def listing(self, request: Request) -> Response:
        return self._tracked()

    @endpoint
    async def add(self, request: Request) -> Response:
        await self.hub.add_symbols(await self._symbols(request))
        return self._tracked()

    @endpoint
    async def remove(self, request: Request) -> Response:
        await self.hub.remove_symbols(await self._symbols(request))
        return self._tracked()
