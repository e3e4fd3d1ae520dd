"""REST envelopes (`{"success": true, "data": ...}`) and query-parameter parsing.

Every handler goes through `endpoint`, which maps `RequestError` to its status and any
other failure to a 500 with a generic message, so no request can take the server down.
What never reaches a handler (an unknown path, a method a route does not take, a failure
in the server's own layers) gets the same envelope from `http_error` and `server_error`,
the app's exception handlers. Anything of the request quoted in an error is cut short
(`echo`).

An empty query value is the same as no value: `?timeWindow=&format=` asks for the
defaults (1h, CSV), as forms and scripts that always send every parameter expect.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from hub.channels import DEFAULT_WINDOW, WINDOWS, is_symbol
from hub.errors import RequestError, clip, echo
from hub.rounding import output

log = logging.getLogger("hub.api")
_encoder = msgspec.json.Encoder()

Handler = Callable[..., Awaitable[Response]]


def ok(data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _encoder.encode({"success": True, "data": output(data)}),
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
            log.exception("%s %s failed", request.method, echo(request.url.path))
            return failure(500, "internal error; the server logged it")

    return guarded


async def http_error(request: Request, error: Exception) -> Response:
    """Starlette's own HTTP errors (404 no route, 405 method) in the envelope."""
    assert isinstance(error, HTTPException)
    path = echo(request.url.path)
    if error.status_code == 404:
        message = f"no such path: {path}; the API lives under /api/heatmap (see docs/)"
    elif error.status_code == 405:
        headers = {k.lower(): v for k, v in (error.headers or {}).items()}
        allowed = headers.get("allow", "")
        message = f"{clip(request.method)} is not allowed on {path}; allowed: {allowed}"
    else:
        message = error.detail
    response = failure(error.status_code, message)
    response.headers.update(error.headers or {})
    return response


async def server_error(request: Request, error: Exception) -> Response:
    """A failure outside every handler's guard; Starlette has already logged it."""
    return failure(500, "internal error; the server logged it")


EXCEPTION_HANDLERS = {HTTPException: http_error, Exception: server_error}


def query_value(request: Request, name: str) -> str | None:
    """The parameter's value; None when it is absent or empty (an empty value is 'not
    given': the parameter's default applies, for every parameter)."""
    return request.query_params.get(name) or None


def tracked_symbol(request: Request, tracked: set[str]) -> str:
    """The path's `symbol`, upper case; a 404 unless it is tracked, a 503 while the hub
    knows no symbol at all (a `web` process that has not heard from `ingest` yet)."""
    raw = request.path_params["symbol"]
    symbol = raw.upper()
    if not tracked:
        raise RequestError(503, "the hub is starting: no tracked symbols known yet")
    if not is_symbol(symbol) or symbol not in tracked:
        raise RequestError(404, f"symbol {echo(raw)} is not tracked")
    return symbol


def window_param(request: Request) -> str:
    window = query_value(request, "timeWindow") or DEFAULT_WINDOW
    if window not in WINDOWS:
        raise RequestError(400, f"timeWindow: {echo(window)} is not one of {', '.join(WINDOWS)}")
    return window


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = query_value(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(400, f"{name}: {echo(raw)} is not an integer") from None
    if not low <= value <= high:
        raise RequestError(400, f"{name}: must be between {low} and {high}, got {value}")
    return value


def choice_param(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = query_value(request, name)
    if raw is None:
        return None
    if raw not in choices:
        raise RequestError(400, f"{name}: {echo(raw)} is not one of {', '.join(choices)}")
    return raw
