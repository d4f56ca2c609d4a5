"""Exponential backoff with jitter: one rule for restarting programs and retrying jobs."""

from __future__ import annotations


def backoff_delay(low: float, high: float, failures: int, jitter: float) -> float:
    """Seconds to wait after `failures` consecutive failures (1 for the first).

    Exponential (low, 2·low, 4·low … capped at high) with "equal jitter": the delay lies in
    [d/2, d], so a crash loop never gets faster than half the schedule, yet many things that
    failed together do not retry in lockstep. `jitter` is a number in [0, 1).
    """
    exponent = min(max(failures - 1, 0), 64)
    full = min(high, low * (2.0**exponent))
    return full / 2 + full / 2 * jitter
