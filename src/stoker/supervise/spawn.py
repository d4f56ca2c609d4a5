"""Starting a program's process: its own process group, tied to the daemon's life.

Everything the child needs is settled here, before exec: working directory, environment,
credentials (uid, gid and supplementary groups: stoker.supervise.identity resolves them, and
the caller builds the environment, stoker.supervise.environment), umask, a new process group
(so a stop reaches grandchildren too), its cgroup where the daemon has cgroups (it is born in
it: stoker.supervise.cgroups, which a grandchild's setsid() does not leave), and
PR_SET_PDEATHSIG so that a daemon killed with SIGKILL takes its programs with it; the next
daemon would otherwise start duplicates beside the orphans.

The death signal is set by exec'ing through util-linux's `setpriv --pdeathsig KILL`, not by a
Python `preexec_fn`: any preexec_fn makes CPython give up vfork for a full fork of the daemon,
which costs ~4 ms per spawn against ~0.3 ms (measured: bench/README.md). Without setpriv (not
Linux, or util-linux missing) we fall back to the preexec_fn. Since setpriv would only report a
missing program as exit code 127, we look the executable up ourselves first, the way exec
would, so that status can still say "command not found".
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from stoker.supervise import cgroups
from stoker.supervise.identity import SAME, CannotDrop, Identity

SUPERVISOR_ENV = "STOKER_SUPERVISOR"
"""Set in every child to the daemon's state dir, so a new daemon can find a dead one's orphans."""

_PR_SET_PDEATHSIG = 1


def _pdeathsig_setter() -> Callable[[], None] | None:
    """A preexec function that asks Linux to SIGKILL the child when the daemon dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl  # resolved now: nothing after fork should need the loader
    daemon_pid = os.getpid()

    def tie_to_daemon() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The daemon may have died between fork and prctl: then nobody would kill us.
        if os.getppid() != daemon_pid:
            os._exit(127)

    return tie_to_daemon


_tie_to_daemon: Callable[[], None] | None = None
_tie_for_pid: int | None = None


def _preexec() -> Callable[[], None] | None:
    global _tie_to_daemon, _tie_for_pid
    if _tie_for_pid != os.getpid():  # the daemon may have forked (detach) since
        _tie_to_daemon, _tie_for_pid = _pdeathsig_setter(), os.getpid()
    return _tie_to_daemon


_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def _check_executable(program: str, directory: str, environment: Mapping[str, str]) -> None:
    """Raise what exec would (FileNotFoundError, PermissionError) for `program`, before forking."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", directory)
    if "/" in program:
        candidates = [os.path.normpath(os.path.join(directory, program))]
    else:
        candidates = [os.path.join(d or ".", program) for d in os.get_exec_path(dict(environment))]
    denied = None
    for path in candidates:
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return
            denied = path
    if denied is not None:
        raise PermissionError(errno.EACCES, "Permission denied", denied)
    raise FileNotFoundError(errno.ENOENT, "No such file or directory", program)


@dataclass(frozen=True, slots=True)
class Child:
    pid: int
    stdout: int | None  # read end of the child's stdout pipe (non-blocking); None: `output` given
    stderr: int | None  # read end of the stderr pipe, or None when merged into stdout


def spawn(
    argv: Sequence[str],
    *,
    directory: str,
    environment: Mapping[str, str],
    identity: Identity = SAME,
    umask: int | None = None,
    merge_stderr: bool = True,
    output: int | None = None,
    pass_fds: Sequence[int] = (),
    tie_to_daemon: bool = True,
    cgroup: str | None = None,
) -> Child:
    """Fork and exec `argv` in a new process group; raise OSError (with a clear message) on failure.

    The child's stdout and stderr go to pipes the caller reads, or, with `output` (an open file
    descriptor), straight into that file with no pipe and no work for the daemon.
    `tie_to_daemon=False` skips the death signal, and with it setpriv's second exec, which
    doubles the cost of a short command; for children whose leftovers the next daemon's orphan
    sweep may handle. `cgroup` (a directory of the daemon's tree, stoker.supervise.cgroups): the
    child is born in it.
    """
    preexec = None
    if not tie_to_daemon:
        command = list(argv)
    elif _SETPRIV is not None:
        # Popen drops to the child's user first and setpriv runs as that user, so the death
        # signal is set after the credential change (which would clear it).
        _check_executable(argv[0], directory, environment)
        command = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
    else:
        command = list(argv)
        preexec = _preexec()
    if output is not None:
        out_r, out_w, err_r, err_w = None, output, None, None
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe() if not merge_stderr else (None, None)
    tree = cgroups.current()
    try:
        with tree.born_in(cgroup) if tree is not None else contextlib.nullcontext():
            popen = subprocess.Popen(
                command,
                cwd=directory,
                env=dict(environment),
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w if err_w is not None else out_w,
                process_group=0,
                # (in this order: setgroups, setregid, setreuid; each only when not None)
                extra_groups=None if identity.groups is None else list(identity.groups),
                group=identity.gid,
                user=identity.uid,
                umask=-1 if umask is None else umask,
                preexec_fn=preexec,
                close_fds=True,
                pass_fds=tuple(pass_fds),
            )
    except BaseException:
        for fd in (out_r, err_r):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        if output is None:
            os.close(out_w)
        if err_w is not None:
            os.close(err_w)
    # We reap the child ourselves (pidfd); Popen must never wait on it behind our back.
    popen.returncode = 0
    if out_r is not None:
        os.set_blocking(out_r, False)
    if err_r is not None:
        os.set_blocking(err_r, False)
    return Child(popen.pid, out_r, err_r)


def describe_spawn_error(error: BaseException, argv: Sequence[str], directory: str) -> str:
    """A one-line reason a person can act on."""
    if isinstance(error, CannotDrop):
        return str(error)
    if isinstance(error, FileNotFoundError):
        if error.filename == directory or not os.path.isdir(directory):
            return f"directory not found: {directory}"
        return f"command not found: {argv[0]}"
    if isinstance(error, PermissionError):
        return f"permission denied: {error.filename or argv[0]}"
    if isinstance(error, KeyError):  # pwd/grp lookups: "getpwnam(): name not found: 'x'"
        text = str(error.args[0]) if error.args else ""
        what = "group" if "getgrnam" in text else "user"
        return f"unknown {what}: {text.rpartition(': ')[2].strip(chr(39))}"
    if isinstance(error, OSError):
        return f"cannot start {argv[0]}: {error.strerror or error}"
    return f"cannot start {argv[0]}: {error}"
