"""Knowing the moment a child exits, without polling: a pidfd on the event loop.

When the pidfd turns readable the child is a zombie, so its pid still names its process group:
whatever it left behind in the group is killed before the pid is reaped and could be reused
(a program's or a job's process group lives and dies with its leader). Where pidfd is missing
(macOS, old kernels) SIGCHLD wakes us and each known child is asked with WNOHANG.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

HAVE_PIDFD = hasattr(os, "pidfd_open")

ExitCallback = Callable[[int, int], None]  # (pid, wait status)


def watch_exit(loop: asyncio.AbstractEventLoop, pid: int, callback: ExitCallback) -> None:
    """Call `callback(pid, status)` on the loop once `pid` (our child, a group leader) exits."""
    if HAVE_PIDFD:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # pragma: no cover - kernels older than 5.3
            pidfd = None
        if pidfd is not None:
            loop.add_reader(pidfd, _on_pidfd, loop, pidfd, pid, callback)
            return
    _sigchld_watcher(loop).watch(pid, callback)  # pragma: no cover


def _on_pidfd(loop: asyncio.AbstractEventLoop, pidfd: int, pid: int, callback: ExitCallback) -> None:
    loop.remove_reader(pidfd)
    os.close(pidfd)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # pragma: no cover - someone else reaped it
        status = 0
    callback(pid, status)


def kill_group(pid: int, sig: int) -> None:
    """Signal the process group led by `pid`; a group that is gone (or not ours) is no error."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def describe_exit(status: int) -> tuple[int | None, int | None, str]:
    """(exit code, signal, "exited with code 3" / "killed by SIGKILL") of a wait status."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return None, -code, f"killed by {signal_name(-code)}"
    return code, None, f"exited with code {code}"


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


class _SigchldWatcher:  # pragma: no cover - used where pidfd is missing (macOS)
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._callbacks: dict[int, ExitCallback] = {}
        loop.add_signal_handler(signal.SIGCHLD, self._reap)

    def watch(self, pid: int, callback: ExitCallback) -> None:
        self._callbacks[pid] = callback
        self._reap()

    def _reap(self) -> None:
        for pid in list(self._callbacks):
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                got, status = pid, 0
            if got == pid:
                self._callbacks.pop(pid)(pid, status)


_watchers: dict[int, _SigchldWatcher] = {}


def _sigchld_watcher(loop: asyncio.AbstractEventLoop) -> _SigchldWatcher:  # pragma: no cover
    key = id(loop)
    if key not in _watchers:
        _watchers[key] = _SigchldWatcher(loop)
    return _watchers[key]
