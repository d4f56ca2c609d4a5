"""Value checks more than one table shares: durations, paths, secrets, process settings.

Each takes the raw TOML value and a :class:`~stoker.config.errors.Where`, and returns the
value stoker uses (seconds, an absolute path, a resolved secret, an argv…) or raises a
located ConfigError. The process keys programs and tasks both have (command, environment,
user/group, umask, backoff) are checked here so that both spell their errors alike.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import msgspec

from stoker.config.errors import Where, show
from stoker.durations import DURATION_EXPECTED, SIZE_EXPECTED, InvalidValue, parse_duration
from stoker.locate import resolve_relative

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")  # a program, task, queue, schedule or webhook name
_RESERVED_ENV = ("STOKER_PROGRAM", "STOKER_INSTANCE")

# What a key accepts, in words (the tables' *_EXPECTED dicts); said alike for programs and tasks.
DURATION = DURATION_EXPECTED
SIZE = SIZE_EXPECTED
ENVIRONMENT_EXPECTED = 'a table of strings, like { APP_ENV = "prod" }'
UMASK_EXPECTED = 'an octal umask like 0o022 or "022"'

# What TOML may hold for a duration or a size, before it is read.
Duration = float | str
Size = int | float | str


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """Delay bounds in seconds between failed starts (exponential with jitter in between)."""

    min: float = 1.0
    max: float = 60.0


class RawBackoff(msgspec.Struct, forbid_unknown_fields=True):
    min: Duration = 1.0
    max: Duration = 60.0


def resolve_token(value: str, where: Where, directory: str, key: str = "token") -> str:
    """``env:NAME`` and ``file:PATH`` keep secrets out of the config file itself."""
    if value.startswith("env:"):
        name = value[4:]
        token = os.environ.get(name) if name else None
        if token is None:
            raise where.error(
                key,
                f"environment variable {show(name)} is not set",
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


def _read_token_file(name: str, where: Where, directory: str, key: str = "token") -> str:
    path = resolve_path(name, where, key, directory)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise where.error(key, f"no such file: {path}", "an existing file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise where.error(key, f"cannot read {path}: {reason}", "a readable UTF-8 file") from None


def check_command(value: str | list[str], shell: bool, where: Where) -> tuple[str, ...]:
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


def resolve_path(value: str, where: Where, key: str, directory: str) -> str:
    """Relative paths are relative to the config file's folder, never to the cwd."""
    if not value or "\0" in value:
        raise where.bad(key, "a non-empty path", value)
    return resolve_relative(directory, value)


def check_environment(value: dict[str, str], where: Where) -> dict[str, str]:
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


def name_or_none(value: str | None, where: Where, key: str) -> str | None:
    if value is not None and (not value.strip() or "\0" in value):
        raise where.bad(key, f"a non-empty {key} name", value)
    return value


_OCTAL = re.compile(r"(?:0o)?([0-7]{1,4})")


def check_umask(value: int | str | None, where: Where) -> int | None:
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
        raise where.bad("umask", UMASK_EXPECTED + " (at most 0o777)", value)
    return number


def check_duration(value: float | str, where: Where, key: str) -> float:
    try:
        return parse_duration(value, where=key)
    except InvalidValue as exc:
        raise where.bad(key, exc.expected, value) from None


def check_backoff(raw: RawBackoff, where: Where) -> Backoff:
    low = check_duration(raw.min, where, "backoff.min")
    high = check_duration(raw.max, where, "backoff.max")
    if low <= 0:
        raise where.bad("backoff.min", "a duration greater than zero", raw.min)
    if low > high:
        raise where.error(
            "backoff",
            f"min ({show(raw.min)}) must not be greater than max ({show(raw.max)})",
            "min <= max",
        )
    return Backoff(min=low, max=high)
