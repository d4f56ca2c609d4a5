"""What is worth a notification, and what it says: pure rules, no clock, no IO, no daemon.

The events (the names `[notify.NAME] events` takes):

- `program_fatal`: an instance reached `fatal` (its first start and `max_restarts` restarts failed).
- `crash_loop`: an instance ended unexpectedly `count` times within `within` seconds, whether
  each was a failed start (died before `start_seconds`, could not be spawned, or was not ready
  within `ready_timeout`), a crash after a good start (restarted at once, so no backoff slows
  it down) or a hang its watchdog caught. Reported once per loop:
  the loop is over once the instance has gone `within` without such an end, or came to rest
  (stopped, exited, fatal: a fatal end is reported as `program_fatal` instead).
- `job_failed`: a job ended `failed`, its attempts used up (a failed attempt that will be
  retried is not one).
- `schedule_missed`: slots of a schedule that did not run (see `stoker.schedule.scheduler`);
  reported once per streak: the first missed slot after one that fired.
"""

from __future__ import annotations

import datetime as dt
import enum
import signal
from collections import deque
from typing import Any

from stoker.durations import format_duration
from stoker.supervise.state import State


class Change(enum.Enum):
    """What a change of an instance means here."""

    CRASH = "crash"  # it ended unexpectedly and will be started again (at once, or after a backoff)
    FATAL = "fatal"  # it gave up
    REST = "rest"  # stopped or exited: whatever loop it was in is over


_UP = frozenset({State.STARTING, State.RUNNING})


def program_change(
    before: State, before_pid: int | None, after: State, after_pid: int | None, error: str | None = None
) -> Change | None:
    """Classify one change of an instance's (state, pid), as the supervisor reports them;
    `error` is the instance's error after the change.

    A stop someone asked for (an operator, a reload, cron_restart, max_memory) goes through
    `stopping` with no error, so it is never a crash; a stop the state machine decides on (a
    hang, or not ready in time) sets the error first, and is one. What follows such a stop
    (backoff, or a start at once) is then not counted again.
    """
    if after is State.FATAL:
        return Change.FATAL if before is not State.FATAL else None
    if after in (State.STOPPED, State.EXITED):
        return Change.REST
    if before in _UP and after is State.BACKOFF:
        return Change.CRASH  # a failed start: it died young, or could not be spawned
    if before in _UP and before_pid is not None and after is State.STARTING and after_pid is None:
        return Change.CRASH  # it had run long enough, ended, and is being started again at once
    if before in _UP and before_pid is not None and after is State.STOPPING and error is not None:
        return Change.CRASH  # hung (watchdog) or not ready in time: the machine stops it
    return None


class CrashLoops:
    """Which instances are in a crash loop; each loop is reported once.

    Only the last `count` unexpected ends of each instance are kept: a loop is `count` of them
    within `within` seconds.
    """

    def __init__(self, count: int, within: float) -> None:
        self.count = count
        self.within = within
        self._ends: dict[str, deque[float]] = {}
        self._looping: set[str] = set()

    def crashed(self, name: str, now: float) -> float | None:
        """Record an unexpected end of `name` at `now` (monotonic seconds). When it starts a
        loop, return the seconds its `count` ends took (report it); else None."""
        ends = self._ends.setdefault(name, deque(maxlen=self.count))
        if ends and now - ends[-1] >= self.within:
            self._looping.discard(name)  # quiet for a whole window: that loop is over
        ends.append(now)
        if name in self._looping or len(ends) < self.count or now - ends[0] >= self.within:
            return None
        self._looping.add(name)
        return now - ends[0]

    def rested(self, name: str) -> None:
        """`name` stopped, exited or gave up: a later start begins with a clean slate."""
        self._ends.pop(name, None)
        self._looping.discard(name)


def starts_streak(in_a_row: int, missed: int) -> bool:
    """Whether `missed` slots of a schedule start a streak (report them) or continue one:
    `in_a_row` counts its missed slots since its last fired one, these included."""
    return in_a_row == missed


# The words ----------------------------------------------------------------------------------


def envelope(event: str, *, id: str, node: str, at: dt.datetime, message: str) -> dict[str, Any]:
    """The fields every notification has. `text` repeats `message` so that Slack- and
    Mattermost-style incoming webhooks show it as it is."""
    return {"event": event, "id": id, "node": node, "at": at, "message": message, "text": message}


def fatal_message(name: str, error: str | None) -> str:
    why = f": {error}" if error else ""
    return f"{name} is fatal{why}. `stoker start {name}` gives it a fresh chance"


def crash_loop_message(name: str, ends: int, span: float, last: str) -> str:
    return f"{name} is in a crash loop: {ends} unexpected exits in {_took(span)}; the last: {last}"


def exit_words(exit_code: int | None, exit_signal: int | None) -> str:
    """How a process ended: "exited with code 3", "killed by SIGSEGV"."""
    if exit_code is not None:
        return f"exited with code {exit_code}"
    if exit_signal is None:
        return "exited"
    try:
        return f"killed by {signal.Signals(exit_signal).name}"
    except ValueError:
        return f"killed by signal {exit_signal}"


def job_failed_message(job_id: int, task: str, attempts: int, error: str | None) -> str:
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return f"job {job_id} ({task}) failed after {tries}: {error or 'no error recorded'}"


def schedule_missed_message(
    name: str,
    reason: str,
    slots: list[dt.datetime],
    *,
    missed: int | None = None,
    job_id: int | None = None,
    job_state: str | None = None,
    error: str | None = None,
) -> str:
    """One line for a `schedule_missed` event: `slots` in the order they were due, the first
    `len(slots)` of `missed` (more were missed when the list was cut short)."""
    count = len(slots) if missed is None else missed
    what, was = _slots(slots, count), "was" if count == 1 else "were"
    if reason == "overlap":
        return f"schedule {name}: {what} {was} skipped: its previous run, job {job_id}, is still {job_state}"
    if reason == "down":
        return f"schedule {name}: {what} {was} missed while the daemon was not running"
    if reason == "late":
        return f"schedule {name}: {what} {was} missed: the daemon could not fire in time (suspended?)"
    return f"schedule {name}: {what} could not fire: {error}"


def _slots(slots: list[dt.datetime], missed: int) -> str:
    if missed == 1:
        return f"the slot at {_time(slots[0])}"
    count = f"{len(slots)} or more" if missed > len(slots) else str(missed)
    return f"{count} slots ({_time(slots[0])} … {_time(slots[-1])})"


def _time(t: dt.datetime) -> str:
    return t.isoformat(timespec="seconds")


def _took(seconds: float) -> str:
    return format_duration(round(seconds)) if seconds >= 1 else f"{seconds:.2f}s"
