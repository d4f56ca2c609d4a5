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
with what a short job should not pay for each time (or, for a job of the daemon's own user,
glibc's posix_spawn: see `_PosixSpawn`). stdin is a /dev/null kept open (Popen's
DEVNULL opens and closes one per call). The program is looked up on the PATH here, the way exec
would, and the place trusted for a second: given a bare name, Popen builds the list of
candidates in Python (os.get_exec_path sets up a warnings filter on every call) and its child
tries execve in each directory until one works, while the daemon waits, holding the interpreter
lock (vfork), which stalls the store thread too. A program gone from its place within that
second is looked up again at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

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
    if executable is not None and task.user is None and task.group is None and task.umask is None:
        assert _devnull is not None
        pid = _posix_spawn.spawn(executable, argv, env, task.directory, _devnull, output)
        if pid is not None:
            return pid
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


class _PosixSpawn:
    """glibc's posix_spawn through ctypes, for a job that runs as the daemon's own user: what
    Popen does for it (own process group, directory, stdin/stdout/stderr, other fds closed,
    SIGPIPE and SIGXFSZ back to their defaults) for about two thirds of Popen's CPU in the
    daemon, and ctypes lets go of the interpreter lock while the child is cloned and execs, so
    the store thread runs meanwhile (Popen holds it through vfork and exec). Python's own
    os.posix_spawn has no working directory before 3.13. Where the C library lacks a piece
    (addchdir_np: glibc 2.29, addclosefrom_np: 2.34), or a call fails in any way, `spawn`
    answers None and Popen does it instead, with its exact errors."""

    SETPGROUP, SETSIGDEF = 0x02, 0x04  # glibc's POSIX_SPAWN_* flags

    def __init__(self) -> None:
        self.libc: Any = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._spawn = libc.posix_spawn
            self._init = libc.posix_spawn_file_actions_init
            self._dup2 = libc.posix_spawn_file_actions_adddup2
            self._chdir = libc.posix_spawn_file_actions_addchdir_np
            self._closefrom = libc.posix_spawn_file_actions_addclosefrom_np
            self._destroy = libc.posix_spawn_file_actions_destroy
            # Attributes are the same for every job: made once (generous buffers: glibc's
            # posix_spawnattr_t is 336 bytes, sigset_t 128, posix_spawn_file_actions_t 80).
            self.attr = ctypes.create_string_buffer(1024)
            defaults = ctypes.create_string_buffer(256)
            ok = libc.posix_spawnattr_init(self.attr) == 0 and libc.sigemptyset(defaults) == 0
            ok = ok and all(libc.sigaddset(defaults, sig) == 0 for sig in (signal.SIGPIPE, signal.SIGXFSZ))
            ok = ok and libc.posix_spawnattr_setsigdefault(self.attr, defaults) == 0
            ok = ok and libc.posix_spawnattr_setpgroup(self.attr, 0) == 0
            flags = ctypes.c_short(self.SETPGROUP | self.SETSIGDEF)
            if ok and libc.posix_spawnattr_setflags(self.attr, flags) == 0:
                self.libc = libc
        except (OSError, AttributeError):  # not glibc (or too old): Popen it is
            pass

    def spawn(
        self, path: str, argv: Sequence[str], env: Mapping[str, str], directory: str, stdin: int, output: int
    ) -> int | None:
        if self.libc is None:
            return None
        try:
            args = [os.fsencode(arg) for arg in argv]
            variables = [os.fsencode(f"{name}={value}") for name, value in env.items()]
        except (TypeError, UnicodeError):
            return None
        if any(b"\0" in item for item in args) or any(b"\0" in item for item in variables):
            return None  # (Popen refuses these with its own error)
        if any("=" in name or not name for name in env):
            return None
        c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
        c_env = (ctypes.c_char_p * (len(variables) + 1))(*variables, None)
        actions = ctypes.create_string_buffer(256)
        if self._init(actions) != 0:
            return None
        try:
            if (
                self._dup2(actions, stdin, 0) != 0
                or self._dup2(actions, output, 1) != 0
                or self._dup2(actions, output, 2) != 0
                or self._chdir(actions, os.fsencode(directory)) != 0
                or self._closefrom(actions, 3) != 0
            ):
                return None
            pid = ctypes.c_int()
            error = self._spawn(ctypes.byref(pid), os.fsencode(path), actions, self.attr, c_argv, c_env)
        finally:
            self._destroy(actions)
        return pid.value if error == 0 else None


_posix_spawn = _PosixSpawn()


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

    def abandon(self) -> None:
        pass  # (its task, cancelled, has killed the group already)

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
