"""The dispatcher's decisions, as pure functions: the clock, chance and the store's answers come
in as arguments, decisions go out as values. No asyncio, no IO, no time.time() here.

stoker.jobs.dispatcher is the shell around this core: it moves messages between the store, the
pool's workers and the API, and does what these functions say. Kept apart for the reason
stoker.supervise.state is: every rule is then testable exhaustively, on every small case and
under hypothesis (tests/test_dispatch_core.py), without a daemon, a worker or a sleep; and the
rules read in one place (docs/dispatcher.md tells them in prose). Each is called on a short
job's path a few times, where a Python call is ~0.2% of the daemon's work per job: so they are
few and coarse, take positional arguments, and build nothing they do not return. What is
decided here:

- claiming: how many slots a queue has free (`room`), how many of its held jobs to start or
  claim now and whether the rest may be sent ahead (`fill`), whether to read the store for
  more (`should_read`), what a claim's answer means (`claimed`);
- prefetch: how far ahead a busy worker is sent (`ahead_for`), how many more a lane (a running
  job's worker) may take (`lane_capacity`), and which lane each next job goes to (`deal`);
- revocation: which jobs sent ahead a cancel, a pause, a reload or the shutdown takes back
  (`TakeBack`), and what an attempt's end means for the jobs sent ahead of its worker
  (`successor`);
- the attempt's end: what the store records and which transition follows (`attempt_end`,
  through stoker.jobs.rules.after_attempt), and what the answer to a start means
  (`start_refused`);
- timing: when a delayed job makes its queue worth reading again (`earliest`, `due_now`), how
  long the loop may sleep (`sleep_for`), when the fallback poll is due (`poll_due`), when a
  failed read is tried again (`retry_at`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from stoker.jobs.rules import Outcome, after_attempt
from stoker.jobs.wire import LINGER as ANSWER_HOLD
from stoker.store.base import AttemptEnd, Job

if TYPE_CHECKING:
    from stoker.jobs.attempt import AttemptResult

FALLBACK_POLL = 60.0  # seconds: the store is read again at least this often (writers it cannot hear)
READ = 128  # due jobs asked for per read of a queue
READ_BELOW = 16  # read again once fewer than this are held (and the store may have more)
STORE_RETRY = 1.0  # seconds before reading again after the store failed a read
QUICK = 0.010  # seconds: a worker whose last job took less (by its clock) is sent more ahead
PREFETCH = 24  # jobs sent ahead to a busy worker at most (ahead_for)
LAST_LINE = 200  # characters of a failed command's last line of output added to its error


# claiming --------------------------------------------------------------------------------


def room(concurrency: int, running: int, open: bool) -> int:
    """Free slots of a queue running `running` of `concurrency`: none while it is not `open`
    (paused, or the daemon stopping); below zero when a reload lowered its concurrency under
    what runs (nothing starts until enough have ended)."""
    return concurrency - running if open else 0


def fill(concurrency: int, running: int, open: bool, held: int) -> tuple[int, bool]:
    """How many of the `held` due jobs of a queue to start now (or, on a shared store, to claim
    in one statement): as many as there is `room` for; and whether the queue is then exactly
    full, so that the workers of its running jobs may be sent the rest ahead (prefetch)."""
    free = concurrency - running if open else 0  # (room's, without a call: ~0.2% of a job each)
    take = free if free < held else held
    if take < 0:
        take = 0
    return take, open and free == take


def should_read(held: int, complete: bool, reading: bool, open: bool) -> bool:
    """Whether to read the queue's next due jobs from the store: it holds fewer than
    READ_BELOW (read ahead: a slot that frees should find its job held), the store may have
    more (`complete`: the last read came back short and nothing was left out since), no read
    is out, and the queue is `open` (a paused queue is not read)."""
    return held < READ_BELOW and not complete and not reading and open


@dataclass(frozen=True, slots=True)
class Claimed:
    """What the answer to a claim of `count` slots on a shared store means."""

    give_back: int  # slots reserved for the claim that no job took: free again
    stop: tuple[int, ...]  # jobs claimed that were cancelled meanwhile: stopped once begun
    stale: bool  # other nodes took some: what is left, only the store knows (read again)
    # Why none of them may run (this node was fenced while the claim was out), or None.
    interrupted: str | None = None


def claimed(
    count: int, jobs: Sequence[Job], cancelled_unseen: frozenset[int] | set[int], fenced: str | None = None
) -> Claimed:
    """The claim of `count` slots answered `jobs` (this node's now). A cancel that came while
    it was out (`cancelled_unseen`), or that the store had recorded (`cancel_requested`: asked
    on another node), stops the job it names.

    A fence while it was out (`fenced`, its reason: lifted again or not) interrupts
    them all, unstarted: the claim may have been recorded before the others took this node for
    dead, and its answer held up (a lossy link) until after they queued these jobs again and
    another node began them. Only an answer that no fence overtook is sure to be this node's
    alone (its heartbeat was fresh from the claim's sending to its answer); the interrupted
    ends are no-ops where another node runs the attempt now (they name this node's start)."""
    stop = tuple(job.id for job in jobs if job.id in cancelled_unseen or job.cancel_requested)
    return Claimed(give_back=count - len(jobs), stop=stop, stale=len(jobs) < count, interrupted=fenced)


# prefetch --------------------------------------------------------------------------------


def ahead_for(took: float | None, hold: float = ANSWER_HOLD) -> int:
    """How many jobs a busy worker is sent ahead, by how long its last job took (seconds, by its
    clock; None: it has run none). One; while its jobs are quick (under QUICK, where a round
    trip to the daemon would be most of a job's time), enough to run on through the time it may
    hold a command's answer for company (`hold`, stoker.jobs.wire.LINGER) and two more, since
    it sends what it holds once fewer than two are left: at most PREFETCH. So what waits on a
    worker ahead of a job of higher priority enqueued meanwhile is about the hold's worth,
    never more than ~40 ms.

    Why so deep: each message from a worker wakes the daemon, and each wake-up costs the machine
    more than its CPU shows (2 cores, `true` commands: idle 9% of the time at a 5 ms hold and 8
    ahead, 3% at 20 ms and 24; 76% of bare fork/exec x2 against 91%, median of 6 alternated
    pairs each, bench/profile_jobs.py)."""
    if took is None or took >= QUICK:
        return 1
    return min(PREFETCH, 2 + math.ceil(hold / max(took, 1e-6)))


def lane_capacity(
    stopped: bool, answered: bool, alive: bool, in_flight: int, took: float | None, jobs: int, max_jobs: int
) -> int:
    """How many more jobs may be sent ahead to the worker of a running job (a lane): none once
    the job is stopped (its worker may go down with it) or has ended (`answered`), or the
    worker is dead; else up to `ahead_for` ahead of the one it runs (`in_flight` counts that
    one too), and no more than it may run before it is replaced (`jobs` answered of
    `max_jobs`: a worker replaced with requests in hand would take them down with it)."""
    if stopped or answered or not alive:
        return 0
    return max(0, min(ahead_for(took) + 1 - in_flight, max_jobs - jobs - in_flight))


def deal(capacities: Sequence[int], jobs: int) -> list[int]:
    """Which lane each of the next `jobs` jobs goes to (indexes of `capacities`), in order: one
    to each lane in turn, a lane left out once it has had its capacity. Round the lanes rather
    than one filled first: each worker then runs on alike, and none holds more of the queue
    than the others while they idle."""
    if len(capacities) == 1:  # (the usual case: the worker of the job that has just begun)
        return [0] * max(0, min(capacities[0], jobs))
    order: list[int] = []
    if jobs <= 0:
        return order
    for turn in range(max(capacities, default=0)):
        for lane, capacity in enumerate(capacities):
            if capacity > turn:
                order.append(lane)
                if len(order) == jobs:
                    return order
    return order


# revocation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TakeBack:
    """Which jobs sent ahead are taken back: those of `queue` (a pause), the job `job` (a
    cancel), or, with neither, all of them (a reload: they were sent under the old tasks and
    concurrency; the shutdown: nothing more begins)."""

    queue: str | None = None
    job: int | None = None

    def takes(self, queue: str, job: int) -> bool:
        """Whether the job `job` of `queue`, sent ahead, is taken back."""
        if self.job is not None:
            return job == self.job
        return self.queue is None or queue == self.queue


@dataclass(frozen=True, slots=True)
class Successor:
    """What the end of a worker's job means for the jobs sent ahead of it, in the order sent."""

    back: int  # the first `back` go back to their queue (or stay cancelled): they never ran
    begins: bool  # the one after them has begun on the worker, and takes the freed slot
    release: bool  # the worker is free (idle, back to the pool)


class Sent(Protocol):
    """A job sent ahead, as `successor` sees it."""

    @property
    def revoked(self) -> bool:
        """Its worker answered that it took it back in time (it never ran)."""


def successor(answered: bool, sent: Sequence[Sent]) -> Successor:
    """The job a worker ran has ended; `sent` had gone ahead of it, in the order sent, whose
    answers say (as far as they have come) whether each was `revoked` in time (looked at only
    up to the first that was not). The worker's rule (stoker.jobs.worker): it answers the
    requests it took back before the answer they follow. So if it `answered`, those answered
    revoked up front never ran and the next has begun; the rest stay sent ahead. One that died
    (or was stopped) before it answered began none of them: all go back. A worker that
    answered and has begun nothing else is free."""
    if not answered:
        return Successor(len(sent), False, False)
    back = 0
    for job in sent:
        if not job.revoked:
            break
        back += 1
    begins = back < len(sent)
    return Successor(back, begins, not begins)


# the attempt's end ---------------------------------------------------------------------------


def attempt_end(
    job: Job, result: AttemptResult, *, now: float, jitter: float, backoff: tuple[float, float] | None
) -> AttemptEnd:
    """What the store records of `job`'s attempt that ended with `result`, and the job's next
    state (stoker.jobs.rules.after_attempt: done, failed, cancelled or queued again, when).
    `now`: the daemon's clock, which bounds the worker's (`result.ended_at`); `jitter` in [0,
    1) spreads retries; `backoff`: the task's (min, max) seconds (None: its task left the
    config, 1 s). A failed command's error gets its last line of output: "exited with code 75:
    SMTP 451 greylisted", where the reason usually is."""
    text = result.output
    error = result.error
    if result.outcome is Outcome.FAILED and result.exit_code is not None and text.strip():
        last = text.strip().splitlines()[-1].strip()
        error = f"{error}: {last[:LAST_LINE]}"
    ended_at = now if result.ended_at is None else min(now, result.ended_at)
    low, high = backoff if backoff is not None else (1.0, 1.0)
    verdict = after_attempt(result.outcome, job.attempt, job.max_attempts, low, high, ended_at, jitter)
    return AttemptEnd(
        job_id=job.id,
        attempt=job.attempt,
        outcome=result.outcome,
        next=verdict,
        finished_at=ended_at,
        exit_code=result.exit_code,
        error=error,
        output=text,
        result=result.result,
        has_result=result.has_result,
    )


def start_refused(recorded: Job | None, error: BaseException | None) -> tuple[Outcome, str] | None:
    """The store's answer to a start (the job `recorded` running, or None: it was no longer
    queued; `error`: the store failed): None if the attempt goes on, else how it stops. A
    start the store could not record is interrupted (it runs again, its attempt given back);
    one whose job was cancelled meanwhile is cancelled."""
    if error is not None:
        return Outcome.INTERRUPTED, f"interrupted: the store could not record its start: {error}"
    if recorded is None:
        return Outcome.CANCELLED, "cancelled before it started"
    return None


# timing ----------------------------------------------------------------------------------


def earliest(current: float | None, run_at: float) -> float:
    """When to look at a queue again for its delayed jobs, one more being due at `run_at`."""
    return run_at if current is None or run_at < current else current


def due_now(later: float | None, now: float) -> bool:
    """Whether the queue's earliest delayed job (due at `later`) is due: it is in the store,
    not held, so the queue is read again."""
    return later is not None and later <= now


def poll_due(now: float, polled: float) -> bool:
    """Whether the fallback read of every queue is due (monotonic seconds)."""
    return now - polled >= FALLBACK_POLL


def sleep_for(*, now: float, polled: float, due: float | None, wall: float) -> float:
    """How long the loop may sleep (<= 0: not at all): until the fallback poll (monotonic
    `now`, `polled`) or the earliest delayed job (`due`, by the `wall` clock), whichever
    comes first; anything else (an enqueue, an end, a resume) wakes it sooner."""
    delay = FALLBACK_POLL - (now - polled)
    if due is not None:
        delay = min(delay, due - wall)
    return delay


def retry_at(wall: float) -> float:
    """When to read a queue again after the store failed a read at `wall`."""
    return wall + STORE_RETRY


__all__ = [
    "FALLBACK_POLL",
    "LAST_LINE",
    "PREFETCH",
    "QUICK",
    "READ",
    "READ_BELOW",
    "STORE_RETRY",
    "Claimed",
    "Sent",
    "Successor",
    "TakeBack",
    "ahead_for",
    "attempt_end",
    "claimed",
    "deal",
    "due_now",
    "earliest",
    "fill",
    "lane_capacity",
    "poll_due",
    "retry_at",
    "room",
    "should_read",
    "sleep_for",
    "start_refused",
    "successor",
]
