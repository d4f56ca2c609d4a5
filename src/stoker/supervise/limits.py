"""Kernel-enforced limits of a program instance (`memory_max`, `cpu_weight`, `tasks_max`) as the
cgroup files that carry them: pure, so the mapping is tested exhaustively without a cgroup.

Each limit belongs to one controller. Where cgroup v2 has the controller (a pure v2 host, or
systemd's delegated subtree), the limit is written in the v2 cgroup of the instance. On a hybrid
host (systemd's layout on Debian 10/11, Ubuntu 20.04, and many containers' hosts) the controllers
stay bound to v1 hierarchies, so the same limit is written in the v1 hierarchy of its controller,
in a cgroup of the same name: the limit holds either way, and containment (cgroup.kill) stays
with v2, which needs no controller.

The names and units follow systemd's (`MemoryMax=`, `CPUWeight=`, `TasksMax=`), since that is
what users know: a weight is 1..10000 with 100 the default share, and v1's `cpu.shares` is
derived from it as systemd does (weight × 1024 / 100, so the default 100 is v1's default 1024).
"""

from __future__ import annotations

from dataclasses import dataclass

MEMORY_FLOOR = 8 * 1024 * 1024
"""The smallest `memory_max`: the daemon forks the child from inside the child's cgroup (so it is
born there, with no race), and the fork's own kernel memory is charged there meanwhile."""

WEIGHT_RANGE = (1, 10_000)
SHARES_RANGE = (2, 262_144)  # what v1's cpu.shares accepts


@dataclass(frozen=True)
class Limits:
    """What the kernel holds an instance to; None: no limit of that kind."""

    memory_max: int | None = None  # bytes; above it the kernel's OOM killer acts in the cgroup
    cpu_weight: int | None = None  # relative CPU share under contention, 1..10000 (100: default)
    tasks_max: int | None = None  # processes and threads; a fork past it fails with EAGAIN

    def controllers(self) -> tuple[str, ...]:
        """The controllers these limits need, in a fixed order."""
        return tuple(c for c, value in self._by_controller() if value is not None)

    def _by_controller(self) -> tuple[tuple[str, int | None], ...]:
        return (("memory", self.memory_max), ("cpu", self.cpu_weight), ("pids", self.tasks_max))


NONE = Limits()


def shares(weight: int) -> int:
    """v1's cpu.shares for a v2 cpu.weight (systemd's conversion, clamped to what v1 takes)."""
    low, high = SHARES_RANGE
    return max(low, min(high, weight * 1024 // 100))


def v2_files(limits: Limits, controller: str) -> dict[str, str]:
    """The files (name → content) that carry `controller`'s limit in a v2 cgroup."""
    if controller == "memory" and limits.memory_max is not None:
        return {"memory.max": str(limits.memory_max)}
    if controller == "cpu" and limits.cpu_weight is not None:
        return {"cpu.weight": str(limits.cpu_weight)}
    if controller == "pids" and limits.tasks_max is not None:
        return {"pids.max": str(limits.tasks_max)}
    return {}


def v1_files(limits: Limits, controller: str) -> dict[str, str]:
    """The files that carry `controller`'s limit in its v1 hierarchy."""
    if controller == "memory" and limits.memory_max is not None:
        return {"memory.limit_in_bytes": str(limits.memory_max)}
    if controller == "cpu" and limits.cpu_weight is not None:
        return {"cpu.shares": str(shares(limits.cpu_weight))}
    if controller == "pids" and limits.tasks_max is not None:
        return {"pids.max": str(limits.tasks_max)}
    return {}


def oom_kills(events: str) -> int:
    """The `oom_kill` count of v2's memory.events or v1's memory.oom_control (0: none, or an old
    kernel that does not count them)."""
    for line in events.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


KEY = {"memory": "memory_max", "cpu": "cpu_weight", "pids": "tasks_max"}
"""The config key of each controller's limit (for messages)."""
