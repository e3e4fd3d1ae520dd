"""Ending tasks: `cancel_and_wait` ends even a task that swallowed its first cancel (as
redis-py can, mid-command), and leaves well-behaved tasks to unwind once."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from hub.tasks import cancel_and_wait

pytestmark = pytest.mark.timeout(10)


async def test_a_task_that_swallows_its_cancel_is_cancelled_again() -> None:
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels == 1:
                    continue  # taken for an error of a library, and retried
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait([task]))
    await asyncio.wait({stopping}, timeout=5)  # unlike wait_for, cancels nothing itself
    assert stopping.done(), "expected cancel_and_wait to end on its own"
    assert task.cancelled() and cancels == 2, f"expected two cancels, seen {cancels}"


async def test_a_task_unwinds_once_and_its_failure_is_not_raised() -> None:
    cleaned = asyncio.Event()

    async def tidy() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    async def failing() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        raise RuntimeError("failed while stopping")

    tasks = [asyncio.create_task(tidy()), asyncio.create_task(failing())]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks)
    assert cleaned.is_set() and all(task.done() for task in tasks)
