"""What a reload changes: the difference between the running config and the file as it is now.

Pure: two validated configs in, a plan out. The daemon applies it (programs through the
supervisor, tasks and queues through the dispatcher, schedules through the scheduler) and
answers with `Changes.as_json()`. A program counts as changed only if something that shapes
its processes changed; its instance count alone is a resize, which starts or stops only the
instances added or removed; its placement alone (`singleton`, `nodes`) is applied to the running
instances: a node that may still run the program keeps its processes. `[daemon]` settings
that are bound once at start (the socket, the TCP door, the store…) cannot change under a
running daemon: they are reported, not applied.
Tasks, queues, schedules and `[notify.*]` webhooks are applied live, each listed as added,
updated or removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from stoker.config import Config

# [daemon] keys bound at start
RESTART_ONLY = ("state_dir", "listen", "token", "store", "node", "node_timeout", "history")


@dataclass(frozen=True)
class Delta:
    """Named things of one kind (tasks, queues, schedules, webhooks) that came, changed or went."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @classmethod
    def between(cls, before: Mapping[str, object], after: Mapping[str, object]) -> Delta:
        return cls(
            added=sorted(after.keys() - before.keys()),
            updated=sorted(name for name in after.keys() & before.keys() if after[name] != before[name]),
            removed=sorted(before.keys() - after.keys()),
        )

    def names(self) -> list[str]:
        return sorted([*self.added, *self.updated, *self.removed])

    def as_json(self) -> dict[str, list[str]]:
        return {"added": self.added, "updated": self.updated, "removed": self.removed}


JOB_KINDS = ("task", "queue", "schedule")  # in the order a person reads them


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
    # the same as `jobs` and `notify`, told apart: {"task": Delta, "queue": …, "schedule": …}
    kinds: dict[str, Delta] = field(default_factory=dict)
    webhooks: Delta = field(default_factory=Delta)

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
            **{f"{kind}s": self.kinds.get(kind, Delta()).as_json() for kind in JOB_KINDS},
            "webhooks": self.webhooks.as_json(),
        }


def diff(old: Config, new: Config) -> Changes:
    kinds = {kind: Delta.between(getattr(old, f"{kind}s"), getattr(new, f"{kind}s")) for kind in JOB_KINDS}
    webhooks = Delta.between(old.notify, new.notify)
    changes = Changes(
        jobs=[f"{kind} {name}" for kind, delta in kinds.items() for name in delta.names()],  # by kind
        notify=webhooks.names(),
        kinds=kinds,
        webhooks=webhooks,
    )
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
    if "tasks" in changes:  # (a daemon older than this CLI sends only `jobs` and `notify`)
        for how in ("added", "updated", "removed"):
            named = [f"{kind} {name}" for kind in JOB_KINDS for name in changes[f"{kind}s"][how]]
            if named:
                parts.append(f"{how} {', '.join(named)}")
        for how in ("added", "updated", "removed"):
            if changes["webhooks"][how]:
                parts.append(f"{how} webhook {', '.join(changes['webhooks'][how])}")
    else:
        if changes["jobs"]:
            parts.append(f"updated {', '.join(changes['jobs'])}")
        if changes.get("notify"):
            parts.append(f"updated notify {', '.join(changes['notify'])}")
    if changes.get("placement"):
        parts.append(f"placed anew {', '.join(changes['placement'])} (singleton, nodes)")
    if changes["needs_restart"]:
        parts.append(f"not applied until the daemon restarts: {', '.join(changes['needs_restart'])}")
    return "; ".join(parts) or "nothing changed"
