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

from stoker.names import JOB_LOGS

OUTPUT_TAIL = 64 * 1024
MAX_OUTPUT = 100 * 1024 * 1024  # the default of a task's max_output
MARKER_SLACK = 256  # more than an attempt's marker line: see OutputCap
MARKER = b"--- stoker: attempt "


def output_path(log_dir: str, job_id: int) -> str:
    return f"{log_dir}{os.sep}{JOB_LOGS}{os.sep}{job_id}.log"  # (os.path.join: 4 times the cost, per job)


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


def close_output(fd: int, path: str, offset: int, dir_fd: int | None = None) -> tuple[str, int]:
    """The attempt's output (its last 64 KB) as text, and how many bytes it wrote; closes `fd`,
    removes an empty file (if it may: see the module's docstring)."""
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
            return "", 0
        start = max(offset, size - OUTPUT_TAIL)
        data = os.pread(fd, size - start, start) if size > start else b""
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace"), size - offset


class OutputCap:
    """A task's `max_output` on one attempt's output, kept by the daemon (not the job's writer).

    A running command writes straight into the file (O_APPEND, its stdout and stderr), so
    nothing can stop a write that goes past the cap. The daemon looks at the sizes of the
    running jobs' files every CAP_EVERY seconds (`check`) and truncates one over its cap back to
    it: since every write of the job appends, what it writes next lands at the cap, never past
    a hole. At the attempt's end `finish` cuts it one last time and appends the marker line that
    says how much was cut. So a file can pass its cap by what a job writes in one interval, and
    only until the next look; the marker appears once the attempt ends. (The count can miss a
    write that lands between a look's stat and its truncate: it says what was seen cut.)

    Why not the alternatives: RLIMIT_FSIZE applies to every file the job writes and kills it
    with SIGXFSZ; a pipe that the worker copies with a count would cost every job a copy loop
    (the job path's throughput is what `make bench-jobs` measures); and a check at the end only
    is no cap at all for a job that runs for days.
    """

    def __init__(self, path: str, start: int, limit: int) -> None:
        self.path = path
        self.at = start + limit  # where the output is cut
        self.limit = limit
        self.cut = 0  # bytes cut so far

    def check(self) -> None:
        """Cut the file back to the cap if it has passed it."""
        try:  # (no planted link followed; non-blocking: a planted FIFO is an error, not a hang)
            fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            size = os.fstat(fd).st_size
            if size > self.at:
                os.ftruncate(fd, self.at)
                self.cut += size - self.at
        finally:
            os.close(fd)

    def finish(self) -> bool:
        """The attempt has ended: cut what passed the cap and append the marker. True when
        anything was cut (its output, as the job's record shows it, is then read anew)."""
        self.check()
        if not self.cut:
            return False
        marker = f"\n[stoker] output over max_output ({_size_text(self.limit)}): {self.cut} bytes cut\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, marker.encode())
        finally:
            os.close(fd)
        return True


def _size_text(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or size % 1024:
            return f"{size}{unit}"
        size //= 1024
    return f"{size}TB"


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
