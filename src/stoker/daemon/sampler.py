"""The thin shell of the history (stoker.history): what feeds it, and when.

- Job and schedule figures are counted from the daemon's events as they are published
  (`observe`, an EventBus listener): O(1) per event, no query.
- A program's state changes are counted as the supervisor reports them (`changed`).
- Every FINE step (10 s), `run` samples what can only be looked at: each program's memory, CPU
  and running instances and restarts (one pass over /proc or the cgroups for all, as /metrics
  does), the daemon's own RSS and CPU, and each queue's depth (a count in the store, off the
  writer's thread; when it is slow, with a million jobs queued, it is taken less often).

`[daemon] history = false` makes none of this: no timer, no listener.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil

from stoker.config import internal_queues
from stoker.history import DAEMON, FINE, History
from stoker.jobstates import JobState
from stoker.store.base import Job
from stoker.supervise.state import State
from stoker.supervise.supervisor import instance_usage

if TYPE_CHECKING:
    from stoker.jobs.dispatcher import Dispatcher
    from stoker.supervise.instance import Instance
    from stoker.supervise.supervisor import Supervisor

log = logging.getLogger(__name__)

_ENDS = {JobState.SUCCEEDED: "succeeded", JobState.FAILED: "failed"}
#: a queue count that took this share of the step or more is taken less often
_SLOW_SHARE = 0.05


class Sampler:
    def __init__(
        self,
        history: History,
        supervisor: Supervisor,
        dispatcher: Callable[[], Dispatcher | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.history, self.supervisor, self.dispatcher, self.clock = history, supervisor, dispatcher, clock
        self._cpu: dict[int, tuple[float, float]] = {}  # pid → (monotonic time, CPU seconds) at the last look
        self._restarts: dict[str, int] = {}  # program → its instances' restarts at the last look
        self._me = psutil.Process()
        self._my_cpu: tuple[float, float] | None = None
        self._depth_due = 0.0  # monotonic time of the next queue count
        self._config: object = None  # the config `_internal` was read from
        self._internal: frozenset[str] = frozenset()

    def _hidden(self) -> frozenset[str]:
        """The queues of schedules' inline commands: their schedule stands for them (as in the
        API's listings)."""
        dispatcher = self.dispatcher()
        if dispatcher is not None and dispatcher.config is not self._config:
            self._config = dispatcher.config
            self._internal = frozenset(internal_queues(dispatcher.config))
        return self._internal

    # events ---------------------------------------------------------------------------------

    def observe(self, event: dict[str, Any]) -> None:
        """An EventBus listener: a job's enqueue, start and end; a schedule's firing."""
        job = event.get("job")
        if event.get("type") != "job" or not isinstance(job, Job):
            return
        now, add, queue = self.clock(), self.history.add, job.queue
        shown = queue not in self._hidden()
        ended = event.get("attempt_ended")
        if ended is not None:
            if shown:
                add("queues", queue, "run", ended["seconds"], now)
            outcome = _ENDS.get(job.state)
            if outcome is not None:
                if shown:
                    add("queues", queue, outcome, 1, now)
                if job.schedule is not None:
                    add("schedules", job.schedule, outcome, 1, now)
        elif job.state is JobState.RUNNING:
            if shown:
                add("queues", queue, "started", 1, now)
                if job.started_at is not None:
                    add("queues", queue, "wait", max(0.0, job.started_at - job.run_at), now)
        elif job.state is JobState.QUEUED and job.started_at is None:
            if shown:
                add("queues", queue, "enqueued", 1, now)
            if event.get("fired") and job.schedule is not None and job.slot is not None:
                add("schedules", job.schedule, "lateness", max(0.0, job.created_at - job.slot), now)

    def changed(self, inst: Instance) -> None:
        """A supervisor listener: an instance's state changed."""
        self.history.add("programs", inst.spec.program, "changes", 1, self.clock())

    # the timer ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Sample every FINE step, in the middle of each slot, until cancelled."""
        while True:
            now = self.clock()
            await asyncio.sleep((FINE.step / 2 - now % FINE.step) % FINE.step or FINE.step)
            try:
                await self.sample_programs()
                await self.sample_queues()
            except Exception:  # a figure missing from a chart is no reason to stop the daemon
                log.exception("history: a sample failed")

    async def sample_programs(self) -> None:
        instances = list(self.supervisor.instances.values())
        # one pass over /proc for every instance: in a thread, as status and the cluster view
        # measure, so that a thousand programs do not hold the event loop for it
        usage = await asyncio.to_thread(instance_usage, instances)
        now, mono, add = self.clock(), time.monotonic(), self.history.add
        memory: dict[str, float] = {}
        cpu: dict[str, float] = {}
        running: dict[str, float] = {}
        restarts: dict[str, int] = {}
        cpu_now: dict[int, tuple[float, float]] = {}
        for inst in instances:
            program = inst.spec.program
            running[program] = running.get(program, 0) + (inst.state is State.RUNNING)
            restarts[program] = restarts.get(program, 0) + inst.machine.restarts
            used = usage.get(inst.pid) if inst.pid is not None else None
            if used is None or inst.pid is None:
                continue
            memory[program] = memory.get(program, 0) + used.memory
            cpu_now[inst.pid] = (mono, used.cpu_seconds)
            before = self._cpu.get(inst.pid)
            if before is not None and mono > before[0]:
                share = 100 * max(0.0, used.cpu_seconds - before[1]) / (mono - before[0])
                cpu[program] = cpu.get(program, 0) + share
        self._cpu = cpu_now
        for program, count in running.items():
            add("programs", program, "running", count, now)
            add("programs", program, "memory", memory.get(program, 0), now)
            if program in cpu:
                add("programs", program, "cpu", cpu[program], now)
            before_restarts = self._restarts.get(program)
            if before_restarts is not None:
                add("programs", program, "restarts", max(0, restarts[program] - before_restarts), now)
        self._restarts = restarts
        self.sample_daemon(now, mono)

    def sample_daemon(self, now: float, mono: float) -> None:
        with self._me.oneshot():
            rss = self._me.memory_info().rss
            times = self._me.cpu_times()
        seconds = times.user + times.system
        self.history.add("daemon", DAEMON, "rss", rss, now)
        if self._my_cpu is not None and mono > self._my_cpu[0]:
            share = 100 * max(0.0, seconds - self._my_cpu[1]) / (mono - self._my_cpu[0])
            self.history.add("daemon", DAEMON, "cpu", share, now)
        self._my_cpu = (mono, seconds)

    async def sample_queues(self) -> None:
        dispatcher = self.dispatcher()
        began = time.monotonic()
        if dispatcher is None or began < self._depth_due:
            return
        counts = await dispatcher.store.queue_counts()
        took = time.monotonic() - began
        # a count of a million queued jobs takes half a second: then once a minute or so
        self._depth_due = began + (took / _SLOW_SHARE if took > _SLOW_SHARE * FINE.step else 0)
        now, hidden = self.clock(), self._hidden()
        for name in dispatcher.config.queues:
            if name in hidden:
                continue
            counted = counts.get(name)
            self.history.add("queues", name, "depth", counted.queued if counted is not None else 0, now)
