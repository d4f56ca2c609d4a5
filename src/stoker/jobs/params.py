"""Job parameters: what a task accepts, and how they fill a command's argv.

A command task's argv is a template: ``{name}`` in an element is replaced by the parameter's
text, always inside that one element, so a value can never become a second argument or reach
a shell (there is none). ``{{`` and ``}}`` stand for literal braces; any other brace is kept
as written. Pure functions: the API and the CLI check a request here before anything is stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ParamError(ValueError):
    """A request's parameters do not fit the task; the message says which and why."""


def placeholders(argv: Iterable[str]) -> tuple[str, ...]:
    """The parameter names an argv template uses, in order of first use."""
    seen: dict[str, None] = {}
    for element in argv:
        for match in _TOKEN.finditer(element):
            if match.group(1):
                seen.setdefault(match.group(1))
    return tuple(seen)


def as_text(name: str, value: Any) -> str:
    """The text a JSON value stands for in an argv element."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        text = repr(value) if isinstance(value, float) else str(value)
    else:
        kind = "null" if value is None else type(value).__name__
        raise ParamError(
            f"parameter {name!r} fills a command argument, so it must be text or a number, not {kind}"
        )
    if "\0" in text:
        raise ParamError(f"parameter {name!r} must not contain NUL characters")
    return text


def fill(argv: Sequence[str], params: Mapping[str, Any]) -> list[str]:
    """The argv with every ``{name}`` replaced; ParamError if a parameter is missing or unfit."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        if name not in params:
            raise ParamError(f"missing parameter {name!r}")
        return as_text(name, params[name])

    return [_TOKEN.sub(replace, element) for element in argv]


def check(
    task: str,
    params: Mapping[str, Any],
    *,
    required: Sequence[str],
    optional: Sequence[str],
    open_ended: bool,
) -> None:
    """Refuse unknown or missing parameters, naming them and what the task takes."""
    if not isinstance(params, Mapping):
        raise ParamError("params must be an object of name → value")
    missing = [name for name in required if name not in params]
    if missing:
        names = ", ".join(map(repr, missing))
        raise ParamError(f"task {task!r} needs parameter(s) {names}{_takes(required, optional)}")
    for name in params:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ParamError(f"parameter name {name!r} is not allowed: use letters, digits and '_'")
    if open_ended:
        return
    unknown = [name for name in params if name not in required and name not in optional]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ParamError(f"task {task!r} has no parameter {names}{_takes(required, optional)}")


def _takes(required: Sequence[str], optional: Sequence[str]) -> str:
    names = [*required, *(f"{n} (optional)" for n in optional)]
    return f"; it takes: {', '.join(names)}" if names else "; it takes none"
