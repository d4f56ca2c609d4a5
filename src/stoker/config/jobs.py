"""The ``[tasks.NAME]`` and ``[queues.NAME]`` tables: what a job may run, and where it waits.

:class:`TaskConfig` (a command or a Python call, with its parameter rules) and
:class:`QueueConfig` are the validated tables; :func:`build_task` and :func:`build_queue`
check the raw ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from stoker.config.errors import Where, check_keys, convert
from stoker.config.values import (
    DURATION,
    ENVIRONMENT_EXPECTED,
    NAME_PATTERN,
    SIZE,
    UMASK_EXPECTED,
    Backoff,
    Duration,
    RawBackoff,
    Size,
    check_backoff,
    check_command,
    check_duration,
    check_environment,
    check_umask,
    name_or_none,
    resolve_path,
)
from stoker.durations import InvalidValue, parse_size
from stoker.jobs.output import MAX_OUTPUT
from stoker.jobs.params import MAX_PARAMS, Param, SpecError, check_size, declare, fill, normalize

_RESERVED_JOB_ENV = ("STOKER_JOB_ID", "STOKER_JOB_ATTEMPT", "STOKER_JOB_PARAMS", "STOKER_TASK")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_CALL = re.compile(f"{_DOTTED}:{_DOTTED}")  # package.module:function
DEFAULT_QUEUE = "default"


class TaskConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One ``[tasks.NAME]`` table: something a job may run (the API can run nothing else).

    Exactly one of ``command`` (an argv template: ``{param}`` fills part of one element) or
    ``call`` (``"package.module:function"``, run in the Python worker pool) is set.
    ``params`` are the parameters it takes and their rules (stoker.jobs.params); a call task
    without ``params`` takes any keyword arguments (``open_ended``).
    """

    name: str
    command: tuple[str, ...] | None = None
    call: str | None = None
    queue: str = DEFAULT_QUEUE
    max_attempts: int = 1
    backoff: Backoff = msgspec.field(default_factory=lambda: Backoff(min=10.0, max=600.0))
    timeout: float | None = None
    stop_timeout: float = 10.0
    directory: str
    environment: dict[str, str] = {}
    inherit_environment: bool = True  # false: a clean environment (stoker.supervise.environment)
    env_file: str | None = None  # absolute; read as each attempt begins (stoker.envfile)
    user: str | None = None
    group: str | None = None
    umask: int | None = None
    params: tuple[Param, ...] = ()
    open_ended: bool = False
    max_params: int = MAX_PARAMS  # bytes of a job's parameters as JSON
    max_output: int = MAX_OUTPUT  # bytes of an attempt's output file; the rest is cut

    @property
    def required(self) -> tuple[str, ...]:
        """The parameters a job must be given."""
        return tuple(p.name for p in self.params if p.required)

    @property
    def optional(self) -> tuple[str, ...]:
        """The parameters a job may be given (a default or the program's own choice applies)."""
        return tuple(p.name for p in self.params if not p.required)

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters to store for a job (typed values converted, defaults filled in), or
        ``ParamError`` (a ValueError) naming the one that does not fit this task."""
        values = normalize(self.name, params, self.params, open_ended=self.open_ended)
        if self.command is not None:
            self.argv(values)
        return values

    def accept_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`check_params` for a new job (or a schedule's): also refused when over max_params."""
        values = self.check_params(params)
        check_size(self.name, values, self.max_params)
        return values

    def argv(self, params: Mapping[str, Any]) -> list[str]:
        """The command's argv for a job's parameters (``ParamError`` if they do not fit)."""
        assert self.command is not None
        return fill(self.command, params, options={p.name for p in self.params if p.allow_option})


DURABILITIES = ("durable", "relaxed")


class QueueConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One queue: how many of its jobs run at once on this node, and whether a job accepted
    into it is on disk before the answer (durable) or only in the operating system's hands
    (relaxed: a process crash loses nothing, a power cut may lose the last moments' jobs; see
    docs/enqueue.md)."""

    name: str
    concurrency: int = 1
    durability: str = "durable"

    @property
    def durable(self) -> bool:
        return self.durability == "durable"


class _RawTask(msgspec.Struct, forbid_unknown_fields=True):
    command: str | list[str] | None = None
    call: str | None = None
    queue: str = DEFAULT_QUEUE
    params: list[str] | dict[str, dict[str, Any]] | None = None
    max_attempts: int = 1
    backoff: RawBackoff = msgspec.field(default_factory=lambda: RawBackoff(min="10s", max="10m"))
    timeout: Duration | None = None
    stop_timeout: Duration = 10.0
    directory: str = "."
    environment: dict[str, str] = {}
    inherit_environment: bool = True
    env_file: str | None = None
    user: str | None = None
    group: str | None = None
    umask: int | str | None = None
    max_params: Size = "64KB"
    max_output: Size = "100MB"


class _RawQueue(msgspec.Struct, forbid_unknown_fields=True):
    concurrency: int = 1
    durability: str = "durable"


TASK_EXPECTED: dict[str, str] = {
    "command": 'an array of strings like ["php", "send.php", "{to}"] or a command string (never a shell)',
    "call": 'a Python callable like "myapp.mail:send_confirm"',
    "queue": "a queue name string",
    "params": 'an array of extra parameter names, like ["to", "subject"], or a table of '
    '[tasks.NAME.params.PARAM] tables, like { count = { type = "int", min = 1 } }',
    "max_attempts": "a whole number, 1 or more (1 = no retry)",
    "backoff": 'a table like { min = "10s", max = "10m" }',
    "backoff.min": DURATION,
    "backoff.max": DURATION,
    "timeout": DURATION,
    "stop_timeout": DURATION,
    "directory": "a path string",
    "environment": ENVIRONMENT_EXPECTED,
    "inherit_environment": "true or false (false: a clean environment, not the daemon's)",
    "env_file": 'a path to a .env file of KEY=VALUE lines, like ".env" (read as each attempt begins)',
    "user": "a user name string",
    "group": "a group name string",
    "umask": UMASK_EXPECTED,
    "max_params": SIZE + " (a job's parameters as JSON)",
    "max_output": SIZE + " (an attempt's output file; the rest is cut)",
}


_QUEUE_EXPECTED: dict[str, str] = {
    "concurrency": "a whole number, 1 or more (jobs of this queue at once on this node)",
    "durability": '"durable" (an accepted job is on disk before the answer) or "relaxed" (the'
    " answer does not wait for the disk's flush: a power cut may lose the last jobs accepted)",
}


def build_task(name: str, raw: dict[str, Any], where: Where, directory: str) -> TaskConfig:
    top_keys = [key for key in TASK_EXPECTED if "." not in key]
    check_keys(raw, where, top_keys, {"backoff": ("min", "max")})
    if ("command" in raw) == ("call" in raw):
        raise where.error(
            None,
            "a task needs exactly one of command (a program to run) or call (a Python function)",
            "command or call",
        )
    parsed = convert(raw, _RawTask, where, TASK_EXPECTED)
    command = call = None
    if parsed.command is not None:
        command = check_command(parsed.command, False, where)
    else:
        assert parsed.call is not None
        if not _CALL.fullmatch(parsed.call.strip()):
            raise where.bad("call", TASK_EXPECTED["call"], parsed.call)
        call = parsed.call.strip()
    try:
        params, open_ended = declare(command, parsed.params)
    except SpecError as e:
        raise where.error(e.key, e.message, e.expected) from None
    if not NAME_PATTERN.fullmatch(parsed.queue):
        raise where.bad("queue", "a queue name matching [A-Za-z0-9_.-]+", parsed.queue)
    if parsed.max_attempts < 1:
        raise where.bad("max_attempts", TASK_EXPECTED["max_attempts"], parsed.max_attempts)
    timeout = None
    if parsed.timeout is not None:
        timeout = check_duration(parsed.timeout, where, "timeout")
        if timeout <= 0:
            raise where.bad("timeout", "a duration greater than zero", parsed.timeout)
    environment = check_environment(parsed.environment, where)
    for variable in environment:
        if variable in _RESERVED_JOB_ENV:
            raise where.error(f"environment.{variable}", "is set by stoker itself", "another variable name")
    return TaskConfig(
        name=name,
        command=command,
        call=call,
        queue=parsed.queue,
        max_attempts=parsed.max_attempts,
        backoff=check_backoff(parsed.backoff, where),
        timeout=timeout,
        stop_timeout=check_duration(parsed.stop_timeout, where, "stop_timeout"),
        directory=resolve_path(parsed.directory, where, "directory", directory),
        environment=environment,
        inherit_environment=parsed.inherit_environment,
        env_file=None
        if parsed.env_file is None
        else resolve_path(parsed.env_file, where, "env_file", directory),
        user=name_or_none(parsed.user, where, "user"),
        group=name_or_none(parsed.group, where, "group"),
        umask=check_umask(parsed.umask, where),
        params=params,
        open_ended=open_ended,
        max_params=_positive_size(parsed.max_params, where, "max_params"),
        max_output=_positive_size(parsed.max_output, where, "max_output"),
    )


def _positive_size(value: int | float | str, where: Where, key: str) -> int:
    try:
        size = parse_size(value, where=key)
    except InvalidValue as exc:
        raise where.bad(key, exc.expected, value) from None
    if size <= 0:
        raise where.bad(key, "a size greater than zero", value)
    return size


def build_queue(name: str, raw: dict[str, Any], where: Where) -> QueueConfig:
    check_keys(raw, where, _QUEUE_EXPECTED)
    parsed = convert(raw, _RawQueue, where, _QUEUE_EXPECTED)
    if parsed.concurrency < 1:
        raise where.bad("concurrency", _QUEUE_EXPECTED["concurrency"], parsed.concurrency)
    if parsed.durability not in DURABILITIES:
        raise where.bad("durability", _QUEUE_EXPECTED["durability"], parsed.durability)
    return QueueConfig(name=name, concurrency=parsed.concurrency, durability=parsed.durability)
