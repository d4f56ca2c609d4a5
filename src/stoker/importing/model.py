"""What a converter produces: programs with settings and notes, before they are TOML.

A converter (supervisord, pm2, Procfile) reads its format and describes the result with these
plain objects; :mod:`stoker.importing.toml_writer` turns them into text. Keeping the two apart
means no converter has to know TOML's quoting rules, and the writer has to know no format.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Union

from stoker.durations import InvalidValue, format_duration, parse_duration

# A TOML value as the writer accepts it (no dates: no converter produces one). Sequence and
# Mapping rather than list and dict, so that a list[int] or a dict[str, str] is one too.
Value = Union[str, int, float, bool, Sequence["Value"], Mapping[str, "Value"]]  # noqa: UP007 (recursive)


class InputError(ValueError):
    """A file `stoker import` cannot convert, said the way ``stoker check`` says it:
    ``FILE: [program:web] numprocs: expected …, got …`` or ``FILE: line 7: expected …``.

    ``where`` is a section (``[program:web]``), an entry (``apps[1] "api"``) or a line
    (``line 7``); ``key`` is the option to blame, when there is one.
    """

    def __init__(self, file: str, where: str | None, key: str | None, problem: str) -> None:
        place = ""
        if where:
            place = f"{where}: " if where.startswith("line ") else f"{where} "
        if key:
            place += f"{key}: "
        super().__init__(f"{file}: {place}{problem}")
        self.file = file
        self.where = where
        self.key = key
        self.problem = problem


@dataclass
class Setting:
    """One ``key = value`` of a program; ``note`` becomes a trailing comment (what it came
    from, when that helps)."""

    key: str
    value: Value
    note: str = ""


@dataclass
class Program:
    """A ``[programs.NAME]`` (or ``[schedules.NAME]``) table: ``source`` names where it came
    from (``[program:web]``), ``notes`` are the options with no stoker equivalent, one comment
    each, saying what to do."""

    name: str
    source: str
    settings: list[Setting] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    table: str = "programs"  # or "schedules": pm2's cron job idiom is a schedule, not a program

    def set(self, key: str, value: Value, note: str = "") -> None:
        self.settings.append(Setting(key, value, note))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def get(self, key: str) -> Value | None:
        """The value set for `key`, if any."""
        return next((s.value for s in self.settings if s.key == key), None)

    def drop(self, key: str) -> Setting | None:
        """Take the setting of `key` out (and give it back), if there is one."""
        for i, setting in enumerate(self.settings):
            if setting.key == key:
                return self.settings.pop(i)
        return None


@dataclass
class Converted:
    """A whole converted file: notes about the file itself (sections and options that are
    not about one program), then the programs in the order they should appear."""

    file: str
    format: str
    notes: list[str] = field(default_factory=list)
    programs: list[Program] = field(default_factory=list)


@dataclass(frozen=True)
class Machine:
    """What a converter may need to know about the machine it runs on, passed in so that the
    converters stay pure: supervisord's ``%(ENV_X)s`` and ``%(host_node_name)s``, pm2's
    ``instances: "max"``."""

    environ: Mapping[str, str]
    hostname: str
    cpu_count: int

    @classmethod
    def this_one(cls) -> Machine:
        import socket

        return cls(environ=dict(os.environ), hostname=socket.gethostname(), cpu_count=os.cpu_count() or 1)


def quoted(value: object) -> str:
    """A value in an error message, on one line, quoted like ``stoker check`` quotes it."""
    return json.dumps(value, ensure_ascii=False)


_PROGRAM_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def program_name(name: str) -> tuple[str, str]:
    """A name stoker accepts (``[A-Za-z0-9_.-]+``, not ``all``) and, when it had to change
    the original, a note saying so."""
    if _PROGRAM_NAME.fullmatch(name) and name.isascii() and name != "all":
        return name, ""
    fixed = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "program"
    if fixed == "all":
        fixed = "all_"
    return fixed, f'was named "{name}": stoker names are letters, digits, "_", "." and "-"'


def seconds(value: float) -> str | int:
    """Seconds as stoker.toml spells a duration: 10 → ``"10s"``, 1.5 → ``"1.5s"``."""
    return format_duration(value)


def duration_from_ms(value: object) -> float:
    """pm2's times, in seconds: a number (or a string of digits) of milliseconds, or a string
    with a unit (``"10s"``, ``"1m"``). ValueError saying what was expected."""
    expected = 'expected a number of milliseconds (0 or more) or a duration like "10s"'
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < float("inf"):
            raise ValueError(expected)
        return value / 1000
    if isinstance(value, str):
        try:
            return parse_duration(value, where="")
        except InvalidValue:
            pass
    raise ValueError(expected)
