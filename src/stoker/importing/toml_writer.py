"""A converted file as commented stoker.toml text.

TOML is written by hand here (the standard library only reads it): the few value shapes a
converter produces, quoted so that ``tomllib`` reads back exactly what was meant, and comments
laid out so a person can review the result line by line.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from collections.abc import Mapping
from functools import cache

from stoker.importing.model import Converted, Program, Setting, Value

WIDTH = 100
# Keys whose value this stoker may refuse for reasons the converter cannot see: keys an older
# stoker does not have yet, and paths that must exist (watch) where the config will live. The
# writer asks the real config loader and writes a refused one as a comment quoting the reason,
# so that the output always passes `stoker check`.
CHECKED_KEYS = frozenset({"max_memory", "watch", "watch_ignore", "depends_on", "ready", "ready_timeout"})

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Characters TOML does not allow raw in a string (tab is allowed).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def render(converted: Converted) -> str:
    """The whole stoker.toml: a header saying where it came from, the file's notes, then one
    table per program."""
    lines = [
        f"# Converted by `stoker import` from {converted.file} ({converted.format}).",
        "# Review the comments, check it with `stoker check`, run it with `stoker up`.",
        "# Relative paths in this file are relative to its folder.",
    ]
    if converted.notes:
        lines.append("#")
        for note in converted.notes:
            lines += comment(note)
    if not converted.programs:
        lines += ["", "# No programs to convert were found."]
    for program in converted.programs:
        lines += ["", *_program(program, os.path.dirname(converted.file))]
    return "\n".join(lines) + "\n"


def _program(program: Program, directory: str) -> list[str]:
    lines = [f"[{program.table}.{key(program.name)}]", *comment(f"from {program.source}")]
    for setting in program.settings:
        lines += _setting(setting, directory, program.table)
    for note in program.notes:
        lines += comment(note)
    return lines


def _setting(setting: Setting, directory: str, table: str = "programs") -> list[str]:
    line = f"{key(setting.key)} = {value(setting.value)}"
    note = setting.note
    refusal = (
        refused(setting.key, value(setting.value), directory)
        if setting.key in CHECKED_KEYS and table == "programs"
        else None
    )
    if refusal is not None:
        line = "# " + line
        why = f"stoker check says: {refusal}; uncomment it once stoker check would accept it"
        note = f"{note}; {why}" if note else why
    if not note:
        return [line]
    if len(line) + len(note) + 4 <= WIDTH:
        return [f"{line}  # {note}"]
    return [*comment(note), line]  # a long note reads better above its line


def comment(text: str) -> list[str]:
    """A note as ``#`` lines of at most WIDTH columns (continuation lines indented)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        lines += textwrap.wrap(
            paragraph,
            WIDTH,
            initial_indent="# ",
            subsequent_indent="#   ",
            break_long_words=False,
            break_on_hyphens=False,
        ) or ["#"]
    return lines


def key(name: str) -> str:
    """A TOML key: bare when it can be, else quoted (a dot would split a bare key)."""
    return name if _BARE_KEY.fullmatch(name) else _basic(name)


def value(v: Value) -> str:
    """A TOML value that reads back as `v`."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"no TOML spelling for {v!r}")
        return repr(v)
    if isinstance(v, str):
        return string(v)
    if isinstance(v, Mapping):
        inner = ", ".join(f"{key(k)} = {value(item)}" for k, item in v.items())
        return "{ " + inner + " }" if inner else "{}"
    return "[" + ", ".join(value(item) for item in v) + "]"


def string(text: str) -> str:
    """A literal string ('...': no escapes, so a command with quotes and backslashes stays
    readable) when TOML allows one, else a basic string with escapes."""
    if ('"' in text or "\\" in text) and "'" not in text and not _CONTROL.search(text):
        return f"'{text}'"
    return _basic(text)


def _basic(text: str) -> str:
    # JSON's escapes are all valid in TOML basic strings; DEL is the one control character
    # JSON leaves raw and TOML does not.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


@cache
def refused(name: str, toml_value: str, directory: str) -> str | None:
    """Why this stoker's config refuses ``name = toml_value`` in a program of a stoker.toml in
    `directory`, or None if it takes it. Asked of the real config loader, so the answer
    changes the day it learns a key."""
    from stoker.config import ConfigError, parse_config

    table = "[programs.probe]"
    probe = f'{table}\ncommand = "true"\n{key(name)} = {toml_value}\n'
    try:
        parse_config(probe, os.path.join(directory, "stoker.toml"))
    except ConfigError as e:
        reason = str(e).split(f"{table} ", 1)[-1]  # without the probe's file and table
        return reason.removeprefix(f"{name}: ")
    return None
