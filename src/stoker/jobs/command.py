"""Running a command task's attempt: its own process group, output straight to the job's file.

Same process rules as programs (cwd, environment, user/group, umask, a new process group, tied
to the daemon's life, with one difference below); the exit is learned through the pidfd.
Stopping (cancel, timeout,
shutdown) sends SIGTERM to the whole group and SIGKILL after the task's stop_timeout; when the
leader exits, anything left in its group is killed with it.

Unlike a program, a job's process gets no death signal: setting one costs a second exec
(setpriv), which doubles the cost of a short job, and a job does not need it. If the daemon is
killed, a running job finishes on its own; the next daemon kills any such leftover (found by
its STOKER_SUPERVISOR marker) before it queues the job again, so a job never runs twice at once.

Without the death signal, spawn() comes down to one Popen call, which `_start` makes directly
with what a short job should not pay for each time. stdin is a /dev/null kept open (Popen's
DEVNULL opens and closes one per call). The program is looked up on the PATH here, the way exec
would, and the place trusted for a second: given a bare name, Popen builds the list of
candidates in Python (os.get_exec_path sets up a warnings filter on every call) and its child
tries execve in each directory until one works, while the daemon waits, holding the interpreter
lock (vfork), which stalls the store thread too. A program gone from its place within that
second is looked up again at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

import msgspec

from stoker.config import TaskConfig
from stoker.jobs.attempt import AttemptResult, GroupStop
from stoker.jobs.output import close_output, open_output
from stoker.jobs.params import ParamError, fill
from stoker.jobs.rules import Outcome
from stoker.store import Job
from stoker.supervise.reap import describe_exit, kill_group, watch_exit
from stoker.supervise.spawn import SUPERVISOR_ENV, describe_spawn_error

FOUND_FOR = 1.0  # seconds a program's place on the PATH is trusted before it is looked up again
_found: dict[tuple[str, str, str], tuple[str, float]] = {}  # (program, PATH, directory) -> (file, when)
_devnull: int | None = None  # the jobs' stdin, opened once for the daemon's life


def _start(argv: Sequence[str], task: TaskConfig, env: dict[str, str], output: int) -> int:
    """spawn(tie_to_daemon=False) for a job's attempt (see the module's docstring): its own
    process group, output to `output`, as the task's user; returns its pid."""
    global _devnull
    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    key = (argv[0], env.get("PATH", os.defpath), task.directory)
    # (as another user, exec's search may see other files than ours: it is left to Popen's child)
    executable = _executable(*key) if task.user is None else None
    try:
        return _popen(argv, executable, task, env, output)
    except FileNotFoundError:
        if executable is None or _found.pop(key, None) is None:
            raise
        return _popen(argv, _executable(*key), task, env, output)  # it moved: look again


def _executable(program: str, path: str, directory: str) -> str | None:
    """The file exec would run for `program` given `path` (relative entries from `directory`):
    the first executable file on it; None for a name with a slash, or if there is none (Popen
    then searches, and reports what it finds missing)."""
    if "/" in program:
        return None
    now = time.monotonic()
    found = _found.get((program, path, directory))
    if found is not None and now - found[1] < FOUND_FOR:
        return found[0]
    for entry in path.split(os.pathsep):
        candidate = os.path.join(entry, program)  # as Popen would name it (a script sees it as $0)
        in_place = os.path.join(directory, candidate)  # (the child runs it from there)
        if os.path.isfile(in_place) and os.access(in_place, os.X_OK):
            _found[(program, path, directory)] = (candidate, now)
            return candidate
    return None


def _popen(
    argv: Sequence[str], executable: str | None, task: TaskConfig, env: dict[str, str], output: int
) -> int:
    popen = subprocess.Popen(
        argv,
        executable=executable,
        cwd=task.directory,
        env=env,
        stdin=_devnull,
        stdout=output,
        stderr=output,
        process_group=0,
        user=task.user,
        group=task.group,
        extra_groups=[] if (task.group is not None and os.geteuid() == 0) else None,
        umask=-1 if task.umask is None else task.umask,
        close_fds=True,
    )
    popen.returncode = 0  # we reap it ourselves (pidfd): Popen must never wait on it
    return popen.pid


def job_environment(job: Job, task: TaskConfig, base: Mapping[str, str], state_dir: str) -> dict[str, str]:
    env = dict(base)
    env.update(task.environment)
    env["STOKER_TASK"] = task.name
    env["STOKER_JOB_ID"] = str(job.id)
    env["STOKER_JOB_ATTEMPT"] = str(job.attempt)
    env["STOKER_JOB_PARAMS"] = msgspec.json.encode(job.params).decode()
    env[SUPERVISOR_ENV] = state_dir
    return env


class CommandRun(GroupStop):
    def __init__(
        self,
        job: Job,
        task: TaskConfig,
        *,
        output: str,
        rerun: bool,
        state_dir: str,
        base_environment: Mapping[str, str],
    ) -> None:
        assert task.command is not None
        super().__init__(task)
        self.job = job
        self.output = output
        self.rerun = rerun
        self.state_dir = state_dir
        self.base_environment = base_environment

    async def run(self) -> AttemptResult:
        assert self.task.command is not None
        loop = asyncio.get_running_loop()
        try:
            argv = fill(self.task.command, self.job.params)
        except ParamError as e:  # the config changed since the job was accepted
            return AttemptResult(Outcome.FAILED, error=str(e))
        if self.stopped is not None:
            return self.stopped_result()
        env = job_environment(self.job, self.task, self.base_environment, self.state_dir)
        fd, offset = open_output(self.output, self.job.attempt, self.rerun, time.time())
        try:
            result = await self._run(loop, argv, env, fd)
        except BaseException:
            close_output(fd, self.output, offset)
            raise
        return msgspec.structs.replace(result, output=close_output(fd, self.output, offset))

    async def _run(
        self, loop: asyncio.AbstractEventLoop, argv: list[str], env: dict[str, str], fd: int
    ) -> AttemptResult:
        try:
            pid = _start(argv, self.task, env, fd)
        except (OSError, KeyError, ValueError, subprocess.SubprocessError) as e:
            return AttemptResult(Outcome.FAILED, error=describe_spawn_error(e, argv, self.task.directory))
        self.pid = pid
        exited: asyncio.Future[int] = loop.create_future()

        def on_exit(_pid: int, status: int) -> None:
            if not exited.done():
                exited.set_result(status)

        watch_exit(loop, pid, on_exit)
        self.arm_timeout()
        try:
            status = await exited
        finally:
            self.disarm()
            if not exited.done():  # we are being cancelled: the job must not outlive us
                kill_group(pid, signal.SIGKILL)
        exit_code, _, how = describe_exit(status)
        if self.stopped is not None:
            return self.stopped_result(exit_code=exit_code)
        if exit_code == 0:
            return AttemptResult(Outcome.SUCCEEDED, exit_code=0)
        return AttemptResult(Outcome.FAILED, exit_code=exit_code, error=how)
