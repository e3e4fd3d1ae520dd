"""Running tasks side by side, and ending them: cancel, then wait for each to unwind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable
from typing import Any


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel every task, then await each, ignoring how it ends: a task stopped on purpose
    has nothing left to report, and one failure must not keep the others running."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def run_together(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Run until the first one ends, whose exception (if any) is raised; the others are
    then cancelled: they only make sense together (a connection and its polls)."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        await cancel_and_wait(tasks)
