"""The states of a job and the outcomes of an attempt: the words the store records and the
rules (jobs/rules.py), the API and the notifications speak. Pure: no IO, no stoker imports,
so that the store (which keeps them) needs nothing of the jobs package above it.
"""

from __future__ import annotations

import enum

import msgspec


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
LIVE = frozenset({JobState.QUEUED, JobState.RUNNING})


class Outcome(enum.StrEnum):
    """How one attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # non-zero exit, exception, spawn error
    TIMED_OUT = "timed out"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the daemon stopped or died while it ran: it runs again


class Next(msgspec.Struct, frozen=True):  # made for every job: see stoker.store.base
    """The job's state after the attempt; `run_at` is set when it goes back to the queue;
    `counts` is False for an attempt that does not use up one of max_attempts."""

    state: JobState
    run_at: float | None = None
    counts: bool = True
