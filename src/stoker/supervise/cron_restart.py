"""`cron_restart`: restart a program at the times a cron expression names (pm2's option).

One task for all such programs, sleeping until the earliest next time (no tick). Only
instances that are up (or coming up) are restarted: one stopped by hand stays stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol

from stoker.supervise.supervisor import Supervisor, restartable
from stoker.timers import wait_event

log = logging.getLogger("stoker")


class _Trigger(Protocol):  # what stoker.schedule.triggers' Cron and Every offer
    def next_after(self, t: float) -> float | None: ...


def triggers_of(supervisor: Supervisor) -> dict[str, _Trigger]:
    from stoker.schedule.triggers import parse_cron, zone_named

    zone = zone_named(supervisor.config.daemon.timezone)
    return {
        name: parse_cron(program.cron_restart, zone)
        for name, program in supervisor.config.programs.items()
        if program.cron_restart is not None
    }


async def restart_on_schedule(supervisor: Supervisor, triggers: Mapping[str, _Trigger]) -> None:
    """Run until cancelled."""
    due = {name: trigger.next_after(time.time()) for name, trigger in triggers.items()}
    while True:
        times = [t for t in due.values() if t is not None]
        if not times:
            return
        await wait_event(asyncio.Event(), min(times) - time.time())
        now = time.time()
        for name, at in list(due.items()):
            if at is None or at > now:
                continue
            due[name] = triggers[name].next_after(max(at, now))
            instances = [i for i in supervisor.select([name]) if restartable(i)]
            if instances:
                log.info("%s: cron_restart: restarting %d instance(s)", name, len(instances))
                await supervisor.restart(instances)
