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
from collections.abc import Mapping
from typing import Any

import msgspec

from stoker.config import Config, TaskConfig
from stoker.jobs.attempt import AttemptResult, GroupStop
from stoker.jobs.command import job_environment
from stoker.jobs.output import current_output
from stoker.jobs.rules import Outcome
from stoker.store import Job
from stoker.supervise.reap import describe_exit, kill_group, watch_exit
from stoker.supervise.spawn import SUPERVISOR_ENV, describe_spawn_error, spawn

log = logging.getLogger("stoker")

Profile = tuple[str | None, str | None, int | None]  # user, group, umask


def profile_of(task: TaskConfig) -> Profile:
    return (task.user, task.group, task.umask)


class WorkerDied(Exception):
    pass


class Worker:
    """A worker process and the daemon's end of its socket: one length-prefixed JSON answer per
    request. Plain reader and writer callbacks on the socket rather than an asyncio transport
    and protocol: a short job's bookkeeping is mostly this exchange."""

    def __init__(self, pid: int, channel: socket.socket, profile: Profile) -> None:
        self.pid = pid
        self.profile = profile
        self.jobs = 0
        self.loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[int] = self.loop.create_future()
        self._socket = channel
        self._fd = channel.fileno()
        self._incoming = bytearray()
        self._outgoing = bytearray()  # what the socket did not take at once
        self._answer: asyncio.Future[bytes] | None = None
        self._lost = False
        self.loop.add_reader(self._fd, self._readable)

    def on_exit(self, _pid: int, status: int) -> None:
        if not self.exited.done():
            self.exited.set_result(status)

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._lost:
            raise WorkerDied(await self._death())
        self._answer = answer = self.loop.create_future()
        self._write(msgspec.json.encode(request))
        try:
            frame = await answer
        except ConnectionError as e:
            raise WorkerDied(await self._death()) from e
        finally:
            self._answer = None
        self.jobs += 1
        decoded: dict[str, Any] = msgspec.json.decode(frame)
        return decoded

    async def _death(self) -> str:
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
        if len(incoming) < 4:
            return
        size = int.from_bytes(incoming[:4], "big")
        if len(incoming) < 4 + size:
            return
        frame = bytes(incoming[4 : 4 + size])
        del incoming[: 4 + size]
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(frame)

    def _lose(self) -> None:
        """The channel is closed (by the worker, or by us): nothing more is sent or read."""
        if self._lost:
            return
        self._lost = True
        self.loop.remove_reader(self._fd)
        if self._outgoing:
            self.loop.remove_writer(self._fd)
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError("the worker closed its channel"))


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


class CallRun(GroupStop):
    """One attempt of a `call` task, on a worker of the pool."""

    def __init__(
        self, job: Job, task: TaskConfig, *, pool: Pool, output: str, rerun: bool, state_dir: str,
    ) -> None:  # fmt: skip
        assert task.call is not None
        super().__init__(task)
        self.job = job
        self.pool = pool
        self.output = output
        self.rerun = rerun
        self.state_dir = state_dir
        self.worker: Worker | None = None

    async def run(self) -> AttemptResult:
        assert self.task.call is not None
        if self.stopped is not None:
            return self.stopped_result()
        try:
            worker = self.worker = self.pool.acquire(profile_of(self.task))
        except Exception as e:
            reason = describe_spawn_error(e, [sys.executable], self.task.directory)
            return AttemptResult(Outcome.FAILED, error=f"cannot start a worker: {reason}")
        environment = job_environment(self.job, self.task, {}, self.state_dir)
        request = {
            "call": self.task.call,
            "params": self.job.params,
            "output": self.output,
            "attempt": self.job.attempt,
            "rerun": self.rerun,
            "directory": self.task.directory,
            "environment": environment,
        }
        self.pid = worker.pid  # a stop or a timeout now reaches the worker's group
        self.arm_timeout()
        try:
            answer = await worker.call(request)
        except WorkerDied as e:
            self.pool.retire(worker)
            output = current_output(self.output)
            if self.stopped is not None:
                return self.stopped_result(output=output)
            return AttemptResult(Outcome.FAILED, error=str(e), output=output)
        except BaseException:
            self.pool.retire(worker)  # cancelled: the job must not outlive us
            worker.kill(signal.SIGKILL)
            raise
        finally:
            self.disarm()
        self.pool.release(worker)
        output = str(answer.get("output") or "")
        if answer.get("ok"):
            return AttemptResult(
                Outcome.SUCCEEDED, result=answer.get("result"), has_result=True, output=output
            )
        return AttemptResult(Outcome.FAILED, error=str(answer.get("error") or "failed"), output=output)
