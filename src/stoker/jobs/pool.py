"""The warm pool of Python workers that runs `call` tasks, and the attempt that uses it.

Workers are processes (`stoker.jobs.worker`), one job at a time each, started like programs
(own process group, tied to the daemon's life, as the task's user). They are kept per
(user, group, umask), since a process cannot change user twice; the directory and environment
are set per job. A worker that dies or overruns its task's timeout is killed and its job's
attempt fails; a fresh one is started for the next job. After `worker_max_jobs` jobs a worker is
retired, so leaks in task code do not accumulate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from stoker.config import Config, TaskConfig
from stoker.jobs.attempt import AttemptResult, GroupStop
from stoker.jobs.command import job_environment
from stoker.jobs.output import current_output
from stoker.jobs.rules import Outcome
from stoker.store import Job
from stoker.supervise.reap import describe_exit, kill_group, watch_exit
from stoker.supervise.spawn import SUPERVISOR_ENV, spawn

log = logging.getLogger("stoker")

Profile = tuple[str | None, str | None, int | None]  # user, group, umask


def profile_of(task: TaskConfig) -> Profile:
    return (task.user, task.group, task.umask)


class WorkerDied(Exception):
    pass


QUICK = 0.002  # seconds: a worker whose last job took less (by its own clock) is sent more ahead
REVOKED = "revoked"  # the key of the answer to a request taken back before the worker began it


class Worker:
    """A worker process and the daemon's end of its socket. Requests go out at once, in order,
    each with its job's id; each gets one answer (see stoker.jobs.worker for when a revoked one
    is answered `revoked` instead). Plain reader and writer callbacks rather than a transport:
    a short job's bookkeeping is mostly this exchange."""

    def __init__(self, pid: int, channel: socket.socket, profile: Profile) -> None:
        self.pid = pid
        self.profile = profile
        self.jobs = 0  # jobs it has answered
        self.killed_for: int | None = None  # the job a stop killed it for
        self.quick = False  # its last job took next to no time (the dispatcher sends more ahead)
        self.loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[int] = self.loop.create_future()
        self._socket = channel
        self._fd = channel.fileno()
        self._incoming = bytearray()
        self._outgoing = bytearray()  # what the socket did not take at once
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}  # by job id, in the order sent
        self._lost = False
        self.loop.add_reader(self._fd, self._readable)

    @property
    def pending(self) -> list[int]:
        """The jobs sent and not answered yet, in order."""
        return list(self._pending)

    @property
    def in_flight(self) -> int:
        """How many jobs it has been sent and has not answered."""
        return len(self._pending)

    def on_exit(self, _pid: int, status: int) -> None:
        if not self.exited.done():
            self.exited.set_result(status)

    def send(self, job_id: int, request: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Send the request for job `job_id`; the future is its answer (ConnectionError: the
        worker is gone)."""
        answer: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        if self._lost:
            answer.set_exception(ConnectionError("the worker closed its channel"))
            return answer
        self._pending[job_id] = answer
        self._write(msgspec.json.encode({"id": job_id, **request}))
        return answer

    def revoke(self, job_id: int) -> None:
        """Take back a request the worker may not have begun: its answer says which it was."""
        if job_id in self._pending and not self._lost:
            self._write(msgspec.json.encode({"revoke": job_id}))

    async def death(self) -> str:
        """Why the channel closed: the worker's exit, as far as it can be learned."""
        try:
            status = await asyncio.wait_for(asyncio.shield(self.exited), 5)
        except TimeoutError:
            return "the worker closed its channel"
        return f"the worker {describe_exit(status)[2]}"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        kill_group(self.pid, sig)

    def close(self) -> None:
        self._lose()
        self._socket.close()

    def _write(self, data: bytes) -> None:
        frame = len(data).to_bytes(4, "big") + data
        if not self._outgoing:
            try:
                sent = self._socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._lose()
                return
            if sent == len(frame):
                return
            frame = frame[sent:]
            self.loop.add_writer(self._fd, self._writable)
        self._outgoing += frame

    def _writable(self) -> None:
        try:
            sent = self._socket.send(self._outgoing)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._lose()
            return
        del self._outgoing[:sent]
        if not self._outgoing:
            self.loop.remove_writer(self._fd)

    def _readable(self) -> None:
        try:
            data = self._socket.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lose()
            return
        incoming = self._incoming
        incoming += data
        while len(incoming) >= 4:
            size = int.from_bytes(incoming[:4], "big")
            if len(incoming) < 4 + size:
                break
            try:
                answer: dict[str, Any] = msgspec.json.decode(incoming[4 : 4 + size])
            except msgspec.DecodeError as e:  # not our worker's speech: drop it (its jobs fail)
                log.error("pool: worker %d sent an unreadable answer: %s", self.pid, e)
                self._lose()
                self.kill()
                return
            del incoming[: 4 + size]
            future = self._pending.pop(answer.get("id"), None)  # type: ignore[arg-type]
            if future is None:
                continue
            if not answer.get(REVOKED):
                self.jobs += 1
                self.quick = answer.get("took", QUICK) < QUICK
            if not future.done():
                future.set_result(answer)

    def _lose(self) -> None:
        if self._lost:
            return
        self._lost = True
        self.loop.remove_reader(self._fd)
        if self._outgoing:
            self.loop.remove_writer(self._fd)
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the worker closed its channel"))


class Pool:
    def __init__(self, config: Config, base_environment: Mapping[str, str]) -> None:
        self.config = config
        self.base_environment = dict(base_environment)
        self.max_jobs = config.daemon.worker_max_jobs
        self.idle: dict[Profile, list[Worker]] = {}
        self.busy: set[Worker] = set()

    def _spawn(self, profile: Profile) -> Worker:
        ours, theirs = socket.socketpair()
        env = dict(self.base_environment)
        env["STOKER_WORKER_FD"] = str(theirs.fileno())
        env["STOKER_IMPORT_PATH"] = os.pathsep.join([self.config.directory, *_own_path()])
        env[SUPERVISOR_ENV] = self.config.daemon.state_dir
        quiet = os.open(os.devnull, os.O_WRONLY)
        user, group, umask = profile
        try:
            child = spawn(
                [sys.executable, "-m", "stoker.jobs.worker"],
                directory=self.config.directory,
                environment=env,
                user=user,
                group=group,
                umask=umask,
                output=quiet,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
            os.close(quiet)
        ours.setblocking(False)
        worker = Worker(child.pid, ours, profile)
        watch_exit(asyncio.get_running_loop(), child.pid, worker.on_exit)
        return worker

    def acquire(self, profile: Profile) -> Worker:
        idle = self.idle.get(profile, [])
        while idle:
            worker = idle.pop()
            if not worker.exited.done():
                break
            worker.close()
        else:
            worker = self._spawn(profile)
        self.busy.add(worker)
        return worker

    def release(self, worker: Worker) -> None:
        """It answered its job and has no other: back to the idle ones (or replaced)."""
        self.busy.discard(worker)
        if worker.exited.done() or worker.jobs >= self.max_jobs:
            self.retire(worker)
            return
        self.idle.setdefault(worker.profile, []).append(worker)

    def retire(self, worker: Worker) -> None:
        """Close its channel (a healthy worker exits on EOF) and kill what is left of its group."""
        self.busy.discard(worker)
        worker.close()
        worker.kill(signal.SIGKILL if worker.exited.done() else signal.SIGTERM)

    def can_take_another(self, worker: Worker, ahead: int) -> bool:
        """Whether `worker`, running a job, may be sent one more (prefetch): it is alive, has
        fewer than `ahead` sent ahead already, and all of them fit in what it may run before it
        is replaced."""
        sent = worker.in_flight
        return sent <= ahead and worker.jobs + sent + 1 <= self.max_jobs and not worker.exited.done()

    def prewarm(self, profile: Profile, count: int) -> None:
        have = len(self.idle.get(profile, []))
        for _ in range(count - have):
            try:
                self.idle.setdefault(profile, []).append(self._spawn(profile))
            except Exception as e:  # the first job will say it again, in its error
                log.warning("pool: cannot start a worker: %s", e)
                return

    async def close(self) -> None:
        workers = [w for idle in self.idle.values() for w in idle] + list(self.busy)
        self.idle.clear()
        for worker in workers:
            self.retire(worker)
        if workers:
            await asyncio.wait([w.exited for w in workers], timeout=5)
        for worker in workers:
            worker.kill(signal.SIGKILL)


def _own_path() -> list[str]:
    """Where this stoker is imported from, so a worker running as another user finds it too."""
    import stoker

    return [os.path.dirname(os.path.dirname(os.path.abspath(stoker.__file__)))]


def call_request(job: Job, task: TaskConfig, *, output: str, rerun: bool, state_dir: str) -> dict[str, Any]:
    """What a worker needs to run an attempt of `job` (as `started()` made it)."""
    assert task.call is not None
    return {
        "call": task.call,
        "params": job.params,
        "output": output,
        "attempt": job.attempt,
        "rerun": rerun,
        "directory": task.directory,
        "environment": job_environment(job, task, {}, state_dir),
    }


class CallRun(GroupStop):
    """One attempt of a `call` task, whose request has gone to `worker` (`answer` is its answer).
    A worker that answered is released by the dispatcher, which knows whether it has begun a
    next job sent ahead; one that died is retired here."""

    def __init__(
        self, job: Job, task: TaskConfig, *, pool: Pool, worker: Worker,
        answer: asyncio.Future[dict[str, Any]], output: str,
    ) -> None:  # fmt: skip
        super().__init__(task)
        self.job = job
        self.pool = pool
        self.worker = worker
        self.answer = answer
        self.output = output
        self.pid = worker.pid  # a stop or a timeout reaches the worker's group

    def stop(self, outcome: Outcome, reason: str) -> None:
        if self.answer.done():  # it has ended: the worker may be running the next job already
            return
        for job_id in self.worker.pending:  # the next job, if sent ahead, is not to go down with it
            if job_id != self.job.id:
                self.worker.revoke(job_id)
        self.worker.killed_for = self.job.id
        super().stop(outcome, reason)

    def watch(self, ended: Callable[[AttemptResult | None], None]) -> None:
        """Call `ended(result)` once the worker answers, without a task of its own (a short
        job's bookkeeping is mostly this): the result, or None if the worker died first
        (`run()` then says why, which takes waiting for its exit)."""
        self.arm_timeout()
        self.answer.add_done_callback(lambda _: ended(self._answered()))

    def abandon(self) -> None:
        """The daemon is leaving without waiting for its end: the job must not outlive it."""
        if not self.answer.done():
            self.pool.retire(self.worker)
            self.worker.kill(signal.SIGKILL)

    def _answered(self) -> AttemptResult | None:
        answer = self.answer
        if answer.cancelled() or answer.exception() is not None:
            return None
        self.disarm()
        return self._result(answer.result())

    async def run(self) -> AttemptResult:
        worker = self.worker
        self.arm_timeout()
        try:
            answer = await self.answer
        except ConnectionError:
            self.pool.retire(worker)
            output = current_output(self.output)
            if self.stopped is not None:
                return self.stopped_result(output=output)
            if worker.killed_for not in (None, self.job.id):  # stopped for the job before this one
                reason = f"interrupted: its worker was stopped for job {worker.killed_for}"
                return AttemptResult(Outcome.INTERRUPTED, error=reason, output=output)
            return AttemptResult(Outcome.FAILED, error=await worker.death(), output=output)
        except BaseException:
            self.pool.retire(worker)  # cancelled: the job must not outlive us
            worker.kill(signal.SIGKILL)
            raise
        finally:
            self.disarm()
        return self._result(answer)

    @staticmethod
    def _result(answer: dict[str, Any]) -> AttemptResult:
        output = str(answer.get("output") or "")
        if answer.get("ok"):
            return AttemptResult(
                Outcome.SUCCEEDED, result=answer.get("result"), has_result=True, output=output
            )
        return AttemptResult(Outcome.FAILED, error=str(answer.get("error") or "failed"), output=output)
