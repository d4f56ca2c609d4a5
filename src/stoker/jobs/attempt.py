"""One attempt of a job: the runner protocol and its result (output: see stoker.jobs.output)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Protocol

import msgspec

from stoker.config import TaskConfig
from stoker.jobstates import Outcome
from stoker.supervise.reap import kill_group


class AttemptResult(msgspec.Struct, frozen=True):  # made for every job: see stoker.store.base
    outcome: Outcome
    exit_code: int | None = None
    error: str | None = None
    result: Any = None
    has_result: bool = False
    output: str = ""  # the attempt's output, its last 64 KB
    written: int | None = None  # bytes of output it wrote, as its worker counted (None: unknown)
    ended_at: float | None = None  # when it ended, by the clock of whoever ran it (None: now)


class AttemptRun(Protocol):
    async def run(self) -> AttemptResult:
        """Run the attempt to its end (the caller records the result)."""

    def stop(self, outcome: Outcome, reason: str) -> None:
        """End the attempt early (cancel, timeout, shutdown): it ends with `outcome`."""

    def abandon(self) -> None:
        """The daemon is leaving without waiting for the attempt's end: kill what it runs."""

    def hurry(self) -> None:
        """A stop asked before must be over now: SIGKILL what is left, whatever stop_timeout."""


class GroupStop:
    """What every runner whose attempt is one process group shares: the task's timeout, and
    stopping (cancel, timeout, shutdown) by SIGTERM to the group, SIGKILL after stop_timeout.
    A runner sets `pid` once the group exists; a stop that comes before is seen by `run()`
    through `stopped`."""

    def __init__(self, task: TaskConfig) -> None:
        self.task = task
        self.pid: int | None = None
        self.stopped: tuple[Outcome, str] | None = None
        self._timers: list[asyncio.TimerHandle] = []

    def stop(self, outcome: Outcome, reason: str) -> None:
        if self.stopped is not None:
            return
        self.stopped = (outcome, reason)
        if self.pid is None:
            return
        kill_group(self.pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(self.task.stop_timeout, kill_group, self.pid, signal.SIGKILL))

    def hurry(self) -> None:
        if self.stopped is not None and self.pid is not None and self._timers:  # (none: the group is gone)
            kill_group(self.pid, signal.SIGKILL)

    def arm_timeout(self) -> None:
        if self.task.timeout is not None:
            from stoker.durations import format_duration

            reason = f"timed out after {format_duration(self.task.timeout)}"
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(self.task.timeout, self.stop, Outcome.TIMED_OUT, reason))

    def disarm(self) -> None:
        """The group is gone: no timer may signal its pid (which could be reused) any more."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def stopped_result(self, **more: Any) -> AttemptResult:
        assert self.stopped is not None
        return AttemptResult(self.stopped[0], error=self.stopped[1], **more)
