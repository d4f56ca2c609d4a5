"""The CPU figure of a program instance: percent of one core, measured between two looks.

`cpu` in the program JSON is the CPU time the instance's process group (the program and
everything it started, including children it has reaped) used between the previous look and
this one, as a percent of one core (a busy loop shows about 100; two busy threads about 200).
A "look" is any request that describes programs (`stoker status`, the dashboard, the API), so
no timer runs to measure anything: an idle daemon stays idle. Looks closer together than
WINDOW seconds show the figure of the last whole window instead of a noisy one over a few
milliseconds. The first look at a process has no previous one: it shows the average since the
process started, or null while it is younger than WINDOW.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

WINDOW = 1.0  # seconds


@dataclass(frozen=True)
class _Sample:
    at: float  # monotonic time of the look that closed the window
    cpu_seconds: float  # the group's CPU time then
    percent: float | None  # what is shown until the next window closes


class CpuMeter:
    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._samples: dict[int, _Sample] = {}  # by process group id (the main process's pid)

    def look(
        self, cpu_seconds: Mapping[int, float], lifetimes: Mapping[int, float], now: float
    ) -> dict[int, float | None]:
        """Percent of one core for each process group; `lifetimes`: seconds since each started,
        `now`: a monotonic clock."""
        shown: dict[int, float | None] = {}
        for pgid, cpu in cpu_seconds.items():
            before = self._samples.get(pgid)
            if before is None:
                life = lifetimes.get(pgid, 0.0)
                average = 100 * cpu / life if life >= self.window else None
                self._samples[pgid] = before = _Sample(now, cpu, average)
            elif now - before.at >= self.window:
                used = max(0.0, cpu - before.cpu_seconds)  # a reaped orphan's time can vanish
                self._samples[pgid] = before = _Sample(now, cpu, 100 * used / (now - before.at))
            shown[pgid] = None if before.percent is None else round(before.percent, 1)
        return shown

    def keep_only(self, pgids: Iterable[int]) -> None:
        """Forget processes that are gone (a restarted instance is a new process group)."""
        live = set(pgids)
        self._samples = {pgid: s for pgid, s in self._samples.items() if pgid in live}
