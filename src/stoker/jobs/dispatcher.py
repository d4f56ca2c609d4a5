"""The dispatcher: starts due jobs while their queues have room, runs them, records the outcome.

Each queue's next due jobs are held in memory (`Ready`, read from the store a page at a time
and added to by every enqueue), so a slot that frees is filled at once: the job goes to its
process or worker while the store records it as running, and its end is recorded the same
way, without the slot waiting for the commit. The store's writer commits whatever has queued
up in one transaction, so under load one commit carries many starts and ends. The store takes
operations in the order they are submitted, which keeps this honest: a read submitted after a
start sees the job running, and a start that finds its job no longer queued (cancelled
meanwhile) stops it.

Event-driven: an enqueue, a finished job, a resume or a cancel wakes it at once; otherwise it
sleeps until the earliest delayed job is due, or at most FALLBACK_POLL, after which it reads
the store again as a safety net for writers it cannot hear (none with SQLite; with PostgreSQL
other nodes are heard through LISTEN/NOTIFY: `queued_elsewhere`). On a store shared with other
nodes, which read the same jobs, a job runs only once its start is confirmed as this node's.
With no tasks in the config it never runs, so a programs-only daemon stays idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from stoker.config import Config, TaskConfig
from stoker.jobs.attempt import AttemptResult, AttemptRun
from stoker.jobs.command import CommandRun
from stoker.jobs.output import output_path
from stoker.jobs.params import ParamError
from stoker.jobs.pool import CallRun, Pool, profile_of
from stoker.jobs.ready import Ready
from stoker.jobs.rules import JobState, Outcome, after_attempt
from stoker.store import AttemptEnd, Job, NewJob, Store
from stoker.store.base import started
from stoker.timers import wait_event

log = logging.getLogger("stoker")

FALLBACK_POLL = 60.0
PRUNE_EVERY = 3600.0
PRUNE_BATCH = 1000
READ = 128  # due jobs asked for per read of a queue
READ_BELOW = 16  # read again once fewer than this are held (and the store may have more)
STORE_RETRY = 1.0  # seconds before reading again after the store failed a read
INTERRUPTED = "interrupted: the daemon stopped while it ran"  # a graceful stop
DIED = "interrupted: the daemon died while it ran"  # found running at the next start


class UnknownTask(LookupError):
    pass


class JobNotFound(LookupError):
    pass


class JobConflict(Exception):
    """The job is not in a state that allows this (cancel a finished job, retry a queued one)."""


class Dispatcher:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        publish: Callable[[dict[str, Any]], None] = lambda event: None,
        base_environment: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.node = config.daemon.node
        self.log_dir = os.path.join(config.daemon.state_dir, "logs")
        self.publish = publish
        self.base_environment = dict(os.environ if base_environment is None else base_environment)
        self.running: dict[int, AttemptRun] = {}
        self.running_per_queue: Counter[str] = Counter()
        self.paused: set[str] = set()
        self.ready = {queue: Ready() for queue in config.queues}
        self._later: dict[str, float] = {}  # per queue, when its earliest delayed job is due
        self._polled = time.monotonic()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing runs
        self._idle.set()
        self._stop = asyncio.Event()  # set by shutdown(): claim nothing more
        self.pool = Pool(config, self.base_environment)
        # Other nodes may read and start the same job: run one only once the store has said it
        # is ours (on SQLite, alone, the run starts while the store records it).
        self.confirm_starts = config.daemon.store != "sqlite"

    # lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        os.makedirs(os.path.join(self.log_dir, "jobs"), mode=0o700, exist_ok=True)
        self.paused = await self.store.paused_queues()
        self._prewarm()
        requeued = await self.store.requeue_running(self.node, time.time(), DIED)
        if requeued:
            log.warning("jobs: %d job(s) were running when the daemon stopped; queued again: %s",
                        len(requeued), ", ".join(map(str, requeued[:20])))  # fmt: skip

    async def run(self) -> None:
        """Claim and run until `shutdown()`; then wait for (or stop) what is running."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._prune_forever())
            while not self._stop.is_set():
                self._wake.clear()
                await self._sleep(self._fill(group))
            await self._idle.wait()  # shutdown() ends what still runs

    async def shutdown(self, timeout: float) -> None:
        """Stop claiming; give running jobs `timeout` seconds, then stop them (they are queued
        again as interrupted attempts and run on the next start)."""
        self._stop.set()
        self._wake.set()
        if self.running:
            log.info("jobs: waiting up to %ss for %d running job(s)", timeout, len(self.running))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        for run in list(self.running.values()):
            run.stop(Outcome.INTERRUPTED, INTERRUPTED)
        await self._idle.wait()
        await self.pool.close()

    def wake(self) -> None:
        self._wake.set()

    def reconfigure(self, config: Config) -> None:
        """Tasks and queues from a reloaded config. Running jobs finish as they began; a new
        queue is read at once; a removed queue's jobs stay queued until it comes back."""
        self.config = config
        self.pool.config = config
        self.pool.max_jobs = config.daemon.worker_max_jobs
        self.ready = {queue: self.ready.get(queue) or Ready() for queue in config.queues}
        self._wake.set()

    def queued(self, job: Job) -> None:
        """A job this daemon has just queued in the store (enqueued, retried, fired by a
        schedule, or queued again after a failed attempt): run it when it is due."""
        if job.state is not JobState.QUEUED or job.queue not in self.ready:
            return
        if job.run_at <= time.time():
            self.ready[job.queue].add(job)
        else:
            self._due_later(job.queue, job.run_at)
        self._wake.set()

    def queued_elsewhere(self, queue: str | None) -> None:
        """Another node queued jobs of `queue` (None: perhaps of any queue) in the store this
        daemon shares with it: read the store again."""
        for name, ready in self.ready.items():
            if queue is None or name == queue:
                ready.stale()
        self._wake.set()

    def apply_paused(self, paused: set[str]) -> None:
        """The paused queues as the store holds them (another node paused or resumed one)."""
        for queue in sorted(paused ^ self.paused):
            self.publish({"type": "queue", "queue": queue, "paused": queue in paused})
        self.paused = set(paused)
        self._wake.set()

    def cancel_asked(self, job_id: int) -> None:
        """Another node was asked to cancel a running job (the store has recorded the request):
        if it runs here, stop it; its end is recorded as cancelled."""
        run = self.running.get(job_id)
        if run is not None:
            run.stop(Outcome.CANCELLED, "cancelled")

    def _due_later(self, queue: str, run_at: float) -> None:
        """A job of `queue` is due at `run_at`: look again then, if not sooner."""
        if run_at < self._later.get(queue, run_at + 1):
            self._later[queue] = run_at

    def _prewarm(self) -> None:
        """Start a worker for every slot a Python task could use, so the first jobs do not wait
        for an interpreter to start (each profile: the queues' summed concurrency)."""
        slots: dict[tuple[str | None, str | None, int | None], set[str]] = {}
        for task in self.config.tasks.values():
            if task.call is not None:
                slots.setdefault(profile_of(task), set()).add(task.queue)
        for profile, queues in slots.items():
            count = sum(self.config.queues[q].concurrency for q in queues if q in self.config.queues)
            self.pool.prewarm(profile, count)

    # claiming ------------------------------------------------------------------------------

    def _open(self, queue: str) -> bool:
        return queue not in self.paused and not self._stop.is_set()

    def _room(self, queue: str) -> int:
        if not self._open(queue):
            return 0
        config = self.config.queues.get(queue)
        concurrency = config.concurrency if config is not None else 1
        return concurrency - self.running_per_queue[queue]

    def _fill(self, group: asyncio.TaskGroup) -> float | None:
        """Start what fits, ask the store for more where needed; returns when to look again
        for a delayed job (None: none known)."""
        now = time.time()
        if time.monotonic() - self._polled >= FALLBACK_POLL:  # what no one told us about
            self._polled = time.monotonic()
            for ready in self.ready.values():
                ready.stale()
        next_due = None
        for queue, ready in self.ready.items():
            later = self._later.get(queue)
            if later is not None and later <= now:  # a delayed job is due: it is in the store
                del self._later[queue]
                ready.stale()
            room = self._room(queue)
            while room > 0 and len(ready):
                self._begin(group, ready.take(), now)
                room -= 1
            # read ahead (a slot that frees should find its job here), not for a paused queue
            if len(ready) < READ_BELOW and not (ready.complete or ready.reading) and self._open(queue):
                ready.begin_read()
                group.create_task(self._read(queue, ready))
            later = self._later.get(queue)
            if later is not None and (next_due is None or later < next_due):
                next_due = later
        return next_due

    async def _read(self, queue: str, ready: Ready) -> None:
        jobs = None
        try:
            jobs, later = await self.store.due(queue, READ, time.time())
        except Exception as e:
            log.error("jobs: cannot read queue %s: %s", queue, e)
            later = time.time() + STORE_RETRY
        finally:
            ready.end_read(jobs, READ)
        if later is not None:
            self._due_later(queue, later)
        self._wake.set()

    async def _sleep(self, due: float | None) -> None:
        delay = FALLBACK_POLL - (time.monotonic() - self._polled)
        if due is not None:
            delay = min(delay, due - time.time())
        if delay <= 0 or self._stop.is_set():
            return
        await wait_event(self._wake, delay)

    # running -------------------------------------------------------------------------------

    def _begin(self, group: asyncio.TaskGroup, queued: Job, now: float) -> None:
        job = started(queued, now, self.node)
        recorded = self.store.start(job)  # while the job starts
        task = self.config.tasks.get(job.task)
        output = output_path(self.log_dir, job.id)
        run: AttemptRun
        if task is None:
            run = _Refused(f"task {job.task!r} is not in the config ({self.config.path})")
        elif task.call is not None:
            run = CallRun(
                job, task, pool=self.pool, output=output, rerun=_is_rerun(job),
                state_dir=self.config.daemon.state_dir,
            )  # fmt: skip
        else:
            run = CommandRun(
                job, task, output=output, rerun=_is_rerun(job), state_dir=self.config.daemon.state_dir,
                base_environment=self.base_environment,
            )  # fmt: skip
        self.running[job.id] = run
        self.running_per_queue[job.queue] += 1
        self._idle.clear()
        recorded.add_done_callback(lambda f: self._started(f, run))
        group.create_task(self._attempt(job, task, run, recorded))

    def _started(self, answer: asyncio.Future[Job | None], run: AttemptRun) -> None:
        """The store's answer to a start: the job running, as recorded; or the attempt stops."""
        if answer.cancelled():
            return
        if (error := answer.exception()) is not None:
            log.error("jobs: the store could not record a start: %s", error)
            run.stop(Outcome.INTERRUPTED, f"interrupted: the store could not record its start: {error}")
        elif (job := answer.result()) is None:
            run.stop(Outcome.CANCELLED, "cancelled before it started")
        else:
            self.publish({"type": "job", "job": job})

    async def _attempt(
        self, job: Job, task: TaskConfig | None, run: AttemptRun, recorded: asyncio.Future[Job | None]
    ) -> None:
        if self.confirm_starts:
            await asyncio.wait([recorded])
            if not recorded.cancelled() and recorded.exception() is None and recorded.result() is None:
                # another node started it first (both had read it), or it was cancelled: nothing
                # ran here and there is nothing to record
                log.debug("job %d: not started here (another node has it, or it was cancelled)", job.id)
                self.running_per_queue[job.queue] -= 1
                del self.running[job.id]
                if not self.running:
                    self._idle.set()
                self._wake.set()
                return
        try:
            result = await run.run()
        except Exception as e:  # a bug, or the disk: the attempt failed, the daemon goes on
            log.exception("job %d: attempt failed to run", job.id)
            result = AttemptResult(Outcome.FAILED, error=f"stoker could not run it: {e}")
        text = result.output
        if result.outcome is Outcome.FAILED and result.exit_code is not None and text.strip():
            # "exited with code 75: SMTP 451 greylisted": the reason is usually the last line
            last = text.strip().splitlines()[-1].strip()
            result = replace(result, error=f"{result.error}: {last[:200]}")
        now = time.time()
        backoff = task.backoff if task is not None else None
        verdict = after_attempt(
            result.outcome,
            job.attempt,
            job.max_attempts,
            backoff.min if backoff else 1.0,
            backoff.max if backoff else 1.0,
            now,
            random.random(),
        )
        end = AttemptEnd(
            job_id=job.id,
            attempt=job.attempt,
            outcome=result.outcome,
            next=verdict,
            finished_at=now,
            exit_code=result.exit_code,
            error=result.error,
            output=text,
            result=result.result,
            has_result=result.has_result,
        )
        _log_end(job, end)
        # Its process is gone, so its slot is free now: the next claim can share a transaction
        # with this finish instead of waiting for it.
        self.running_per_queue[job.queue] -= 1
        self._wake.set()
        try:
            finished = await self.store.finish(end)
        except Exception:  # it stays "running" in the store; the next start queues it again
            log.exception("job %d: could not record the end of attempt %d", job.id, job.attempt)
            finished = None
        finally:
            del self.running[job.id]
            if not self.running:
                self._idle.set()
        if finished is not None:
            ended = {"outcome": str(end.outcome), "seconds": max(0.0, now - (job.started_at or now))}
            self.publish({"type": "job", "job": finished, "attempt_ended": ended})
            self.queued(finished)  # another attempt later

    # requests ------------------------------------------------------------------------------

    def task(self, name: str) -> TaskConfig:
        task = self.config.tasks.get(name)
        if task is None:
            known = ", ".join(self.config.tasks) or "none"
            raise UnknownTask(f"no task {name!r} in the config (tasks: {known})")
        return task

    def new_job(
        self,
        task_name: str,
        params: dict[str, Any],
        *,
        run_at: float | None = None,
        priority: int = 0,
        key: str | None = None,
        now: float,
        schedule: str | None = None,
    ) -> NewJob:
        """Check a request against the config; UnknownTask or ParamError (a ValueError) if it
        does not fit. Nothing is stored."""
        task = self.task(task_name)
        task.check_params(params)
        return NewJob(
            task=task.name,
            queue=task.queue,
            params=params,
            max_attempts=task.max_attempts,
            run_at=now if run_at is None else run_at,
            priority=priority,
            key=key,
            schedule=schedule,
        )

    async def enqueue(self, jobs: list[NewJob], now: float) -> list[tuple[Job, bool]]:
        stored = await self.store.enqueue(jobs, now)
        for job, created in stored:
            if created:
                self.publish({"type": "job", "job": job})
                self.queued(job)
        return stored

    async def cancel(self, job_id: int) -> Job:
        """Cancel a queued job, or stop a running one (its end is recorded as cancelled)."""
        for ready in self.ready.values():
            ready.drop(job_id)  # not to be started while the store cancels it
        job = await self.store.cancel(job_id, time.time())
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if job.state in (JobState.SUCCEEDED, JobState.FAILED):
            raise JobConflict(
                f"job {job_id} already {job.state}: only queued or running jobs can be cancelled"
            )
        if job.state is JobState.RUNNING:
            run = self.running.get(job_id)
            if run is not None:
                run.stop(Outcome.CANCELLED, "cancelled")
        else:
            self.publish({"type": "job", "job": job})
        return job

    async def retry(self, job_id: int) -> Job:
        job = await self.store.retry(job_id, time.time())
        if job is None:
            current = await self.store.get(job_id)
            if current is None:
                raise JobNotFound(f"no job {job_id}")
            raise JobConflict(
                f"job {job_id} is {current.state}: only failed or cancelled jobs can be retried"
            )
        self.publish({"type": "job", "job": job})
        self.queued(job)
        return job

    async def pause(self, queue: str, paused: bool) -> None:
        await self.store.set_paused(queue, paused)
        if paused:
            self.paused.add(queue)
        else:
            self.paused.discard(queue)
        self.publish({"type": "queue", "queue": queue, "paused": paused})
        self._wake.set()

    # housekeeping --------------------------------------------------------------------------

    async def _prune_forever(self) -> None:
        keep = self.config.daemon.keep_jobs
        while not self._stop.is_set():
            try:
                await self.prune(time.time() - keep)
            except Exception:
                log.exception("jobs: pruning failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), PRUNE_EVERY)

    async def prune(self, finished_before: float) -> int:
        """Delete finished jobs older than that, in batches, with their output files."""
        total = 0
        while True:
            ids = await self.store.prune(finished_before, PRUNE_BATCH)
            for job_id in ids:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(output_path(self.log_dir, job_id))
            total += len(ids)
            if len(ids) < PRUNE_BATCH:
                break
        if total:
            log.info("jobs: pruned %d finished job(s)", total)
        return total


class _Refused:
    """An attempt that cannot run at all (its task left the config)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def run(self) -> AttemptResult:
        return AttemptResult(Outcome.FAILED, error=self.reason)

    def stop(self, outcome: Outcome, reason: str) -> None:
        pass


def _is_rerun(job: Job) -> bool:
    return job.error in (INTERRUPTED, DIED)


def _log_end(job: Job, end: AttemptEnd) -> None:
    # Successes are the bulk and their record is in the store: a log line each would cost more
    # than the rest of the bookkeeping of a short job.
    level = {Outcome.SUCCEEDED: logging.DEBUG, Outcome.CANCELLED: logging.INFO}.get(
        end.outcome, logging.WARNING
    )
    if not log.isEnabledFor(level):
        return
    what = f"job {job.id} ({job.task}) attempt {job.attempt}/{job.max_attempts}: {end.outcome}"
    if end.error and end.outcome is not Outcome.SUCCEEDED:
        what += f" ({end.error})"
    if end.next.state is JobState.QUEUED and end.next.run_at is not None:
        what += f"; again in {max(0.0, end.next.run_at - end.finished_at):.1f}s"
    log.log(level, "%s", what)


__all__ = ["Dispatcher", "JobConflict", "JobNotFound", "ParamError", "UnknownTask"]
