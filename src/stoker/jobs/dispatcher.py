"""The dispatcher: starts due jobs while their queues have room, runs them, records the outcome.

Each queue's next due jobs are held in memory (`Ready`, read from the store a page at a time
and added to by every enqueue), so a slot that frees is filled at once: the job goes to a pool
worker (stoker.jobs.pool: every job's attempt, a Python call or a command, runs on one) while
the store records it as running, and its end is recorded the same
way, without the slot waiting for the commit. The store's writer commits whatever has queued
up in one transaction, so under load one commit carries many starts and ends. The store takes
operations in the order they are submitted, which keeps this honest: a read submitted after a
start sees the job running, and a start that finds its job no longer queued (cancelled
meanwhile) stops it.

A job's worker is sent the queue's next job while it runs one, when the queue is full
(prefetch: the worker begins it the moment it answers, instead of idling through a round trip
to the daemon); while its jobs are quick (each took under QUICK by the worker's clock) it is
sent more, up to PREFETCH (`ahead_for`), since a round trip would be most of such a job's time.
A job sent ahead stays queued in the store, and out of every read of it, until the answer to
the job before it arrives: then it is started, in the slot its predecessor leaves. A cancel, a
pause, a reload or the shutdown takes it back (`Worker.revoke`); the worker's answers say
whether that came in time (stoker.jobs.worker). If it did, the job never ran: it goes back to
its queue, or stays cancelled. If not, the worker had already begun it when the daemon asked,
and it is treated as the running job it is: a cancel stops it, a paused queue lets it finish
like any running job. If the worker dies before it answers, the jobs sent ahead go back to
their queue.

Event-driven: an enqueue, a finished job, a resume or a cancel wakes it at once; otherwise it
sleeps until the earliest delayed job is due, or at most FALLBACK_POLL, after which it reads
the store again as a safety net for writers it cannot hear (none with SQLite; with PostgreSQL
other nodes are heard through LISTEN/NOTIFY: `queued_elsewhere`). With no tasks in the config
it never runs, so a programs-only daemon stays idle.

On a store shared with other nodes (`shared`), which read the same jobs, the free slots of a
queue are filled by one claim (`SharedStore.claim`: the next due jobs, rows other nodes are
claiming skipped), and a job begins once the claim answers it as this node's. Nothing is sent
ahead there: the hand-off before the commit, and prefetch, are for a store this daemon has to
itself. What `Ready` holds then is only a sign that jobs are due.

The decisions in all this (how many to start or claim, how far ahead to send and to which
worker, what a revoke takes back, what an attempt's end means, when to look again) are
stoker.jobs.dispatch_core's, pure functions tested on every small case; this module moves the
messages, calls the store and the pool, and does what they decide (docs/dispatcher.md).

Length: the asyncio shell around stoker.jobs.dispatch_core: every message a job's life sends
(enqueue, start, prefetch, revoke, end, claim) passes here, and the order in which they are
sent is the correctness argument, which reads best in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from stoker import names
from stoker.config import SCHEDULE_TASK_PREFIX, Config, TaskConfig, internal_tasks
from stoker.envfile import EnvFileError
from stoker.jobs import dispatch_core as core
from stoker.jobs.attempt import AttemptResult, AttemptRun
from stoker.jobs.dispatch_core import READ, TakeBack
from stoker.jobs.output import output_path
from stoker.jobs.params import ParamError
from stoker.jobs.pool import Pool, Profile, Worker, WorkerRun, attempt_request, profile_of
from stoker.jobs.ready import Ready
from stoker.jobs.wire import Answer, Call, Command, Revoked
from stoker.jobstates import JobState, Outcome
from stoker.store import AttemptEnd, Job, NewJob, Store
from stoker.store.base import started
from stoker.store.shared import SharedStore
from stoker.supervise.environment import inherited
from stoker.supervise.spawn import describe_spawn_error
from stoker.timers import wait_event

log = logging.getLogger("stoker")

PRUNE_EVERY = 3600.0
CAP_EVERY = 1.0  # how often running jobs' output files are held to their max_output
PRUNE_BATCH = 1000
INTERRUPTED = "interrupted: the daemon stopped while it ran"  # a graceful stop
DIED = "interrupted: the daemon died while it ran"  # found running at the next start
LAPSED = "interrupted: its node stopped answering"  # queued again by another node (a cluster)
# A claim answered after a fence it was sent before (dispatch_core.claimed): not run
FENCED_MEANWHILE = "interrupted: claimed before its node was fenced, answered after"


class UnknownTask(LookupError):
    pass


class JobNotFound(LookupError):
    pass


class JobConflict(Exception):
    """The job is not in a state that allows this (cancel a finished job, retry a queued one)."""


@dataclass(slots=True)
class _Prefetch:
    """A queued job sent ahead to a worker that runs another job of its queue."""

    job: Job  # as read, still queued
    task: TaskConfig  # as the request was made (a reload meanwhile may have changed it)
    worker: Worker
    answer: asyncio.Future[Answer]
    sent_at: float  # when it was sent (it cannot have begun before)
    cancelled: bool = False  # taken back by a cancel (rather than a pause, a reload, the shutdown)

    @property
    def revoked(self) -> bool:
        """Taken back in time: the worker answered that it will not begin it."""
        return _answered(self.answer) and isinstance(self.answer.result(), Revoked)


def _answered(future: asyncio.Future[Answer]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


class Dispatcher:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        publish: Callable[[dict[str, Any]], None] = lambda event: None,
        base_environment: Mapping[str, str] | None = None,
        shared: SharedStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        # This node's "now" for every time it writes or compares in the store: the wall clock,
        # or on a shared store the daemon's view of the server's (stoker/skew.py).
        self.clock = clock
        self.store = store
        self.node = config.daemon.node
        self.log_dir = os.path.join(config.daemon.state_dir, names.LOGS)
        self.publish = publish
        self._environ = dict(os.environ if base_environment is None else base_environment)
        self.base_environment = inherited(self._environ, config)  # what jobs inherit: no secrets
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
        self._busy = asyncio.Event()  # set when a job begins: _cap_forever looks while jobs run
        self.pool = Pool(config, self.base_environment)
        self._group: asyncio.TaskGroup | None = None  # run()'s: every attempt and read is its task
        self._interrupting = False  # shutdown() is stopping what runs: so is whatever begins now
        self.prefetched: dict[int, _Prefetch] = {}  # by job id
        self._next_on: dict[Worker, list[_Prefetch]] = {}  # by the worker, in the order sent
        self._lanes: dict[str, set[WorkerRun]] = {}  # per queue, runs whose worker may be sent more
        # `store` itself when other nodes read the same jobs (the daemon decides): claim them
        # (on SQLite, alone, a job read is ours).
        self.shared = shared
        self._claiming = 0  # slots reserved by claims not answered yet
        self._cancelled_unseen: set[int] = set()  # cancels of jobs a claim has not answered yet
        # An attempt's end on its way to a shared store, which the claim of the slot it frees
        # carries (one statement), and that claim's answer (`_attempt`, `_claim`).
        self._carry: tuple[Job, AttemptEnd] | None = None
        self._carried: asyncio.Future[tuple[Job | None, list[Job]]] | None = None
        # Why this node runs no job now (its heartbeat went unanswered: `fence`), or None.
        self.fenced: str | None = None
        self._fences = 0  # how many times it was fenced: a claim out across one may not run
        self._fence_kill: asyncio.TimerHandle | None = None

    # lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        jobs = os.path.join(self.log_dir, names.JOB_LOGS)
        os.makedirs(jobs, mode=0o700, exist_ok=True)
        # Searchable by workers running as a task's `user`, through the descriptor of it they are
        # given (its parents stay closed; each output file is 0600, its job's user's). Set
        # through a descriptor: a link in its place is not followed (ELOOP).
        fd = os.open(jobs, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, 0o711)
        finally:
            os.close(fd)
        self.paused = await self.store.paused_queues()
        self._prewarm()
        requeued = await self.store.requeue_running(self.node, self.clock(), DIED)
        if requeued:
            log.warning("jobs: %d job(s) were running when the daemon stopped; queued again: %s",
                        len(requeued), ", ".join(map(str, requeued[:20])))  # fmt: skip

    async def run(self) -> None:
        """Claim and run until `shutdown()`; then wait for (or stop) what is running."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._prune_forever())
                group.create_task(self._cap_forever())
                while not self._stop.is_set():
                    self._wake.clear()
                    await self._sleep(self._fill())
                await self._idle.wait()  # shutdown() ends what still runs
        finally:
            for run in list(self.running.values()):  # (cancelled, or a bug: nothing waits for them)
                run.abandon()

    async def shutdown(self, timeout: float) -> None:
        """Stop claiming; give running jobs `timeout` seconds, then stop them (they are queued
        again as interrupted attempts and run on the next start)."""
        self._stop.set()
        self._busy.set()  # (what waits for jobs to run must see the stop too)
        self._wake.set()
        self._revoke(TakeBack())
        if self.running:
            log.info("jobs: waiting up to %ss for %d running job(s)", timeout, len(self.running))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        self._interrupting = True
        for run in list(self.running.values()):
            run.stop(Outcome.INTERRUPTED, INTERRUPTED)
        await self._idle.wait()
        await self.pool.close()

    def wake(self) -> None:
        self._wake.set()

    def fence(self, reason: str, kill_in: float) -> None:
        """The other nodes may soon take this one for dead (its heartbeat is not being renewed)
        and queue its running jobs again: stop them first (their attempts end interrupted),
        SIGKILL what is left in `kill_in` seconds whatever the tasks' stop_timeout, and claim
        nothing until `unfence()` (daemon/cluster.py's JobFence decides when)."""
        if self.fenced is None:
            log.warning("jobs: %s: stopping the %d running job(s), claiming none", reason, len(self.running))
            self._fences += 1
        self.fenced = reason
        for run in list(self.running.values()):
            run.stop(Outcome.INTERRUPTED, reason)
        if self._fence_kill is None:
            self._fence_kill = asyncio.get_running_loop().call_later(kill_in, self._hurry)

    def _hurry(self) -> None:
        self._fence_kill = None
        for run in list(self.running.values()):
            run.hurry()

    def unfence(self) -> None:
        """The heartbeat is answered again: claim and run jobs again."""
        if self.fenced is None:
            return
        log.info("jobs: the heartbeat is answered again: running jobs again")
        self.fenced = None
        if self._fence_kill is not None:
            self._fence_kill.cancel()
            self._fence_kill = None
        self._wake.set()

    def reconfigure(self, config: Config) -> None:
        """Tasks and queues from a reloaded config. Running jobs finish as they began; a new
        queue is read at once; a removed queue's jobs stay queued until it comes back."""
        self.config = config
        self.pool.config = config
        self.pool.max_jobs = config.daemon.worker_max_jobs
        self.base_environment = inherited(self._environ, config)  # a webhook's `env:` may be new
        self.pool.use_environment(self.base_environment)
        self.ready = {queue: self.ready.get(queue) or Ready() for queue in config.queues}
        self._revoke(TakeBack())  # sent under the old tasks and concurrency
        self._wake.set()

    def queued(self, job: Job) -> None:
        """A job this daemon has just queued in the store (enqueued, retried, fired by a
        schedule, or queued again after a failed attempt): run it when it is due."""
        if job.state is not JobState.QUEUED or job.queue not in self.ready:
            return
        now = self.clock()
        if job.run_at > now:
            self._due_later(job.queue, job.run_at)
            self._wake.set()
            return
        ready = self.ready[job.queue]
        ready.add(job)
        if self._group is None:  # run() has not begun: it fills every queue first thing
            self._wake.set()
        else:  # started at once if there is room (a round through run()'s loop is a wake-up later)
            self._fill_queue(job.queue, ready, now)

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
        self._stop_cancelled(job_id)

    def _due_later(self, queue: str, run_at: float) -> None:
        """A job of `queue` is due at `run_at`: look again then, if not sooner."""
        self._later[queue] = core.earliest(self._later.get(queue), run_at)

    def _prewarm(self) -> None:
        """Start a worker for every slot a task could use, so the first jobs do not wait for an
        interpreter to start (each profile: the queues' summed concurrency)."""
        slots: dict[Profile, set[str]] = {}
        for task in self.config.tasks.values():
            slots.setdefault(profile_of(task), set()).add(task.queue)
        for profile, queues in slots.items():
            count = sum(self.config.queues[q].concurrency for q in queues if q in self.config.queues)
            self.pool.prewarm(profile, count)

    # claiming ------------------------------------------------------------------------------

    def _open(self, queue: str) -> bool:
        return queue not in self.paused and not self._stop.is_set() and self.fenced is None

    def _room(self, queue: str) -> int:
        config = self.config.queues.get(queue)
        concurrency = config.concurrency if config is not None else 1
        return core.room(concurrency, self.running_per_queue[queue], self._open(queue))

    def _fill(self) -> float | None:
        """Start what fits, ask the store for more where needed; returns when to look again
        for a delayed job (None: none known)."""
        now = self.clock()
        if core.poll_due(time.monotonic(), self._polled):  # what no one told us about
            self._polled = time.monotonic()
            for ready in self.ready.values():
                ready.stale()
        next_due = None
        for queue, ready in self.ready.items():
            later = self._fill_queue(queue, ready, now)
            if later is not None and (next_due is None or later < next_due):
                next_due = later
        return next_due

    def _fill_queue(self, queue: str, ready: Ready, now: float) -> float | None:
        """`_fill` for one queue; returns when its earliest delayed job is due."""
        later = self._later.get(queue)
        if later is not None and core.due_now(later, now):  # a delayed job is due: it is in the store
            del self._later[queue]
            ready.stale()
        config = self.config.queues.get(queue)
        is_open = self._open(queue)
        held = len(ready)
        take, full = core.fill(config.concurrency if config is not None else 1,
                               self.running_per_queue[queue], is_open, held)  # fmt: skip
        if self.shared is not None:
            if take:
                self._claim(self.shared, queue, ready, take, now)
                held = len(ready)
        else:
            for _ in range(take):
                self._begin(ready.take(), now)
            if take:
                held = len(ready)
            if full and held and queue in self._lanes:
                self._prefetch(queue, ready, now)
                held = len(ready)
        if core.should_read(held, ready.complete, ready.reading, is_open):  # (read ahead)
            ready.begin_read()
            assert self._group is not None
            self._group.create_task(self._read(queue, ready))
        return self._later.get(queue)

    async def _read(self, queue: str, ready: Ready) -> None:
        jobs = None
        try:
            jobs, later = await self.store.due(queue, READ, self.clock())
        except Exception as e:
            log.error("jobs: cannot read queue %s: %s", queue, e)
            later = core.retry_at(self.clock())
        finally:
            ready.end_read(jobs, READ, self._held)
        if later is not None:
            self._due_later(queue, later)
        self._wake.set()

    async def _sleep(self, due: float | None) -> None:
        delay = core.sleep_for(now=time.monotonic(), polled=self._polled, due=due, wall=self.clock())
        if delay <= 0 or self._stop.is_set():
            return
        await wait_event(self._wake, delay)

    # running -------------------------------------------------------------------------------

    def _held(self, job_id: int) -> bool:
        """Held here though the store may still say queued: sent ahead, or just begun from there."""
        return job_id in self.prefetched or job_id in self.running

    def _settle(self) -> None:
        if not self.running and not self._claiming:
            self._idle.set()

    def _begin(self, queued: Job, now: float, sent: _Prefetch | None = None) -> None:
        """Start `queued` (or record that its worker began it: `sent` ahead). One sent ahead
        and cancelled whose worker had begun it before the revoke arrived is recorded as the
        attempt it is, and stopped like any running job that is cancelled."""
        job = started(queued, now, self.node)
        begun_cancelled = sent is not None and sent.cancelled
        recorded = self.store.start(job, begun=begun_cancelled)  # while the job starts
        self.running_per_queue[job.queue] += 1
        self._idle.clear()
        self._launch(job, recorded, sent)
        if begun_cancelled:
            self.running[job.id].stop(Outcome.CANCELLED, "cancelled")

    def _claim(self, shared: SharedStore, queue: str, ready: Ready, count: int, now: float) -> None:
        """Fill `count` free slots of `queue` with the jobs one claim gets (`shared` store)."""
        for _ in range(count):
            ready.take()  # a sign of due jobs: the claim picks which, skipping other nodes' picks
        self.running_per_queue[queue] += count
        self._claiming += count
        self._idle.clear()
        assert self._group is not None
        claim: Awaitable[list[Job]]
        if self._carry is not None:  # an end on its way: it goes with this claim
            job, end = self._carry
            self._carry = None
            self._carried = shared.finish_and_claim(job, end, queue, count, now, self.node)
            claim = _part(self._carried, 1)
        else:
            claim = shared.claim(queue, count, now, self.node)
        self._group.create_task(self._claimed(claim, queue, count, self._fences))

    async def _claimed(self, claim: Awaitable[list[Job]], queue: str, count: int, fences: int) -> None:
        """`fences`: how many times this node had been fenced when the claim was sent."""
        jobs: list[Job] = []
        try:
            jobs = await claim
        except Exception as e:  # the fallback poll, or the next wake-up, claims again
            log.error("jobs: cannot claim jobs of queue %s: %s", queue, e)
        finally:
            meanwhile = None if self._fences == fences else FENCED_MEANWHILE
            answer = core.claimed(count, jobs, self._cancelled_unseen, meanwhile)
            self.running_per_queue[queue] -= answer.give_back
            self._claiming -= count
        if jobs and answer.interrupted is not None:
            log.warning("jobs: %d job(s) %s: not run here", len(jobs), answer.interrupted)
        for job in jobs:
            recorded: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
            recorded.set_result(job)
            self._launch(job, recorded, None, answer.interrupted)
            if job.id in answer.stop:
                self._cancelled_unseen.discard(job.id)
                self.running[job.id].stop(Outcome.CANCELLED, "cancelled")
        if answer.stale and queue in self.ready:  # others took some: what is left, the store knows
            self.ready[queue].stale()
        if not self._claiming:  # a claim after the cancel could not take the job
            self._cancelled_unseen.clear()
        self._settle()
        self._wake.set()

    def _stop_cancelled(self, job_id: int) -> None:
        """A cancel of a job running on this node, recorded in the store: stop it (its end is
        recorded as cancelled); if a claim of it has not answered yet, once it has."""
        run = self.running.get(job_id)
        if run is not None:
            run.stop(Outcome.CANCELLED, "cancelled")
        elif self._claiming:
            self._cancelled_unseen.add(job_id)

    def _launch(
        self,
        job: Job,
        recorded: asyncio.Future[Job | None],
        sent: _Prefetch | None,
        fenced: str | None = None,
    ) -> None:
        """Run the attempt `_begin` recorded, or a claim answered: unless this node is fenced, or
        was while the claim was out (`fenced`: dispatch_core.claimed), which it then ends
        interrupted without starting it."""
        assert self._group is not None
        task = sent.task if sent is not None else self.config.tasks.get(job.task)
        output = output_path(self.log_dir, job.id)
        fenced = fenced or self.fenced
        run: AttemptRun
        if fenced is not None:
            run = _NotRun(fenced, Outcome.INTERRUPTED)
        elif task is None:
            run = _NotRun(f"task {job.task!r} is not in the config ({self.config.path})")
        else:
            run = self._on_worker(job, task, output, sent)
        self.running[job.id] = run
        self._busy.set()
        recorded.add_done_callback(lambda f: self._started(f, run))
        if self._interrupting:
            run.stop(Outcome.INTERRUPTED, INTERRUPTED)
        if isinstance(run, WorkerRun):  # ended by a callback on the worker's answer, as a rule
            run.watch(lambda result: self._worker_ended(job, task, run, result))
        else:
            self._group.create_task(self._attempt(job, task, run))

    def _worker_ended(
        self, job: Job, task: TaskConfig | None, run: WorkerRun, result: AttemptResult | None
    ) -> None:
        if result is not None:
            self._ended(job, task, run, result)
        else:  # its worker died: learning why takes waiting for the exit
            assert self._group is not None
            self._group.create_task(self._attempt(job, task, run))

    def _on_worker(self, job: Job, task: TaskConfig, output: str, sent: _Prefetch | None) -> AttemptRun:
        """A job's attempt: on the worker it was sent to ahead, or on a free one now."""
        if sent is not None:
            worker, answer = sent.worker, sent.answer
        else:
            try:
                request = self._request(job, task, output)
            except (ParamError, EnvFileError) as e:  # the config changed since the job was accepted
                return _NotRun(str(e))
            try:
                worker = self.pool.acquire(profile_of(task))
            except Exception as e:
                return _NotRun(
                    f"cannot start a worker: {describe_spawn_error(e, [sys.executable], task.directory)}"
                )
            answer = self.pool.send(worker, request)
        run = WorkerRun(
            job, task, pool=self.pool, worker=worker, answer=answer, output=output,
            state_dir=self.config.daemon.state_dir,
        )  # fmt: skip
        if job.attempt > 1 or job.error is not None:  # (a rerun) its file holds earlier attempts:
            # max_output counts from where this one begins
            with contextlib.suppress(FileNotFoundError):
                run.output_start = os.stat(output).st_size
        self._lanes.setdefault(job.queue, set()).add(run)
        ready = self.ready.get(job.queue)
        if ready is not None and len(ready) and self._room(job.queue) == 0 and self.shared is None:
            self._prefetch(job.queue, ready, job.started_at or self.clock())
        return run

    def _request(self, job: Job, task: TaskConfig, output: str) -> Call | Command:
        return attempt_request(
            job, task, output=output, rerun=_is_rerun(job), state_dir=self.config.daemon.state_dir
        )

    def _prefetch(self, queue: str, ready: Ready, now: float) -> None:
        """The queue is full and has more due: send its running jobs' workers the next jobs, one
        to each in turn, up to `ahead_for` each, so each begins the next as soon as it answers (see
        the module's docstring)."""
        lanes = self._lanes[queue]
        runs: list[WorkerRun] = []
        capacities: list[int] = []
        max_jobs = self.pool.max_jobs
        for run in list(lanes):
            worker = run.worker
            alive = not worker.exited.done()
            capacity = core.lane_capacity(run.stopped is not None, run.answer.done(), alive,
                                          worker.in_flight, worker.took, worker.jobs, max_jobs)  # fmt: skip
            if capacity:
                runs.append(run)
                capacities.append(capacity)
            else:
                lanes.discard(run)  # (the run its worker begins next comes back here)
        if not capacities:
            return
        for lane in core.deal(capacities, len(ready)):
            worker = runs[lane].worker
            queued = ready.first()
            task = self.config.tasks.get(queued.task)
            if task is None or profile_of(task) != worker.profile:
                return  # the next job needs a slot of its own: it waits for one
            output = output_path(self.log_dir, queued.id)
            try:
                request = self._request(started(queued, now, self.node), task, output)
            except (ParamError, EnvFileError):
                return  # (it fails in a slot of its own, saying why)
            ready.take()
            answer = self.pool.send(worker, request)
            sent = _Prefetch(queued, task, worker, answer, now)
            self.prefetched[queued.id] = sent
            self._next_on.setdefault(worker, []).append(sent)

    def _revoke(self, which: TakeBack) -> None:
        """Take back the jobs sent ahead that `which` names (see the module's docstring)."""
        for sent in self.prefetched.values():
            if which.takes(sent.job.queue, sent.job.id):
                sent.worker.revoke(sent.job.id)

    def _successor(self, run: WorkerRun, now: float) -> None:
        """`run` has ended: the first job sent ahead to its worker that it did not take back in
        time has begun, and takes the slot; the ones it took back go back to their queue
        (unless cancelled meanwhile), the rest stay sent ahead. A worker that answered and has
        begun nothing else is free; one that died began none of them."""
        self._lanes.get(run.job.queue, set()).discard(run)
        sent = self._next_on.pop(run.worker, None) or []
        then = core.successor(_answered(run.answer), sent)
        back, sent = sent[: then.back], sent[then.back :]
        for gone in back:
            del self.prefetched[gone.job.id]
        if then.begins:
            begun = sent.pop(0)
            del self.prefetched[begun.job.id]
            if sent:
                self._next_on[run.worker] = sent
            self._begin(begun.job, max(now, begun.sent_at), begun)
        if then.release:
            self.pool.release(run.worker)  # (first: a job sent back may go to it again)
        for gone in back:
            if not gone.cancelled:
                self.queued(gone.job)
            elif gone.job.queue in self.ready:  # in case the cancel did not reach the store
                self.ready[gone.job.queue].stale()

    def _started(self, answer: asyncio.Future[Job | None], run: AttemptRun) -> None:
        """The store's answer to a start: the job running, as recorded; or the attempt stops."""
        if answer.cancelled():
            return
        error = answer.exception()
        job = answer.result() if error is None else None
        refused = core.start_refused(job, error)
        if refused is not None:
            if error is not None:
                log.error("jobs: the store could not record a start: %s", error)
            run.stop(*refused)
        else:
            self.publish({"type": "job", "job": job})

    async def _attempt(self, job: Job, task: TaskConfig | None, run: AttemptRun) -> None:
        try:
            result = await run.run()
        except Exception as e:  # a bug, or the disk: the attempt failed, the daemon goes on
            log.exception("job %d: attempt failed to run", job.id)
            result = AttemptResult(Outcome.FAILED, error=f"stoker could not run it: {e}")
        self._ended(job, task, run, result)

    def _ended(self, job: Job, task: TaskConfig | None, run: AttemptRun, result: AttemptResult) -> None:
        """The attempt is over: free its slot and record its end."""
        wall, now = time.time(), self.clock()
        if result.ended_at is not None and now != wall:  # the worker's wall clock, on the store's scale
            result = msgspec.structs.replace(result, ended_at=result.ended_at + now - wall)
        backoff = (task.backoff.min, task.backoff.max) if task is not None else None
        end = core.attempt_end(job, result, now=now, jitter=random.random(), backoff=backoff)
        _log_end(job, end)
        # Its process is gone, so its slot is free now: the next job starts at once (sharing a
        # transaction with this finish), here rather than on a round through the loop in run().
        self.running_per_queue[job.queue] -= 1
        if isinstance(run, WorkerRun):
            self._successor(run, end.finished_at)  # the job its worker has begun takes the slot
        ready = self.ready.get(job.queue)
        if ready is not None:
            if self.shared is not None:  # the claim of the slot it frees may carry the end
                self._carry, self._carried = (job, end), None
            self._fill_queue(job.queue, ready, now)  # (what it finds due later, run() knows of)
        carried, self._carry, self._carried = self._carried, None, None
        try:
            recorded = self.store.finish(job, end) if carried is None else _part(carried, 0)
        except Exception as e:
            self._recorded(job, end, None, e)
        else:
            recorded.add_done_callback(lambda f: self._recorded(job, end, f, None))

    def _recorded(
        self,
        job: Job,
        end: AttemptEnd,
        answer: asyncio.Future[Job | None] | None,
        error: BaseException | None,
    ) -> None:
        """The store's answer to the end of an attempt (`error`: it could not be asked)."""
        finished = None
        if answer is not None and not answer.cancelled():
            error = answer.exception()
            if error is None:
                finished = answer.result()
        del self.running[job.id]
        self._settle()
        if error is not None:  # it stays "running" in the store; the next start queues it again
            log.error("job %d: could not record the end of attempt %d", job.id, job.attempt, exc_info=error)
        if finished is not None:
            ended = {
                "outcome": str(end.outcome),
                "seconds": max(0.0, end.finished_at - (job.started_at or end.finished_at)),
            }
            self.publish({"type": "job", "job": finished, "attempt_ended": ended})
            self.queued(finished)  # another attempt later

    # requests ------------------------------------------------------------------------------

    def task(self, name: str, *, schedule: str | None = None) -> TaskConfig:
        """The task `name`; an inline schedule command's only for its own `schedule`."""
        task = self.config.tasks.get(name)
        # (only such names can be one: the hot path of a big batch asks nothing more)
        owner = internal_tasks(self.config).get(name) if name.startswith(SCHEDULE_TASK_PREFIX) else None
        if owner is not None and owner != schedule:
            raise UnknownTask(
                f"task {name!r} is the inline command of schedule {owner!r}, run on its slots: to run"
                f" it now, use `stoker schedule run {owner}` (POST /api/v1/schedules/{owner}/run)"
            )
        if task is None:
            internal = internal_tasks(self.config)
            known = ", ".join(t for t in self.config.tasks if t not in internal) or "none"
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
        task = self.task(task_name, schedule=schedule)
        return NewJob(
            task=task.name,
            queue=task.queue,
            params=task.accept_params(params),
            max_attempts=task.max_attempts,
            run_at=now if run_at is None else run_at,
            priority=priority,
            key=key,
            schedule=schedule,
        )

    async def enqueue(self, jobs: list[NewJob], now: float) -> list[tuple[Job, bool]]:
        """Store `jobs`: on disk before the answer unless every one of them goes to a queue
        with durability = "relaxed"."""
        stored = await self.store.enqueue(jobs, now, durable=not all(map(self.relaxed, jobs)))
        for job, created in stored:
            if created:
                self.publish({"type": "job", "job": job})
                self.queued(job)
        return stored

    def relaxed(self, job: NewJob) -> bool:
        queue = self.config.queues.get(job.queue)
        return queue is not None and not queue.durable

    async def cancel(self, job_id: int) -> Job:
        """Cancel a queued job, or stop a running one (its end is recorded as cancelled)."""
        for ready in self.ready.values():
            ready.drop(job_id)  # not to be started while the store cancels it
        sent = self.prefetched.get(job_id)
        if sent is not None:
            sent.cancelled = True
            sent.worker.revoke(job_id)
        job = await self.store.cancel(job_id, self.clock())
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if job.state in (JobState.SUCCEEDED, JobState.FAILED):
            raise JobConflict(
                f"job {job_id} already {job.state}: only queued or running jobs can be cancelled"
            )
        if job.state is JobState.RUNNING:
            self._stop_cancelled(job_id)
        else:
            self.publish({"type": "job", "job": job})
        return job

    async def retry(self, job_id: int) -> Job:
        job = await self.store.retry(job_id, self.clock())
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
            self._revoke(TakeBack(queue=queue))
        else:
            self.paused.discard(queue)
        self.publish({"type": "queue", "queue": queue, "paused": paused})
        self._wake.set()

    # housekeeping --------------------------------------------------------------------------

    async def _prune_forever(self) -> None:
        keep = self.config.daemon.keep_jobs
        while not self._stop.is_set():
            try:
                await self.prune(self.clock() - keep)
            except Exception:
                log.exception("jobs: pruning failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), PRUNE_EVERY)

    async def _cap_forever(self) -> None:
        """Keep running jobs' output files within their task's max_output (see
        stoker.jobs.output.OutputCap): a look at each every CAP_EVERY seconds, only while jobs
        run (an idle daemon stays idle)."""
        while not self._stop.is_set():
            if not self.running:
                self._busy.clear()
                await self._busy.wait()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), CAP_EVERY)
            for run in list(self.running.values()):
                if isinstance(run, WorkerRun) and not run.answer.done():
                    try:
                        run.output_cap().check()
                    except OSError as e:
                        log.warning("job %d: cannot keep its output within max_output: %s", run.job.id, e)

    async def prune(self, finished_before: float) -> int:
        """Delete finished jobs older than that, in batches, with their output files; and the
        schedules' slot records as old (each schedule's latest stays: see Store.prune_slots)."""
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
        slots = 0
        while (gone := await self.store.prune_slots(finished_before, PRUNE_BATCH)) > 0:
            slots += gone
            if gone < PRUNE_BATCH:
                break
        if slots:
            log.info("schedules: pruned %d slot record(s)", slots)
        return total


class _NotRun:
    """An attempt that does not run at all: it cannot (its task left the config: failed), or
    may not (claimed while, or before, its node was fenced: interrupted, to run again)."""

    def __init__(self, reason: str, outcome: Outcome = Outcome.FAILED) -> None:
        self.reason, self.outcome = reason, outcome

    async def run(self) -> AttemptResult:
        return AttemptResult(self.outcome, error=self.reason)

    def stop(self, outcome: Outcome, reason: str) -> None:
        if outcome is Outcome.CANCELLED:  # a cancel holds: it is not to run again either
            self.outcome, self.reason = outcome, reason

    def abandon(self) -> None:
        pass

    def hurry(self) -> None:
        pass


def _part(both: asyncio.Future[tuple[Any, Any]], index: int) -> asyncio.Future[Any]:
    """A future of `both`'s answer's `index`th part (`finish_and_claim`'s end or claim)."""
    part: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def copy(answer: asyncio.Future[tuple[Any, Any]]) -> None:
        if part.done():
            return
        if answer.cancelled():
            part.cancel()
        elif (error := answer.exception()) is not None:
            part.set_exception(error)
        else:
            part.set_result(answer.result()[index])

    both.add_done_callback(copy)
    return part


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
