"""Running tasks side by side, and ending them: cancel, then wait for each to unwind."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

RECANCEL_S = 1.0


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel every task, then await each, ignoring how it ends: a task stopped on purpose
    has nothing left to report, and one failure must not keep the others running. A task
    still running RECANCEL_S after its cancel is cancelled again, until it ends: redis-py
    can swallow a cancel that arrives in the middle of a command, and a retry loop around
    it would then run on for ever."""
    tasks = list(tasks)
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: an ending on purpose has nothing to report


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
