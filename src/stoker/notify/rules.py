"""What is worth a notification, and what it says: pure rules, no clock, no IO, no daemon.

The events (the names `[notify.NAME] events` takes):

- `program_fatal`: an instance reached `fatal` (its first start and `max_restarts` restarts failed).
- `crash_loop`: a crash loop of an instance had `count` unexpected ends within `within`
  seconds. What an unexpected end is and where a loop ends is the state machine's to say (its
  `streak`, stoker.supervise.state: failed starts, crashes after a good start and hangs, since
  the last stable run), the same record `stoker status` shows; `count` and `within` only say
  when a loop is worth a notification. Reported once per loop: the loop is over at a stable
  run, or when the instance came to rest (stopped, exited, fatal: a fatal end is reported as
  `program_fatal` instead).
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
from stoker.supervise.state import State, Streak


class Change(enum.Enum):
    """What a change of an instance means here."""

    CRASH = "crash"  # it ended unexpectedly (the machine counted it in its streak)
    FATAL = "fatal"  # it gave up
    REST = "rest"  # stopped or exited: whatever loop it was in is over


def program_change(
    before: State, before_streak: Streak | None, after: State, after_streak: Streak | None
) -> Change | None:
    """Classify one change of an instance, as the supervisor reports them, from its state and
    its streak (the state machine's record of unexpected ends) before and after.

    The machine counts an end where it decides one: a failed start, a crash after a good
    start, a hang or a start that was not ready in time (when it decides to stop it). A stop
    someone asked for (an operator, a reload, cron_restart, max_memory) is never one.
    """
    if after is State.FATAL:
        return Change.FATAL if before is not State.FATAL else None
    if after in (State.STOPPED, State.EXITED):
        return Change.REST
    if after_streak is not None and after_streak != before_streak:
        return Change.CRASH
    return None


class CrashLoops:
    """Which crash loops (the machine's streaks) to report: each once, when `count` of its
    ends fell within `within` seconds. Only the last `count` ends of each instance are kept."""

    def __init__(self, count: int, within: float) -> None:
        self.count = count
        self.within = within
        self._ends: dict[str, deque[float]] = {}
        self._reported: set[str] = set()

    def crashed(self, name: str, streak: Streak) -> float | None:
        """Record the latest end of `name`'s `streak`. When the loop reaches `count` ends within
        `within` (and was not reported yet), return the seconds they took (report it); else
        None."""
        if streak.ends == 1:
            self.rested(name)  # a new streak: whatever loop came before is over
        ends = self._ends.setdefault(name, deque(maxlen=self.count))
        ends.append(streak.last)
        if name in self._reported or len(ends) < self.count or streak.last - ends[0] >= self.within:
            return None
        self._reported.add(name)
        return streak.last - ends[0]

    def rested(self, name: str) -> None:
        """`name` stopped, exited or gave up: a later start begins with a clean slate."""
        self._ends.pop(name, None)
        self._reported.discard(name)


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
