"""A job's output file: `logs/jobs/<id>.log`, written by the job itself, every attempt appended.

Attempts after the first (and runs again after an interruption) begin with a marker line, so
the current attempt's output can be told from earlier ones. Whoever runs the attempt (the
daemon for a command, the pool worker for a Python call) opens the file, hands it to the job as
stdout and stderr, and at the end takes the last 64 KB written since the attempt began as the
job's `output`; a job that printed nothing leaves no file. Only `os`: pool workers import this.

A worker running as a task's `user` cannot reach `logs/jobs` by its path (the state dir is
root's, 0700): it opens the file relative to a descriptor of that folder, which the daemon
gave it when it started (`dir_fd`), in a file the daemon created for it and gave to that user
(stoker.jobs.pool.give_output). Such a worker cannot remove an empty file: the daemon does.
"""

from __future__ import annotations

import datetime as dt
import os

OUTPUT_TAIL = 64 * 1024
MARKER = b"--- stoker: attempt "


def output_path(log_dir: str, job_id: int) -> str:
    return f"{log_dir}{os.sep}jobs{os.sep}{job_id}.log"  # (os.path.join: 4 times the cost, per job)


def open_output(
    path: str, attempt: int, rerun: bool, now: float, dir_fd: int | None = None
) -> tuple[int, int]:
    """Open for a new attempt: (fd, the offset where this attempt's output begins). With
    `dir_fd` (the folder `path` is in), the file is opened relative to it."""
    # read-write: the end of the attempt reads its output back through the same descriptor
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC  # no planted link
    if dir_fd is None:
        fd = os.open(path, flags, 0o600)
    else:
        fd = os.open(path.rpartition(os.sep)[2], flags, 0o600, dir_fd=dir_fd)
    offset = _size(fd)
    if offset > 0 or rerun:
        when = dt.datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds")
        again = " (run again: the previous run was interrupted)" if rerun else ""
        line = MARKER + f"{attempt}{again}, {when} ---\n".encode()
        os.write(fd, (b"\n" if offset > 0 else b"") + line)
        offset = _size(fd)
    return fd, offset


def close_output(fd: int, path: str, offset: int, dir_fd: int | None = None) -> str:
    """The attempt's output (its last 64 KB) as text; closes `fd`, removes an empty file (if
    it may: see the module's docstring)."""
    try:
        size = _size(fd)
        if size == 0:
            try:
                if dir_fd is None:
                    os.unlink(path)
                else:
                    os.unlink(path.rpartition(os.sep)[2], dir_fd=dir_fd)
            except (FileNotFoundError, PermissionError):
                pass
            return ""
        start = max(offset, size - OUTPUT_TAIL)
        data = os.pread(fd, size - start, start) if size > start else b""
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace")


def _size(fd: int) -> int:
    # The end, where O_APPEND writes go whatever the offset: lseek takes a quarter of fstat's time
    # (0.2 µs against 0.86: no stat_result to build), and moving the offset the job's descriptors
    # share is harmless (every write appends; the tail is read with pread).
    return os.lseek(fd, 0, os.SEEK_END)


def current_output(path: str) -> str:
    """The end of the latest attempt's output, read from outside while it runs (or after a
    worker died mid-job): the last 64 KB, from the last marker line on."""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - OUTPUT_TAIL))
            data = f.read()
    except (FileNotFoundError, IsADirectoryError):
        return ""
    except OSError as e:  # a link in its place (ELOOP) is not followed
        return f"[stoker] cannot read {path}: {e.strerror}\n"
    at = data.rfind(b"\n" + MARKER)
    if at >= 0 or data.startswith(MARKER):
        end_of_marker = data.find(b"\n", at + 1)
        data = data[end_of_marker + 1 :] if end_of_marker >= 0 else b""
    return data.decode("utf-8", "replace")
