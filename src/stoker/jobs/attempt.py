"""One attempt of a job: the runner protocol, its result, and the job's output file.

Each job has one output file, `logs/jobs/<id>.log`, that every attempt appends to (attempts
after the first begin with a marker line). A command's stdout and stderr are the file itself:
the daemon copies nothing while a job runs. When the attempt ends, the last 64 KB it wrote
become the job's `output`.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any, Protocol

from stoker.jobs.rules import Outcome

OUTPUT_TAIL = 64 * 1024


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    exit_code: int | None = None
    error: str | None = None
    result: Any = None
    has_result: bool = False


class AttemptRun(Protocol):
    async def run(self) -> AttemptResult:
        """Run the attempt to its end (the caller records the result)."""

    def stop(self, outcome: Outcome, reason: str) -> None:
        """End the attempt early (cancel, timeout, shutdown): it ends with `outcome`."""


def output_path(log_dir: str, job_id: int) -> str:
    return os.path.join(log_dir, "jobs", f"{job_id}.log")


def begin_output(path: str, attempt: int, rerun: bool, now: float) -> int:
    """Open the job's output for a new attempt; returns the offset where this attempt begins."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        offset = os.lseek(fd, 0, os.SEEK_END)
        if offset > 0 or rerun:
            when = dt.datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds")
            again = " (run again: the previous run was interrupted)" if rerun else ""
            marker = f"--- stoker: attempt {attempt}{again}, {when} ---\n".encode()
            os.write(fd, (b"\n" if offset > 0 else b"") + marker)
            offset = os.lseek(fd, 0, os.SEEK_END)
        return offset
    finally:
        os.close(fd)


def read_output(path: str, offset: int, limit: int = OUTPUT_TAIL) -> str:
    """What was written from `offset` on, at most its last `limit` bytes, as text."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(offset, size - limit))
            data = f.read(limit)
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", "replace")


def drop_if_empty(path: str) -> None:
    """A job that printed nothing leaves no file behind (thousands of jobs, thousands of inodes)."""
    try:
        if os.path.getsize(path) == 0:
            os.unlink(path)
    except FileNotFoundError:
        pass
