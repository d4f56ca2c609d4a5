"""The warm pool of workers that runs every job's attempt, and the attempt that uses it.

Workers are processes (`stoker.jobs.worker`), one job at a time each, started like programs
(own process group, tied to the daemon's life, as the task's user, with its groups and
environment: stoker.supervise.identity, stoker.supervise.environment). They are kept per
(user, group, umask, inherit_environment), since a process cannot change user twice and the
commands it spawns inherit its environment; the directory and the task's variables are set
per job. A `call` task runs in the worker's interpreter; a command task runs as the
worker's child, in a process group of its own (stoker.jobs.launch).

Stopping an attempt (cancel, timeout, shutdown): a call's worker is what runs the job, so its
process group gets SIGTERM, SIGKILL after the task's stop_timeout, and a fresh worker takes the
next job. A command's worker is asked to send those signals to the command's group and lives
on; one that does not answer UNRESPONSIVE seconds after the SIGKILL is killed itself. A worker
that dies while a command runs leaves the command without a parent that would stop it: the
daemon kills it (and all it started) by the job's marker in their environment.

After `worker_max_jobs` Python calls a worker is retired, so leaks in task code do not
accumulate (commands run no task code in it, and do not count).

Length: the pool and the attempt share one protocol with the worker (what is sent, what each
answer means, when a worker is retired or killed); split, each half would restate the other's
half of that exchange.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping

import msgspec

from stoker import envfile, names
from stoker.config import Config, TaskConfig
from stoker.jobs import wire
from stoker.jobs.attempt import AttemptResult, GroupStop
from stoker.jobs.output import MARKER_SLACK, OutputCap, current_output
from stoker.jobs.wire import STOP_FRAME, Answer, Call, Command, Done, Revoke
from stoker.jobstates import Outcome
from stoker.store import Job
from stoker.supervise import cgroups
from stoker.supervise.environment import child_base
from stoker.supervise.identity import resolve
from stoker.supervise.procs import kill_job_processes
from stoker.supervise.reach import why_python_unreachable
from stoker.supervise.reap import describe_exit, kill_group, watch_exit
from stoker.supervise.spawn import SUPERVISOR_ENV, describe_spawn_error, spawn

log = logging.getLogger("stoker")

Profile = tuple[str | None, str | None, int | None, bool]  # user, group, umask, inherit_environment


def profile_of(task: TaskConfig) -> Profile:
    return (task.user, task.group, task.umask, task.inherit_environment)


class WorkerDied(Exception):
    pass


UNRESPONSIVE = 5.0  # seconds after a command's SIGKILL before its silent worker is killed too


class Worker:
    """A worker process and the daemon's end of its socket. Requests go out in order, each with
    its job's id; each gets one answer (see stoker.jobs.worker for when a revoked one is
    answered `revoked` instead). What is written to a busy worker in one turn of the event loop
    goes out in one send at its end: a batch of answers tops a worker up with one message, which
    it reads at once, rather than one wake-up per job each way (to an idle one, at once). Plain
    reader and writer callbacks rather than a transport: a short job's bookkeeping is mostly
    this exchange. The messages: stoker.jobs.wire."""

    def __init__(self, pid: int, channel: socket.socket, stops: socket.socket, profile: Profile) -> None:
        self.pid = pid
        self.profile = profile
        self.jobs = 0  # Python calls it has answered (what recycling counts)
        self.replaced = False  # its successor has been started (it has been sent its last call)
        self.generation = 0  # of the pool's base environment it was started with
        self.owner: tuple[int, int] | None = None  # (uid, gid) when not the daemon's: see give_output
        self.groups: tuple[int, ...] = ()  # its supplementary groups, with an owner
        self.killed_for: int | None = None  # the job a stop killed it for
        self.cgroup: str | None = None  # its cgroup, its command's below (None: no cgroups)
        self.took: float | None = None  # seconds its last job took, by its clock (how far ahead
        # the dispatcher sends: stoker.jobs.dispatcher.ahead_for)
        self.loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[int] = self.loop.create_future()
        self._socket = channel
        self._stops = stops  # (stoker.jobs.worker: a channel of its own, so requests wake nobody)
        self._fd = channel.fileno()
        self._incoming = bytearray()
        self._outgoing = bytearray()  # what the socket did not take at once
        self._batch: list[bytes] = []  # frames written in this turn of the loop, sent at its end
        self._pending: dict[int, asyncio.Future[Answer]] = {}  # by job id, in the order sent
        self._calls: set[int] = set()  # which of those are Python calls
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

    @property
    def calls(self) -> int:
        """The Python calls it has answered or been sent: what recycling counts."""
        return self.jobs + len(self._calls)

    def on_exit(self, _pid: int, status: int) -> None:
        if self.cgroup is not None:  # what it or its command left, setsid'd or not, goes with it
            cgroups.kill(self.cgroup)
            _remove_cgroup(self.loop, self.cgroup)
        if not self.exited.done():
            self.exited.set_result(status)

    def send(self, request: Call | Command) -> asyncio.Future[Answer]:
        """Send `request`; the future is its answer (ConnectionError: the worker is gone)."""
        answer: asyncio.Future[Answer] = self.loop.create_future()
        if self._lost:
            answer.set_exception(ConnectionError("the worker closed its channel"))
            return answer
        self._pending[request.id] = answer
        if isinstance(request, Call):
            self._calls.add(request.id)
        self._write(wire.frame(request))
        return answer

    def revoke(self, job_id: int) -> None:
        """Take back a request the worker may not have begun: its answer says which it was."""
        if job_id in self._pending and not self._lost:
            self._write(wire.frame(Revoke(job_id)))

    def signal_job(self, job_id: int, sig: int) -> None:
        """Have the worker send `sig` to the process group of job `job_id`'s command."""
        if job_id in self._pending and not self._lost:
            try:
                self._stops.send(STOP_FRAME.pack(job_id, int(sig)))
            except OSError as e:  # (a worker that reads none is killed: WorkerRun._kill_worker)
                log.warning("pool: cannot ask worker %d to stop job %d: %s", self.pid, job_id, e)

    async def death(self) -> str:
        """Why the channel closed: the worker's exit, as far as it can be learned."""
        try:
            status = await asyncio.wait_for(asyncio.shield(self.exited), 5)
        except TimeoutError:
            return "the worker closed its channel"
        if self.owner is not None and (reason := self.unreachable()) is not None:
            return reason  # (its exit, 126 from setpriv, or a signal, would not say why)
        code, _, how = describe_exit(status)
        return f"the worker {how}" if code is not None else f"the worker was {how}"

    def unreachable(self) -> str | None:
        """Why a worker running as another user could not even start, if that is what it was:
        its user cannot reach the Python that runs it (one under /root, say)."""
        from stoker import about

        assert self.owner is not None
        uid, gid = self.owner
        needed = [os.path.dirname(os.__file__), os.path.dirname(os.path.dirname(about.__file__))]
        return why_python_unreachable(self.profile[0] or f"uid {uid}", uid, (gid, *self.groups),
                                      sys.executable, needed)  # fmt: skip

    def kill(self, sig: int = signal.SIGKILL) -> None:
        kill_group(self.pid, sig)
        if sig == signal.SIGKILL and self.cgroup is not None:
            cgroups.kill(self.cgroup)

    def close(self) -> None:
        self._lose()
        self._socket.close()
        self._stops.close()

    def _write(self, frame: bytes) -> None:
        self._batch.append(frame)
        if len(self._batch) == 1:
            if len(self._pending) <= 1:  # an idle worker waits for this one: no company to wait for
                self._send_batch()
            else:
                self.loop.call_soon(self._send_batch)

    def _send_batch(self) -> None:
        if self._lost or not self._batch:
            self._batch.clear()
            return
        frame = b"".join(self._batch)
        self._batch.clear()
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
        self._incoming += data
        for frame in wire.frames(self._incoming):
            try:
                answer = wire.answer.decode(frame)
            except msgspec.DecodeError as e:  # not our worker's speech: drop it (its jobs fail)
                log.error("pool: worker %d sent an unreadable answer: %s", self.pid, e)
                self._lose()
                self.kill()
                return
            job_id = answer.id
            future = self._pending.pop(job_id, None)
            if future is None:
                continue
            if job_id in self._calls:
                self._calls.discard(job_id)
                if isinstance(answer, Done):
                    self.jobs += 1
            if isinstance(answer, Done):
                self.took = answer.took
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
        self._calls.clear()
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
        self.generation = 0  # of base_environment: a worker started with another one is retired
        self.output_dir = os.path.join(config.daemon.state_dir, names.LOGS, names.JOB_LOGS)
        self._numbers = itertools.count()  # of workers, naming their cgroups

    def use_environment(self, base_environment: Mapping[str, str]) -> None:
        """What workers inherit from now on (a reload may have read a new `env:` secret):
        workers started with something else are replaced, idle ones at once."""
        if dict(base_environment) == self.base_environment:
            return
        self.base_environment = dict(base_environment)
        self.generation += 1
        for worker in [w for idle in self.idle.values() for w in idle]:
            self.retire(worker)
        self.idle.clear()

    def _spawn(self, profile: Profile) -> Worker:
        user, group, umask, inherit = profile
        identity = resolve(user, group)  # (KeyError, CannotDrop: the job's error says which)
        ours, theirs = socket.socketpair()
        our_stops, their_stops = socket.socketpair()
        env = child_base(self.base_environment, inherit=inherit, identity=identity)
        env["STOKER_WORKER_FD"] = str(theirs.fileno())
        env["STOKER_WORKER_STOP_FD"] = str(their_stops.fileno())
        output_dir = os.open(self.output_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        env["STOKER_WORKER_OUTPUT_DIR_FD"] = str(output_dir)
        env["STOKER_IMPORT_PATH"] = os.pathsep.join([*_own_path(), self.config.directory])  # (last)
        env[SUPERVISOR_ENV] = self.config.daemon.state_dir
        if self.config.daemon.store != "sqlite":  # other nodes run the jobs of a dead daemon again:
            # the worker stops its command when the daemon dies, SIGKILLs it by half the node
            # timeout, before the others can take the node for dead (the last heartbeat may
            # be a third of it old already; stoker.jobs.launch).
            env["STOKER_WORKER_ORPHAN_STOP"] = repr(self.config.daemon.node_timeout / 2)
        quiet = os.open(os.devnull, os.O_WRONLY)
        tree = cgroups.current()
        cgroup = None
        if tree is not None:  # (a worker dropped to a user places its command itself)
            owner = None
            if identity.uid is not None:
                owner = (identity.uid, identity.gid if identity.gid is not None else -1)
            try:
                cgroup = tree.cgroup(f"worker-{next(self._numbers)}", owner=owner, job=True)
                env["STOKER_WORKER_CGROUP"] = cgroup
            except OSError as e:  # (cgroup.max.descendants, say): not worth failing the jobs for
                log.warning(
                    "pool: a worker without a cgroup (%s): its jobs contained by process group only", e
                )
        try:
            child = spawn(
                # -P: the folder it starts in is not put first on its import path, and it starts
                # in "/", which only root may write: a module planted in the config's folder
                # cannot shadow the standard library (the folder comes last: worker.main).
                [sys.executable, "-P", "-m", "stoker.jobs.worker"],
                directory="/",
                environment=env,
                identity=identity,
                umask=umask,
                output=quiet,
                pass_fds=(theirs.fileno(), their_stops.fileno(), output_dir),
                cgroup=cgroup,
                # On a shared store the worker outlives a SIGKILLed daemon, to stop its command
                # (a Python call ties the worker to the daemon while it runs: stoker.jobs.worker).
                tie_to_daemon="STOKER_WORKER_ORPHAN_STOP" not in env,
            )
        except BaseException:
            ours.close()
            our_stops.close()
            if cgroup is not None:
                cgroups.remove(cgroup)
            raise
        finally:
            theirs.close()
            their_stops.close()
            os.close(quiet)
            os.close(output_dir)
        ours.setblocking(False)
        our_stops.setblocking(False)
        worker = Worker(child.pid, ours, our_stops, profile)
        worker.cgroup = cgroup
        worker.generation = self.generation
        if identity.uid is not None:
            worker.owner = (identity.uid, identity.gid if identity.gid is not None else os.getegid())
            worker.groups = identity.groups or ()
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

    def send(self, worker: Worker, request: Call | Command) -> asyncio.Future[Answer]:
        """Send `worker` the `request` (its answer: Worker.send). The call that is
        the last it may run has its successor started at once, idle by the time it is needed:
        a fresh worker takes about 85 ms of CPU to start (measured), a stall of the slot a
        hundred times as long as a short job."""
        if worker.owner is not None:
            give_output(request.output, *worker.owner)
        answer = worker.send(request)
        if worker.calls >= self.max_jobs and not worker.replaced:
            worker.replaced = True
            self.prewarm(worker.profile, len(self.idle.get(worker.profile, [])) + 1)
        return answer

    def release(self, worker: Worker) -> None:
        """It answered its job and has no other: back to the idle ones (or replaced)."""
        self.busy.discard(worker)
        if worker.exited.done() or worker.jobs >= self.max_jobs or worker.generation != self.generation:
            self.retire(worker)
            return
        self.idle.setdefault(worker.profile, []).append(worker)

    def retire(self, worker: Worker, *, kill: bool = True) -> None:
        """Close its channel (a healthy worker exits on EOF) and kill what is left of its group
        (`kill=False`: let it leave by itself, stopping the command it runs on the way)."""
        self.busy.discard(worker)
        worker.close()
        if kill:
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


def _remove_cgroup(loop: asyncio.AbstractEventLoop, cgroup: str, tries: int = 50) -> None:
    """rmdir a killed cgroup once its processes have exited (a SIGKILL takes a moment); one
    still busy after `tries` is left to the daemon's exit."""
    if not cgroups.remove(cgroup) and tries > 0:
        loop.call_later(0.05, _remove_cgroup, loop, cgroup, tries - 1)


def give_output(path: str, uid: int, gid: int) -> None:
    """Create the job's output file for a worker running as another user, and make it theirs:
    that worker could not create it in the daemon's folder (stoker.jobs.output)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchown(fd, uid, gid)
        finally:
            os.close(fd)
    except OSError as e:  # (the worker's own open fails next, and the attempt with it)
        log.error("pool: cannot prepare the output file %s for uid %d: %s", path, uid, e)


def remove_if_empty(path: str) -> None:
    """A worker running as another user cannot remove the empty output file of a job that
    printed nothing: the daemon does, so that such a job leaves no file either."""
    try:
        if os.stat(path).st_size == 0:
            os.unlink(path)
    except FileNotFoundError:
        pass


def _own_path() -> list[str]:
    """Where this stoker is imported from, so a worker running as another user finds it too."""
    from stoker import about  # (a module of the package's folder, as stoker/__init__.py is)

    return [os.path.dirname(os.path.dirname(os.path.abspath(about.__file__)))]


def job_environment(job: Job, task: TaskConfig, base: Mapping[str, str], state_dir: str) -> dict[str, str]:
    """EnvFileError when the task's env_file cannot be read (read as each attempt begins)."""
    env = dict(base)
    if task.env_file is not None:
        env.update(envfile.read(task.env_file))
    env.update(task.environment)
    env["STOKER_TASK"] = task.name
    env["STOKER_JOB_ID"] = str(job.id)
    env["STOKER_JOB_ATTEMPT"] = str(job.attempt)
    env["STOKER_JOB_PARAMS"] = msgspec.json.encode(job.params).decode()
    env[SUPERVISOR_ENV] = state_dir
    return env


def attempt_request(
    job: Job, task: TaskConfig, *, output: str, rerun: bool, state_dir: str
) -> Call | Command:
    """What a worker needs to run an attempt of `job` (as `started()` made it): a call, or a
    command (ParamError if the command's parameters no longer fit: the config changed since
    the job was accepted; EnvFileError, a ValueError too, if its env_file cannot be read)."""
    environment = job_environment(job, task, {}, state_dir)
    if task.call is not None:
        return Call(job.id, output, job.attempt, rerun, task.directory, environment, task.call, job.params)
    assert task.command is not None
    # checked again: a reload since the job was accepted may have tightened the rules
    argv = task.argv(task.check_params(job.params))
    return Command(job.id, output, job.attempt, rerun, task.directory, environment, argv)


class WorkerRun(GroupStop):
    """One attempt of a job whose request has gone to `worker` (`answer` is its answer). A
    worker that answered is released by the dispatcher, which knows whether it has begun a
    next job sent ahead; one that died is retired here."""

    def __init__(
        self, job: Job, task: TaskConfig, *, pool: Pool, worker: Worker,
        answer: asyncio.Future[Answer], output: str, state_dir: str,
    ) -> None:  # fmt: skip
        super().__init__(task)
        self.job = job
        self.pool = pool
        self.worker = worker
        self.answer = answer
        self.output = output
        self.state_dir = state_dir
        self.command = task.call is None  # its own process group, under the worker
        self.output_start = 0  # where this attempt's output begins in its file (for max_output)
        self.cap: OutputCap | None = None  # made at the first look at its size
        if not self.command:
            self.pid = worker.pid  # a stop or a timeout reaches the worker's group

    def stop(self, outcome: Outcome, reason: str) -> None:
        if self.answer.done():  # it has ended: the worker may be running the next job already
            return
        if self.command:
            if self.stopped is None:
                self.stopped = (outcome, reason)
                self.worker.signal_job(self.job.id, signal.SIGTERM)
                self._later(self.task.stop_timeout, self._kill)
            return
        for job_id in self.worker.pending:  # the next job, if sent ahead, is not to go down with it
            if job_id != self.job.id:
                self.worker.revoke(job_id)
        self.worker.killed_for = self.job.id
        super().stop(outcome, reason)

    def hurry(self) -> None:
        if self.answer.done() or self.stopped is None:
            return
        if self.command:
            self._kill()
        else:
            super().hurry()

    def _kill(self) -> None:
        self.worker.signal_job(self.job.id, signal.SIGKILL)
        self._later(UNRESPONSIVE, self._kill_worker)

    def _kill_worker(self) -> None:
        log.warning("job %d: its worker (pid %d) did not answer a SIGKILL of the job; killing it",
                    self.job.id, self.worker.pid)  # fmt: skip
        self.worker.killed_for = self.job.id
        self.worker.kill()

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(delay, callback))

    def watch(self, ended: Callable[[AttemptResult | None], None]) -> None:
        """Call `ended(result)` once the worker answers, without a task of its own (a short
        job's bookkeeping is mostly this): the result, or None if the worker died first
        (`run()` then says why, which takes waiting for its exit)."""
        self.arm_timeout()
        self.answer.add_done_callback(lambda _: ended(self._answered()))

    def abandon(self) -> None:
        """The daemon is leaving without waiting for its end: the job must not outlive it."""
        if not self.answer.done():
            if self.command:  # (the worker kills what runs when its channel closes)
                self.worker.signal_job(self.job.id, signal.SIGKILL)
                self.pool.retire(self.worker, kill=False)
                return
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
            if self.command:  # its process group lives on without the worker that would stop it
                await asyncio.to_thread(kill_job_processes, self.state_dir, self.job.id)
            self._finish_cap()
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
            if self.command:
                kill_job_processes(self.state_dir, self.job.id)
            raise
        finally:
            self.disarm()
        return self._result(answer)

    def output_cap(self) -> OutputCap:
        """The task's max_output on this attempt's output file (see stoker.jobs.output)."""
        if self.cap is None:
            self.cap = OutputCap(self.output, self.output_start, self.task.max_output)
        return self.cap

    def _result(self, answer: Answer) -> AttemptResult:
        if not isinstance(answer, Done):  # (the dispatcher begins only what was not taken back)
            return AttemptResult(Outcome.FAILED, error="its worker answered that it never began it")
        output = answer.output
        if not output and self.worker.owner is not None:
            remove_if_empty(self.output)
        ended_at = answer.ended
        if self.command:
            result = self._command_result(answer, output, ended_at)
        elif answer.ok:
            result = AttemptResult(
                Outcome.SUCCEEDED, result=answer.result, has_result=True, output=output, ended_at=ended_at
            )
        else:
            error = answer.error or "failed"
            result = AttemptResult(Outcome.FAILED, error=error, output=output, ended_at=ended_at)
        # Within its cap by far (the usual case): no look at the file. The slack is for the
        # attempt's marker line, which the worker does not count and the cap does.
        if self.cap is None and answer.written + MARKER_SLACK <= self.task.max_output:
            return result
        return self._capped(result)

    def _capped(self, result: AttemptResult) -> AttemptResult:
        """Cut what passed max_output, and take the job's output anew from the cut file."""
        if self._finish_cap():
            return msgspec.structs.replace(result, output=current_output(self.output))
        return result

    def _finish_cap(self) -> bool:
        try:
            return self.output_cap().finish()
        except OSError as e:  # (the attempt's end is recorded all the same)
            log.warning("job %d: cannot keep its output within max_output: %s", self.job.id, e)
            return False

    def _command_result(self, answer: Done, output: str, ended_at: float | None) -> AttemptResult:
        if answer.spawn_error is not None:
            number, text, filename = answer.spawn_error
            error = OSError(number, text, filename) if filename is not None else OSError(number, text)
            reason = describe_spawn_error(error, self.task.command or ("?",), self.task.directory)
            return AttemptResult(Outcome.FAILED, error=reason, ended_at=ended_at)
        status = answer.status
        if status is None and answer.error is not None:  # it could not begin (its output file)
            return AttemptResult(Outcome.FAILED, error=answer.error, ended_at=ended_at)
        # (no status and no error: a stop came before it began, a cancel say: self.stopped)
        exit_code = None if status is None else describe_exit(status)[0]
        if self.stopped is not None:
            return self.stopped_result(exit_code=exit_code, output=output, ended_at=ended_at)
        assert status is not None
        exit_code, _, how = describe_exit(status)
        if exit_code == 0:
            return AttemptResult(Outcome.SUCCEEDED, exit_code=0, output=output, ended_at=ended_at)
        return AttemptResult(Outcome.FAILED, exit_code=exit_code, error=how, output=output, ended_at=ended_at)
