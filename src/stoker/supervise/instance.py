"""One program instance on the event loop: the thin shell around the pure state machine.

The machine decides; this class performs: spawn, signal, timers, and reaping the child through a
pidfd on the event loop (the kernel tells us the moment it exits; nothing polls). The child's
output is read from its pipes as it comes and handed to the log files: the daemon never holds
more than one read's worth, so a child that writes faster than the disk is slowed by its pipe.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from stoker.config import InstanceSpec, ProgramConfig
from stoker.supervise import state as sm
from stoker.supervise.logs import LogFile
from stoker.supervise.reap import describe_exit, watch_exit
from stoker.supervise.spawn import SUPERVISOR_ENV, Child, describe_spawn_error, spawn

log = logging.getLogger("stoker")

READ_SIZE = 65536


def policy_of(program: ProgramConfig) -> sm.Policy:
    return sm.Policy(
        restart=program.restart,
        success_exit_codes=frozenset(program.success_exit_codes),
        start_seconds=program.start_seconds,
        backoff_min=program.backoff.min,
        backoff_max=program.backoff.max,
        max_restarts=program.max_restarts,
        stop_timeout=program.stop_timeout,
    )


def log_path(log_dir: Path, spec: InstanceSpec, stream: str = "out") -> Path:
    """`logs/mailer.0.log` (merged or stdout), `logs/mailer.0.err.log` (separate stderr)."""
    suffix = ".log" if stream == "out" else ".err.log"
    return log_dir / f"{spec.program}.{spec.instance}{suffix}"


class Instance:
    """A supervised process slot: `mailer:0`."""

    def __init__(
        self,
        program: ProgramConfig,
        instance: int,
        *,
        log_dir: Path,
        state_dir: str,
        on_change: Callable[[Instance], None],
        base_environment: dict[str, str] | None = None,
    ) -> None:
        self.program = program
        self.spec = program.spec(instance)
        self.name = self.spec.name
        self.machine = sm.Machine(policy_of(program))
        self._on_change = on_change
        self._state_dir = state_dir
        self._base_env = os.environ.copy() if base_environment is None else base_environment
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._events: deque[sm.Event] = deque()
        self._dispatching = False
        self._pipes: dict[int, LogFile] = {}  # read end -> where its bytes go
        self.started_wall: float | None = None  # wall-clock time of the current spawn
        merge = program.log.stderr == "merge"
        self.stdout_log = LogFile(
            log_path(log_dir, self.spec),
            max_size=program.log.max_size,
            keep=program.log.keep,
            timestamps=program.log.timestamps,
        )
        self.stderr_log = (
            None
            if merge
            else LogFile(
                log_path(log_dir, self.spec, "err"),
                max_size=program.log.max_size,
                keep=program.log.keep,
                timestamps=program.log.timestamps,
            )
        )

    # what the operator sees --------------------------------------------------------------

    @property
    def state(self) -> sm.State:
        return self.machine.state

    @property
    def pid(self) -> int | None:
        return self.machine.pid

    def uptime(self) -> float | None:
        if self.machine.pid is None or self.machine.started_at is None:
            return None
        return max(0.0, self._loop.time() - self.machine.started_at)

    # control ----------------------------------------------------------------------------

    def start(self) -> None:
        self.dispatch(sm.Start())

    def stop(self) -> None:
        self.dispatch(sm.Stop())

    def restart(self) -> None:
        self.dispatch(sm.Restart())

    def send_signal(self, sig: int) -> bool:
        """Send `sig` to the instance's process group; False when it has no process."""
        pid = self.machine.pid
        if pid is None:
            return False
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        """Release the log files (the process must be gone)."""
        self._cancel_timer()
        self.stdout_log.close()
        if self.stderr_log is not None:
            self.stderr_log.close()

    # the shell around the machine ----------------------------------------------------------

    def dispatch(self, event: sm.Event) -> None:
        """Feed an event to the machine and perform its actions (events raised meanwhile queue)."""
        self._events.append(event)
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._events:
                before = (self.machine.state, self.machine.pid)
                actions = self.machine.handle(self._events.popleft(), self._loop.time(), random.random())
                for action in actions:
                    self._perform(action)
                if (self.machine.state, self.machine.pid) != before:
                    self._on_change(self)
        finally:
            self._dispatching = False

    def _perform(self, action: sm.Action) -> None:
        match action:
            case sm.Spawn():
                self._spawn()
            case sm.SendStopSignal():
                self.send_signal(self.program.stop_signal)
            case sm.KillGroup():
                log.warning(
                    "%s: did not stop within %gs, sending SIGKILL",
                    self.name,
                    self.program.stop_timeout,
                )
                self.send_signal(signal.SIGKILL)
            case sm.SetTimer(at):
                self._cancel_timer()
                self._timer = self._loop.call_at(at, self._on_timer)
            case sm.CancelTimer():
                self._cancel_timer()

    def _on_timer(self) -> None:
        self._timer = None
        self.dispatch(sm.Timer())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _spawn(self) -> None:
        env = dict(self._base_env)
        env.update(self.spec.environment)
        env[SUPERVISOR_ENV] = self._state_dir
        try:
            child = spawn(
                self.spec.argv,
                directory=self.spec.directory,
                environment=env,
                user=self.program.user,
                group=self.program.group,
                umask=self.program.umask,
                merge_stderr=self.stderr_log is None,
            )
        except (OSError, KeyError, ValueError, subprocess.SubprocessError) as error:
            reason = describe_spawn_error(error, self.spec.argv, self.spec.directory)
            log.error("%s: %s", self.name, reason)
            self.dispatch(sm.SpawnFailed(reason))
            return
        self.started_wall = time.time()
        self._watch(child)
        log.info("%s: started, pid %d", self.name, child.pid)
        self.dispatch(sm.Spawned(child.pid))

    # the child's pipes and exit -----------------------------------------------------------

    def _watch(self, child: Child) -> None:
        assert child.stdout is not None
        self._add_pipe(child.stdout, self.stdout_log)
        if child.stderr is not None:
            self._add_pipe(child.stderr, self.stderr_log or self.stdout_log)
        watch_exit(self._loop, child.pid, self._on_reaped)

    def _add_pipe(self, fd: int, sink: LogFile) -> None:
        self._pipes[fd] = sink
        self._loop.add_reader(fd, self._on_output, fd, sink)

    def _on_output(self, fd: int, sink: LogFile) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            sink.write(data)
            return
        self._close_pipe(fd)

    def _close_pipe(self, fd: int) -> None:
        self._loop.remove_reader(fd)
        os.close(fd)
        del self._pipes[fd]

    def _drain_pipes(self) -> None:
        """Read what the child wrote before it died, so the last lines land in its log."""
        for fd, sink in list(self._pipes.items()):
            for _ in range(64):  # bounded: a grandchild could keep writing
                try:
                    data = os.read(fd, READ_SIZE)
                except (BlockingIOError, OSError):
                    break
                if not data:
                    self._close_pipe(fd)
                    break
                sink.write(data)

    def _on_reaped(self, pid: int, status: int) -> None:
        self._drain_pipes()
        exit_code, sig, how = describe_exit(status)
        level = logging.INFO if self.machine.state is sm.State.STOPPING else logging.WARNING
        log.log(level, "%s: pid %d %s", self.name, pid, how)
        self.dispatch(sm.Exited(exit_code, sig))
