"""What happens to a job after an attempt: pure rules, no clock or randomness of their own."""

from __future__ import annotations

import enum

import msgspec

from stoker.backoff import backoff_delay


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


def after_attempt(
    outcome: Outcome,
    attempt: int,
    max_attempts: int,
    backoff_min: float,
    backoff_max: float,
    now: float,
    jitter: float,
) -> Next:
    """`attempt` is the number of the attempt that just ended (1 for the first)."""
    if outcome is Outcome.SUCCEEDED:
        return Next(JobState.SUCCEEDED)
    if outcome is Outcome.CANCELLED:
        return Next(JobState.CANCELLED)
    if outcome is Outcome.INTERRUPTED:
        # Not the job's fault: run it again at once, and give it its attempt back.
        return Next(JobState.QUEUED, run_at=now, counts=False)
    if attempt < max_attempts:
        return Next(JobState.QUEUED, run_at=now + backoff_delay(backoff_min, backoff_max, attempt, jitter))
    return Next(JobState.FAILED)
