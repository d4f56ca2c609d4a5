"""The scheduler: fires each schedule's slots as jobs, once per slot, on time.

It sleeps until the earliest next slot (no per-second tick), then, for each schedule due, asks
the store to record the slot and enqueue its job in one transaction: a slot already recorded
(before a restart, or by another node) is not fired again. Policies:

- `overlap`: when the schedule's previous job is still queued or running, `skip` records the
  slot as skipped, `allow` fires anyway, `replace` cancels the previous job and fires.
- `catch_up = "latest"`: at start, if the latest slot before now was missed (the daemon was
  down), it fires once, now; `"none"` lets missed slots go, as cron does.
- `jitter`: each job's run_at is its slot plus a random delay up to `jitter`.
- `@reboot`: fires once per machine boot (its slot is the boot time), when the daemon starts.
- `when_file`: a slot fires only while that file exists; otherwise the slot is recorded as
  skipped with its reason, no job is made, and a `schedule` event says so. It is a condition
  the user set, not a failure: no `schedule_missed`, and the streak of missed slots is left
  as it was. `run` (a person asking) is not held back by it, nor by `overlap`.
- pause/resume is persisted; `run` fires at once, outside the slots.

A slot that did not run is published as a `schedule_missed` event (what `[notify]` webhooks and
`/api/v1/events` hear): `reason` is "overlap" (skipped: the previous run was still going),
"down" (the daemon was not running; found at start), "late" (the daemon could not fire it in
time: the machine was suspended, or the daemon stopped), or "error" (the store refused it).
`missed` counts the slots of the event (MISSED_LIMIT of them are listed in `slots`, counting
stops one after), `in_a_row` the schedule's missed slots since its last slot that fired.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from stoker.config import Config, ScheduleConfig
from stoker.jobstates import LIVE
from stoker.schedule.triggers import Reboot, Trigger, fire_times
from stoker.store import Job, NewJob, Store
from stoker.timers import wait_event

log = logging.getLogger("stoker")

MISSED_LIMIT = 1000  # missed slots counted and listed at most in one schedule_missed event


class UnknownSchedule(LookupError):
    pass


def boot_time() -> float | None:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


class Enqueue(Protocol):
    """What the scheduler asks of whoever runs jobs (the daemon hands it its dispatcher): the
    job a slot fires, checked against the config; the replaced job's cancel; and word of the
    job once the store queued it. The scheduler knows nothing else of how jobs run."""

    def new_job(
        self, task_name: str, params: dict[str, Any], *, run_at: float | None = None, now: float,
        schedule: str | None = None
    ) -> NewJob: ...  # fmt: skip

    async def cancel(self, job_id: int) -> Job: ...

    def queued(self, job: Job) -> None: ...


class Scheduler:
    def __init__(
        self,
        config: Config,
        store: Store,
        dispatcher: Enqueue,
        *,
        publish: Callable[[dict[str, Any]], None] = lambda event: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.dispatcher = dispatcher
        # the slots' clock: the wall clock, or on a shared store the daemon's view of the
        # server's (stoker/skew.py), so that a node whose clock is ahead fires nothing early
        self.clock = clock
        self.publish = publish
        self.triggers: dict[str, Trigger] = {name: s.trigger() for name, s in config.schedules.items()}
        self.next_run: dict[str, float | None] = {}
        self.paused: set[str] = set()
        self.missed_in_a_row: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        """Pause state, catch-up of missed slots, @reboot; then the first next runs."""
        self.paused = await self.store.paused_schedules()
        now = self.clock()
        last = await self.store.last_slots()
        for name, schedule in self.config.schedules.items():
            trigger = self.triggers[name]
            self.next_run[name] = trigger.next_after(now)
            if name in self.paused:
                continue
            if isinstance(trigger, Reboot):
                booted = boot_time()
                if booted is not None:
                    await self.fire(name, booted)
                continue
            missed = fire_times(trigger, last[name].slot, MISSED_LIMIT + 1, until=now) if name in last else []
            if schedule.catch_up == "latest" and missed:
                latest = trigger.latest_at_or_before(now)
                assert latest is not None  # there are slots up to now
                lost = [slot for slot in missed if slot != latest]
                if lost:
                    self._missed(name, lost, "down")
                log.info("schedule %s: catching up the slot missed at %s", name, _iso(latest))
                await self.fire(name, latest)
            elif missed:
                self._missed(name, missed, "down")

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            now = self.clock()
            for name, due in list(self.next_run.items()):
                if due is not None and due <= now and name not in self.paused:
                    self.next_run[name] = self.triggers[name].next_after(max(due, now))
                    if due < now - self.config.daemon.keep_jobs:
                        # A pause (SIGSTOP, a frozen VM) longer than slot records are kept: on a
                        # shared store another node fired this slot and its record may be pruned
                        # (Store.prune_slots), so firing it could run it twice.
                        stale = [due, *fire_times(self.triggers[name], due, MISSED_LIMIT, until=now)]
                        self._missed(name, stale, "late")
                        continue
                    try:
                        await self.fire(name, due)
                    except Exception as e:  # the store refused: log it; the next slot is another chance
                        log.exception("schedule %s: could not fire the slot at %s", name, _iso(due))
                        self._missed(name, [due], "error", error=str(e) or type(e).__name__)
                    late = fire_times(self.triggers[name], due, MISSED_LIMIT + 1, until=now)
                    if late:  # woken after more than one slot: only the first one fired
                        self._missed(name, late, "late")
            waiting = [t for n, t in self.next_run.items() if t is not None and n not in self.paused]
            if not waiting:
                await self._wake.wait()
                continue
            delay = min(waiting) - self.clock()
            if delay > 0:
                await wait_event(self._wake, delay)

    def reconfigure(self, config: Config) -> None:
        """Schedules from a reloaded config: added or changed ones are planned from now on,
        removed ones stop firing; the others keep their next run."""
        now = self.clock()
        before, self.config = self.config.schedules, config
        for name in [n for n in self.triggers if n not in config.schedules]:
            del self.triggers[name]
            self.next_run.pop(name, None)
            self.missed_in_a_row.pop(name, None)
        for name, schedule in config.schedules.items():
            if before.get(name) != schedule:
                self.triggers[name] = schedule.trigger()
                self.next_run[name] = self.triggers[name].next_after(now)
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def fire(self, name: str, slot: float, *, manual: bool = False) -> Job | None:
        """Fire one slot of `name` (or, manual, a run now); the job, or None if skipped or the
        slot was already fired."""
        schedule = self.config.schedules[name]
        now = self.clock()
        # (the stat in a thread: a hung network file system must not stop the event loop)
        gate = None if manual else schedule.when_path
        if gate is not None and not await asyncio.to_thread(os.path.exists, gate):
            reason = f"when_file {schedule.when_file} is absent"
            fired, _ = await self.store.fire(name, slot, None, now, reason)
            if fired:
                log.info("schedule %s: slot %s skipped: %s", name, _iso(slot), reason)
                when = slot_time(self.triggers.get(name), slot)
                self.publish({"type": "schedule", "schedule": name, "skipped": when, "reason": reason})
            return None
        latest = await self.store.latest_job_of(name)
        if latest is not None and latest.state in LIVE and not manual:
            if schedule.overlap == "skip":
                reason = f"overlap: job {latest.id} was still {latest.state}"
                fired, _ = await self.store.fire(name, slot, None, now, reason)
                if fired:
                    log.info("schedule %s: slot %s skipped: job %d is still %s", name, _iso(slot), latest.id,
                             latest.state)  # fmt: skip
                    self._missed(name, [slot], "overlap", job=latest)
                return None
            if schedule.overlap == "replace":
                log.info("schedule %s: replacing job %d", name, latest.id)
                await self.dispatcher.cancel(latest.id)
        jitter = random.uniform(0, schedule.jitter) if schedule.jitter else 0.0
        new = self.dispatcher.new_job(schedule.task, dict(schedule.params), run_at=max(slot, now) + jitter,
                                      now=now, schedule=name)  # fmt: skip
        fired, job = await self.store.fire(name, slot, replace(new, slot=slot), now)
        if job is not None:
            if not manual:
                self.missed_in_a_row.pop(name, None)
            self.publish({"type": "job", "job": job, "fired": True})
            self.dispatcher.queued(job)
        return job

    def _missed(self, name: str, slots: list[float], reason: str, *, job: Job | None = None,
                error: str | None = None) -> None:  # fmt: skip
        """Publish slots of `name` that did not run (at most MISSED_LIMIT of them are listed;
        `missed` counts them all, as far as they were counted)."""
        in_a_row = self.missed_in_a_row.get(name, 0) + len(slots)
        self.missed_in_a_row[name] = in_a_row
        self.publish(
            {
                "type": "schedule_missed",
                "schedule": name,
                "reason": reason,
                "slots": [slot_time(self.triggers.get(name), slot) for slot in slots[:MISSED_LIMIT]],
                "missed": len(slots),
                "in_a_row": in_a_row,
                "job": job,  # the run still going, for "overlap"
                "error": error,
            }
        )

    async def run_now(self, name: str) -> Job:
        self.known(name)
        job = await self.fire(name, self.clock(), manual=True)
        assert job is not None
        return job

    async def pause(self, name: str, paused: bool) -> None:
        self.known(name)
        await self.store.set_schedule_paused(name, paused)
        if paused:
            self.paused.add(name)
        else:
            self.paused.discard(name)
            self.next_run[name] = self.triggers[name].next_after(self.clock())
        self.publish({"type": "schedule", "schedule": name, "paused": paused})
        self._wake.set()

    def apply_paused(self, paused: set[str]) -> None:
        """The paused schedules as the store holds them (another node paused or resumed one); a
        schedule resumed fires from its next slot on, as after `pause(name, False)`."""
        now = self.clock()
        for name in sorted(paused ^ self.paused):
            self.publish({"type": "schedule", "schedule": name, "paused": name in paused})
            if name not in paused and name in self.triggers:
                self.next_run[name] = self.triggers[name].next_after(now)
        self.paused = set(paused)
        self._wake.set()

    def known(self, name: str) -> ScheduleConfig:
        schedule = self.config.schedules.get(name)
        if schedule is None:
            raise UnknownSchedule(
                f"no schedule {name!r} (schedules: {', '.join(self.config.schedules) or 'none'})"
            )
        return schedule


def slot_time(trigger: Trigger | None, t: float) -> dt.datetime:
    """A slot as an aware time: a cron schedule's in its own zone ("03:00+08:00" reads as what
    was asked for), others in the daemon's local zone."""
    zone = getattr(trigger, "zone", None)
    if zone is None:
        return dt.datetime.fromtimestamp(t).astimezone()
    return dt.datetime.fromtimestamp(t, zone)


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
