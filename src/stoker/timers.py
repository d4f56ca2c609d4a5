"""Sleeping until an event or a deadline, whichever comes first."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Return once `event` is set or `timeout` seconds have passed (the timer sets `event`).

    A timer rather than asyncio.wait_for(), which costs a task per call: the dispatcher waits
    once per job, the scheduler once per slot.
    """
    timer = asyncio.get_running_loop().call_later(max(0.0, timeout), event.set)
    try:
        await event.wait()
    finally:
        timer.cancel()
