"""What happens to a job after an attempt: pure rules, no clock or randomness of their own.

The words they speak (JobState, Outcome, Next) live in stoker/jobstates.py, below the store
that records them; they are re-exported here for the rules' users.
"""

from __future__ import annotations

from stoker.backoff import backoff_delay
from stoker.jobstates import FINISHED, LIVE, JobState, Next, Outcome

__all__ = ["FINISHED", "LIVE", "JobState", "Next", "Outcome", "after_attempt"]


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
