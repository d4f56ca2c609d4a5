"""Durations and sizes as people write them in stoker.toml and on the command line.

Everything here is pure (no IO) so the config loader, the CLI and the HTTP API all accept
exactly the same spellings and print values that can be pasted back in.

Durations: ``"250ms"``, ``"10s"``, ``"5m"``, ``"2h"``, ``"1d"``, combinations such as
``"1h30m"``, or a plain number of seconds. Sizes: ``"512KB"``, ``"50MB"``, ``"1GB"`` or a plain
number of bytes.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "DURATION_EXPECTED",
    "SIZE_EXPECTED",
    "InvalidValue",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

DURATION_EXPECTED = 'a duration like "10s", "5m", "250ms" or a number of seconds'
SIZE_EXPECTED = 'a size like "512KB", "50MB", "1GB" or a number of bytes'

_DURATION_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
# Longest alternatives first so "ms" is not read as "m" followed by junk.
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)")
_PLAIN_NUMBER = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*")

# Binary multiples throughout: memory limits and log files are thought of in the same units
# that `free`, `ls -lh` and `du -h` print, so "1KB" and "1KiB" both mean 1024 bytes.
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")


class InvalidValue(ValueError):
    """A value that is not a valid duration or size.

    Carries the pieces separately (``where``, ``expected``, ``value``) so callers such as the
    config loader can re-word the error with their own location (file, table, key) instead of
    parsing the message.
    """

    def __init__(self, where: str, expected: str, value: object) -> None:
        self.where = where
        self.expected = expected
        self.value = value
        got = f'"{value}"' if isinstance(value, str) else repr(value)
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}expected {expected}, got {got}")


def _as_number(value: object) -> float | None:
    """The value as a float if it is an int/float, else ``None``.

    ``bool`` is refused (TOML ``true`` must never mean one second); ints too large for a
    float become ``inf`` so they fail the range checks instead of raising OverflowError.
    """
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def parse_duration(value: object, *, where: str) -> float:
    """Return ``value`` as a number of seconds (a float ≥ 0).

    Accepts an int/float number of seconds, a numeric string (``"30"``) or unit strings
    ``ms s m h d`` alone or combined (``"1h30m"``, ``"1.5h"``, ``"2m 30s"``). Units are
    lowercase only: ``"5M"`` could mean minutes or megabytes, so it is refused rather than
    guessed. ``where`` names the setting or option in the error message.

    Raises :class:`InvalidValue` (a ``ValueError``) saying what was expected.
    """
    number = _as_number(value)
    if number is not None:
        if math.isfinite(number) and number >= 0:
            return number
        raise InvalidValue(where, "a duration of zero or more seconds", value)
    if not isinstance(value, str):
        raise InvalidValue(where, DURATION_EXPECTED, value)
    plain = _PLAIN_NUMBER.fullmatch(value)
    total = float(plain.group(1)) if plain else _sum_duration_parts(value, where)
    if not math.isfinite(total):
        raise InvalidValue(where, DURATION_EXPECTED, value)
    return total


def _sum_duration_parts(value: str, where: str) -> float:
    """Add up ``"1h30m"``-style parts; any leftover text makes the whole value invalid."""
    total = 0.0
    position = 0
    text = value.rstrip()
    while position < len(text):
        part = _DURATION_PART.match(text, position)
        if part is None:
            raise InvalidValue(where, DURATION_EXPECTED, value)
        total += float(part.group(1)) * _DURATION_UNITS[part.group(2)]
        position = part.end()
    if position == 0:
        raise InvalidValue(where, DURATION_EXPECTED, value)
    return total


def parse_size(value: object, *, where: str) -> int:
    """Return ``value`` as a number of bytes (an int ≥ 0).

    Accepts an int number of bytes (or an integral float such as TOML's ``1e6``) or a string
    with an optional unit: ``B``, ``K``/``KB``/``KiB``, ``M``/``MB``/``MiB``, ``G``…, ``T``…,
    case-insensitive, fractions allowed (``"1.5GB"``). **All units are binary: 1KB = 1024
    bytes**, matching what ``free``/``ls -lh`` show, so a limit of ``"512MB"`` compares directly
    with the RSS figures people look at.

    Raises :class:`InvalidValue` (a ``ValueError``) saying what was expected.
    """
    number = _as_number(value)
    if number is not None:
        if not math.isfinite(number) or number < 0:
            raise InvalidValue(where, "a size of zero or more bytes", value)
        if not number.is_integer():
            raise InvalidValue(where, "a whole number of bytes", value)
        return value if isinstance(value, int) else int(number)
    if not isinstance(value, str):
        raise InvalidValue(where, SIZE_EXPECTED, value)
    match = _SIZE.fullmatch(value)
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise InvalidValue(where, SIZE_EXPECTED, value)
    size = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if not math.isfinite(size):
        raise InvalidValue(where, SIZE_EXPECTED, value)
    return round(size)


def format_duration(seconds: float) -> str:
    """Format seconds the way stoker.toml spells durations: 90 → ``"1m30s"``.

    Millisecond precision is kept (``1.5`` → ``"1.5s"``, ``0.25`` → ``"250ms"``) so the output
    parses back to the same value; pass an int for a coarse display such as an uptime.
    Negative values get a leading ``-`` (e.g. "next run was 3s ago" computations).
    """
    if not math.isfinite(seconds):
        raise ValueError(f"cannot format a duration of {seconds!r} seconds")
    sign = "-" if seconds < 0 else ""
    millis = round(abs(seconds) * 1000)
    days, millis = divmod(millis, 86_400_000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if millis and not secs and not parts:
        parts.append(f"{millis}ms")
    elif millis:
        parts.append(f"{secs}.{millis:03d}".rstrip("0") + "s")
    elif secs or not parts:
        parts.append(f"{secs}s")
    return sign + "".join(parts)


def format_size(size: int) -> str:
    """Format bytes with binary units the way stoker.toml spells sizes: 1536 → ``"1.5KB"``.

    One decimal at most, trailing ``.0`` dropped; meant for display (status, dashboards).
    """
    if size < 0:
        raise ValueError(f"cannot format a negative size: {size}")
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if round(value, 1) < 1024:
            return _trim(value) + unit
        value /= 1024
    return _trim(value) + "TB"


def _trim(value: float) -> str:
    """One decimal, without a useless ``.0``."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text
