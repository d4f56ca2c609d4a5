"""Reading a whole stoker.toml: the file, its TOML, its tables, in that order.

:func:`load_config` reads the file (bounded, UTF-8), :func:`parse_config` parses the TOML
(a syntax error names its line) and assembles the :class:`Config` from each table family's
module, checking what spans tables (names, ``depends_on``, the queues tasks use).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from stoker.config.daemon import DaemonConfig, build_daemon
from stoker.config.errors import ConfigError, Where, show
from stoker.config.jobs import QueueConfig, TaskConfig, build_queue, build_task
from stoker.config.notify import NotifyConfig, build_notify
from stoker.config.programs import ProgramConfig, build_program, check_dependencies
from stoker.config.schedules import ScheduleConfig, build_schedule
from stoker.config.values import NAME_PATTERN

_RESERVED_PROGRAM_NAMES = frozenset({"all"})  # "all" means every program on the CLI
_TABLES = ("daemon", "programs", "tasks", "queues", "schedules", "notify")


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
    top = Where(file, None)
    _check_top_level(data, top)
    daemon = build_daemon(_table(data, "daemon", top), top.at("daemon"), directory)
    programs: dict[str, ProgramConfig] = {}
    for name, raw in _table(data, "programs", top).items():
        _check_program_entry(name, raw, top.at("programs"))
        programs[name] = build_program(name, raw, top.at(f"programs.{name}"), directory, daemon.timezone)
    tasks: dict[str, TaskConfig] = {}
    for name, raw in _table(data, "tasks", top).items():
        _check_entry("task", name, raw, top.at("tasks"))
        tasks[name] = build_task(name, raw, top.at(f"tasks.{name}"), directory)
    queues: dict[str, QueueConfig] = {}
    for name, raw in _table(data, "queues", top).items():
        _check_entry("queue", name, raw, top.at("queues"))
        queues[name] = build_queue(name, raw, top.at(f"queues.{name}"))
    schedules: dict[str, ScheduleConfig] = {}
    for name, raw in _table(data, "schedules", top).items():
        _check_entry("schedule", name, raw, top.at("schedules"))
        schedules[name] = build_schedule(
            name, raw, top.at(f"schedules.{name}"), directory, daemon, tasks, queues
        )
    check_dependencies(programs, top)
    for task in tasks.values():  # a queue no table declares runs with the defaults
        queues.setdefault(task.queue, QueueConfig(name=task.queue))
    notify: dict[str, NotifyConfig] = {}
    for name, raw in _table(data, "notify", top).items():
        if not isinstance(raw, dict):  # [notify] url = …: one webhook, but without its name
            raise top.at("notify").bad(name, 'one table per webhook, like [notify.ops] with url = "…"', raw)
        _check_entry("webhook", name, raw, top.at("notify"))
        notify[name] = build_notify(name, raw, top.at(f"notify.{name}"), directory)
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


def _check_top_level(data: dict[str, Any], top: Where) -> None:
    for key, value in data.items():
        if key in _TABLES:
            continue
        raise top.unknown(key, _TABLES, what="table" if isinstance(value, dict) else "key")


def _table(data: dict[str, Any], key: str, top: Where) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        example = "[daemon]" if key == "daemon" else f"[{key}.NAME]"
        raise top.bad(key, f"a table ({example})", value)
    return value


def _check_entry(kind: str, name: str, raw: object, where: Where) -> None:
    """Name and shape checks of a ``[programs|tasks|queues.NAME]`` table, before looking inside."""
    table = "notify" if kind == "webhook" else f"{kind}s"
    if not NAME_PATTERN.fullmatch(name) or not name.isascii():
        raise where.error(
            None,
            f"{kind} name {show(name)} is not allowed: use letters, digits, "
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


def _check_program_entry(name: str, raw: object, where: Where) -> None:
    _check_entry("program", name, raw, where)
