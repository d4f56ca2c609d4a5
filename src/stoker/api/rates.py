"""Jobs that ended in the last minute, per queue: the queues' `done_per_minute` and
`failed_per_minute`.

Counted from the job events as they are published, so no query and no timer is needed. The
figures are this node's (the jobs its daemon ran) since the daemon started; a failed attempt
that will be retried is not counted until its job ends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from stoker.jobstates import JobState

MINUTE = 60

COUNTED = {JobState.SUCCEEDED: "succeeded", JobState.FAILED: "failed"}


class FinishCounts:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # (queue, "succeeded" | "failed") -> [second, jobs ended in that second], oldest first:
        # at most 61 entries each, however many jobs end.
        self._seconds: dict[tuple[str, str], deque[list[int]]] = {}

    def observe(self, event: dict[str, Any]) -> None:
        """An EventBus listener."""
        if event.get("type") != "job":
            return
        job = event["job"]
        outcome = COUNTED.get(job.state)
        if outcome is None:
            return
        second = int(self._clock())
        seconds = self._seconds.setdefault((job.queue, outcome), deque())
        if seconds and seconds[-1][0] == second:
            seconds[-1][1] += 1
        else:
            seconds.append([second, 1])
        self._forget_old(seconds, second)

    def last_minute(self, queue: str, outcome: str) -> int:
        seconds = self._seconds.get((queue, outcome))
        if not seconds:
            return 0
        self._forget_old(seconds, int(self._clock()))
        return sum(count for _, count in seconds)

    @staticmethod
    def _forget_old(seconds: deque[list[int]], now: int) -> None:
        while seconds and seconds[0][0] <= now - MINUTE:
            seconds.popleft()
