"""`GET /metrics`: what stoker runs, in Prometheus' text format.

Two kinds of figures:
- read at scrape time, from the one owner of each fact (nothing is copied or kept in step):
  program instances (up, state, restarts, memory) from the supervisor, queue depth and running
  jobs from the store, queue concurrency and pauses from the dispatcher;
- counted as things happen, from the daemon's events: attempts that ended (by queue, task and
  outcome, with a duration histogram), and schedule slots fired (a lateness histogram).

Counters start at zero with each daemon, as Prometheus expects of a process (rate() copes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stoker.jobstates import FINISHED, JobState
from stoker.store.base import Job, QueueCounts
from stoker.supervise.state import State
from stoker.supervise.supervisor import instance_usage

if TYPE_CHECKING:
    from stoker.jobs.dispatcher import Dispatcher
    from stoker.supervise.supervisor import Supervisor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300)


class Metrics:
    """`supervisor`: whose instances are shown; `dispatcher()`: the daemon's dispatcher, if it
    has one yet (a reload adds one with the first task)."""

    def __init__(self, supervisor: Supervisor, dispatcher: Callable[[], Dispatcher | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._live = _Live(supervisor, dispatcher)
        self.registry.register(self._live)
        self.attempts = Counter(
            "stoker_job_attempts",
            'Job attempts that ended, by outcome: "succeeded", "failed", "timed out", "cancelled", '
            '"interrupted" (the daemon stopped: it runs again).',
            ["queue", "task", "outcome"],
            registry=self.registry,
        )
        self.finished = Counter(
            "stoker_jobs_finished",
            "Jobs that reached a final state: succeeded, failed (no attempt left) or cancelled.",
            ["queue", "task", "state"],
            registry=self.registry,
        )
        self.attempt_seconds = Histogram(
            "stoker_job_attempt_duration_seconds",
            "How long job attempts ran, from start to end.",
            ["queue", "task"],
            buckets=ATTEMPT_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, str, JobState], tuple[Any, Any, Any]] = {}
        self.lateness = Histogram(
            "stoker_schedule_lateness_seconds",
            "How late each schedule slot was turned into a job, after its time (jitter excluded).",
            ["schedule"],
            buckets=LATENESS_BUCKETS,
            registry=self.registry,
        )

    def observe(self, event: dict[str, Any]) -> None:
        """An event of the daemon's EventBus (called for each one: keep it cheap)."""
        job = event.get("job")
        if not isinstance(job, Job):
            return
        ended = event.get("attempt_ended")
        if ended:
            key = (job.queue, job.task, ended["outcome"], job.state)
            children = self._children.get(key)
            if children is None:  # (labels() checks and locks each time: a job's end is frequent)
                children = self._children[key] = (
                    self.attempts.labels(job.queue, job.task, ended["outcome"]),
                    self.attempt_seconds.labels(job.queue, job.task),
                    self.finished.labels(job.queue, job.task, str(job.state))
                    if job.state in FINISHED
                    else None,
                )
            attempts, seconds, finished = children
            attempts.inc()
            seconds.observe(ended["seconds"])
            if finished is not None:
                finished.inc()
        elif event.get("fired") and job.schedule is not None and job.slot is not None:
            self.lateness.labels(job.schedule).observe(max(0.0, job.created_at - job.slot))

    async def render(self) -> bytes:
        dispatcher = self._live.dispatcher()
        self._live.queue_counts = await dispatcher.store.queue_counts() if dispatcher is not None else {}
        return generate_latest(self.registry)


class _Live(Collector):
    """Figures read from their owners at each scrape."""

    def __init__(self, supervisor: Supervisor, dispatcher: Callable[[], Dispatcher | None]) -> None:
        self.supervisor, self.dispatcher = supervisor, dispatcher
        self.queue_counts: dict[str, QueueCounts] = {}

    def collect(self) -> Iterator[Metric]:
        yield from self._programs()
        yield from self._queues()

    def _programs(self) -> Iterator[Metric]:
        instances = list(self.supervisor.instances.values())
        labels = ["program", "instance"]
        up = GaugeMetricFamily("stoker_program_up", "1 when the instance is running (ready).", labels=labels)
        states = GaugeMetricFamily(
            "stoker_program_state", "1 for the state each instance is in.", labels=[*labels, "state"]
        )
        restarts = CounterMetricFamily(
            "stoker_program_restarts", "Starts of the instance after its first one.", labels=labels
        )
        memory = GaugeMetricFamily(
            "stoker_program_memory_bytes",
            "Memory of the instance: its cgroup's (every descendant) where it has one, else the RSS of"
            " its process group.",
            labels=labels,
        )
        usage = instance_usage(instances)
        for inst in instances:
            key = [inst.spec.program, str(inst.spec.instance)]
            up.add_metric(key, 1.0 if inst.state is State.RUNNING else 0.0)
            for state in State:
                states.add_metric([*key, str(state)], 1.0 if inst.state is state else 0.0)
            restarts.add_metric(key, inst.machine.restarts)
            if inst.pid is not None:
                memory.add_metric(key, usage[inst.pid].memory if inst.pid in usage else 0)
        yield from (up, states, restarts, memory)

    def _queues(self) -> Iterator[Metric]:
        dispatcher = self.dispatcher()
        if dispatcher is None:
            return
        labels = ["queue"]
        depth = GaugeMetricFamily("stoker_queue_depth", "Jobs waiting in the queue (queued).", labels=labels)
        running = GaugeMetricFamily("stoker_queue_running", "Jobs of the queue running now.", labels=labels)
        limit = GaugeMetricFamily(
            "stoker_queue_concurrency", "Jobs of the queue allowed at once on this node.", labels=labels
        )
        paused = GaugeMetricFamily("stoker_queue_paused", "1 when the queue is paused.", labels=labels)
        for name, queue in dispatcher.config.queues.items():
            counts = self.queue_counts.get(name, QueueCounts())
            depth.add_metric([name], counts.queued)
            running.add_metric([name], counts.running)
            limit.add_metric([name], queue.concurrency)
            paused.add_metric([name], 1.0 if name in dispatcher.paused else 0.0)
        yield from (depth, running, limit, paused)
