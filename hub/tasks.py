"""Ending background tasks: cancel them, then wait for each to finish unwinding."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel every task, then await each, ignoring how it ends: a task stopped on purpose
    has nothing left to report, and one failure must not keep the others running."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
