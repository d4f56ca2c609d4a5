"""The Store protocol: everything the daemon asks of the database, and the records it returns.

One owner per fact: the store owns jobs, their attempts and which queues are paused. Every
method is a coroutine; a backend does its IO off the event loop. Times are Unix seconds.

The records made several times for every job (`Job`, `AttemptEnd`) are frozen msgspec Structs
rather than frozen dataclasses: as immutable, but built in 0.25 µs instead of 5 µs (a frozen
dataclass's __init__ makes an object.__setattr__ call per field), which was a tenth of the
daemon's work per short job. Change them with `msgspec.structs.replace`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from stoker.jobstates import FINISHED, JobState, Next, Outcome


class StoreError(Exception):
    """The store cannot be opened or used; the message says why."""


@dataclass(frozen=True, slots=True)
class NewJob:
    task: str
    queue: str
    params: dict[str, Any]
    max_attempts: int
    run_at: float
    priority: int = 0
    key: str | None = None
    schedule: str | None = None
    slot: float | None = None


class Job(msgspec.Struct, frozen=True):
    id: int
    task: str
    queue: str
    state: JobState
    params: dict[str, Any]
    priority: int
    attempt: int
    max_attempts: int
    run_at: float
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    output: str | None = None
    result: Any = None
    key: str | None = None
    node: str | None = None
    schedule: str | None = None
    cancel_requested: bool = False
    slot: float | None = None


_STATES = {str(state): state for state in JobState}  # a lookup; JobState(…) costs more per row


def job_from_row(row: Sequence[Any], decode: Callable[[Any], Any]) -> Job:
    """A row of a store's job columns, which are in Job's field order, as a Job. Built
    positionally (0.27 µs where keywords take 1.17: every job read goes through here);
    `decode` makes values of params and result as the database hands them back."""
    (id_, task, queue_, state, params, priority, attempt, max_attempts, run_at, created_at,
     started_at, finished_at, exit_code, error, output, result, key, node, schedule, cancel_requested,
     slot) = row  # fmt: skip
    return Job(
        id_, task, queue_, _STATES[state], decode(params), priority, attempt, max_attempts, run_at,
        created_at, started_at, finished_at, exit_code, error, output,
        None if result is None else decode(result), key, node, schedule, bool(cancel_requested), slot,
    )  # fmt: skip


def started(job: Job, now: float, node: str) -> Job:
    """`job`, queued, as `Store.start` records it running its next attempt."""
    return msgspec.structs.replace(job, state=JobState.RUNNING, attempt=job.attempt + 1, started_at=now,
                                   node=node, finished_at=None, exit_code=None)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Attempt:
    """One finished attempt of a job (an interrupted one keeps its number for the re-run)."""

    job_id: int
    number: int
    started_at: float | None
    finished_at: float
    outcome: Outcome
    exit_code: int | None
    error: str | None
    node: str | None


class AttemptEnd(msgspec.Struct, frozen=True):
    """What the dispatcher reports when an attempt ends, with the rules' verdict."""

    job_id: int
    attempt: int
    outcome: Outcome
    next: Next
    finished_at: float
    exit_code: int | None = None
    error: str | None = None
    output: str | None = None
    result: Any = None
    has_result: bool = False


def ended(job: Job, end: AttemptEnd) -> Job:
    """`job`, running `end.attempt` (as `started()` made it), as `Store.finish` records it once
    that attempt has ended. Nothing else writes a running job's row but a cancel's
    `cancel_requested`, which the end clears; `end.result` is JSON-decoded data (a worker's
    answer), so it reads back from its JSON equal."""
    return msgspec.structs.replace(
        job,
        state=end.next.state,
        run_at=job.run_at if end.next.run_at is None else end.next.run_at,
        attempt=job.attempt if end.next.counts else job.attempt - 1,
        finished_at=end.finished_at if end.next.state in FINISHED else None,
        exit_code=end.exit_code,
        error=end.error,
        output=end.output,
        result=end.result if end.has_result else None,
        cancel_requested=False,
    )


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A daemon sharing the store (PostgreSQL), as the store last heard from it."""

    name: str
    host: str
    pid: int
    joined_at: float
    silent_for: float  # seconds since its last heartbeat, by the store server's clock
    version: str | None  # of stoker; None before its first publish
    programs: bytes | None  # its last published program instances (a JSON array); None before that
    published_ago: float | None  # seconds since it published them


JOB_COLUMNS = (
    "id, task, queue, state, params, priority, attempt, max_attempts, run_at, created_at, started_at, "
    "finished_at, exit_code, error, output, result, key, node, schedule, cancel_requested, slot"
)
"""The columns every store reads a job as, in the order its row decoder expects."""


def listing_query(
    table: str,
    mark: str,
    *,
    state: str | None,
    queue: str | None,
    task: str | None,
    limit: int,
    before: int | None,
) -> tuple[str, list[str | int]]:
    """`Store.jobs`' SELECT on `table` with `mark` as the parameter placeholder ("?" or "%s"),
    and its arguments: newest first, the given filters only."""
    where: list[str] = []
    args: list[str | int] = []
    for column, value in (("state", state), ("queue", queue), ("task", task)):
        if value is not None:
            where.append(f"{column} = {mark}")
            args.append(value)
    if before is not None:
        where.append(f"id < {mark}")
        args.append(before)
    sql = f"SELECT {JOB_COLUMNS} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY id DESC LIMIT {mark}"
    args.append(limit)
    return sql, args


@dataclass(frozen=True, slots=True)
class SlotRecord:
    """One recorded slot of a schedule: the schedule's history, as the store keeps it."""

    slot: float
    outcome: str  # "fired" (job_id is its job, None once pruned) or "skipped"
    job_id: int | None
    reason: str | None = None  # why it was skipped; None for a slot that fired
    recorded_at: float | None = None  # when it was fired or skipped


@dataclass(frozen=True, slots=True)
class QueueCounts:
    queued: int = 0
    running: int = 0


class Store(Protocol):
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    async def close(self) -> None: ...

    async def enqueue(
        self, jobs: Sequence[NewJob], now: float, *, durable: bool = True
    ) -> list[tuple[Job, bool]]:
        """Store `jobs` in one transaction; for each, the job and whether it is new (False: a
        live job with the same key already existed and is returned instead). `durable`: the
        commit is flushed to disk before the answer; else (a relaxed queue's jobs) it is
        committed, and so safe from the daemon's death, but may be lost to a power cut."""

    async def due(self, queue: str, limit: int, now: float) -> tuple[list[Job], float | None]:
        """Up to `limit` queued jobs of `queue` that are due at `now`, in the order they should
        run (highest priority, then earliest run_at, then oldest); and the earliest run_at of
        the queue's jobs not due yet (when to look again). Reads only: see `start`."""

    def start(self, job: Job, *, begun: bool = False) -> asyncio.Future[Job | None]:
        """Record `job` running: a job read by `due` (or just enqueued) as `started()` makes it.
        Answers `job`, or None if the stored one is not queued at the attempt before any more
        (cancelled meanwhile). Not a coroutine: the operation is submitted when this is called, in order
        with every other one, so the dispatcher can hand the job to a worker at once and learn
        the outcome later; a read submitted after it sees the job running. `begun`: the job
        is running already, whatever the store says (a worker began it before the cancel that
        the store has recorded reached it), so one cancelled at the attempt before is started
        too: its record then tells that it ran (only where jobs are sent ahead: not on a
        shared store)."""

    def finish(self, job: Job, end: AttemptEnd) -> asyncio.Future[Job | None]:
        """Record the end of `job`'s running attempt (`job` as `started()` made it); answers the
        job as recorded (`ended(job, end)`), or None if it was not running that attempt.
        Submitted when called, like `start`."""

    async def get(self, job_id: int) -> Job | None: ...

    async def attempts(self, job_id: int) -> list[Attempt]: ...

    async def jobs(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[Job]:
        """Newest first; `before` is an id to page from."""

    async def cancel(self, job_id: int, now: float) -> Job | None:
        """Cancel a queued job at once, or mark a running one for cancelling (the node that runs
        it stops it); None when there is no such job."""

    async def retry(self, job_id: int, now: float) -> Job | None:
        """Put a failed or cancelled job back in its queue with fresh attempts."""

    async def queue_counts(self) -> dict[str, QueueCounts]: ...

    async def paused_queues(self) -> set[str]: ...

    async def set_paused(self, queue: str, paused: bool) -> None: ...

    async def requeue_running(self, node: str, now: float, reason: str, *, crashed: bool = True) -> list[int]:
        """Jobs left running on `node` by a daemon that is gone: record the attempt as
        interrupted (`reason`) and queue them again, unless a cancel was asked for meanwhile
        (then cancelled) or, `crashed`, this was their third such interruption (then failed:
        they may be what kills the daemon). Not `crashed`: the node stopped answering, which
        a partition does as well as a crash, so it is no evidence against the job (issue 21).
        Returns the ids queued again."""

    async def fire(
        self, schedule: str, slot: float, job: NewJob | None, now: float, reason: str | None = None
    ) -> tuple[bool, Job | None]:
        """Record that `schedule` fired `slot` (with `job`, or skipped with None, for `reason`)
        and enqueue the job, in one transaction; (False, None) when that slot was already
        recorded (by this daemon before a restart, or by another node)."""

    async def last_slots(self) -> dict[str, SlotRecord]:
        """Per schedule, its latest recorded slot."""

    async def slots(self, schedule: str, limit: int) -> list[SlotRecord]:
        """The latest `limit` recorded slots of `schedule`, newest first."""

    async def latest_job_of(self, schedule: str) -> Job | None: ...

    async def paused_schedules(self) -> set[str]: ...

    async def set_schedule_paused(self, schedule: str, paused: bool) -> None: ...

    async def prune(self, finished_before: float, limit: int) -> list[int]:
        """Delete up to `limit` jobs finished before that time; returns their ids."""
        ...

    async def prune_slots(self, fired_before: float, limit: int) -> int:
        """Delete up to `limit` slot records fired before that time, but never a schedule's
        latest one (the scheduler catches up from it, and it is what says the slot fired);
        returns how many went. The table would otherwise grow a row per firing, forever."""
