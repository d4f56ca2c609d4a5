"""The cluster view: every node's program instances, from what each published to the shared store.

Pure: it takes this daemon's own rows (live, measured now), the store's node records and the
node timeout, and returns the API's JSON. Nothing here does IO.

This daemon's instances are always its live ones, never its own published snapshot (which is
older). Another node's are the snapshot it last published, with two corrections:
- `uptime` grows by the snapshot's age (measured by the store server's clock, so the machines'
  clocks need not agree) for instances whose uptime counts; the rest is as published.
- `node_silent_for` (seconds since the node's last heartbeat) and `node_lapsed` (silent for
  longer than `node_timeout`: what it published is its last word, not known to hold).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec

from stoker.api import schemas
from stoker.api.common import iso
from stoker.store.base import NodeRecord

log = logging.getLogger("stoker")

# A node silent this long is no longer listed (its row stays until a daemon takes its name
# again): long enough that a node that died at night is still seen, lapsed, in the morning.
FORGET_AFTER = 24 * 3600.0

_COUNTING = frozenset({"starting", "running", "stopping"})  # states whose uptime grows
_SNAPSHOT = msgspec.json.Decoder(list[schemas.ProgramInstance])


def snapshot(record: NodeRecord) -> list[schemas.ProgramInstance]:
    """The instances `record` published, or none (before its first publish, or a snapshot this
    version cannot read: a newer stoker's with a field changed incompatibly)."""
    if record.programs is None:
        return []
    try:
        return _SNAPSHOT.decode(record.programs)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        log.debug("cluster view: cannot read the programs node %s published: %s", record.name, e)
        return []


def remote_programs(record: NodeRecord, timeout: float) -> list[schemas.ProgramInstance]:
    """Another node's instances as the view shows them now (see the module's docstring)."""
    lapsed = record.silent_for > timeout
    age = record.published_ago or 0.0
    shown = []
    for row in snapshot(record):
        uptime = row.uptime
        if uptime is not None and row.state in _COUNTING:
            uptime = round(uptime + max(0.0, age), 3)
        shown.append(
            msgspec.structs.replace(
                row,
                node=record.name,  # the store's name for it, whatever the snapshot says
                uptime=uptime,
                node_silent_for=round(record.silent_for, 3),
                node_lapsed=lapsed,
            )
        )
    return shown


def all_programs(
    local: Sequence[schemas.ProgramInstance], node: str, records: Sequence[NodeRecord], timeout: float
) -> list[schemas.ProgramInstance]:
    """This node's instances first (live), then every other node's, by node name."""
    out = list(local)
    for record in sorted(records, key=lambda r: r.name):
        if record.name != node:
            out.extend(remote_programs(record, timeout))
    return out


def _states(rows: Sequence[schemas.ProgramInstance]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return dict(sorted(counts.items()))


def all_nodes(
    local: Sequence[schemas.ProgramInstance],
    this: schemas.Node,
    records: Sequence[NodeRecord],
    timeout: float,
) -> list[schemas.Node]:
    """This node first (`this`: as it knows itself, with its live instances counted), then the
    others the store lists, by name."""
    out = [msgspec.structs.replace(this, instances=len(local), states=_states(local))]
    for record in sorted(records, key=lambda r: r.name):
        if record.name == this.name:
            continue
        rows = snapshot(record)
        out.append(
            schemas.Node(
                name=record.name,
                local=False,
                alive=record.silent_for <= timeout,
                silent_for=round(record.silent_for, 3),
                host=record.host,
                pid=record.pid,
                version=record.version,
                joined_at=iso(record.joined_at),
                instances=len(rows),
                states=_states(rows),
            )
        )
    return out
