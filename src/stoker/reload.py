"""What a reload changes: the difference between the running config and the file as it is now.

Pure: two validated configs in, a plan out. The daemon applies it (programs through the
supervisor, tasks and queues through the dispatcher, schedules through the scheduler) and
answers with `Changes.as_json()`. A program counts as changed only if something that shapes
its processes changed; its instance count alone is a resize, which starts or stops only the
instances added or removed; its placement alone (`singleton`, `nodes`) is applied to the running
instances: a node that may still run the program keeps its processes. `[daemon]` settings
that are bound once at start (the socket, the TCP door, the store…) cannot change under a
running daemon: they are reported, not applied.
`[notify.*]` webhooks are applied live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from stoker.config import Config

# [daemon] keys bound at start
RESTART_ONLY = ("state_dir", "listen", "token", "store", "node", "node_timeout")


@dataclass(frozen=True)
class Changes:
    added: list[str] = field(default_factory=list)  # programs
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # restarted, instance by instance
    resized: dict[str, tuple[int, int]] = field(default_factory=dict)  # program: (old, new) count
    unchanged: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)  # "task mail", "queue builds", "schedule report"…
    needs_restart: list[str] = field(default_factory=list)  # "[daemon] listen"
    notify: list[str] = field(default_factory=list)  # webhooks added, removed or changed
    placement: list[str] = field(default_factory=list)  # programs whose singleton or nodes changed

    def as_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "resized": {name: {"from": a, "to": b} for name, (a, b) in self.resized.items()},
            "unchanged": self.unchanged,
            "jobs": self.jobs,
            "needs_restart": self.needs_restart,
            "notify": self.notify,
            "placement": self.placement,
        }


def diff(old: Config, new: Config) -> Changes:
    changes = Changes()
    for name, program in new.programs.items():
        before = old.programs.get(name)
        if before is None:
            changes.added.append(name)
            continue
        placed = (program.singleton, program.nodes) != (before.singleton, before.nodes)
        like = msgspec.structs.replace(before, instances=program.instances, singleton=program.singleton,
                                       nodes=program.nodes)  # fmt: skip
        if like != program:
            changes.changed.append(name)
        elif placed:
            changes.placement.append(name)
        elif before.instances == program.instances:
            changes.unchanged.append(name)
        if before.instances != program.instances:
            changes.resized[name] = (before.instances, program.instances)
    changes.removed.extend(name for name in old.programs if name not in new.programs)
    for kind in ("tasks", "queues", "schedules"):
        before_all, after_all = getattr(old, kind), getattr(new, kind)
        for name in sorted(before_all.keys() | after_all.keys()):
            if before_all.get(name) != after_all.get(name):
                changes.jobs.append(f"{kind[:-1]} {name}")
    for name in sorted(old.notify.keys() | new.notify.keys()):
        if old.notify.get(name) != new.notify.get(name):
            changes.notify.append(name)
    changes.needs_restart.extend(
        f"[daemon] {key}" for key in RESTART_ONLY if getattr(old.daemon, key) != getattr(new.daemon, key)
    )
    return changes


def describe(changes: dict[str, Any]) -> str:
    """One line for the log and the CLI, from `Changes.as_json()`."""
    parts = []
    for key, label in (("added", "added"), ("removed", "removed"), ("changed", "restarted")):
        if changes[key]:
            parts.append(f"{label} {', '.join(changes[key])}")
    for name, size in changes["resized"].items():
        parts.append(f"resized {name} {size['from']}→{size['to']}")
    if changes["unchanged"]:
        parts.append(f"{len(changes['unchanged'])} program(s) left as they were")
    if changes["jobs"]:
        parts.append(f"updated {', '.join(changes['jobs'])}")
    if changes.get("notify"):  # .get: a daemon older than this CLI does not send it
        parts.append(f"updated notify {', '.join(changes['notify'])}")
    if changes.get("placement"):
        parts.append(f"placed anew {', '.join(changes['placement'])} (singleton, nodes)")
    if changes["needs_restart"]:
        parts.append(f"not applied until the daemon restarts: {', '.join(changes['needs_restart'])}")
    return "; ".join(parts) or "nothing changed"
