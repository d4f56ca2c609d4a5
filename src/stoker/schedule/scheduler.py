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
- pause/resume is persisted; `run` fires at once, outside the slots.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from stoker.config import Config, ScheduleConfig
from stoker.jobs.dispatcher import Dispatcher
from stoker.jobs.rules import LIVE
from stoker.schedule.triggers import Reboot, Trigger
from stoker.store import Job, Store
from stoker.timers import wait_event

log = logging.getLogger("stoker")


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


class Scheduler:
    def __init__(
        self,
        config: Config,
        store: Store,
        dispatcher: Dispatcher,
        *,
        publish: Callable[[dict[str, Any]], None] = lambda event: None,
    ) -> None:
        self.config = config
        self.store = store
        self.dispatcher = dispatcher
        self.publish = publish
        self.triggers: dict[str, Trigger] = {name: s.trigger() for name, s in config.schedules.items()}
        self.next_run: dict[str, float | None] = {}
        self.paused: set[str] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        """Pause state, catch-up of missed slots, @reboot; then the first next runs."""
        self.paused = await self.store.paused_schedules()
        now = time.time()
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
            elif schedule.catch_up == "latest" and name in last:
                missed = trigger.latest_at_or_before(now)
                if missed is not None and missed > last[name][0]:
                    log.info("schedule %s: catching up the slot missed at %s", name, _iso(missed))
                    await self.fire(name, missed)

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            now = time.time()
            for name, due in list(self.next_run.items()):
                if due is not None and due <= now and name not in self.paused:
                    self.next_run[name] = self.triggers[name].next_after(max(due, now))
                    try:
                        await self.fire(name, due)
                    except Exception:  # the store refused: log it; the next slot is another chance
                        log.exception("schedule %s: could not fire the slot at %s", name, _iso(due))
            waiting = [t for n, t in self.next_run.items() if t is not None and n not in self.paused]
            if not waiting:
                await self._wake.wait()
                continue
            delay = min(waiting) - time.time()
            if delay > 0:
                await wait_event(self._wake, delay)

    def reconfigure(self, config: Config) -> None:
        """Schedules from a reloaded config: added or changed ones are planned from now on,
        removed ones stop firing; the others keep their next run."""
        now = time.time()
        before, self.config = self.config.schedules, config
        for name in [n for n in self.triggers if n not in config.schedules]:
            del self.triggers[name]
            self.next_run.pop(name, None)
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
        now = time.time()
        latest = await self.store.latest_job_of(name)
        if latest is not None and latest.state in LIVE and not manual:
            if schedule.overlap == "skip":
                fired, _ = await self.store.fire(name, slot, None, now)
                if fired:
                    log.info("schedule %s: slot %s skipped: job %d is still %s", name, _iso(slot), latest.id,
                             latest.state)  # fmt: skip
                return None
            if schedule.overlap == "replace":
                log.info("schedule %s: replacing job %d", name, latest.id)
                await self.dispatcher.cancel(latest.id)
        jitter = random.uniform(0, schedule.jitter) if schedule.jitter else 0.0
        new = self.dispatcher.new_job(schedule.task, dict(schedule.params), run_at=max(slot, now) + jitter,
                                      now=now, schedule=name)  # fmt: skip
        fired, job = await self.store.fire(name, slot, replace(new, slot=slot), now)
        if job is not None:
            self.publish({"type": "job", "job": job, "fired": True})
            self.dispatcher.queued(job)
        return job

    async def run_now(self, name: str) -> Job:
        self._known(name)
        job = await self.fire(name, time.time(), manual=True)
        assert job is not None
        return job

    async def pause(self, name: str, paused: bool) -> None:
        self._known(name)
        await self.store.set_schedule_paused(name, paused)
        if paused:
            self.paused.add(name)
        else:
            self.paused.discard(name)
            self.next_run[name] = self.triggers[name].next_after(time.time())
        self.publish({"type": "schedule", "schedule": name, "paused": paused})
        self._wake.set()

    def _known(self, name: str) -> ScheduleConfig:
        schedule = self.config.schedules.get(name)
        if schedule is None:
            raise UnknownSchedule(
                f"no schedule {name!r} (schedules: {', '.join(self.config.schedules) or 'none'})"
            )
        return schedule


def _iso(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
