"""stoker.toml: decoded once into immutable, fully validated objects that everyone reads.

Loading happens in three steps, each with one job:

1. ``tomllib`` turns the text into a dict (syntax errors → ``line N: invalid TOML``).
2. A key check walks the dict in file order so that typos and not-yet-implemented features
   are refused by name (with a "did you mean" hint) before anything else: a config must
   never silently do nothing.
3. ``msgspec.convert(..., strict=True)`` checks types against private "raw" structs, and a
   post-validation pass turns raw values (durations, sizes, signals, paths, tokens) into the
   public frozen structs.

Every refusal is a :class:`ConfigError` whose one-line message names the file, the table,
the key and what was expected. No other exception escapes for bad input.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import shlex
import signal
import socket
import tomllib
import zoneinfo
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from stoker.durations import (
    DURATION_EXPECTED,
    SIZE_EXPECTED,
    InvalidValue,
    parse_duration,
    parse_size,
)
from stoker.jobs.output import MAX_OUTPUT
from stoker.jobs.params import MAX_PARAMS, Param, SpecError, check_size, declare, fill, normalize
from stoker.locate import DEFAULT_STATE_DIR, find_config_path, resolve_relative
from stoker.supervise.readiness import EXPECTED as READY_EXPECTED
from stoker.supervise.readiness import ReadyError, parse_ready

__all__ = [
    "STARTER_TOML",
    "Backoff",
    "Config",
    "ConfigError",
    "DaemonConfig",
    "InstanceSpec",
    "LogConfig",
    "NotifyConfig",
    "ProgramConfig",
    "find_config_path",
    "load_config",
    "parse_config",
]


_PROGRAM_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_RESERVED_PROGRAM_NAMES = frozenset({"all"})  # "all" means every program on the CLI
_RESERVED_ENV = ("STOKER_PROGRAM", "STOKER_INSTANCE")
_RESERVED_JOB_ENV = ("STOKER_JOB_ID", "STOKER_JOB_ATTEMPT", "STOKER_JOB_PARAMS", "STOKER_TASK")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_CALL = re.compile(f"{_DOTTED}:{_DOTTED}")  # package.module:function
DEFAULT_QUEUE = "default"
_TABLES = ("daemon", "programs", "tasks", "queues", "schedules", "notify")
SCHEDULE_TASK_PREFIX = "schedule."  # the task an inline schedule command becomes: schedule.NAME
_MISSING: Any = object()


# --------------------------------------------------------------------------------------------
# The error
# --------------------------------------------------------------------------------------------


class ConfigError(Exception):
    """A config that stoker refuses, with everything a person needs to fix it.

    ``str(err)`` is one line: ``FILE: [TABLE] KEY: expected …, got …`` (or a variant for
    unknown keys, TOML syntax errors and missing files). The parts are also attributes so
    the CLI and the API can present them structurally:

    - ``file``: the config file path as a string
    - ``table``: e.g. ``"programs.mailer"``, or ``None`` for the top level / the whole file
    - ``key``: e.g. ``"restart"`` or ``"log.max_size"``, or ``None``
    - ``expected``: what would have been accepted, in words
    - ``line``: the line number for TOML syntax errors, else ``None``
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        table: str | None = None,
        key: str | None = None,
        expected: str = "",
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.table = table
        self.key = key
        self.expected = expected
        self.line = line

    def __str__(self) -> str:
        return self.message


class _Where:
    """A position in the config (file + table) that builds errors located there."""

    def __init__(self, file: str, table: str | None, env_read: set[str] | None = None) -> None:
        self.file = file
        self.table = table
        # the variables `env:` has read secrets from, anywhere in the file (Config.env_secrets)
        self.env_read: set[str] = set() if env_read is None else env_read

    def _prefix(self) -> str:
        return f"{self.file}: [{self.table}] " if self.table else f"{self.file}: "

    def error(self, key: str | None, text: str, expected: str) -> ConfigError:
        """``FILE: [TABLE] KEY: TEXT`` (an odd key is quoted so the message stays one line)."""
        shown = key if key is None or key.isprintable() else json.dumps(key)
        where = f"{shown}: " if shown else ""
        return ConfigError(
            f"{self._prefix()}{where}{text}",
            file=self.file,
            table=self.table,
            key=key,
            expected=expected,
        )

    def bad(self, key: str, expected: str, value: object = _MISSING) -> ConfigError:
        """``FILE: [TABLE] KEY: expected EXPECTED, got VALUE``."""
        got = "" if value is _MISSING else f", got {_show(value)}"
        return self.error(key, f"expected {expected}{got}", expected)

    def unknown(self, key: str, candidates: Iterable[str], *, what: str = "key") -> ConfigError:
        """``FILE: [TABLE] unknown key "X" (did you mean "Y"?)``."""
        choices = sorted(set(candidates))
        close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        quoted = json.dumps(key, ensure_ascii=False)  # one line, whatever the key holds
        shown = f"[{key}]" if what == "table" and quoted == f'"{key}"' else quoted
        expected = "one of " + ", ".join(f'"{c}"' for c in choices)
        return ConfigError(
            f"{self._prefix()}unknown {what} {shown}{hint}",
            file=self.file,
            table=self.table,
            key=key,
            expected=expected,
        )

    def at(self, table: str) -> _Where:
        return _Where(self.file, table, self.env_read)


def _show(value: object, limit: int = 60) -> str:
    """Render a TOML value compactly, in TOML spelling, always on one line."""
    text = _toml_repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, list):
        return f"an array of {len(value)} items"
    if isinstance(value, dict):
        return "a table"
    return text[: limit - 2] + "…" + text[-1]


def _toml_repr(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, datetime | date | time):
        return f"{value.isoformat()} (a date/time)"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_repr(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(str(k))} = {_toml_repr(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return repr(value)


# --------------------------------------------------------------------------------------------
# Public, immutable config objects
# --------------------------------------------------------------------------------------------


class LogConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where a program's output goes and how much of it is kept.

    ``max_size`` is in bytes (1KB = 1024); ``keep`` rotated files are kept besides the current
    one; ``stderr = "merge"`` interleaves stderr into the stdout log, ``"separate"`` writes a
    second file; ``timestamps`` prefixes each line with the time it was read.
    """

    max_size: int = 50 * 1024 * 1024
    keep: int = 10
    stderr: Literal["merge", "separate"] = "merge"
    timestamps: bool = False


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """Delay bounds in seconds between failed starts (exponential with jitter in between)."""

    min: float = 1.0
    max: float = 60.0


class InstanceSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Exactly what to exec for one instance, with ``{instance}`` already expanded.

    ``environment`` holds only what the config adds (plus ``STOKER_PROGRAM`` and
    ``STOKER_INSTANCE``); the runtime layers it over the daemon's own environment.
    """

    name: str
    program: str
    instance: int
    argv: tuple[str, ...]
    environment: dict[str, str]
    directory: str
    ready: str | None = None  # the readiness check, as written (see stoker.supervise.readiness)


class ProgramConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One ``[programs.NAME]`` table, validated; durations in seconds, sizes in bytes.

    ``command`` is the argv (``{instance}`` not yet expanded: use :meth:`spec`); with
    ``shell = true`` it is ``("/bin/sh", "-c", "<the string>")``. ``directory`` is absolute.
    ``user``/``group`` are names as written: they are resolved by the daemon that runs the
    program, which may be on another machine. Equality compares every field, which is what
    reload uses to keep unchanged programs running.
    """

    name: str
    command: tuple[str, ...]
    shell: bool = False
    instances: int = 1
    directory: str
    environment: dict[str, str] = {}
    inherit_environment: bool = True  # false: a clean environment (stoker.supervise.environment)
    user: str | None = None
    group: str | None = None
    umask: int | None = None
    autostart: bool = True
    restart: Literal["always", "on-failure", "never"] = "always"
    success_exit_codes: tuple[int, ...] = (0,)
    start_seconds: float = 1.0
    stable_seconds: float = 60.0  # a run this long ends a crash loop (state.py)
    backoff: Backoff = msgspec.field(default_factory=Backoff)
    max_restarts: int = 0
    stop_signal: int = int(signal.SIGTERM)
    stop_timeout: float = 10.0
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    cron_restart: str | None = None  # a cron expression, read in [daemon] timezone
    max_memory: int | None = None  # bytes of RSS of the whole process tree
    watch: tuple[str, ...] = ()  # absolute paths; a change restarts the program
    watch_ignore: tuple[str, ...] = ()  # glob patterns of paths whose changes do not count
    depends_on: tuple[str, ...] = ()  # programs that must be running before this one starts
    ready: str | None = None  # a readiness check; {instance} is expanded per instance
    ready_timeout: float = 60.0
    watchdog: float | None = None  # seconds between sd_notify WATCHDOG=1 pings, at most
    singleton: bool = False  # cluster: run on one node at a time, the holder of its lease
    nodes: tuple[str, ...] = ()  # fnmatch globs of the node names that may run it; () = every node

    def instance_names(self) -> list[str]:
        """``["mailer:0", "mailer:1", …]``: the names the CLI and the API use."""
        return [f"{self.name}:{i}" for i in range(self.instances)]

    def spec(self, instance: int) -> InstanceSpec:
        """The argv/environment/directory of one instance, ``{instance}`` expanded.

        Plain text replacement, not ``str.format``: commands are full of braces
        (``${VAR}``, inline scripts) that must pass through untouched.
        Raises ``ValueError`` for an instance number outside ``range(instances)``.
        """
        if not 0 <= instance < self.instances:
            raise ValueError(f"program {self.name!r} has instances 0..{self.instances - 1}, not {instance}")
        number = str(instance)

        def expand(text: str) -> str:
            return text.replace("{instance}", number)

        environment = {key: expand(value) for key, value in self.environment.items()}
        environment["STOKER_PROGRAM"] = self.name
        environment["STOKER_INSTANCE"] = number
        return InstanceSpec(
            name=f"{self.name}:{instance}",
            program=self.name,
            instance=instance,
            argv=tuple(expand(arg) for arg in self.command),
            environment=environment,
            directory=expand(self.directory),
            ready=None if self.ready is None else expand(self.ready),
        )


class DaemonConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[daemon]`` table, validated.

    ``state_dir`` is absolute. ``listen`` is normalised (``":9100"`` → ``"127.0.0.1:9100"``);
    use :attr:`listen_host` / :attr:`listen_port` to bind. ``token`` is the resolved secret
    (``env:``/``file:`` already read) and is hidden from ``repr``. ``timezone`` ``None`` means
    the system zone. ``shutdown_timeout`` is in seconds.
    """

    state_dir: str
    listen: str | None = None
    token: str | None = None
    store: str = "sqlite"
    node: str
    timezone: str | None = None
    shutdown_timeout: float = 30.0
    keep_jobs: float = 7 * 86400.0
    worker_max_jobs: int = 10000
    node_timeout: float = 30.0

    @property
    def listen_host(self) -> str | None:
        """Host to bind (IPv6 without brackets), or ``None`` when TCP is off."""
        return None if self.listen is None else _split_listen(self.listen)[0]

    @property
    def listen_port(self) -> int | None:
        """TCP port to bind, or ``None`` when TCP is off."""
        return None if self.listen is None else _split_listen(self.listen)[1]

    @property
    def store_shown(self) -> str:
        """`store` as it may be shown (status, logs): a password in the URL is `***`."""
        return _without_password(self.store)

    def __repr__(self) -> str:
        token = None if self.token is None else "'***'"
        return (
            f"DaemonConfig(state_dir={self.state_dir!r}, listen={self.listen!r}, "
            f"token={token}, store={self.store_shown!r}, node={self.node!r}, "
            f"timezone={self.timezone!r}, shutdown_timeout={self.shutdown_timeout!r}, "
            f"keep_jobs={self.keep_jobs!r}, worker_max_jobs={self.worker_max_jobs!r}, "
            f"node_timeout={self.node_timeout!r})"
        )


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


class QueueConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One queue: how many of its jobs run at once on this node."""

    name: str
    concurrency: int = 1


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


NOTIFY_EVENTS = ("program_fatal", "crash_loop", "job_failed", "schedule_missed")


class CrashLoopConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A crash loop (the state machine's: unexpected ends since the last stable run) is worth
    a notification once ``count`` of its ends fell within ``within`` seconds."""

    count: int = 5
    within: float = 300.0


class NotifyConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One ``[notify.NAME]`` webhook: ``events`` are POSTed to ``url`` as JSON.

    ``url`` and the ``headers`` values are resolved (``env:``/``file:`` already read) and may
    hold secrets, so ``repr`` shows only the URL's scheme and host.
    """

    name: str
    url: str
    events: tuple[str, ...] = NOTIFY_EVENTS
    headers: dict[str, str] = {}
    timeout: float = 5.0
    crash_loop: CrashLoopConfig = msgspec.field(default_factory=CrashLoopConfig)

    @property
    def host(self) -> str:
        """``https://hooks.example.com``: what logs may show of the URL."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def __repr__(self) -> str:
        return (
            f"NotifyConfig(name={self.name!r}, url='{self.host}/***', events={self.events!r}, "
            f"headers={ {k: '***' for k in self.headers}!r}, timeout={self.timeout!r}, "
            f"crash_loop={self.crash_loop!r})"
        )


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """A whole stoker.toml: ``path`` is the absolute file, ``directory`` its folder (the base
    of every relative path in it); ``programs`` keeps file order."""

    path: str
    directory: str
    daemon: DaemonConfig
    programs: dict[str, ProgramConfig] = {}
    tasks: dict[str, TaskConfig] = {}
    queues: dict[str, QueueConfig] = {}
    schedules: dict[str, ScheduleConfig] = {}
    notify: dict[str, NotifyConfig] = {}
    env_secrets: frozenset[str] = frozenset()  # variables `env:` read secrets from: kept from children


# --------------------------------------------------------------------------------------------
# Raw shapes: what TOML may contain, checked strictly by msgspec
# --------------------------------------------------------------------------------------------

_Duration = float | str
_Size = int | float | str


class _RawBackoff(msgspec.Struct, forbid_unknown_fields=True):
    min: _Duration = 1.0
    max: _Duration = 60.0


class _RawLog(msgspec.Struct, forbid_unknown_fields=True):
    max_size: _Size = "50MB"
    keep: int = 10
    stderr: Literal["merge", "separate"] = "merge"
    timestamps: bool = False


class _RawProgram(msgspec.Struct, forbid_unknown_fields=True):
    command: str | list[str]
    shell: bool = False
    instances: int = 1
    directory: str = "."
    environment: dict[str, str] = {}
    inherit_environment: bool = True
    user: str | None = None
    group: str | None = None
    umask: int | str | None = None
    autostart: bool = True
    restart: Literal["always", "on-failure", "never"] = "always"
    success_exit_codes: list[int] = msgspec.field(default_factory=lambda: [0])
    start_seconds: _Duration = 1.0
    stable_seconds: _Duration = 60.0
    backoff: _RawBackoff = msgspec.field(default_factory=_RawBackoff)
    max_restarts: int = 0
    stop_signal: int | str = "TERM"
    stop_timeout: _Duration = 10.0
    log: _RawLog = msgspec.field(default_factory=_RawLog)
    cron_restart: str | None = None
    max_memory: _Size | None = None
    watch: list[str] = []
    watch_ignore: list[str] = []
    depends_on: list[str] = []
    ready: str | None = None
    ready_timeout: _Duration = 60.0
    watchdog: _Duration | None = None
    singleton: bool = False
    nodes: list[str] | None = None


class _RawTask(msgspec.Struct, forbid_unknown_fields=True):
    command: str | list[str] | None = None
    call: str | None = None
    queue: str = DEFAULT_QUEUE
    params: list[str] | dict[str, dict[str, Any]] | None = None
    max_attempts: int = 1
    backoff: _RawBackoff = msgspec.field(default_factory=lambda: _RawBackoff(min="10s", max="10m"))
    timeout: _Duration | None = None
    stop_timeout: _Duration = 10.0
    directory: str = "."
    environment: dict[str, str] = {}
    inherit_environment: bool = True
    user: str | None = None
    group: str | None = None
    umask: int | str | None = None
    max_params: _Size = "64KB"
    max_output: _Size = "100MB"


class _RawQueue(msgspec.Struct, forbid_unknown_fields=True):
    concurrency: int = 1


class _RawDaemon(msgspec.Struct, forbid_unknown_fields=True):
    state_dir: str = DEFAULT_STATE_DIR
    listen: str | None = None
    token: str | None = None
    store: str = "sqlite"
    node: str | None = None
    timezone: str | None = None
    shutdown_timeout: _Duration = 30.0
    keep_jobs: _Duration = "7d"
    worker_max_jobs: int = 10000
    node_timeout: _Duration = "30s"


_DURATION = DURATION_EXPECTED
_SIZE = SIZE_EXPECTED

# What each key accepts, in words; used for type errors reported by msgspec.
_PROGRAM_EXPECTED: dict[str, str] = {
    "command": ('a command string or an array of strings, like "php send.php" or ["php", "send.php"]'),
    "shell": "true or false",
    "instances": "a whole number, 1 or more",
    "directory": "a path string",
    "environment": 'a table of strings, like { APP_ENV = "prod" }',
    "inherit_environment": "true or false (false: a clean environment, not the daemon's)",
    "user": "a user name string",
    "group": "a group name string",
    "umask": 'an octal umask like 0o022 or "022"',
    "autostart": "true or false",
    "restart": 'one of "always", "on-failure", "never"',
    "success_exit_codes": "an array of exit codes (whole numbers 0-255), like [0, 2]",
    "start_seconds": _DURATION,
    "stable_seconds": _DURATION,
    "backoff": 'a table like { min = "1s", max = "60s" }',
    "backoff.min": _DURATION,
    "backoff.max": _DURATION,
    "max_restarts": "a whole number, 0 or more (0 = never give up)",
    "stop_signal": 'a signal name like "TERM", "SIGINT", "hup" or a signal number',
    "stop_timeout": _DURATION,
    "log": 'a table like { max_size = "50MB", keep = 10, stderr = "merge", timestamps = false }',
    "log.max_size": _SIZE,
    "log.keep": "a whole number of rotated files to keep, 0 or more",
    "log.stderr": 'one of "merge", "separate"',
    "log.timestamps": "true or false",
    "cron_restart": 'a cron expression like "0 4 * * *" (restart the program at those times)',
    "max_memory": _SIZE + " (RSS of the program's whole process tree)",
    "watch": 'an array of paths to watch, like ["src/", "config.php"]',
    "watch_ignore": 'an array of glob patterns, like ["*.log", "cache/*"]',
    "depends_on": 'an array of program names, like ["redis"]',
    "ready": READY_EXPECTED,
    "ready_timeout": _DURATION,
    "watchdog": _DURATION + ' (the longest silence between WATCHDOG=1 pings, like "30s")',
    "singleton": "true or false (true: one node of the cluster runs it at a time)",
    "nodes": 'a non-empty array of node names or glob patterns, like ["web-*", "worker-1"]',
}
_DAEMON_EXPECTED: dict[str, str] = {
    "state_dir": "a path string",
    "listen": 'an address like "127.0.0.1:9100", "[::1]:9100" or ":9100"',
    "token": 'a token string, "env:NAME" or "file:PATH"',
    "store": '"sqlite" or a "postgresql://…" URL',
    "node": "a node name string",
    "timezone": 'a time zone name like "Europe/Paris" or "UTC"',
    "shutdown_timeout": _DURATION,
    "keep_jobs": _DURATION + " (how long finished jobs are kept)",
    "worker_max_jobs": "a whole number, 1 or more (jobs a Python worker runs before it is replaced)",
    "node_timeout": _DURATION + " (a node silent this long is taken for dead: others re-queue its jobs)",
}
_TASK_EXPECTED: dict[str, str] = {
    "command": 'an array of strings like ["php", "send.php", "{to}"] or a command string (never a shell)',
    "call": 'a Python callable like "myapp.mail:send_confirm"',
    "queue": "a queue name string",
    "params": 'an array of extra parameter names, like ["to", "subject"], or a table of '
    '[tasks.NAME.params.PARAM] tables, like { count = { type = "int", min = 1 } }',
    "max_attempts": "a whole number, 1 or more (1 = no retry)",
    "backoff": 'a table like { min = "10s", max = "10m" }',
    "backoff.min": _DURATION,
    "backoff.max": _DURATION,
    "timeout": _DURATION,
    "stop_timeout": _DURATION,
    "directory": "a path string",
    "environment": 'a table of strings, like { APP_ENV = "prod" }',
    "inherit_environment": "true or false (false: a clean environment, not the daemon's)",
    "user": "a user name string",
    "group": "a group name string",
    "umask": 'an octal umask like 0o022 or "022"',
    "max_params": _SIZE + " (a job's parameters as JSON)",
    "max_output": _SIZE + " (an attempt's output file; the rest is cut)",
}
_QUEUE_EXPECTED: dict[str, str] = {
    "concurrency": "a whole number, 1 or more (jobs of this queue at once on this node)",
}
_NESTED_PROGRAM_TABLES: dict[str, tuple[str, ...]] = {
    "backoff": ("min", "max"),
    "log": ("max_size", "keep", "stderr", "timestamps"),
}

_T = TypeVar("_T")


def _convert(raw: Mapping[str, Any], kind: type[_T], where: _Where, expected: dict[str, str]) -> _T:
    """Strict msgspec conversion, with its errors re-worded as a located ConfigError."""
    try:
        return msgspec.convert(raw, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise _translate(str(exc), raw, where, expected) from None


_ERROR_PATH = re.compile(r" - at `\$((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")


def _translate(message: str, raw: Mapping[str, Any], where: _Where, expected: dict[str, str]) -> ConfigError:
    """Turn ``Expected `int`, got `str` - at `$.log.keep``` into ``log.keep: expected …``."""
    match = _ERROR_PATH.search(message)
    segments = match.group(1).lstrip(".").split(".") if match and match.group(1) else []
    # The most specific known key: "log.max_size" rather than "log".
    keys = [".".join(segments[:n]) for n in (2, 1) if len(segments) >= n]
    key = next((k for k in keys if k in expected), None)
    if key is None:
        return where.error(None, message, "a valid value")
    if key == "environment" and isinstance(raw.get(key), dict):
        return _bad_environment(raw[key], where)
    return where.bad(key, expected[key], _lookup(raw, key))


def _lookup(raw: Mapping[str, Any], dotted: str) -> object:
    value: Any = raw
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _bad_environment(environment: dict[str, Any], where: _Where) -> ConfigError:
    """Name the variable whose value is not a string, with the fix."""
    for name, value in environment.items():
        if not isinstance(value, str):
            return where.bad(
                f"environment.{name}",
                'a string (quote numbers and booleans, like PORT = "8080")',
                value,
            )
    return where.bad("environment", _PROGRAM_EXPECTED["environment"], environment)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


MAX_CONFIG_SIZE = 10 * 2**20  # a config of a thousand programs is about 100 KB


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file. Raises :class:`ConfigError`, and only that, for any
    problem with the file or its contents."""
    absolute = Path(os.path.abspath(os.fspath(path)))
    file = str(absolute)
    try:
        with open(absolute, "rb") as f:
            data = f.read(MAX_CONFIG_SIZE + 1)  # not all of /dev/zero, or of a log named by mistake
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file", file=file, expected="a stoker.toml file") from None
    except IsADirectoryError:
        raise ConfigError(
            f"{file}: is a directory, not a config file", file=file, expected="a stoker.toml file"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{file}: cannot read: {exc.strerror or exc}", file=file, expected="a readable file"
        ) from None
    if len(data) > MAX_CONFIG_SIZE:
        raise ConfigError(
            f"{file}: larger than {MAX_CONFIG_SIZE // 2**20} MB, which no config is",
            file=file,
            expected="a stoker.toml file",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{file}: not UTF-8 text (bad byte at offset {exc.start})",
            file=file,
            expected="a UTF-8 text file",
        ) from None
    return parse_config(text, absolute)


def parse_config(text: str, path: str | os.PathLike[str]) -> Config:
    """Validate config text as if it were read from ``path`` (which anchors relative paths and
    names the file in errors). Raises :class:`ConfigError` only."""
    path = Path(os.path.abspath(path))
    file = str(path)
    data = _parse_toml(text, file)
    return _build_config(data, file, str(path.parent))


_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def _parse_toml(text: str, file: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(str(exc), text, file) from None
    except RecursionError:  # tomllib recurses once per level of [[[…]]] or {a = {…}}
        raise ConfigError(
            f"{file}: invalid TOML: arrays or inline tables nested too deeply",
            file=file,
            expected="valid TOML",
        ) from None


def _toml_error(message: str, text: str, file: str) -> ConfigError:
    """``FILE: line 3: invalid TOML: Invalid value (column 9)`` from tomllib's wording."""
    match = _TOML_POSITION.search(message)
    detail = message[: match.start()] if match else message
    if match and match.group(1):
        line, suffix = int(match.group(1)), f" (column {match.group(2)})"
    else:
        line, suffix = max(1, text.count("\n") + 1), " (at end of file)"
    return ConfigError(
        f"{file}: line {line}: invalid TOML: {detail}{suffix}",
        file=file,
        expected="valid TOML",
        line=line,
    )


def _build_config(data: dict[str, Any], file: str, directory: str) -> Config:
    top = _Where(file, None)
    _check_top_level(data, top)
    daemon = _build_daemon(_table(data, "daemon", top), top.at("daemon"), directory)
    programs: dict[str, ProgramConfig] = {}
    for name, raw in _table(data, "programs", top).items():
        _check_program_entry(name, raw, top.at("programs"))
        programs[name] = _build_program(name, raw, top.at(f"programs.{name}"), directory, daemon.timezone)
    tasks: dict[str, TaskConfig] = {}
    for name, raw in _table(data, "tasks", top).items():
        _check_entry("task", name, raw, top.at("tasks"))
        tasks[name] = _build_task(name, raw, top.at(f"tasks.{name}"), directory)
    queues: dict[str, QueueConfig] = {}
    for name, raw in _table(data, "queues", top).items():
        _check_entry("queue", name, raw, top.at("queues"))
        queues[name] = _build_queue(name, raw, top.at(f"queues.{name}"))
    schedules: dict[str, ScheduleConfig] = {}
    for name, raw in _table(data, "schedules", top).items():
        _check_entry("schedule", name, raw, top.at("schedules"))
        schedules[name] = _build_schedule(
            name, raw, top.at(f"schedules.{name}"), directory, daemon, tasks, queues
        )
    _check_dependencies(programs, top)
    for task in tasks.values():  # a queue no table declares runs with the defaults
        queues.setdefault(task.queue, QueueConfig(name=task.queue))
    notify: dict[str, NotifyConfig] = {}
    for name, raw in _table(data, "notify", top).items():
        if not isinstance(raw, dict):  # [notify] url = …: one webhook, but without its name
            raise top.at("notify").bad(name, 'one table per webhook, like [notify.ops] with url = "…"', raw)
        _check_entry("webhook", name, raw, top.at("notify"))
        notify[name] = _build_notify(name, raw, top.at(f"notify.{name}"), directory)
    return Config(
        path=file,
        directory=directory,
        daemon=daemon,
        programs=programs,
        tasks=tasks,
        queues=queues,
        schedules=schedules,
        notify=notify,
        env_secrets=frozenset(top.env_read),
    )


def _check_dependencies(programs: Mapping[str, ProgramConfig], top: _Where) -> None:
    """Every `depends_on` names another program of this file, and they form no cycle."""
    for program in programs.values():
        where = top.at(f"programs.{program.name}")
        for other in program.depends_on:
            if other == program.name:
                raise where.error("depends_on", "a program cannot depend on itself", "other program names")
            if other not in programs:
                close = difflib.get_close_matches(other, list(programs), n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                said = f'no program "{other}" in this file{hint}'
                raise where.error("depends_on", said, "names of [programs.NAME] tables")
    cycle = find_cycle({name: program.depends_on for name, program in programs.items()})
    if cycle:
        raise top.at(f"programs.{cycle[0]}").error(
            "depends_on",
            "the programs depend on each other in a circle: " + " → ".join(cycle),
            "dependencies without a cycle",
        )


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """A dependency cycle as a path that ends where it began (`[a, b, a]`), or `[]`."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str]:
        if node in on_path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        path.append(node)
        on_path.add(node)
        for nxt in graph.get(node, ()):
            found = visit(nxt)
            if found:
                return found
        path.pop()
        on_path.discard(node)
        done.add(node)
        return []

    for start in graph:
        found = visit(start)
        if found:
            return found
    return []


def _check_top_level(data: dict[str, Any], top: _Where) -> None:
    for key, value in data.items():
        if key in _TABLES:
            continue
        raise top.unknown(key, _TABLES, what="table" if isinstance(value, dict) else "key")


def _table(data: dict[str, Any], key: str, top: _Where) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        example = "[daemon]" if key == "daemon" else f"[{key}.NAME]"
        raise top.bad(key, f"a table ({example})", value)
    return value


def _check_keys(
    raw: dict[str, Any],
    where: _Where,
    known: Iterable[str],
    nested_tables: Mapping[str, tuple[str, ...]] | None = None,
) -> None:
    """Refuse unknown keys (with a suggestion); nested tables are checked as ``log.x``."""
    known = tuple(known)
    for key, value in raw.items():
        if key not in known:
            raise where.unknown(key, known)
        nested = (nested_tables or {}).get(key)
        if nested is not None and isinstance(value, dict):
            for sub in value:
                if sub not in nested:
                    raise where.unknown(f"{key}.{sub}", (f"{key}.{n}" for n in nested))


# --------------------------------------------------------------------------------------------
# [daemon]
# --------------------------------------------------------------------------------------------


MIN_TOKEN = 16  # characters of a token that guards a listen address other machines can reach


def _build_daemon(raw: dict[str, Any], where: _Where, directory: str) -> DaemonConfig:
    _check_keys(raw, where, _DAEMON_EXPECTED)
    parsed = _convert(raw, _RawDaemon, where, _DAEMON_EXPECTED)
    listen = _parse_listen(parsed.listen, where) if parsed.listen is not None else None
    token = _resolve_token(parsed.token, where, directory) if parsed.token is not None else None
    if listen is not None and token is None and not _is_loopback(_split_listen(listen)[0]):
        raise where.error(
            "listen",
            f"{_show(listen)} is reachable from other machines, so a token is required: "
            'set [daemon] token (e.g. token = "env:STOKER_TOKEN") or listen on 127.0.0.1',
            "a loopback address, or a token",
        )
    # Off loopback a token is guessed from anywhere, at network speed.
    if (
        listen is not None
        and token is not None
        and len(token) < MIN_TOKEN
        and not _is_loopback(_split_listen(listen)[0])
    ):
        count = f"{len(token)} character{'s are' if len(token) > 1 else ' is'}"
        raise where.error(
            "token",
            f"{count} too few to guard {_show(listen)}, which other machines can reach: use at "
            f"least {MIN_TOKEN} (`openssl rand -hex 16` makes one of 32)",
            f"a token of at least {MIN_TOKEN} characters",
        )
    return DaemonConfig(
        state_dir=_resolve_path(parsed.state_dir, where, "state_dir", directory),
        listen=listen,
        token=token,
        store=_check_store(parsed.store, where),
        node=_check_node(parsed.node, where),
        timezone=_check_timezone(parsed.timezone, where),
        shutdown_timeout=_duration(parsed.shutdown_timeout, where, "shutdown_timeout"),
        keep_jobs=_duration(parsed.keep_jobs, where, "keep_jobs"),
        worker_max_jobs=_positive(parsed.worker_max_jobs, where, "worker_max_jobs", _DAEMON_EXPECTED),
        node_timeout=_node_timeout(parsed.node_timeout, where),
    )


def _node_timeout(value: float | str, where: _Where) -> float:
    seconds = _duration(value, where, "node_timeout")
    if seconds < 1:  # heartbeats go every third of it: below a second a busy node would seem dead
        raise where.bad("node_timeout", "a duration of 1s or more", value)
    return seconds


def _positive(value: int, where: _Where, key: str, expected: Mapping[str, str]) -> int:
    if value < 1:
        raise where.bad(key, expected[key], value)
    return value


def _split_listen(listen: str) -> tuple[str, int]:
    """``"[::1]:9100"`` → ``("::1", 9100)``; ``":9100"`` → ``("127.0.0.1", 9100)``.
    Only for strings already accepted by :func:`_parse_listen`."""
    host, _, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") else host
    return host or "127.0.0.1", int(port)


_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _parse_listen(value: str, where: _Where) -> str:
    expected = _DAEMON_EXPECTED["listen"]
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise where.bad("listen", expected + " (port 1-65535)", value)
    if host.startswith("[") and host.endswith("]"):
        if not _is_ip(host[1:-1], version=6):
            raise where.bad("listen", expected + " (bad IPv6 address)", value)
        return f"{host}:{int(port)}"
    if ":" in host:
        raise where.bad("listen", "an IPv6 address in brackets, like [::1]:9100", value)
    host = host or "127.0.0.1"
    if not (_is_ip(host, version=4) or (host.isascii() and _HOSTNAME.fullmatch(host))):
        raise where.bad("listen", expected + " (bad host)", value)
    return f"{host}:{int(port)}"


def _is_ip(text: str, *, version: int) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return address.version == version


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve_token(value: str, where: _Where, directory: str, key: str = "token") -> str:
    """``env:NAME`` and ``file:PATH`` keep secrets out of the config file itself."""
    if value.startswith("env:"):
        name = value[4:]
        token = os.environ.get(name) if name else None
        if token is None:
            raise where.error(
                key,
                f"environment variable {_show(name)} is not set",
                "a set environment variable",
            )
        source = f"environment variable {name}"
        where.env_read.add(name)  # a secret: children do not inherit it (stoker.supervise.environment)
    elif value.startswith("file:"):
        token = _read_token_file(value[5:], where, directory, key)
        source = f"file {value[5:]}"
    else:
        token, source = value, "the value"
    token = token.strip()
    if not token:
        raise where.error(key, f"{source} is empty", f"a non-empty {key}")
    return token


def _read_token_file(name: str, where: _Where, directory: str, key: str = "token") -> str:
    path = _resolve_path(name, where, key, directory)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise where.error(key, f"no such file: {path}", "an existing file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise where.error(key, f"cannot read {path}: {reason}", "a readable UTF-8 file") from None


def _check_store(value: str, where: _Where) -> str:
    if value == "sqlite" or value.startswith(("postgresql://", "postgres://")):
        return value
    raise where.bad("store", _DAEMON_EXPECTED["store"], value)


def _without_password(url: str) -> str:
    """A postgresql:// URL with its password (user:PASSWORD@ or ?password=) as `***`."""
    if "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:***@{host}"
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", f"{scheme}://{authority}{slash}{tail}")


def _check_node(value: str | None, where: _Where) -> str:
    if value is None:
        return socket.gethostname()
    if not value.strip() or not value.isprintable():
        raise where.bad("node", "a non-empty printable node name", value)
    return value


def _check_timezone(value: str | None, where: _Where) -> str | None:
    if value is None:
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise where.bad("timezone", _DAEMON_EXPECTED["timezone"], value) from None
    return value


# --------------------------------------------------------------------------------------------
# [programs.NAME]
# --------------------------------------------------------------------------------------------


def _check_entry(kind: str, name: str, raw: object, where: _Where) -> None:
    """Name and shape checks of a ``[programs|tasks|queues.NAME]`` table, before looking inside."""
    table = "notify" if kind == "webhook" else f"{kind}s"
    if not _PROGRAM_NAME.fullmatch(name) or not name.isascii():
        raise where.error(
            None,
            f"{kind} name {_show(name)} is not allowed: use letters, digits, "
            '"_", "." and "-"' + (' (":" separates the instance number)' if kind == "program" else ""),
            "a name matching [A-Za-z0-9_.-]+",
        )
    if kind == "program" and name in _RESERVED_PROGRAM_NAMES:
        raise where.error(
            None,
            f'program name "{name}" is reserved (it means every program on the command line)',
            "another program name",
        )
    if not isinstance(raw, dict):
        raise where.bad(name, f"a table ([{table}.{name}])", raw)


def _check_program_entry(name: str, raw: object, where: _Where) -> None:
    _check_entry("program", name, raw, where)


def _build_program(
    name: str, raw: dict[str, Any], where: _Where, directory: str, daemon_timezone: str | None = None
) -> ProgramConfig:
    top_keys = [key for key in _PROGRAM_EXPECTED if "." not in key]
    _check_keys(raw, where, top_keys, _NESTED_PROGRAM_TABLES)
    if "command" not in raw:
        raise where.error("command", f"missing; expected {_PROGRAM_EXPECTED['command']}", "a command")
    parsed = _convert(raw, _RawProgram, where, _PROGRAM_EXPECTED)
    return ProgramConfig(
        name=name,
        command=_command(parsed.command, parsed.shell, where),
        shell=parsed.shell,
        instances=_at_least(parsed.instances, 1, where, "instances"),
        directory=_resolve_path(parsed.directory, where, "directory", directory),
        environment=_environment(parsed.environment, where),
        inherit_environment=parsed.inherit_environment,
        user=_name_or_none(parsed.user, where, "user"),
        group=_name_or_none(parsed.group, where, "group"),
        umask=_umask(parsed.umask, where),
        autostart=parsed.autostart,
        restart=parsed.restart,
        success_exit_codes=_exit_codes(parsed.success_exit_codes, where),
        start_seconds=_duration(parsed.start_seconds, where, "start_seconds"),
        stable_seconds=_duration(parsed.stable_seconds, where, "stable_seconds"),
        backoff=_backoff(parsed.backoff, where),
        max_restarts=_at_least(parsed.max_restarts, 0, where, "max_restarts"),
        stop_signal=_signal(parsed.stop_signal, where),
        stop_timeout=_duration(parsed.stop_timeout, where, "stop_timeout"),
        log=_log(parsed.log, where),
        cron_restart=_cron_restart(parsed.cron_restart, where, daemon_timezone),
        max_memory=_max_memory(parsed.max_memory, where),
        watch=tuple(_watch_path(path, where, directory) for path in parsed.watch),
        watch_ignore=tuple(_non_empty(pattern, where, "watch_ignore") for pattern in parsed.watch_ignore),
        depends_on=tuple(_non_empty(other, where, "depends_on") for other in parsed.depends_on),
        ready=_ready(parsed.ready, where),
        ready_timeout=_positive_duration(parsed.ready_timeout, where, "ready_timeout"),
        watchdog=None if parsed.watchdog is None else _positive_duration(parsed.watchdog, where, "watchdog"),
        singleton=parsed.singleton,
        nodes=_nodes(parsed.nodes, where),
    )


def _nodes(value: list[str] | None, where: _Where) -> tuple[str, ...]:
    """`nodes`: globs matched against `[daemon] node` (fnmatch, case-sensitive). An empty array
    would place the program nowhere, which is never what was meant: refused, as is a pattern
    that no node name could match (`[daemon] node` is non-empty and printable)."""
    if value is None:
        return ()
    if not value:
        raise where.bad("nodes", _PROGRAM_EXPECTED["nodes"] + " (remove the key to run on every node)", value)
    for pattern in value:
        if not pattern.strip() or not pattern.isprintable():
            expected = _PROGRAM_EXPECTED["nodes"] + " (no empty or unprintable patterns)"
            raise where.bad("nodes", expected, pattern)
    return tuple(value)


def _max_memory(value: int | float | str | None, where: _Where) -> int | None:
    if value is None:
        return None
    try:
        size = parse_size(value, where="max_memory")
    except InvalidValue as exc:
        raise where.bad("max_memory", exc.expected, value) from None
    if size <= 0:
        raise where.bad("max_memory", "a size greater than zero", value)
    return size


def _watch_path(value: str, where: _Where, directory: str) -> str:
    path = _resolve_path(value, where, "watch", directory)
    if not os.path.exists(path):
        raise where.bad("watch", "paths that exist (relative to the config file's folder)", value)
    return path


def _non_empty(value: str, where: _Where, key: str) -> str:
    if not value.strip():
        raise where.bad(key, _PROGRAM_EXPECTED[key] + " (no empty strings)", value)
    return value


def _ready(value: str | None, where: _Where) -> str | None:
    if value is None:
        return None
    try:
        parse_ready(value.replace("{instance}", "0"))
    except ReadyError as e:
        raise where.error("ready", str(e), READY_EXPECTED) from None
    return value.strip()


def _positive_duration(value: float | str, where: _Where, key: str) -> float:
    seconds = _duration(value, where, key)
    if seconds <= 0:
        raise where.bad(key, "a duration greater than zero", value)
    return seconds


def _cron_restart(value: str | None, where: _Where, timezone: str | None) -> str | None:
    if value is None:
        return None
    from stoker.schedule.triggers import Reboot, TriggerError, parse_cron, zone_named

    try:
        trigger = parse_cron(value, zone_named(timezone))
    except TriggerError as e:
        raise where.error("cron_restart", str(e), _PROGRAM_EXPECTED["cron_restart"]) from None
    if isinstance(trigger, Reboot):
        raise where.bad(
            "cron_restart", "a cron expression with times (a program starts with the daemon anyway)", value
        )
    return " ".join(value.split())


def _command(value: str | list[str], shell: bool, where: _Where) -> tuple[str, ...]:
    """A string is split like a shell would (quotes honoured) but never run by one, unless
    ``shell = true``: then the string goes to ``/bin/sh -c`` as written."""
    if shell:
        if not isinstance(value, str):
            raise where.bad("command", "a string when shell = true", value)
        argv: list[str] = ["/bin/sh", "-c", value] if value.strip() else []
    elif isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise where.bad("command", f"a command line with balanced quotes ({exc})", value) from None
    else:
        argv = list(value)
    if not argv or not argv[0]:
        raise where.bad("command", "a non-empty command", value)
    if any("\0" in arg for arg in argv):
        raise where.bad("command", "no NUL characters", value)
    return tuple(argv)


def _at_least(value: int, minimum: int, where: _Where, key: str) -> int:
    if value < minimum:
        raise where.bad(key, _PROGRAM_EXPECTED[key], value)
    return value


def _resolve_path(value: str, where: _Where, key: str, directory: str) -> str:
    """Relative paths are relative to the config file's folder, never to the cwd."""
    if not value or "\0" in value:
        raise where.bad(key, "a non-empty path", value)
    return resolve_relative(directory, value)


def _environment(value: dict[str, str], where: _Where) -> dict[str, str]:
    for name, text in value.items():
        if not name or "=" in name or "\0" in name:
            raise where.error(
                f"environment.{name}",
                "not a valid variable name (it must be non-empty, without '=')",
                "a variable name",
            )
        if name in _RESERVED_ENV:
            raise where.error(f"environment.{name}", "is set by stoker itself", "another variable name")
        if "\0" in text:
            raise where.bad(f"environment.{name}", "a string without NUL characters", text)
    return dict(value)


def _name_or_none(value: str | None, where: _Where, key: str) -> str | None:
    if value is not None and (not value.strip() or "\0" in value):
        raise where.bad(key, f"a non-empty {key} name", value)
    return value


_OCTAL = re.compile(r"(?:0o)?([0-7]{1,4})")


def _umask(value: int | str | None, where: _Where) -> int | None:
    """``umask = 0o022`` or ``umask = "022"``: a bare ``022`` is not valid TOML, and a
    decimal 22 is almost certainly a mistake, so strings are always read as octal."""
    if value is None:
        return None
    if isinstance(value, str):
        match = _OCTAL.fullmatch(value.strip())
        number = int(match.group(1), 8) if match else -1
    else:
        number = value
    if not 0 <= number <= 0o777:
        raise where.bad("umask", _PROGRAM_EXPECTED["umask"] + " (at most 0o777)", value)
    return number


def _exit_codes(values: list[int], where: _Where) -> tuple[int, ...]:
    if any(not 0 <= code <= 255 for code in values):
        raise where.bad("success_exit_codes", _PROGRAM_EXPECTED["success_exit_codes"], values)
    return tuple(values)


def _duration(value: float | str, where: _Where, key: str) -> float:
    try:
        return parse_duration(value, where=key)
    except InvalidValue as exc:
        raise where.bad(key, exc.expected, value) from None


def _backoff(raw: _RawBackoff, where: _Where) -> Backoff:
    low = _duration(raw.min, where, "backoff.min")
    high = _duration(raw.max, where, "backoff.max")
    if low <= 0:
        raise where.bad("backoff.min", "a duration greater than zero", raw.min)
    if low > high:
        raise where.error(
            "backoff",
            f"min ({_show(raw.min)}) must not be greater than max ({_show(raw.max)})",
            "min <= max",
        )
    return Backoff(min=low, max=high)


def _signal(value: int | str, where: _Where) -> int:
    """``"TERM"``, ``"SIGTERM"``, ``"term"`` or a number → the signal number on this OS."""
    expected = _PROGRAM_EXPECTED["stop_signal"]
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int):
        if value not in signal.valid_signals():
            raise where.bad("stop_signal", expected, value)
        return value
    name = value.strip().upper()
    name = name if name.startswith("SIG") else "SIG" + name
    member = signal.Signals.__members__.get(name)
    if member is None or name.startswith("SIG_"):
        raise where.bad("stop_signal", expected, value)
    return int(member)


def _log(raw: _RawLog, where: _Where) -> LogConfig:
    try:
        max_size = parse_size(raw.max_size, where="log.max_size")
    except InvalidValue as exc:
        raise where.bad("log.max_size", exc.expected, raw.max_size) from None
    if max_size <= 0:
        raise where.bad("log.max_size", "a size greater than zero", raw.max_size)
    if raw.keep < 0:
        raise where.bad("log.keep", _PROGRAM_EXPECTED["log.keep"], raw.keep)
    return LogConfig(max_size=max_size, keep=raw.keep, stderr=raw.stderr, timestamps=raw.timestamps)


# --------------------------------------------------------------------------------------------
# [tasks.*] and [queues.*]
# --------------------------------------------------------------------------------------------


def _build_task(name: str, raw: dict[str, Any], where: _Where, directory: str) -> TaskConfig:
    top_keys = [key for key in _TASK_EXPECTED if "." not in key]
    _check_keys(raw, where, top_keys, {"backoff": ("min", "max")})
    if ("command" in raw) == ("call" in raw):
        raise where.error(
            None,
            "a task needs exactly one of command (a program to run) or call (a Python function)",
            "command or call",
        )
    parsed = _convert(raw, _RawTask, where, _TASK_EXPECTED)
    command = call = None
    if parsed.command is not None:
        command = _command(parsed.command, False, where)
    else:
        assert parsed.call is not None
        if not _CALL.fullmatch(parsed.call.strip()):
            raise where.bad("call", _TASK_EXPECTED["call"], parsed.call)
        call = parsed.call.strip()
    try:
        params, open_ended = declare(command, parsed.params)
    except SpecError as e:
        raise where.error(e.key, e.message, e.expected) from None
    if not _PROGRAM_NAME.fullmatch(parsed.queue):
        raise where.bad("queue", "a queue name matching [A-Za-z0-9_.-]+", parsed.queue)
    if parsed.max_attempts < 1:
        raise where.bad("max_attempts", _TASK_EXPECTED["max_attempts"], parsed.max_attempts)
    timeout = None
    if parsed.timeout is not None:
        timeout = _duration(parsed.timeout, where, "timeout")
        if timeout <= 0:
            raise where.bad("timeout", "a duration greater than zero", parsed.timeout)
    environment = _environment(parsed.environment, where)
    for variable in environment:
        if variable in _RESERVED_JOB_ENV:
            raise where.error(f"environment.{variable}", "is set by stoker itself", "another variable name")
    return TaskConfig(
        name=name,
        command=command,
        call=call,
        queue=parsed.queue,
        max_attempts=parsed.max_attempts,
        backoff=_backoff(parsed.backoff, where),
        timeout=timeout,
        stop_timeout=_duration(parsed.stop_timeout, where, "stop_timeout"),
        directory=_resolve_path(parsed.directory, where, "directory", directory),
        environment=environment,
        inherit_environment=parsed.inherit_environment,
        user=_name_or_none(parsed.user, where, "user"),
        group=_name_or_none(parsed.group, where, "group"),
        umask=_umask(parsed.umask, where),
        params=params,
        open_ended=open_ended,
        max_params=_positive_size(parsed.max_params, where, "max_params"),
        max_output=_positive_size(parsed.max_output, where, "max_output"),
    )


def _positive_size(value: int | float | str, where: _Where, key: str) -> int:
    try:
        size = parse_size(value, where=key)
    except InvalidValue as exc:
        raise where.bad(key, exc.expected, value) from None
    if size <= 0:
        raise where.bad(key, "a size greater than zero", value)
    return size


_SCHEDULE_EXPECTED: dict[str, str] = {
    "every": _DURATION,
    "cron": 'a cron expression like "*/30 * * * *" or "@daily"',
    "timezone": 'a time zone name like "Asia/Shanghai" or "UTC"',
    "task": "the name of a [tasks.NAME] table",
    "params": 'a table of parameters, like { channel = "android" }',
    "overlap": 'one of "skip", "allow", "replace"',
    "catch_up": 'one of "none", "latest"',
    "jitter": _DURATION,
    "when_file": "a path (relative to the config file's folder): a slot runs only while it exists",
}
# An inline command takes these task keys too (it becomes the task schedule.NAME).
_INLINE_TASK_KEYS = tuple(k for k in _TASK_EXPECTED if "." not in k and k != "params")


class _RawSchedule(msgspec.Struct, forbid_unknown_fields=True):
    every: _Duration | None = None
    cron: str | None = None
    timezone: str | None = None
    task: str | None = None
    params: dict[str, Any] = {}
    overlap: Literal["skip", "allow", "replace"] = "skip"
    catch_up: Literal["none", "latest"] = "none"
    jitter: _Duration = 0.0
    when_file: str | None = None


def _build_schedule(
    name: str,
    raw: dict[str, Any],
    where: _Where,
    directory: str,
    daemon: DaemonConfig,
    tasks: dict[str, TaskConfig],
    queues: dict[str, QueueConfig],
) -> ScheduleConfig:
    from stoker.schedule.triggers import Every, TriggerError, parse_cron, zone_named

    known = [k for k in _SCHEDULE_EXPECTED]
    _check_keys(raw, where, (*known, *_INLINE_TASK_KEYS), {"backoff": ("min", "max")})
    schedule_raw = {k: v for k, v in raw.items() if k in _SCHEDULE_EXPECTED}
    task_raw = {k: v for k, v in raw.items() if k in _INLINE_TASK_KEYS}
    parsed = _convert(schedule_raw, _RawSchedule, where, _SCHEDULE_EXPECTED)
    if (parsed.every is None) == (parsed.cron is None):
        raise where.error(None, "a schedule needs exactly one of every or cron", "every or cron")
    timezone = parsed.timezone if parsed.timezone is not None else daemon.timezone
    if parsed.timezone is not None:
        timezone = _check_timezone(parsed.timezone, where)
    every = None
    if parsed.every is not None:
        every = _duration(parsed.every, where, "every")
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
        task = _build_task(task_name, task_raw, where, directory)
        tasks[task_name] = task
    try:
        params = task.accept_params(parsed.params)
    except ValueError as e:
        raise where.error("params", str(e), "parameters that fit the task") from None
    jitter = _duration(parsed.jitter, where, "jitter")
    when_path = None
    if parsed.when_file is not None:
        when_path = _resolve_path(parsed.when_file.strip(), where, "when_file", directory)
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


def _build_queue(name: str, raw: dict[str, Any], where: _Where) -> QueueConfig:
    _check_keys(raw, where, _QUEUE_EXPECTED)
    parsed = _convert(raw, _RawQueue, where, _QUEUE_EXPECTED)
    if parsed.concurrency < 1:
        raise where.bad("concurrency", _QUEUE_EXPECTED["concurrency"], parsed.concurrency)
    return QueueConfig(name=name, concurrency=parsed.concurrency)


# --------------------------------------------------------------------------------------------
# [notify.NAME]
# --------------------------------------------------------------------------------------------

_NOTIFY_EXPECTED: dict[str, str] = {
    "url": 'an http:// or https:// URL, "env:NAME" or "file:PATH"',
    "events": "an array of event names: " + ", ".join(f'"{e}"' for e in NOTIFY_EVENTS),
    "headers": 'a table of header values, like { Authorization = "env:HOOK_TOKEN" }',
    "timeout": _DURATION,
    "crash_loop": 'a table like { count = 5, within = "5m" }',
    "crash_loop.count": "a whole number, 1 or more (unexpected exits that make a crash loop)",
    "crash_loop.within": _DURATION,
}
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)
_FIXED_HEADERS = frozenset({"content-length", "host", "transfer-encoding", "connection"})


class _RawCrashLoop(msgspec.Struct, forbid_unknown_fields=True):
    count: int = 5
    within: _Duration = "5m"


class _RawNotify(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    events: list[str] = msgspec.field(default_factory=lambda: list(NOTIFY_EVENTS))
    headers: dict[str, str] = {}
    timeout: _Duration = "5s"
    crash_loop: _RawCrashLoop = msgspec.field(default_factory=_RawCrashLoop)


def _build_notify(name: str, raw: dict[str, Any], where: _Where, directory: str) -> NotifyConfig:
    top_keys = [key for key in _NOTIFY_EXPECTED if "." not in key]
    _check_keys(raw, where, top_keys, {"crash_loop": ("count", "within")})
    if "url" not in raw:
        raise where.error("url", f"missing; expected {_NOTIFY_EXPECTED['url']}", "a url")
    parsed = _convert(raw, _RawNotify, where, _NOTIFY_EXPECTED)
    events = _notify_events(parsed.events, where)
    if "crash_loop" in raw and "crash_loop" not in events:
        raise where.error(
            "crash_loop", 'is set, but events does not include "crash_loop"', 'events with "crash_loop"'
        )
    timeout = _duration(parsed.timeout, where, "timeout")
    if timeout <= 0:
        raise where.bad("timeout", "a duration greater than zero", parsed.timeout)
    count = parsed.crash_loop.count
    if count < 1:
        raise where.bad("crash_loop.count", _NOTIFY_EXPECTED["crash_loop.count"], count)
    within = _duration(parsed.crash_loop.within, where, "crash_loop.within")
    if within <= 0:
        raise where.bad("crash_loop.within", "a duration greater than zero", parsed.crash_loop.within)
    return NotifyConfig(
        name=name,
        url=_notify_url(parsed.url, where, directory),
        events=events,
        headers=_notify_headers(parsed.headers, where, directory),
        timeout=timeout,
        crash_loop=CrashLoopConfig(count=count, within=within),
    )


def _notify_events(values: list[str], where: _Where) -> tuple[str, ...]:
    if not values:
        raise where.bad("events", "at least one event (remove the key to get them all)", values)
    for value in values:
        if value not in NOTIFY_EVENTS:
            close = difflib.get_close_matches(value, NOTIFY_EVENTS, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise where.error("events", f"unknown event {_show(value)}{hint}", _NOTIFY_EXPECTED["events"])
    return tuple(dict.fromkeys(values))


def _notify_url(value: str, where: _Where, directory: str) -> str:
    """The webhook's URL; like a token it may come from ``env:``/``file:`` (many webhook URLs
    carry their secret in the path), and then an error names the source, not the secret."""
    expected = "an http:// or https:// URL"
    url = _resolve_token(value, where, directory, "url")
    if _is_http_url(url):
        return url
    if value.startswith(("env:", "file:")):
        raise where.error("url", f"{_show(value)} does not hold {expected}", expected)
    raise where.bad("url", _NOTIFY_EXPECTED["url"], value)


def _is_http_url(url: str) -> bool:
    from urllib.parse import urlsplit

    if not url.isascii() or not url.isprintable() or " " in url:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises ValueError here
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _notify_headers(values: dict[str, str], where: _Where, directory: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for header, value in values.items():
        key = f"headers.{header}"
        if not _HEADER_NAME.fullmatch(header):
            raise where.error(key, "is not a valid HTTP header name", "letters, digits and -")
        if header.lower() in _FIXED_HEADERS:
            raise where.error(key, "is set by stoker itself", "another header")
        resolved = _resolve_token(value, where, directory, key)
        if not (resolved.isprintable() and all(ord(c) < 256 for c in resolved)):
            # a line break would start another header; http.client sends Latin-1 only
            raise where.bad(key, "a header value on one line, in Latin-1 characters", value)
        headers[header] = resolved
    return headers


# --------------------------------------------------------------------------------------------
# Starter config
# --------------------------------------------------------------------------------------------

STARTER_TOML = """\
# stoker.toml: what stoker keeps running on this machine.
# Check it with `stoker check`, start everything with `stoker up`.
# Paths are relative to this file's folder. Durations: "250ms", "10s", "5m", "2h", "1d" or
# seconds. Sizes: "512KB", "50MB", "1GB" or bytes (1KB = 1024 bytes).
# Remove the leading "# " of a setting to use it; the values shown are examples.

[daemon]
# state_dir = ".stoker"            # socket, pid file, database and logs
# listen = "127.0.0.1:9100"        # HTTP API + dashboard over TCP (off by default)
# token = "env:STOKER_TOKEN"       # literal, "env:NAME" or "file:PATH"; unset: made (loopback only)
# store = "sqlite"                 # or "postgresql://user@host/db"
# node = "web-1"                   # this machine's name (default: the hostname)
# timezone = "UTC"                 # default zone for schedules (default: the system zone)
# shutdown_timeout = "30s"         # how long running jobs may finish when the daemon stops
# keep_jobs = "7d"                 # finished jobs older than this are deleted
# worker_max_jobs = 10000          # jobs a Python worker runs before a fresh one replaces it
# node_timeout = "30s"             # PostgreSQL: a node silent this long is dead; others re-queue its jobs

# A long-running program, in any language. Replace it with your own.
[programs.worker]
command = ["sh", "-c", 'while true; do echo "worker $STOKER_INSTANCE is working"; sleep 5; done']
# A command can also be one string, split like a shell line (no shell runs it):
# command = "php artisan queue:work --queue=default"
# shell = false                    # true: run the command string with /bin/sh -c
# instances = 1                    # >1 runs worker:0 … worker:N-1; "{instance}" expands
# directory = "."                  # working directory
# environment = { APP_ENV = "production", WORKER_ID = "{instance}" }
# inherit_environment = true       # false: a clean environment (PATH, LANG…), not the daemon's
# user = "www-data"                # drop privileges (when the daemon runs as root): its groups, HOME…
# group = "www-data"
# umask = "022"
# autostart = true                 # start with `stoker up`
# restart = "always"               # always | on-failure | never
# success_exit_codes = [0]         # exits that are not failures (for on-failure)
# start_seconds = "1s"             # must stay up this long to count as started
# stable_seconds = "1m"            # a run this long ends a crash loop (crashes restart at once again)
# backoff = { min = "1s", max = "60s" }   # delay between failed starts (and crashes in a loop), doubling
# max_restarts = 0                 # restarts of a failed start before giving up; 0 = never
# stop_signal = "TERM"             # sent to the whole process group to stop it
# stop_timeout = "10s"             # then SIGKILL
# log = { max_size = "50MB", keep = 10, stderr = "merge", timestamps = false }
# cron_restart = "0 4 * * *"      # also restart it at these times (cron, [daemon] timezone)
# depends_on = ["redis"]           # start once these programs are running; stop before them
# ready = "tcp:8080"               # running once this passes: "tcp:PORT", "http://…/health", "notify"
# ready_timeout = "60s"            # not ready by then: a failed start
# watchdog = "30s"                 # with sd_notify: restart it when WATCHDOG=1 pings stop this long
# max_memory = "512MB"             # RSS of its process tree; above it, a graceful restart
# watch = ["."]                    # restart when files under these paths change
# watch_ignore = ["*.log"]         # changes to these (glob patterns) do not count
# singleton = true                 # cluster (PostgreSQL): one node runs it at a time; failover
# nodes = ["web-*"]                # only nodes whose [daemon] node matches run it

# A job a web app hands off: `stoker enqueue report day=monday`, or POST /api/v1/jobs with
# {"task": "report", "params": {"day": "monday"}}. Only tasks named here can ever run.
[tasks.report]
command = "php report.php {day}"   # {day}: a parameter; it fills one argument, never a shell
# call = "myapp.reports:build"     # or a Python function, run in a warm worker pool
# queue = "default"                # where its jobs wait
# params = ["format"]              # optional parameters besides the {placeholders}
# max_attempts = 3                 # 1 = no retry
# backoff = { min = "10s", max = "10m" }  # delay before a retry, doubling
# timeout = "10m"                  # then the attempt is stopped and counts as failed
# stop_timeout = "10s"             # after SIGTERM (timeout, cancel), SIGKILL
# max_params = "64KB"              # a job's parameters as JSON; larger ones are refused
# max_output = "100MB"             # an attempt's output file; the rest is cut, with a marker line
# Rules for {day}, checked before any job is stored: a [tasks.report.params.day] table (instead
# of the params list) with choices = ["monday", "friday"], or a pattern, or type = "int" with
# min and max, a default… A value that would begin an argument with "-" is refused unless the
# parameter has allow_option = true. See the README's "Typed parameters".

[queues.default]
# concurrency = 2                  # jobs of this queue at once (default 1)

# [notify.ops]                     # a webhook: POSTs a JSON object when something needs a person
# url = "env:OPS_HOOK_URL"         # or a literal https:// URL, or "file:PATH"
# events = ["program_fatal", "crash_loop", "job_failed", "schedule_missed"]   # the default: all four
# headers = { Authorization = "env:OPS_HOOK_TOKEN" }
"""
