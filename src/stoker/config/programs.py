"""The ``[programs.NAME]`` tables: long-running programs stoker keeps alive.

:class:`ProgramConfig` (with its :class:`LogConfig` and per-instance :class:`InstanceSpec`)
is the validated table; :func:`build_program` checks one raw table and
:func:`check_dependencies` the ``depends_on`` graph of all of them (no cycle: :func:`find_cycle`).
"""

from __future__ import annotations

import difflib
import os
import signal
from collections.abc import Iterable, Mapping
from typing import Any, Literal

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
from stoker.supervise.limits import MEMORY_FLOOR, WEIGHT_RANGE, Limits
from stoker.supervise.readiness import EXPECTED as READY_EXPECTED
from stoker.supervise.readiness import ReadyError, parse_ready


class LogConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where a program's output goes and how much of it is kept.

    ``max_size`` is in bytes (1KB = 1024); ``keep`` rotated files are kept besides the current
    one; ``stderr = "merge"`` interleaves stderr into the stdout log, ``"separate"`` writes a
    second file; ``timestamps`` prefixes each line with the time it was read, ``markers``
    writes a line at each start and exit of the program (None, for both: on for stoker's own
    files in the state dir, off for a ``file`` you chose and for streams: see
    docs/operating.md).

    ``file`` / ``stderr_file``: where those logs are, absolute (``{instance}`` not yet
    expanded), instead of ``<state_dir>/logs/NAME.N[.err].log``; or one of STREAMS: the
    daemon's own stdout or stderr, or nowhere (``/dev/null``).
    """

    max_size: int = 50 * 1024 * 1024
    keep: int = 10
    stderr: Literal["merge", "separate"] = "merge"
    timestamps: bool | None = None
    markers: bool | None = None
    file: str | None = None
    stderr_file: str | None = None


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
    env_file: str | None = None  # absolute; read as each instance starts (stoker.envfile)
    stop_daemon_on_exit: bool = False  # its exit for good stops the daemon (the container idiom)
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
    memory_max: int | None = None  # bytes; kernel-enforced in the instance's cgroup (limits.py)
    cpu_weight: int | None = None  # 1..10000, the instance cgroup's share of CPU under contention
    tasks_max: int | None = None  # processes and threads in the instance's cgroup, at most
    watch: tuple[str, ...] = ()  # absolute paths; a change restarts the program
    watch_ignore: tuple[str, ...] = ()  # glob patterns of paths whose changes do not count
    depends_on: tuple[str, ...] = ()  # programs that must be running before this one starts
    ready: str | None = None  # a readiness check; {instance} is expanded per instance
    ready_timeout: float = 60.0
    watchdog: float | None = None  # seconds between sd_notify WATCHDOG=1 pings, at most
    singleton: bool = False  # cluster: run on one node at a time, the holder of its lease
    nodes: tuple[str, ...] = ()  # fnmatch globs of the node names that may run it; () = every node
    groups: tuple[str, ...] = ()  # names that select it with others: GROUP:* (supervisord's [group:x])

    def limits(self) -> Limits:
        """What the kernel holds each instance to (its cgroup's memory, CPU and task limits)."""
        return Limits(memory_max=self.memory_max, cpu_weight=self.cpu_weight, tasks_max=self.tasks_max)

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


class _RawLog(msgspec.Struct, forbid_unknown_fields=True):
    max_size: Size = "50MB"
    keep: int = 10
    stderr: Literal["merge", "separate"] | None = None  # None: "merge", or "separate" with stderr_file
    timestamps: bool | None = None  # None: where the log goes decides (LogConfig)
    markers: bool | None = None
    file: str | None = None
    stderr_file: str | None = None


class _RawProgram(msgspec.Struct, forbid_unknown_fields=True):
    command: str | list[str]
    shell: bool = False
    instances: int = 1
    directory: str = "."
    environment: dict[str, str] = {}
    inherit_environment: bool = True
    env_file: str | None = None
    stop_daemon_on_exit: bool = False
    user: str | None = None
    group: str | None = None
    umask: int | str | None = None
    autostart: bool = True
    restart: Literal["always", "on-failure", "never"] = "always"
    success_exit_codes: list[int] = msgspec.field(default_factory=lambda: [0])
    start_seconds: Duration = 1.0
    stable_seconds: Duration = 60.0
    backoff: RawBackoff = msgspec.field(default_factory=RawBackoff)
    max_restarts: int = 0
    stop_signal: int | str = "TERM"
    stop_timeout: Duration = 10.0
    log: _RawLog = msgspec.field(default_factory=_RawLog)
    cron_restart: str | None = None
    max_memory: Size | None = None
    memory_max: Size | None = None
    cpu_weight: int | None = None
    tasks_max: int | None = None
    watch: list[str] = []
    watch_ignore: list[str] = []
    depends_on: list[str] = []
    ready: str | None = None
    ready_timeout: Duration = 60.0
    watchdog: Duration | None = None
    singleton: bool = False
    nodes: list[str] | None = None
    groups: list[str] = []


# What each key accepts, in words; used for type errors reported by msgspec.
_PROGRAM_EXPECTED: dict[str, str] = {
    "command": ('a command string or an array of strings, like "php send.php" or ["php", "send.php"]'),
    "shell": "true or false",
    "instances": "a whole number, 1 or more",
    "directory": "a path string",
    "environment": ENVIRONMENT_EXPECTED,
    "inherit_environment": "true or false (false: a clean environment, not the daemon's)",
    "env_file": 'a path to a .env file of KEY=VALUE lines, like ".env" (read as each instance starts)',
    "stop_daemon_on_exit": "true or false (true: when it exits for good, the daemon stops with its code)",
    "user": "a user name string",
    "group": "a group name string",
    "umask": UMASK_EXPECTED,
    "autostart": "true or false",
    "restart": 'one of "always", "on-failure", "never"',
    "success_exit_codes": "an array of exit codes (whole numbers 0-255), like [0, 2]",
    "start_seconds": DURATION,
    "stable_seconds": DURATION,
    "backoff": 'a table like { min = "1s", max = "60s" }',
    "backoff.min": DURATION,
    "backoff.max": DURATION,
    "max_restarts": "a whole number, 0 or more (0 = never give up)",
    "stop_signal": 'a signal name like "TERM", "SIGINT", "hup" or a signal number',
    "stop_timeout": DURATION,
    "log": 'a table like { max_size = "50MB", keep = 10, stderr = "merge", timestamps = false }',
    "log.file": 'a path like "/var/log/web.log" ("{instance}" in it with instances > 1), '
    '"/dev/stdout", "/dev/stderr" or "/dev/null"',
    "log.stderr_file": 'a path like "/var/log/web.err.log", "/dev/stdout", "/dev/stderr" or "/dev/null"',
    "log.max_size": SIZE,
    "log.keep": "a whole number of rotated files to keep, 0 or more",
    "log.stderr": 'one of "merge", "separate"',
    "log.timestamps": "true or false (each line prefixed with the time it was read)",
    "log.markers": 'true or false (a line "--- started pid N ---" at each start and exit)',
    "cron_restart": 'a cron expression like "0 4 * * *" (restart the program at those times)',
    "max_memory": SIZE + " (RSS of the program's whole process tree)",
    "memory_max": SIZE + " of 8MB or more (the kernel's hard limit on the instance's cgroup)",
    "cpu_weight": "a whole number from 1 to 10000 (100 is an unweighted share of the CPU)",
    "tasks_max": "a whole number, 1 or more (processes and threads of the instance, at most)",
    "watch": 'an array of paths to watch, like ["src/", "config.php"]',
    "watch_ignore": 'an array of glob patterns, like ["*.log", "cache/*"]',
    "depends_on": 'an array of program names, like ["redis"]',
    "ready": READY_EXPECTED,
    "ready_timeout": DURATION,
    "watchdog": DURATION + ' (the longest silence between WATCHDOG=1 pings, like "30s")',
    "singleton": "true or false (true: one node of the cluster runs it at a time)",
    "nodes": 'a non-empty array of node names or glob patterns, like ["web-*", "worker-1"]',
    "groups": 'an array of group names, like ["web"] (the CLI and API select them together as "web:*")',
}


_NESTED_PROGRAM_TABLES: dict[str, tuple[str, ...]] = {
    "backoff": ("min", "max"),
    "log": ("max_size", "keep", "stderr", "timestamps", "markers", "file", "stderr_file"),
}


def check_dependencies(programs: Mapping[str, ProgramConfig], top: Where) -> None:
    """Every `depends_on` names another program of this file, and they form no cycle; no
    group has a program's name (``NAME:*`` would select both)."""
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
        for group in program.groups:
            if group in programs:
                said = f'"{group}" is the name of a program: "{group}:*" would select both'
                raise where.error("groups", said, "a group name no program has")
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


def build_program(
    name: str, raw: dict[str, Any], where: Where, directory: str, daemon_timezone: str | None = None
) -> ProgramConfig:
    top_keys = [key for key in _PROGRAM_EXPECTED if "." not in key]
    check_keys(raw, where, top_keys, _NESTED_PROGRAM_TABLES)
    if "command" not in raw:
        raise where.error("command", f"missing; expected {_PROGRAM_EXPECTED['command']}", "a command")
    parsed = convert(raw, _RawProgram, where, _PROGRAM_EXPECTED)
    return ProgramConfig(
        name=name,
        command=check_command(parsed.command, parsed.shell, where),
        shell=parsed.shell,
        instances=_at_least(parsed.instances, 1, where, "instances"),
        directory=resolve_path(parsed.directory, where, "directory", directory),
        environment=check_environment(parsed.environment, where),
        inherit_environment=parsed.inherit_environment,
        env_file=None
        if parsed.env_file is None
        else resolve_path(parsed.env_file, where, "env_file", directory),
        stop_daemon_on_exit=parsed.stop_daemon_on_exit,
        user=name_or_none(parsed.user, where, "user"),
        group=name_or_none(parsed.group, where, "group"),
        umask=check_umask(parsed.umask, where),
        autostart=parsed.autostart,
        restart=parsed.restart,
        success_exit_codes=_exit_codes(parsed.success_exit_codes, where),
        start_seconds=check_duration(parsed.start_seconds, where, "start_seconds"),
        stable_seconds=check_duration(parsed.stable_seconds, where, "stable_seconds"),
        backoff=check_backoff(parsed.backoff, where),
        max_restarts=_at_least(parsed.max_restarts, 0, where, "max_restarts"),
        stop_signal=_signal(parsed.stop_signal, where),
        stop_timeout=check_duration(parsed.stop_timeout, where, "stop_timeout"),
        log=_log(parsed.log, where, directory, parsed.instances),
        cron_restart=_cron_restart(parsed.cron_restart, where, daemon_timezone),
        max_memory=_max_memory(parsed.max_memory, where),
        memory_max=_memory_max(parsed.memory_max, where),
        cpu_weight=_in_range(parsed.cpu_weight, WEIGHT_RANGE, where, "cpu_weight"),
        tasks_max=None if parsed.tasks_max is None else _at_least(parsed.tasks_max, 1, where, "tasks_max"),
        watch=tuple(_watch_path(path, where, directory) for path in parsed.watch),
        watch_ignore=tuple(_non_empty(pattern, where, "watch_ignore") for pattern in parsed.watch_ignore),
        depends_on=tuple(_non_empty(other, where, "depends_on") for other in parsed.depends_on),
        ready=_ready(parsed.ready, where),
        ready_timeout=_positive_duration(parsed.ready_timeout, where, "ready_timeout"),
        watchdog=None if parsed.watchdog is None else _positive_duration(parsed.watchdog, where, "watchdog"),
        singleton=parsed.singleton,
        nodes=_nodes(parsed.nodes, where),
        groups=_groups(parsed.groups, where),
    )


def _groups(value: list[str], where: Where) -> tuple[str, ...]:
    for group in value:
        if not NAME_PATTERN.fullmatch(group) or not group.isascii() or group == "all":
            raise where.bad("groups", 'group names matching [A-Za-z0-9_.-]+, not "all"', group)
    return tuple(dict.fromkeys(value))


def _nodes(value: list[str] | None, where: Where) -> tuple[str, ...]:
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


def _max_memory(value: int | float | str | None, where: Where) -> int | None:
    if value is None:
        return None
    try:
        size = parse_size(value, where="max_memory")
    except InvalidValue as exc:
        raise where.bad("max_memory", exc.expected, value) from None
    if size <= 0:
        raise where.bad("max_memory", "a size greater than zero", value)
    return size


def _memory_max(value: int | float | str | None, where: Where) -> int | None:
    if value is None:
        return None
    try:
        size = parse_size(value, where="memory_max")
    except InvalidValue as exc:
        raise where.bad("memory_max", exc.expected, value) from None
    if size < MEMORY_FLOOR:
        raise where.bad("memory_max", _PROGRAM_EXPECTED["memory_max"], value)
    return size


def _in_range(value: int | None, bounds: tuple[int, int], where: Where, key: str) -> int | None:
    if value is None:
        return None
    if not bounds[0] <= value <= bounds[1]:
        raise where.bad(key, _PROGRAM_EXPECTED[key], value)
    return value


def _watch_path(value: str, where: Where, directory: str) -> str:
    path = resolve_path(value, where, "watch", directory)
    if not os.path.exists(path):
        raise where.bad("watch", "paths that exist (relative to the config file's folder)", value)
    return path


def _non_empty(value: str, where: Where, key: str) -> str:
    if not value.strip():
        raise where.bad(key, _PROGRAM_EXPECTED[key] + " (no empty strings)", value)
    return value


def _ready(value: str | None, where: Where) -> str | None:
    if value is None:
        return None
    try:
        parse_ready(value.replace("{instance}", "0"))
    except ReadyError as e:
        raise where.error("ready", str(e), READY_EXPECTED) from None
    return value.strip()


def _positive_duration(value: float | str, where: Where, key: str) -> float:
    seconds = check_duration(value, where, key)
    if seconds <= 0:
        raise where.bad(key, "a duration greater than zero", value)
    return seconds


def _cron_restart(value: str | None, where: Where, timezone: str | None) -> str | None:
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


def _at_least(value: int, minimum: int, where: Where, key: str) -> int:
    if value < minimum:
        raise where.bad(key, _PROGRAM_EXPECTED[key], value)
    return value


def _exit_codes(values: list[int], where: Where) -> tuple[int, ...]:
    if any(not 0 <= code <= 255 for code in values):
        raise where.bad("success_exit_codes", _PROGRAM_EXPECTED["success_exit_codes"], values)
    return tuple(values)


def _signal(value: int | str, where: Where) -> int:
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


# log.file values that are not files: the daemon's own stdout and stderr (the container
# idiom: the runtime collects them), and nowhere (supervisord's NONE).
STREAMS = ("/dev/stdout", "/dev/stderr", "/dev/null")


def _log_path(value: str | None, key: str, where: Where, directory: str, instances: int) -> str | None:
    if value is None:
        return None
    if value.strip() in STREAMS:
        return value.strip()
    path = resolve_path(value, where, key, directory)
    if value.endswith(("/", "/.")) or os.path.isdir(path):
        raise where.bad(key, "a file path, not a folder", value)
    if instances > 1 and "{instance}" not in path:
        raise where.bad(
            key,
            'a path with "{instance}" in it, like "logs/web.{instance}.log", as there are several '
            "instances (each writes and rotates its own file)",
            value,
        )
    return path


def check_log_files(programs: Mapping[str, ProgramConfig], top: Where) -> None:
    """No two logs (of any program, instance or stream) are one file: each is rotated by the
    one writer that owns it."""
    owners: dict[str, str] = {}
    for program in programs.values():
        for key in ("file", "stderr_file"):
            path = getattr(program.log, key)
            if path is None or path in STREAMS:
                continue
            for n in range(program.instances):
                actual = os.path.normpath(path.replace("{instance}", str(n)))
                other = owners.setdefault(actual, f"{program.name}:{n} log.{key}")
                if other != f"{program.name}:{n} log.{key}":
                    raise top.at(f"programs.{program.name}").bad(
                        f"log.{key}",
                        f"a file no other log writes (it is {other}'s; "
                        'for one file of both streams: stderr = "merge")',
                        path,
                    )


def _log(raw: _RawLog, where: Where, directory: str = ".", instances: int = 1) -> LogConfig:
    try:
        max_size = parse_size(raw.max_size, where="log.max_size")
    except InvalidValue as exc:
        raise where.bad("log.max_size", exc.expected, raw.max_size) from None
    if max_size <= 0:
        raise where.bad("log.max_size", "a size greater than zero", raw.max_size)
    if raw.keep < 0:
        raise where.bad("log.keep", _PROGRAM_EXPECTED["log.keep"], raw.keep)
    file = _log_path(raw.file, "log.file", where, directory, instances)
    stderr_file = _log_path(raw.stderr_file, "log.stderr_file", where, directory, instances)
    if stderr_file is not None and raw.stderr == "merge":
        raise where.bad(
            "log.stderr_file",
            'no stderr_file with stderr = "merge" (stderr goes to log.file then)',
            raw.stderr_file,
        )
    stderr = raw.stderr or ("separate" if stderr_file is not None else "merge")
    return LogConfig(
        max_size=max_size,
        keep=raw.keep,
        stderr=stderr,
        timestamps=raw.timestamps,
        markers=raw.markers,
        file=file,
        stderr_file=stderr_file,
    )
