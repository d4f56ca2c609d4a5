"""One attempt of a job: the runner protocol and its result (output: see stoker.jobs.output)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from stoker.jobs.rules import Outcome


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    exit_code: int | None = None
    error: str | None = None
    result: Any = None
    has_result: bool = False
    output: str = ""  # the attempt's output, its last 64 KB


class AttemptRun(Protocol):
    async def run(self) -> AttemptResult:
        """Run the attempt to its end (the caller records the result)."""

    def stop(self, outcome: Outcome, reason: str) -> None:
        """End the attempt early (cancel, timeout, shutdown): it ends with `outcome`."""
