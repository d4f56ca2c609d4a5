"""The ``[schedules.NAME]`` tables: a task enqueued every N seconds or on a cron expression.

:class:`ScheduleConfig` is the validated table; :func:`build_schedule` checks a raw one
against the tasks already read. An inline ``command``/``call`` becomes the task
``schedule.NAME`` (:data:`SCHEDULE_TASK_PREFIX`), which :func:`internal_tasks` and
:func:`internal_queues` keep out of the API's listings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import msgspec

from stoker.config.daemon import DaemonConfig, check_timezone
from stoker.config.errors import Where, check_keys, convert
from stoker.config.jobs import TASK_EXPECTED, QueueConfig, TaskConfig, build_task
from stoker.config.values import DURATION, Duration, check_duration, resolve_path

if TYPE_CHECKING:
    from stoker.config.loading import Config


SCHEDULE_TASK_PREFIX = "schedule."  # the task an inline schedule command becomes: schedule.NAME


class ScheduleConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One ``[schedules.NAME]``: when (``every`` seconds or a ``cron`` expression in
    ``timezone``; None = the system zone) and what (the ``task`` it enqueues, with ``params``;
    an inline ``command``/``call`` becomes the task ``schedule.NAME``: ``inline``), and whether
    (``when_file``, as written: a slot runs only while that file exists; ``when_path`` is it
    resolved against the config's folder)."""

    name: str
    every: float | None = None
    cron: str | None = None
    timezone: str | None = None
    task: str
    params: dict[str, Any] = {}
    overlap: Literal["skip", "allow", "replace"] = "skip"
    catch_up: Literal["none", "latest"] = "none"
    jitter: float = 0.0
    when_file: str | None = None
    when_path: str | None = None
    inline: bool = False

    def trigger(self) -> Any:
        """Its stoker.schedule.triggers trigger (Every, Cron or Reboot)."""
        from stoker.schedule.triggers import Every, parse_cron, zone_named

        if self.every is not None:
            return Every(self.every)
        assert self.cron is not None
        return parse_cron(self.cron, zone_named(self.timezone))


def internal_tasks(config: Config) -> dict[str, str]:
    """The tasks inline schedule commands became (``schedule.NAME``), each to its schedule:
    they run on their schedule's slots only, so the API neither lists nor enqueues them."""
    return {s.task: s.name for s in config.schedules.values() if s.inline}


def internal_queues(config: Config) -> dict[str, str]:
    """The queues stoker made for inline schedule commands (``schedule.NAME``, when the command
    names no ``queue``), each to its schedule; a queue a listed task uses too is not one."""
    owned = internal_tasks(config)
    public = {task.queue for name, task in config.tasks.items() if name not in owned}
    return {
        name: schedule
        for name, schedule in owned.items()
        if config.tasks[name].queue == name and name not in public
    }


_SCHEDULE_EXPECTED: dict[str, str] = {
    "every": DURATION,
    "cron": 'a cron expression like "*/30 * * * *" or "@daily"',
    "timezone": 'a time zone name like "Asia/Shanghai" or "UTC"',
    "task": "the name of a [tasks.NAME] table",
    "params": 'a table of parameters, like { channel = "android" }',
    "overlap": 'one of "skip", "allow", "replace"',
    "catch_up": 'one of "none", "latest"',
    "jitter": DURATION,
    "when_file": "a path (relative to the config file's folder): a slot runs only while it exists",
}


# An inline command takes these task keys too (it becomes the task schedule.NAME).
_INLINE_TASK_KEYS = tuple(k for k in TASK_EXPECTED if "." not in k and k != "params")


class _RawSchedule(msgspec.Struct, forbid_unknown_fields=True):
    every: Duration | None = None
    cron: str | None = None
    timezone: str | None = None
    task: str | None = None
    params: dict[str, Any] = {}
    overlap: Literal["skip", "allow", "replace"] = "skip"
    catch_up: Literal["none", "latest"] = "none"
    jitter: Duration = 0.0
    when_file: str | None = None


def build_schedule(
    name: str,
    raw: dict[str, Any],
    where: Where,
    directory: str,
    daemon: DaemonConfig,
    tasks: dict[str, TaskConfig],
    queues: dict[str, QueueConfig],
) -> ScheduleConfig:
    from stoker.schedule.triggers import Every, TriggerError, parse_cron, zone_named

    known = [k for k in _SCHEDULE_EXPECTED]
    check_keys(raw, where, (*known, *_INLINE_TASK_KEYS), {"backoff": ("min", "max")})
    schedule_raw = {k: v for k, v in raw.items() if k in _SCHEDULE_EXPECTED}
    task_raw = {k: v for k, v in raw.items() if k in _INLINE_TASK_KEYS}
    parsed = convert(schedule_raw, _RawSchedule, where, _SCHEDULE_EXPECTED)
    if (parsed.every is None) == (parsed.cron is None):
        raise where.error(None, "a schedule needs exactly one of every or cron", "every or cron")
    timezone = parsed.timezone if parsed.timezone is not None else daemon.timezone
    if parsed.timezone is not None:
        timezone = check_timezone(parsed.timezone, where)
    every = None
    if parsed.every is not None:
        every = check_duration(parsed.every, where, "every")
        try:
            Every(every)
        except TriggerError as e:
            raise where.bad("every", str(e), parsed.every) from None
        if parsed.timezone is not None:
            raise where.error(
                "timezone",
                "only a cron schedule has a time zone (every counts from the epoch)",
                "no timezone",
            )
    if parsed.cron is not None:
        try:
            parse_cron(parsed.cron, zone_named(timezone))
        except TriggerError as e:
            raise where.error("cron", str(e), _SCHEDULE_EXPECTED["cron"]) from None
    inline = "command" in task_raw or "call" in task_raw
    if (parsed.task is not None) == inline:
        raise where.error(
            None, "a schedule needs exactly one of task (a [tasks.NAME]) or command / call", "task or command"
        )
    if parsed.task is not None:
        if task_raw:
            key = next(iter(task_raw))
            raise where.error(
                key, f"belongs to the task {parsed.task!r}, not to the schedule", "no task keys with task ="
            )
        task = tasks.get(parsed.task)
        if task is None:
            names = ", ".join(t for t in tasks if not t.startswith(SCHEDULE_TASK_PREFIX)) or "none"
            raise where.error(
                "task", f"no task {parsed.task!r} in the config (tasks: {names})", "a task name"
            )
    else:
        task_name = SCHEDULE_TASK_PREFIX + name
        if task_name in tasks:
            raise where.error(
                None, f"its inline command would be the task {task_name!r}, which exists", "another name"
            )
        if "queue" not in task_raw:
            # Its own queue, so that another schedule's long job never delays this one; with
            # overlap = "allow" runs may pile up side by side, so the queue lets them.
            task_raw["queue"] = task_name
            queues.setdefault(
                task_name, QueueConfig(name=task_name, concurrency=64 if parsed.overlap == "allow" else 1)
            )
        task = build_task(task_name, task_raw, where, directory)
        tasks[task_name] = task
    try:
        params = task.accept_params(parsed.params)
    except ValueError as e:
        raise where.error("params", str(e), "parameters that fit the task") from None
    jitter = check_duration(parsed.jitter, where, "jitter")
    when_path = None
    if parsed.when_file is not None:
        when_path = resolve_path(parsed.when_file.strip(), where, "when_file", directory)
    return ScheduleConfig(
        name=name,
        every=every,
        cron=" ".join(parsed.cron.split()) if parsed.cron is not None else None,
        timezone=timezone,
        task=task.name,
        params=params,
        overlap=parsed.overlap,
        catch_up=parsed.catch_up,
        jitter=jitter,
        when_file=None if parsed.when_file is None else parsed.when_file.strip(),
        when_path=when_path,
        inline=inline,
    )
