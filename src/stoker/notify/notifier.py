"""The daemon's side of `[notify]`: it watches the programs and the event bus, decides (with
`rules`) what is worth a notification, and queues it on each webhook that wants it.

All of this runs on the event loop and does no IO: building a notification and queueing it is
all the supervisor or the dispatcher ever waits for. The POSTs happen in each webhook's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from stoker.config import Config
from stoker.events import EventBus
from stoker.jobstates import JobState
from stoker.notify import rules
from stoker.notify.rules import Change, CrashLoops
from stoker.notify.webhook import Notification, Webhook
from stoker.schedule.scheduler import Scheduler
from stoker.supervise.instance import Instance
from stoker.supervise.state import State, Streak
from stoker.supervise.supervisor import Supervisor
from stoker.views import LIST_OUTPUT, job_json
from stoker.views import describe as instance_json
from stoker.views import describe_schedules as schedule_json

log = logging.getLogger("stoker")


class Notifier:
    """Listens from the moment it is made (so that what the scheduler finds at its start, slots
    missed while the daemon was down, is heard); `run()` delivers until `close()`."""

    def __init__(
        self,
        config: Config,
        supervisor: Supervisor,
        events: EventBus,
        scheduler: Callable[[], Scheduler | None],
    ) -> None:
        self.node = config.daemon.node
        self.supervisor = supervisor
        self.scheduler = scheduler
        self.webhooks: dict[str, Webhook] = {}
        self.loops: dict[str, CrashLoops] = {}  # per webhook: each has its own crash_loop settings
        self._events: set[str] = set()  # what at least one webhook wants
        self._seen = {name: (i.state, i.machine.streak) for name, i in supervisor.instances.items()}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self._exit = contextlib.ExitStack()
        self._subscription = self._exit.enter_context(events.subscribe(self._wanted))
        self._exit.callback(supervisor.subscribe(self._program_changed))
        self.reconfigure(config)

    # lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for name in self.webhooks:
                    self._start(name)
                router = group.create_task(self._route(), name="notify: events")
                await self._stopping.wait()
                router.cancel()
                await self._drain()
        finally:
            self._exit.close()

    def close(self) -> None:
        """Stop: what is queued gets one last try (within the webhooks' timeout), then `run()`
        returns."""
        self._stopping.set()

    def reconfigure(self, config: Config) -> None:
        """Webhooks from a (re)loaded config: a changed one keeps its queue (a fixed url gets
        what was waiting), a removed one drops its queue, a new one starts."""
        for name in [n for n in self.webhooks if n not in config.notify]:
            hook = self.webhooks.pop(name)
            del self.loops[name]
            task = self._tasks.pop(name, None)
            if task is not None:
                task.cancel()
            if left := hook.pending():
                log.warning("%s: removed from the config; %d notification(s) not sent", hook.name, left)
        for name, webhook in config.notify.items():
            if name in self.webhooks:
                self.webhooks[name].config = webhook
            else:
                self.webhooks[name] = Webhook(webhook)
                self._start(name)
            crash_loop = (webhook.crash_loop.count, webhook.crash_loop.within)
            if name not in self.loops or (self.loops[name].count, self.loops[name].within) != crash_loop:
                self.loops[name] = CrashLoops(*crash_loop)
        self._events = {event for webhook in config.notify.values() for event in webhook.events}

    def _start(self, name: str) -> None:
        if self._group is not None and not self._stopping.is_set():
            self._tasks[name] = self._group.create_task(self.webhooks[name].run(), name=f"notify: {name}")

    async def _drain(self) -> None:
        hooks = list(self.webhooks.values())
        for hook in hooks:
            hook.close()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=max(h.config.timeout for h in hooks) + 1)
        for task in late:
            task.cancel()
        left = sum(h.pending() for h in hooks) + len(late)  # + the one each late task was sending
        if late:
            log.warning("notify: the daemon is stopping; %d notification(s) not sent", left)

    # programs ------------------------------------------------------------------------------

    def _program_changed(self, inst: Instance) -> None:
        """Called by the supervisor on every change of an instance: it must never raise."""
        try:
            before = self._seen.get(inst.name, (State.STOPPED, None))
            streak = inst.machine.streak
            self._seen[inst.name] = (inst.state, streak)
            change = rules.program_change(*before, inst.state, streak)
            if change is not None and self.webhooks:
                self._program(inst, change)
        except Exception:
            log.exception("notify: could not handle a change of %s", inst.name)

    def _program(self, inst: Instance, change: Change) -> None:
        if change is Change.CRASH:
            assert inst.machine.streak is not None
            self._crashed(inst, inst.machine.streak)
            return
        for loops in self.loops.values():  # fatal, stopped or exited: whatever loop it was in is over
            loops.rested(inst.name)
        if change is Change.FATAL:
            message = rules.fatal_message(inst.name, inst.machine.error)
            self._send("program_fatal", inst.name, message, program=self._instance(inst))

    def _crashed(self, inst: Instance, streak: Streak) -> None:
        for name, hook in self.webhooks.items():
            if "crash_loop" not in hook.config.events:
                continue
            span = self.loops[name].crashed(inst.name, streak)
            if span is None:
                continue
            m = inst.machine  # its error says how the last run ended (and its last line)
            last = m.error or rules.exit_words(m.exit_code, m.exit_signal)
            message = rules.crash_loop_message(inst.name, self.loops[name].count, span, last)
            hook.offer(self._note("crash_loop", inst.name, message, program=self._instance(inst)))

    def _instance(self, inst: Instance) -> Any:
        return instance_json([inst], self.node, self.supervisor)[0]

    # jobs and schedules --------------------------------------------------------------------

    def _wanted(self, event: dict[str, Any]) -> bool:
        """What the bus hands over (everything else never reaches our queue)."""
        kind = event.get("type")
        if kind == "job":
            return "job_failed" in self._events and event["job"].state == JobState.FAILED
        return kind == "schedule_missed" and "schedule_missed" in self._events

    async def _route(self) -> None:
        async for event in self._subscription:
            try:
                await self._event(event)
            except Exception:
                log.exception("notify: could not handle a %s event", event.get("type"))

    async def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "lagged":
            log.warning("notify: %d event(s) lost: too many at once", event["missed"])
        elif kind == "job":
            job = event["job"]
            message = rules.job_failed_message(job.id, job.task, job.attempt, job.error)
            at = _time(job.finished_at)
            self._send("job_failed", f"job {job.id}", message, at=at, job=job_json(job, limit=LIST_OUTPUT))
        elif kind == "schedule_missed" and rules.starts_streak(event["in_a_row"], event["missed"]):
            name, running = event["schedule"], event["job"]
            message = rules.schedule_missed_message(
                name,
                event["reason"],
                event["slots"],
                missed=event["missed"],
                job_id=running.id if running is not None else None,
                job_state=str(running.state) if running is not None else None,
                error=event["error"],
            )
            details: dict[str, Any] = {
                "reason": event["reason"],
                "missed": event["missed"],
                "slots": event["slots"],
                "schedule": await self._schedule(name),
            }
            if running is not None:
                details["job"] = job_json(running, limit=LIST_OUTPUT)
            self._send("schedule_missed", f"schedule {name}", message, **details)

    async def _schedule(self, name: str) -> Any:
        scheduler = self.scheduler()
        found = await schedule_json(scheduler, [name]) if scheduler is not None else []
        return found[0] if found else {"name": name}  # it left the config meanwhile

    # sending -------------------------------------------------------------------------------

    def _send(self, event: str, about: str, message: str, **details: Any) -> None:
        note = None
        for hook in self.webhooks.values():
            if event in hook.config.events:
                note = note or self._note(event, about, message, **details)
                hook.offer(note)

    def _note(self, event: str, about: str, message: str, *, at: dt.datetime | None = None,
              **details: Any) -> Notification:  # fmt: skip
        head = rules.envelope(
            event, id=uuid.uuid4().hex, node=self.node, at=at or _time(time.time()), message=message
        )
        return Notification(event, about, msgspec.json.encode({**head, **details}))


def _time(t: float | None) -> dt.datetime:
    return dt.datetime.fromtimestamp(t if t is not None else time.time()).astimezone()
