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
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Mapping

import msgspec

from stoker.config import TaskConfig
from stoker.jobs.attempt import AttemptResult, GroupStop
from stoker.jobs.output import close_output, open_output
from stoker.jobs.params import ParamError, fill
from stoker.jobs.rules import Outcome
from stoker.store import Job
from stoker.supervise.reap import describe_exit, kill_group, watch_exit
from stoker.supervise.spawn import SUPERVISOR_ENV, describe_spawn_error, spawn


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
            child = spawn(
                argv,
                directory=self.task.directory,
                environment=env,
                user=self.task.user,
                group=self.task.group,
                umask=self.task.umask,
                output=fd,
                tie_to_daemon=False,
            )
        except (OSError, KeyError, ValueError, subprocess.SubprocessError) as e:
            return AttemptResult(Outcome.FAILED, error=describe_spawn_error(e, argv, self.task.directory))
        self.pid = child.pid
        exited: asyncio.Future[int] = loop.create_future()

        def on_exit(_pid: int, status: int) -> None:
            if not exited.done():
                exited.set_result(status)

        watch_exit(loop, child.pid, on_exit)
        self.arm_timeout()
        try:
            status = await exited
        finally:
            self.disarm()
            if not exited.done():  # we are being cancelled: the job must not outlive us
                kill_group(child.pid, signal.SIGKILL)
        exit_code, _, how = describe_exit(status)
        if self.stopped is not None:
            return self.stopped_result(exit_code=exit_code)
        if exit_code == 0:
            return AttemptResult(Outcome.SUCCEEDED, exit_code=0)
        return AttemptResult(Outcome.FAILED, exit_code=exit_code, error=how)
