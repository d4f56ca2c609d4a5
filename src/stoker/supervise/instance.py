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

from stoker import envfile, sdnotify
from stoker.config import InstanceSpec, ProgramConfig
from stoker.durations import format_size
from stoker.supervise import cgroups
from stoker.supervise import state as sm
from stoker.supervise.environment import child_base
from stoker.supervise.identity import CannotDrop, resolve
from stoker.supervise.lastline import LastLine
from stoker.supervise.logs import STREAM_FDS, LogFile, StreamLog
from stoker.supervise.probes import until_ready
from stoker.supervise.readiness import ReadyCheck, parse_ready
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
        needs_ready=program.ready is not None,
        ready_timeout=program.ready_timeout,
        watchdog=program.watchdog or 0.0,
        stable_seconds=program.stable_seconds,
    )


Gate = Callable[["Instance"], list[str]]
"""What an instance must wait for before its process may start (program names; [] = go)."""

Permit = Callable[["Instance"], "str | None"]
"""Why this node may not run an instance now (`nodes` placement, a singleton's lease elsewhere),
or None if it may."""


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
        gate: Gate | None = None,
        permit: Permit | None = None,
        notify_address: str | None = None,
    ) -> None:
        self.program = program
        self._oom_kills = 0  # the OOM killer's count in the cgroup, as last seen
        self.spec = program.spec(instance)
        self.name = self.spec.name
        self.machine = sm.Machine(policy_of(program))
        self._on_change = on_change
        self._gate = gate
        self._permit = permit
        # Whether someone wants it running (autostart, start, restart; a stop says no). An
        # instance this node may not run (see Permit) stays stopped but keeps being wanted, so
        # that it starts when it may: `placement` says why it waits.
        self.wanted = False
        self.placement: str | None = None
        self._kill_timer: asyncio.TimerHandle | None = None
        self._notify_address = notify_address
        self.ready_check: ReadyCheck | None = parse_ready(self.spec.ready) if self.spec.ready else None
        self.waiting_for: list[str] = []  # programs this instance waits for before it spawns
        self._deferred = False  # the machine asked for a spawn that the gate holds back
        self._probe: asyncio.Task[None] | None = None
        self.status_text: str | None = None  # the program's last sd_notify STATUS=
        self._state_dir = state_dir
        self._base_env = os.environ.copy() if base_environment is None else base_environment
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._events: deque[sm.Event] = deque()
        self._dispatching = False
        self._pipes: dict[int, tuple[LogFile, LastLine]] = {}  # read end -> where its bytes go
        # The current run's last lines, stdout's and stderr's: the end of its exit's error.
        self._last_lines = (LastLine(), LastLine())
        self.started_wall: float | None = None  # wall-clock time of the current spawn
        self.cgroup: str | None = None  # the cgroup its processes are born in (None: no cgroups)
        merge = program.log.stderr == "merge"
        self.stdout_log = self._log(program.log.file, log_path(log_dir, self.spec))
        self.stderr_log = (
            None if merge else self._log(program.log.stderr_file, log_path(log_dir, self.spec, "err"))
        )

    def _log(self, chosen: str | None, default: Path) -> LogFile:
        """The log at log.file / log.stderr_file (this instance's number in it), a stream,
        or the default file in the state dir."""
        config = self.program.log
        # stoker's own files are annotated (timestamps unless turned off, a marker line per
        # start and exit); a file or stream you chose carries the program's bytes as they are
        # (timestamps only if asked for): what reads it there expects the program's format.
        own = chosen is None
        stamps = own if config.timestamps is None else config.timestamps
        marks = own if config.markers is None else config.markers
        if chosen in STREAM_FDS:
            return StreamLog(chosen, timestamps=stamps, markers=marks)
        path = default if chosen is None else Path(chosen.replace("{instance}", str(self.spec.instance)))
        return LogFile(path, max_size=config.max_size, keep=config.keep, timestamps=stamps, markers=marks)

    def _mark(self, what: str) -> None:
        """A marker line in the instance's logs (LogFile.mark): a run's start or end."""
        self.stdout_log.mark(what)
        if self.stderr_log is not None:
            self.stderr_log.mark(what)

    # what the operator sees --------------------------------------------------------------

    @property
    def state(self) -> sm.State:
        return self.machine.state

    @property
    def pid(self) -> int | None:
        return self.machine.pid

    def crash_loop(self) -> sm.Streak | None:
        """The crash loop it is in now, if any (see the state machine)."""
        return self.machine.crash_loop(self._loop.time())

    def retry_at(self) -> float | None:
        """While it backs off: when (Unix time) it tries again; else None."""
        deadline = self.machine.deadline
        if self.machine.state is not sm.State.BACKOFF or deadline is None:
            return None
        return time.time() + max(0.0, deadline - self._loop.time())

    def uptime(self) -> float | None:
        if self.machine.pid is None or self.machine.started_at is None:
            return None
        return max(0.0, self._loop.time() - self.machine.started_at)

    # control ----------------------------------------------------------------------------

    def start(self) -> None:
        self.wanted = True
        if not self._held_back():
            self.dispatch(sm.Start())

    def stop(self) -> None:
        self.wanted = False
        self.dispatch(sm.Stop())

    def stop_pending(self) -> None:
        """A stop of this instance has begun, its turn comes later (Supervisor.stop): it may run
        on until then, but nothing starts it again."""
        self.wanted = False
        self.dispatch(sm.StopPending())

    def restart(self) -> None:
        self.wanted = True
        if not self._held_back():
            self.dispatch(sm.Restart())

    def _held_back(self) -> bool:
        self.placement = self._permit(self) if self._permit is not None else None
        return self.placement is not None

    def placement_changed(self, reason: str | None, *, kill_at: float | None = None) -> None:
        """This node may now run the instance (`reason` None) or may not (why): start it if it
        is wanted, or stop it while it stays wanted; `kill_at` (monotonic): SIGKILL what is
        left of it then, whatever its stop_timeout (a singleton whose lease this node could
        not renew must be gone before another node may take it)."""
        before, self.placement = self.placement, reason
        if reason is None:
            if self._kill_timer is not None:
                self._kill_timer.cancel()
                self._kill_timer = None
            if before is not None and self.wanted and self.state in (sm.State.STOPPED, sm.State.STOPPING):
                self.dispatch(sm.Start())  # (while stopping: once stopped)
            return
        if self.state is not sm.State.STOPPED:  # exited and fatal too: the next tenure starts afresh
            if self.state in sm.ACTIVE or self.state is sm.State.BACKOFF:
                log.warning("%s: stopping it: %s", self.name, reason)
            self.dispatch(sm.Stop())
        if kill_at is not None and self.machine.pid is not None and self._kill_timer is None:
            self._kill_timer = self._loop.call_at(kill_at, self._fence_kill)

    def _fence_kill(self) -> None:
        self._kill_timer = None
        if self.machine.pid is not None and self.placement is not None:
            log.warning("%s: still running at its lease's deadline: SIGKILL", self.name)
            self.send_signal(signal.SIGKILL)

    def send_signal(self, sig: int) -> bool:
        """Send `sig` to the instance's process group, and to each process of its cgroup that
        left the group (setsid); False when it has no process."""
        pid = self.machine.pid
        if pid is None:
            return False
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return False
        if self.cgroup is not None:
            cgroups.signal_outside_group(self.cgroup, pid, sig)
        return True

    def notified(self, fields: dict[str, str]) -> None:
        """A datagram from this instance's processes on the notify socket (sd_notify)."""
        if "STATUS" in fields:
            self.status_text = fields["STATUS"] or None
        if fields.get("READY") == "1" and self.ready_check is not None and self.ready_check.kind == "notify":
            self.dispatch(sm.Ready())
        if fields.get("WATCHDOG") == "1":
            self.dispatch(sm.WatchdogPing())

    def release(self) -> None:
        """Spawn now if a spawn was held back and the gate has opened (the supervisor calls
        this when another instance's state changes)."""
        if not self._deferred or self._gate is None:
            return
        waiting = self._gate(self)
        if waiting:
            self.waiting_for = waiting
            return
        self._deferred = False
        self.waiting_for = []
        self._spawn()

    def close(self) -> None:
        """Release the log files and the cgroup (the process must be gone)."""
        if self.cgroup is not None:
            cgroups.kill(self.cgroup)
            if (tree := cgroups.current()) is not None:
                tree.release(self.cgroup)  # (still busy: removed with the daemon's tree)
            self.cgroup = None
        self._stop_probe()
        self._cancel_timer()
        if self._kill_timer is not None:
            self._kill_timer.cancel()
            self._kill_timer = None
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
                if self._deferred and self.machine.state is not sm.State.STARTING:
                    # stopped (or restarted) while waiting: the held-back spawn is dropped
                    self._deferred = False
                    self.waiting_for = []
                    self._events.append(sm.Withdrawn())
                if self.machine.state is not sm.State.STARTING:
                    self._stop_probe()
                if (self.machine.state, self.machine.pid) != before:
                    self._on_change(self)
        finally:
            self._dispatching = False

    def _perform(self, action: sm.Action) -> None:
        match action:
            case sm.Spawn():
                waiting = self._gate(self) if self._gate is not None else []
                if waiting:
                    log.info("%s: waiting for %s to be running", self.name, ", ".join(waiting))
                    self._deferred = True
                    self.waiting_for = waiting
                else:
                    self._spawn()
            case sm.SendStopSignal():
                if self.machine.error and self.machine.state is sm.State.STOPPING:
                    log.warning("%s: %s, stopping it", self.name, self.machine.error)
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
        try:
            identity = resolve(self.program.user, self.program.group)
        except (KeyError, CannotDrop) as error:
            self._spawn_failed(error)
            return
        env = child_base(self._base_env, inherit=self.program.inherit_environment, identity=identity)
        if self.program.env_file is not None:
            try:  # read at each start, as systemd's EnvironmentFile=; environment wins over it
                env.update(envfile.read(self.program.env_file))
            except envfile.EnvFileError as error:
                log.error("%s: %s", self.name, error)
                self.dispatch(sm.SpawnFailed(str(error)))
                return
        env.update(self.spec.environment)
        env[SUPERVISOR_ENV] = self._state_dir
        for name in sdnotify.ENV_NAMES:
            env.pop(name, None)
        wants_notify = self.ready_check is not None and self.ready_check.kind == "notify"
        if self._notify_address is not None and (wants_notify or self.program.watchdog):
            env["NOTIFY_SOCKET"] = self._notify_address
            if self.program.watchdog:
                env["WATCHDOG_USEC"] = str(round(self.program.watchdog * 1_000_000))
        tree = cgroups.current()
        if tree is not None and self.cgroup is None:
            try:
                self.cgroup = tree.cgroup(
                    f"program-{self.spec.program}-{self.spec.instance}", limits=self.program.limits()
                )
            except OSError as e:  # (cgroup.max.descendants, say): not worth failing the start for
                log.warning(
                    "%s: no cgroup of its own (%s): contained by its process group only", self.name, e
                )
        try:
            child = spawn(
                self.spec.argv,
                directory=self.spec.directory,
                environment=env,
                identity=identity,
                umask=self.program.umask,
                merge_stderr=self.stderr_log is None,
                cgroup=self.cgroup,
            )
        except (OSError, KeyError, ValueError, subprocess.SubprocessError) as error:
            self._spawn_failed(error)
            return
        self.started_wall = time.time()
        self.status_text = None
        self._mark(f"started pid {child.pid}")
        self._watch(child)
        log.info("%s: started, pid %d", self.name, child.pid)
        self.dispatch(sm.Spawned(child.pid))
        check = self.ready_check
        if check is not None and check.kind != "notify" and self.machine.state is sm.State.STARTING:
            probe = self._wait_ready(check, child.pid)
            self._probe = self._loop.create_task(probe, name=f"ready {self.name}")

    def _spawn_failed(self, error: BaseException) -> None:
        reason = describe_spawn_error(error, self.spec.argv, self.spec.directory)
        log.error("%s: %s", self.name, reason)
        self._mark(f"could not start: {reason}")
        self.dispatch(sm.SpawnFailed(reason))

    async def _wait_ready(self, check: ReadyCheck, pid: int) -> None:
        await until_ready(check)
        self._probe = None
        if self.machine.pid == pid:  # still the process this check was for
            log.info("%s: ready (%s)", self.name, check)
            self.dispatch(sm.Ready())

    def _stop_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    # the child's pipes and exit -----------------------------------------------------------

    def _watch(self, child: Child) -> None:
        assert child.stdout is not None
        # Fresh for this run (a pipe of the last run a grandchild still holds feeds the old).
        out, err = self._last_lines = (LastLine(), LastLine())
        self._add_pipe(child.stdout, self.stdout_log, out)
        if child.stderr is not None:
            self._add_pipe(child.stderr, self.stderr_log or self.stdout_log, err)
        watch_exit(self._loop, child.pid, self._on_reaped)

    def _add_pipe(self, fd: int, sink: LogFile, last: LastLine) -> None:
        self._pipes[fd] = (sink, last)
        self._loop.add_reader(fd, self._on_output, fd, sink, last)

    def _on_output(self, fd: int, sink: LogFile, last: LastLine) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            last.feed(data)
            sink.write(data)
            return
        self._close_pipe(fd)

    def _close_pipe(self, fd: int) -> None:
        self._loop.remove_reader(fd)
        os.close(fd)
        del self._pipes[fd]

    def _drain_pipes(self) -> None:
        """Read what the child wrote before it died, so the last lines land in its log."""
        for fd, (sink, last) in list(self._pipes.items()):
            for _ in range(64):  # bounded: a grandchild could keep writing
                try:
                    data = os.read(fd, READ_SIZE)
                except (BlockingIOError, OSError):
                    break
                if not data:
                    self._close_pipe(fd)
                    break
                last.feed(data)
                sink.write(data)

    def _out_of_memory(self) -> str:
        """ ", out of memory (memory_max …)" when the kernel's OOM killer acted in the instance's
        cgroup since the last look (it counts per cgroup, which outlives one run)."""
        tree = cgroups.current()
        if tree is None or self.cgroup is None:
            return ""
        kills = tree.oom_kills(self.cgroup)
        seen, self._oom_kills = self._oom_kills, kills
        if kills <= seen:
            return ""
        return f": out of memory (memory_max {format_size(self.program.memory_max or 0)} reached)"

    def _on_reaped(self, pid: int, status: int) -> None:
        if self.cgroup is not None:  # what it left, setsid'd or not, goes with it (as its group)
            cgroups.kill(self.cgroup)
        self._drain_pipes()
        exit_code, sig, how = describe_exit(status)
        if self.cgroup is not None and self.program.memory_max is not None:
            how += self._out_of_memory()
        level = logging.INFO if self.machine.state is sm.State.STOPPING else logging.WARNING
        log.log(level, "%s: pid %d %s", self.name, pid, how)
        self._mark(f"pid {pid} {how}")
        out, err = self._last_lines
        self.dispatch(sm.Exited(exit_code, sig, err.line() or out.line()))
