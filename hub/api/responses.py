"""REST envelopes (`{"success": true, "data": ...}`) and query-parameter parsing.

Every handler goes through `endpoint`, which maps `RequestError` to its status and any
other failure to a 500 with a generic message, so no request can take the server down.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hub.channels import DEFAULT_WINDOW, WINDOWS, is_symbol
from hub.errors import RequestError

log = logging.getLogger("hub.api")
_encoder = msgspec.json.Encoder()

Handler = Callable[..., Awaitable[Response]]


def ok(data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _encoder.encode({"success": True, "data": data}),
        media_type="application/json",
        headers=headers,
    )


def failure(status: int, message: str) -> Response:
    return Response(
        _encoder.encode({"success": False, "error": message}),
        status_code=status,
        media_type="application/json",
    )


def endpoint(handler: Handler) -> Handler:
    """Wrap a handler (function or method; the request is its last argument)."""

    @functools.wraps(handler)
    async def guarded(*args: Any) -> Response:
        request: Request = args[-1]
        try:
            return await handler(*args)
        except RequestError as error:
            return failure(error.status, error.message)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return failure(500, "internal error; the server logged it")

    return guarded


def window_param(request: Request) -> str:
    window = request.query_params.get("timeWindow", DEFAULT_WINDOW)
    if window not in WINDOWS:
        raise RequestError(400, f"timeWindow: {window!r} is not one of {', '.join(WINDOWS)}")
    return window


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(400, f"{name}: {raw!r} is not an integer") from None
    if not low <= value <= high:
        raise RequestError(400, f"{name}: must be between {low} and {high}, got {value}")
    return value


def choice_param(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise RequestError(400, f"{name}: {raw!r} is not one of {', '.join(choices)}")
    return raw


def tracked_symbol(request: Request, tracked: set[str]) -> str:
    """The path's `symbol`, upper case; a 404 unless it is tracked."""
    raw = request.path_params["symbol"]
    symbol = raw.upper()
    if not is_symbol(symbol) or symbol not in tracked:
        raise RequestError(404, f"symbol {raw!r} is not tracked")
    return symbol
