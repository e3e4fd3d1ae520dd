"""CORS for REST (HUB_CORS_ORIGINS): which other sites' pages may read the API.

Starlette's `CORSMiddleware` does the work; this module decides its settings. It sits
outside the access middleware, so a preflight (`OPTIONS`, which browsers send without
the key) is answered without one, and a 401 or 429 carries the CORS headers a page needs
to read why it was refused. No credentials (cookies) are involved: a key travels in the
`Authorization` header, which is listed as allowed, so `*` works with keys too.
`Retry-After` and `Content-Disposition` (the export's file name) are exposed to pages.
Unset, nothing is added: a browser then lets no other origin read the answers.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from hub.config import Settings

PREFLIGHT_MAX_AGE_S = 600


def cors_middleware(settings: Settings) -> list[Middleware]:
    if settings.cors_origins is None:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=("GET", "POST", "DELETE"),
            allow_headers=("Authorization", "Content-Type"),
            expose_headers=("Retry-After", "Content-Disposition"),
            max_age=PREFLIGHT_MAX_AGE_S,
        )
    ]
