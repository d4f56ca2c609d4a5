"""The error a refused config raises, and the machinery that locates it.

:class:`ConfigError` carries one line, ``FILE: [TABLE] KEY: expected …, got …``, and its parts
as attributes. :class:`Where` is a position in the file (file + table) that builds those
errors; :func:`convert` runs msgspec's strict type check and rewords its errors as located
ones (key paths like ``log.max_size``); :func:`check_keys` refuses unknown keys by name, with
a "did you mean" hint. Every table module builds its errors through these.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from typing import Any, TypeVar

import msgspec

MISSING: Any = object()


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


class Where:
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

    def bad(self, key: str, expected: str, value: object = MISSING) -> ConfigError:
        """``FILE: [TABLE] KEY: expected EXPECTED, got VALUE``."""
        got = "" if value is MISSING else f", got {show(value)}"
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

    def at(self, table: str) -> Where:
        return Where(self.file, table, self.env_read)


def show(value: object, limit: int = 60) -> str:
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


_T = TypeVar("_T")


def convert(raw: Mapping[str, Any], kind: type[_T], where: Where, expected: dict[str, str]) -> _T:
    """Strict msgspec conversion, with its errors re-worded as a located ConfigError."""
    try:
        return msgspec.convert(raw, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise _translate(str(exc), raw, where, expected) from None


_ERROR_PATH = re.compile(r" - at `\$((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")


def _translate(message: str, raw: Mapping[str, Any], where: Where, expected: dict[str, str]) -> ConfigError:
    """Turn ``Expected `int`, got `str` - at `$.log.keep``` into ``log.keep: expected …``."""
    match = _ERROR_PATH.search(message)
    segments = match.group(1).lstrip(".").split(".") if match and match.group(1) else []
    # The most specific known key: "log.max_size" rather than "log".
    keys = [".".join(segments[:n]) for n in (2, 1) if len(segments) >= n]
    key = next((k for k in keys if k in expected), None)
    if key is None:
        return where.error(None, message, "a valid value")
    if key == "environment" and isinstance(raw.get(key), dict):
        return _bad_environment(raw[key], where, expected[key])
    return where.bad(key, expected[key], _lookup(raw, key))


def _lookup(raw: Mapping[str, Any], dotted: str) -> object:
    value: Any = raw
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _bad_environment(environment: dict[str, Any], where: Where, expected: str) -> ConfigError:
    """Name the variable whose value is not a string, with the fix."""
    for name, value in environment.items():
        if not isinstance(value, str):
            return where.bad(
                f"environment.{name}",
                'a string (quote numbers and booleans, like PORT = "8080")',
                value,
            )
    return where.bad("environment", expected, environment)


def check_keys(
    raw: dict[str, Any],
    where: Where,
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
