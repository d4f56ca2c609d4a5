"""One daemon per state dir: an flock on `stoker.lock`, which the kernel drops when we die.

A pidfile alone goes stale after a crash and blocks the next start (or, worse, names a pid now
used by something else); the lock cannot. The pidfile is kept only to tell people which pid holds
the lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from stoker import names


class AlreadyRunning(Exception):
    def __init__(self, pid: int | None, state_dir: Path) -> None:
        self.pid = pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"stoker is already running ({who}) for state dir {state_dir}")


def acquire(state_dir: Path) -> int:
    """Take the lock; return its fd (keep it open for the daemon's life) or raise AlreadyRunning."""
    fd = os.open(state_dir / names.LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(read_pid(state_dir), state_dir) from None
    return fd


def is_locked(state_dir: Path) -> bool:
    """Whether a daemon holds the lock right now (used to wait for a shutdown to finish)."""
    try:
        fd = os.open(state_dir / names.LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_pid(state_dir: Path) -> int | None:
    try:
        fd = os.open(state_dir / names.PID, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return int(os.read(fd, 64).strip())
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def write_pid(state_dir: Path) -> None:
    tmp = state_dir / f"{names.PID}.tmp"
    tmp.unlink(missing_ok=True)  # a dead daemon's, perhaps made wider: O_CREAT keeps a file's mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    tmp.replace(state_dir / names.PID)


def remove_pid(state_dir: Path) -> None:
    if read_pid(state_dir) == os.getpid():
        (state_dir / names.PID).unlink(missing_ok=True)
