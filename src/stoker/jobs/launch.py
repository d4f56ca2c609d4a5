"""A command task's attempt, run by a pool worker: spawn, wait, reap, in the worker's process.

The daemon hands command jobs to its pool workers as it hands them Python calls, so that the
spawn, the wait and the output file cost a worker, one per slot, on whichever core is free,
instead of the daemon's one thread (which stalled while each child was cloned and exec'd, and
paid for every job's exit watch). A worker runs as the task's user, group and umask already
(the pool keeps workers per profile), so what is left per job is the directory, the
environment and the file descriptors:

- the program is looked up on the job's PATH (relative entries from the task's directory), the
  way exec would, and the place trusted for a second (FOUND_FOR);
- the worker changes into the task's directory and spawns with os.posix_spawn (glibc's
  vfork-based spawn: a third of Popen's CPU per job): its own process group, stdin from
  /dev/null, stdout and stderr to the job's output file, SIGPIPE and SIGXFSZ back to their
  defaults (Python ignores them; the job must not), the job's environment and nothing else of
  the worker's: its own descriptors are all close-on-exec, and after a Python call (whose code
  may have opened inheritable ones) they are made so again before the next command;
- the worker waits on the child's pidfd and on its stop channel at once, so a stop from the
  daemon (cancel, timeout, shutdown) reaches the command's process group while it runs;
- when the child exits, whatever is left in its group is killed before it is reaped (its pid
  still names the group), as for the daemon's own children (stoker.supervise.reap);
- where the daemon uses cgroups (stoker.supervise.cgroups), the worker has one, and the command
  is born in its `job` cgroup below (the worker steps in for the spawn and back out), which is
  killed whole when the command exits: a descendant that left the process group (setsid) too,
  which a stop signals with the group.

Like the daemon's children a job carries STOKER_SUPERVISOR, and no death signal: if the daemon
and its workers are killed, a running job goes on, and the next daemon kills what is left of it
before it queues the job again. So a worker that finds its channel closed while a command runs
lets it run (the daemon that closes a channel on purpose stops the command first). Not on a
store shared with other nodes (`orphan_stop`, from STOKER_WORKER_ORPHAN_STOP): there another
node queues the job again once the dead daemon's heartbeat is `node_timeout` old, so the
worker stops the command at once (its stop signal: SIGTERM) and SIGKILLs it `orphan_stop`
seconds later, before that can happen. Only `os`,
`select`, `signal` and the wire's messages: the worker imports this and should start fast.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Mapping
from typing import Protocol

from stoker.jobs.wire import Command, Done

FOUND_FOR = 1.0  # seconds a program's place on the PATH is trusted before it is looked up again
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
_HAVE_PIDFD = hasattr(os, "pidfd_open")
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
_FALLBACK_POLL_MS = 20  # without a pidfd (macOS): how often the child is asked whether it exited


class Channel(Protocol):
    """What a running command needs of the worker's channel (stoker.jobs.worker.Channel)."""

    closed: bool

    def stop_fd(self) -> int:
        """What to poll for stops (and for the daemon letting go: end of file)."""

    def take_in(self) -> None:
        """Read the stops that have arrived, without waiting."""

    def stop_for(self, job_id: int) -> int | None:
        """The signal a stop asks `job_id`'s command to get, if one has arrived (taken)."""

    def flush_in(self) -> float | None:
        """Seconds until the answers held back must go (None: none held)."""

    def flush(self) -> None: ...


class Launcher:
    """Spawns and waits for command jobs on behalf of one worker."""

    def __init__(
        self, base_environment: Mapping[str, str], cgroup: str | None = None, orphan_stop: float | None = None
    ) -> None:
        # Encoded once: os.posix_spawn makes bytes of every str variable on every call, which
        # with the 40 or so of a usual environment was a tenth of a worker's instructions per
        # command job (callgrind; the "NAME=value" strings it builds next, another quarter, it
        # builds whatever it is given).
        self.base = {_encode(name): _encode(value) for name, value in base_environment.items()}
        self.base_path = base_environment.get("PATH", os.defpath)
        self.found: dict[tuple[str, str, str], tuple[str, float]] = {}
        self.stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.descriptors_trusted = True  # no Python call has run since the last sweep
        self.directory: str | None = None  # where the worker last changed into
        self.cgroup = cgroup  # the worker's cgroup (None: no cgroups)
        self.job_cgroup = None if cgroup is None else os.path.join(cgroup, "job")
        self.orphan_stop = orphan_stop  # seconds from the daemon's death to a SIGKILL (None: it runs on)

    def run(self, request: Command, output: int, channel: Channel) -> Done:
        """Run one attempt; the answer's fields: `status` (a wait status; None if a stop came
        before it began) or `spawn_error` (errno, strerror, filename)."""
        job_id = request.id
        argv = request.argv
        variables = request.environment
        env = self.base.copy()
        for name, value in variables.items():
            env[_encode(name)] = _encode(value)
        if not self.descriptors_trusted:
            _close_on_exec_all()
            self.descriptors_trusted = True
        channel.take_in()
        sig = channel.stop_for(job_id)
        if sig is not None:
            return Done(job_id)
        try:
            pid = self._spawn(argv, request.directory, variables.get("PATH", self.base_path), env, output)
        except OSError as e:
            return Done(job_id, spawn_error=(e.errno, e.strerror, e.filename))
        status = _wait(pid, job_id, channel, self.job_cgroup, self.orphan_stop)
        return Done(job_id, ok=os.waitstatus_to_exitcode(status) == 0, status=status)

    def _spawn(self, argv: list[str], directory: str, path: str, env: dict[bytes, bytes], output: int) -> int:
        if directory != self.directory:
            self.directory = None
            os.chdir(directory)  # (the child starts there; relative PATH entries and programs too)
            self.directory = directory
        key = (argv[0], path, directory)
        executable = self._executable(*key)
        try:
            return self._posix_spawn(executable, argv, env, output)
        except FileNotFoundError:
            if self.found.pop(key, None) is None:
                raise
            return self._posix_spawn(self._executable(*key), argv, env, output)  # it moved: look again

    def _posix_spawn(self, executable: str, argv: list[str], env: dict[bytes, bytes], output: int) -> int:
        if self.cgroup is not None and self.job_cgroup is not None:
            _write(os.path.join(self.job_cgroup, "cgroup.procs"), b"0")  # the child is born there
            try:
                return self._posix_spawn_here(executable, argv, env, output)
            finally:
                _write(os.path.join(self.cgroup, "cgroup.procs"), b"0")
        return self._posix_spawn_here(executable, argv, env, output)

    def _posix_spawn_here(
        self, executable: str, argv: list[str], env: dict[bytes, bytes], output: int
    ) -> int:
        return os.posix_spawn(
            executable,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, self.stdin, 0),
                (os.POSIX_SPAWN_DUP2, output, 1),
                (os.POSIX_SPAWN_DUP2, output, 2),
            ],
            setpgroup=0,
            setsigdef=_RESET_SIGNALS,
        )

    def _executable(self, program: str, path: str, directory: str) -> str:
        """The file exec would run for `program` given `path`: the first executable file on it.
        A name with a slash is itself; a name found nowhere raises FileNotFoundError."""
        if "/" in program:
            return program
        now = time.monotonic()
        found = self.found.get((program, path, directory))
        if found is not None and now - found[1] < FOUND_FOR:
            return found[0]
        denied = None
        for entry in path.split(os.pathsep):
            candidate = os.path.join(entry, program)  # as exec names it (a script sees it as $0)
            if os.path.isfile(candidate):
                if os.access(candidate, os.X_OK):
                    self.found[(program, path, directory)] = (candidate, now)
                    return candidate
                denied = denied or candidate
        if denied is not None:
            raise PermissionError(13, os.strerror(13), denied)
        raise FileNotFoundError(2, os.strerror(2), program)


def _encode(text: str) -> bytes:
    return text.encode(_FS_ENCODING, _FS_ERRORS)  # os.fsencode's work, without its Python frame


def _wait(
    pid: int, job_id: int, channel: Channel, cgroup: str | None = None, orphan_stop: float | None = None
) -> int:
    """Wait for `pid` to exit while hearing the channel: stops signal the process group, held
    answers go when due. Returns the wait status, once the rest of its group (and of its
    `cgroup`) is killed and it is reaped. `orphan_stop`: see the module's docstring."""
    pidfd = _pidfd(pid)
    poller = select.poll()
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    listening = not channel.closed
    if listening:
        poller.register(channel.stop_fd(), select.POLLIN)
    kill_at: float | None = None  # an orphan's SIGKILL, by time.monotonic()
    try:
        while True:
            due = channel.flush_in()
            timeout = -1 if due is None else int(due * 1000) + 1
            if kill_at is not None:
                left = max(0, int((kill_at - time.monotonic()) * 1000) + 1)
                timeout = left if timeout < 0 else min(timeout, left)
            if pidfd is None:
                timeout = _FALLBACK_POLL_MS if timeout < 0 else min(timeout, _FALLBACK_POLL_MS)
            ready = {fd for fd, _ in poller.poll(timeout)}
            if pidfd in ready if pidfd is not None else _exited(pid):
                break
            if listening and channel.stop_fd() in ready:
                channel.take_in()
            if channel.flush_in() == 0:
                channel.flush()
            sig = channel.stop_for(job_id)
            if sig is not None:
                _signal_group(pid, sig)
                if cgroup is not None:
                    _signal_outside_group(cgroup, pid, sig)
            if kill_at is not None and time.monotonic() >= kill_at:
                kill_at = None
                _signal_group(pid, signal.SIGKILL)
                if cgroup is not None:
                    _signal_outside_group(cgroup, pid, signal.SIGKILL)
            if listening and channel.closed:  # the daemon is gone (or let go): the job runs on
                poller.unregister(channel.stop_fd())  # (see the module's docstring)
                listening = False
                if orphan_stop is not None:  # unless another node may run it again
                    _signal_group(pid, signal.SIGTERM)
                    if cgroup is not None:
                        _signal_outside_group(cgroup, pid, signal.SIGTERM)
                    kill_at = time.monotonic() + orphan_stop
    finally:
        if pidfd is not None:
            os.close(pidfd)
    _signal_group(pid, signal.SIGKILL)  # what it left in its group goes with it
    if cgroup is not None:  # and what left the group
        try:
            _write(os.path.join(cgroup, "cgroup.kill"), b"1")
        except OSError:  # (the daemon's tree is gone: the daemon is, and killed it)
            pass
    _, status = os.waitpid(pid, 0)
    return status


def _pidfd(pid: int) -> int | None:
    if not _HAVE_PIDFD:
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:  # pragma: no cover - kernels older than 5.3
        return None


def _exited(pid: int) -> bool:
    """Without a pidfd: whether `pid` is a zombie now (not reaped: its group is killed first)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # pragma: no cover
        return True
    return info is not None


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_outside_group(cgroup: str, pgid: int, sig: int) -> None:
    """Signal the processes of `cgroup` that left process group `pgid` (setsid): a stop is for
    them too (as stoker.supervise.cgroups.signal_outside_group, which this module may not import)."""
    try:
        with open(os.path.join(cgroup, "cgroup.procs"), "rb") as f:
            pids = [int(pid) for pid in f.read().split()]
    except OSError:
        return
    for pid in pids:
        try:
            if os.getpgid(pid) != pgid:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _close_on_exec_all() -> None:
    """Mark every descriptor above 2 close-on-exec (a Python call may have left one inheritable)."""
    where = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    for name in os.listdir(where):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
            except OSError:  # (the listing's own descriptor, closed by now)
                pass


__all__ = ["Channel", "Launcher"]
