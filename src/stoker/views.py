"""The JSON views of the daemon's live objects (program instances, jobs, schedules), in the
contract's shapes (api/schemas.py): what the API answers and what notifications carry.

Starlette-free and below both: the API's routes (api/) and the notifications (notify/) import
them from here, so that notifying never pulls in the web framework, nor a route module.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec

from stoker.api import schemas
from stoker.api.usage import CpuMeter
from stoker.schedule.scheduler import Scheduler, slot_time
from stoker.store import Job
from stoker.supervise.instance import Instance
from stoker.supervise.procs import GroupUsage
from stoker.supervise.supervisor import Supervisor, instance_usage

LIST_OUTPUT = 2048  # listings carry the end of each job's output; GET /jobs/{id} the last 64 KB


def iso(ts: float | None) -> dt.datetime | None:
    """Unix seconds as an aware datetime in the daemon's local zone (ISO 8601 with offset)."""
    return None if ts is None else dt.datetime.fromtimestamp(ts).astimezone()


def describe(
    instances: list[Instance],
    node: str,
    sup: Supervisor,
    meter: CpuMeter | None = None,
    usage: dict[int, GroupUsage] | None = None,
) -> list[schemas.ProgramInstance]:
    """The instances as JSON. With `meter`, memory and CPU are measured (one pass over /proc,
    unless `usage` holds its result already); without, they are null: a state-change event
    must not cost a scan."""
    if usage is None:
        usage = instance_usage(instances) if meter is not None else {}
    cpu: dict[int, float | None] = {}
    if meter is not None:
        wall = time.time()
        lifetimes = {i.pid: wall - i.started_wall for i in instances if i.pid and i.started_wall}
        cpu = meter.look({pid: u.cpu_seconds for pid, u in usage.items()}, lifetimes, time.monotonic())
        meter.keep_only(i.pid for i in sup.instances.values() if i.pid is not None)
    out = []
    for inst in instances:
        m = inst.machine
        up = inst.uptime()
        loop = inst.crash_loop()
        out.append(
            schemas.ProgramInstance(
                name=inst.name,
                program=inst.spec.program,
                instance=inst.spec.instance,
                state=str(m.state),
                pid=m.pid,
                exit_code=m.exit_code,
                restarts=m.restarts,
                started_at=iso(inst.started_wall) if m.pid is not None else None,
                uptime=None if up is None else round(up, 3),
                memory=usage[m.pid].memory if m.pid in usage else None,
                node=node,
                error=m.error,
                waiting_for=list(inst.waiting_for),
                status_text=inst.status_text,
                stopped_by_hand=inst.name in sup.holds,
                cpu=cpu.get(m.pid) if m.pid is not None else None,
                singleton=inst.program.singleton,
                holder=sup.holder(inst.program),
                placement=sup.placement_of(inst),
                crash_loop=None
                if loop is None
                else schemas.CrashLoop(exits=loop.ends, seconds=round(loop.last - loop.first, 3)),
                retry_at=iso(inst.retry_at()),
            )
        )
    return out


def program_snapshots(sup: Supervisor) -> Callable[[bool], Awaitable[bytes]]:
    """What this node publishes for the cluster view (daemon/cluster.py's Publisher): every
    instance as JSON. Measured (memory and CPU over the heartbeat's interval, with a meter of its
    own so API looks and publishes do not shorten each other's windows; the /proc pass in a
    thread), or, between heartbeats, with the last measured figures of each process kept."""
    meter = CpuMeter()
    measured: dict[int, tuple[int | None, float | None]] = {}  # pid → (memory, cpu) of the last measure

    async def snapshot(measure: bool) -> bytes:
        nonlocal measured
        node = sup.config.daemon.node
        if measure:
            usage = await asyncio.to_thread(instance_usage, list(sup.instances.values()))
            rows = describe(list(sup.instances.values()), node, sup, meter, usage)
            measured = {row.pid: (row.memory, row.cpu) for row in rows if row.pid is not None}
        else:
            rows = describe(list(sup.instances.values()), node, sup)
            for row in rows:
                if row.pid in measured:  # the same process: its figures of the last measure
                    row.memory, row.cpu = measured[row.pid]
        return msgspec.json.encode(rows)

    return snapshot


def program_events(sup: Supervisor, publish: Callable[[dict[str, Any]], None]) -> Callable[[Instance], None]:
    """The listener (for `Supervisor.subscribe`) that publishes each change of an instance's
    state as a `program` event: without memory or CPU, so that a state change costs no scan."""

    def changed(inst: Instance) -> None:
        [row] = describe([inst], sup.config.daemon.node, sup)
        publish({"type": "program", "program": row})

    return changed


def job_json(job: Job, *, output: str | None = None, limit: int | None = None) -> schemas.Job:
    text = job.output if output is None else output
    if limit is not None and text is not None and len(text) > limit:
        text = text[-limit:]
    return schemas.Job(
        id=job.id,
        task=job.task,
        queue=job.queue,
        state=str(job.state),
        params=job.params,
        priority=job.priority,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        run_at=iso(job.run_at),  # type: ignore[arg-type]
        created_at=iso(job.created_at),  # type: ignore[arg-type]
        started_at=iso(job.started_at),
        finished_at=iso(job.finished_at),
        exit_code=job.exit_code,
        error=job.error,
        output=text,
        result=job.result,
        key=job.key,
        node=job.node,
        schedule=job.schedule,
        slot=iso(job.slot),
    )


async def describe_schedules(s: Scheduler, names: Iterable[str] | None = None) -> list[schemas.Schedule]:
    """Schedules in the contract's JSON shape: all of them, or those `names` (that exist)."""
    last = await s.store.last_slots()
    wanted = s.config.schedules if names is None else [n for n in names if n in s.config.schedules]
    out = []
    for name in wanted:
        config = s.config.schedules[name]
        trigger = s.triggers[name]
        record = last.get(name)
        last_state = None
        if record is not None and record.outcome == "skipped":
            last_state = "skipped"
        elif record is not None and record.job_id is not None:
            job = await s.store.get(record.job_id)
            last_state = str(job.state) if job is not None else None  # None: pruned
        next_run = None if name in s.paused else s.next_run.get(name)
        out.append(
            schemas.Schedule(
                name=name,
                trigger=trigger.describe(),
                timezone=config.timezone if config.cron is not None else None,
                task=config.task,
                paused=name in s.paused,
                next_run=None if next_run is None else slot_time(trigger, next_run),
                last_run=None if record is None else slot_time(trigger, record.slot),
                last_state=last_state,
                last_job=None if record is None else record.job_id,
                last_reason=None if record is None else record.reason,
                when_file=config.when_file,
            )
        )
    return out
