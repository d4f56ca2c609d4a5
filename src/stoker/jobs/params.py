"""Job parameters: what a task accepts, the rules each value must meet, and how values fill a
command's argv.

A command task's argv is a template: ``{name}`` in an element is replaced by the parameter's
text, always inside that one element, so a value can never become a second argument or reach
a shell (there is none). ``{{`` and ``}}`` stand for literal braces; any other brace must be
balanced (``{}`` and ``{print $1}`` stay as written; ``{p`` is a typo and a config error).

One element can still turn into an *option* of the program (CWE-88): ``ls {dir}`` with
``dir=--version``. So a value that would begin an element with ``-`` is refused unless its
parameter says ``allow_option = true``; ``--channel={channel}`` is not at risk.

Each parameter is a `Param`: declared in a ``[tasks.NAME.params.PARAM]`` table (typed, with
rules), implied by a placeholder (a string), or listed in ``params = [...]`` (an optional
extra of any JSON value). `normalize` checks a request against them and returns the values
to store (strings converted for typed parameters, defaults filled in); `fill` makes the
argv. Pure functions: config loading, the API, the CLI and schedules all check here, before
anything is stored.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal

import msgspec

from stoker.durations import format_size

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

TYPES = ("string", "int", "number", "bool")
MAX_LENGTH = 4096  # a string parameter's default max_length, in characters
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what SQLite's INTEGER and every JSON reader hold
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,19}")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOL_TEXT = {"true": True, "false": False}

Type = Literal["string", "int", "number", "bool", "any"]


class ParamError(ValueError):
    """A request's parameters do not fit the task; the message says which and why.

    `param` names the parameter at fault when there is one (the dashboard shows the message
    beside its field)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class SpecError(ValueError):
    """A task's parameter declarations or command template are not valid: `key` is where in
    the task's table (``params.count.max``, ``command``), `expected` what would be."""

    def __init__(self, key: str, message: str, expected: str) -> None:
        super().__init__(message)
        self.key, self.message, self.expected = key, message, expected


class Param(msgspec.Struct, frozen=True, kw_only=True):
    """One parameter of a task and the rules its value must meet.

    ``type`` "any" is a parameter without rules: an extra listed in ``params = [...]``.
    ``declared`` is False for a parameter only implied by a placeholder or such a list; an
    implied placeholder is a string that also takes a JSON number (what it always took).
    ``extra``: not in the command's argv (the program reads it from STOKER_JOB_PARAMS)."""

    name: str
    type: Type = "string"
    required: bool = True
    default: Any = None
    has_default: bool = False
    pattern: str | None = None
    choices: tuple[Any, ...] | None = None
    min: int | float | None = None
    max: int | float | None = None
    max_length: int | None = MAX_LENGTH
    description: str | None = None
    allow_option: bool = False
    extra: bool = False
    declared: bool = False

    def schema(self, *, leading: bool) -> dict[str, Any]:
        """This parameter's JSON Schema (``leading``: it may begin an argv element)."""
        out: dict[str, Any] = {}
        if self.type != "any":
            out["type"] = {"string": "string", "int": "integer", "number": "number", "bool": "boolean"}[
                self.type
            ]
        if self.description:
            out["description"] = self.description
        if self.has_default:
            out["default"] = self.default
        if self.choices is not None:
            out["enum"] = list(self.choices)
        if self.type == "string":
            if self.pattern is not None:
                out["pattern"] = f"^(?:{self.pattern})$"
            elif self.choices is None and not _empty_allowed(self):
                out["minLength"] = 1
            if self.max_length is not None:
                out["maxLength"] = self.max_length
            if leading and not self.allow_option:
                out["not"] = {"pattern": "^-"}
        if self.type == "int":
            out["minimum"] = INT_MIN if self.min is None else self.min
            out["maximum"] = INT_MAX if self.max is None else self.max
        elif self.type == "number":
            if self.min is not None:
                out["minimum"] = self.min
            if self.max is not None:
                out["maximum"] = self.max
        return out


# --------------------------------------------------------------------------------------------
# templates
# --------------------------------------------------------------------------------------------


def placeholders(argv: Iterable[str]) -> tuple[str, ...]:
    """The parameter names an argv template uses, in order of first use."""
    seen: dict[str, None] = {}
    for element in argv:
        for match in _TOKEN.finditer(element):
            if match.group(1):
                seen.setdefault(match.group(1))
    return tuple(seen)


def template_error(argv: Sequence[str]) -> str | None:
    """Why an argv template is not valid (an unbalanced brace), or None.

    Outside ``{{``, ``}}`` and placeholders, braces must pair up: ``{}`` and ``awk '{print}'``
    stay literal text, while ``{p`` or ``p}`` is a placeholder gone wrong."""
    for index, element in enumerate(argv):
        depth = 0
        for token in _pieces(element):
            if token == "{":
                depth += 1
            elif token == "}":
                depth -= 1
                if depth < 0:
                    break
        if depth != 0:
            return (
                f"command[{index}] {element!r} has an unbalanced brace: a parameter is written "
                "{name}, a literal brace {{ or }}"
            )
    return None


def _pieces(element: str) -> Iterable[str]:
    """The single braces of an element outside escapes and placeholders."""
    position = 0
    for match in _TOKEN.finditer(element):
        yield from (c for c in element[position : match.start()] if c in "{}")
        position = match.end()
    yield from (c for c in element[position:] if c in "{}")


def leading(argv: Iterable[str]) -> frozenset[str]:
    """The parameters that may begin an argv element: a placeholder at the start of one, or
    after other placeholders only (``{a}{b}``: an empty `a` puts `b` first)."""
    names: set[str] = set()
    for element in argv:
        position = 0
        for match in _TOKEN.finditer(element):
            if match.start() != position or not match.group(1):
                break
            names.add(match.group(1))
            position = match.end()
    return frozenset(names)


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
            f"parameter {name!r} fills a command argument, so it must be text or a number, not {kind}", name
        )
    if "\0" in text:
        raise ParamError(f"parameter {name!r} must not contain NUL characters", name)
    return text


def fill(argv: Sequence[str], params: Mapping[str, Any], *, options: Collection[str] = ()) -> list[str]:
    """The argv with every ``{name}`` replaced; ParamError if a parameter is missing or unfit,
    or if a value would begin an element with ``-`` and its name is not in `options`."""
    out = []
    for element in argv:
        parts: list[str] = []
        position = 0
        for match in _TOKEN.finditer(element):
            parts.append(element[position : match.start()])
            position = match.end()
            name = match.group(1)
            if not name:
                parts.append(match.group(0)[0])
                continue
            if name not in params:
                raise ParamError(f"missing parameter {name!r}", name)
            text = as_text(name, params[name])
            if text.startswith("-") and name not in options and not any(parts):
                raise ParamError(
                    f"parameter {name!r} must not begin with '-': it would start a command "
                    "argument, which the program could take for an option (the task may allow "
                    "it with allow_option = true)",
                    name,
                )
            parts.append(text)
        parts.append(element[position:])
        out.append("".join(parts))
    return out


# --------------------------------------------------------------------------------------------
# declarations (config time)
# --------------------------------------------------------------------------------------------

PARAM_KEYS: dict[str, str] = {
    "type": 'one of "string", "int", "number", "bool"',
    "pattern": 'a regular expression the whole value must match, like "^[a-z][a-z0-9_.]{1,100}$"',
    "choices": 'a non-empty array of the values allowed, like ["android", "ios"]',
    "min": "a number: the smallest value allowed",
    "max": "a number: the largest value allowed",
    "max_length": f"a whole number of characters, 1 or more (default {MAX_LENGTH})",
    "default": "a value of the parameter's type that meets its rules",
    "description": "a string shown beside the parameter",
    "allow_option": "true or false (true: the value may begin with '-')",
    "extra": "true or false (true: not in the command: the program reads it from STOKER_JOB_PARAMS)",
    "required": "true or false (default: true unless a default is given)",
}


def declare(
    command: Sequence[str] | None, raw: list[str] | Mapping[str, Any] | None
) -> tuple[tuple[Param, ...], bool]:
    """The parameters of a task (`command` None: a call task) from its ``params`` key (a list
    of extra names, a table of declarations, or None), and whether it takes any others (a call
    task without ``params``). SpecError if they do not make sense together."""
    if command is not None:
        error = template_error(command)
        if error is not None:
            raise SpecError("command", error, "balanced braces")
    used = placeholders(command or ())
    starts = leading(command or ())
    if raw is None or isinstance(raw, list):
        names = list(raw or ())
        for name in names:
            if not isinstance(name, str) or not NAME.fullmatch(name):
                raise SpecError(
                    "params",
                    f"{name!r} is not a parameter name: parameter names are made of letters, digits and '_'",
                    "names of letters, digits and '_'",
                )
        implied = [Param(name=n) for n in used]
        extras = [Param(name=n, type="any", required=False, max_length=None, extra=command is not None)
                  for n in dict.fromkeys(names) if n not in used]  # fmt: skip
        return (*implied, *extras), command is None and raw is None
    declared: dict[str, Param] = {}
    for name, table in raw.items():
        if not NAME.fullmatch(name):
            raise SpecError(f"params.{name}", "is not a parameter name", "a name of letters, digits and '_'")
        if not isinstance(table, Mapping):
            raise SpecError(
                f"params.{name}", f"expected a table, got {table!r}", '[tasks.NAME.params.PARAM] type = "int"'
            )
        declared[name] = _declare_one(name, table, command, name in used, name in starts)
    params = [declared.get(n) or Param(name=n) for n in used]
    params += [p for n, p in declared.items() if n not in used]
    return tuple(params), False


def _declare_one(
    name: str, table: Mapping[str, Any], command: Sequence[str] | None, used: bool, starts: bool
) -> Param:
    where = f"params.{name}"

    def bad(key: str | None, message: str, expected: str | None = None) -> SpecError:
        at = f"{where}.{key}" if key else where
        return SpecError(at, message, expected or (PARAM_KEYS[key] if key else "a valid declaration"))

    for key in table:
        if key not in PARAM_KEYS:
            close = difflib.get_close_matches(key, PARAM_KEYS, 1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise bad(
                key, f"unknown key ({hint}known: {', '.join(PARAM_KEYS)})", "one of " + ", ".join(PARAM_KEYS)
            )

    def get(key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = table.get(key, default)
        if key in table and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
            raise bad(key, f"expected {PARAM_KEYS[key]}, got {value!r}")
        return value

    kind = get("type", str, "string")
    if kind not in TYPES:
        raise bad("type", f"expected {PARAM_KEYS['type']}, got {kind!r}")
    pattern = get("pattern", str)
    choices = get("choices", list)
    low, high = get("min", (int, float)), get("max", (int, float))
    max_length = get("max_length", int)
    description = get("description", str)
    allow_option = get("allow_option", bool, False)
    extra = get("extra", bool, False)
    required = get("required", bool)
    if pattern is not None:
        if kind != "string":
            raise bad("pattern", f"only a string parameter has a pattern (this one is {kind})", "no pattern")
        try:
            _compiled(pattern)
        except re.error as e:
            raise bad("pattern", f"{pattern!r} is not a valid regular expression: {e}") from None
    for key, value in (("min", low), ("max", high)):
        if value is None:
            continue
        if kind not in ("int", "number"):
            raise bad(key, f"only an int or number parameter has {key} (this one is {kind})", f"no {key}")
        if kind == "int" and not isinstance(value, int):
            raise bad(key, f"expected a whole number for an int parameter, got {value!r}", "a whole number")
        if isinstance(value, float) and not math.isfinite(value):
            raise bad(key, f"expected a finite number, got {value!r}", "a finite number")
    if low is not None and high is not None and low > high:
        raise bad("max", f"max {high!r} is below min {low!r}", f"a number of {low!r} or more")
    if max_length is not None:
        if kind != "string":
            raise bad(
                "max_length", f"only a string parameter has max_length (this one is {kind})", "no max_length"
            )
        if max_length < 1:
            raise bad("max_length", f"expected {PARAM_KEYS['max_length']}, got {max_length!r}")
    if command is None and (allow_option or extra):
        key = "allow_option" if allow_option else "extra"
        raise bad(
            key, "a call task has no command: its parameters reach the function as they are", f"no {key}"
        )
    if command is not None:
        if extra and used:
            raise bad("extra", "the command uses {" + name + "}, so it is not an extra", "no extra")
        if not extra and not used:
            raise bad(
                None,
                "is declared but the command never uses {" + name + "}: use it in the command, or set "
                "extra = true if the program reads it from STOKER_JOB_PARAMS",
                "a parameter the command uses",
            )
        if allow_option and not used:
            raise bad(
                "allow_option", "only a parameter in the command can become an option", "no allow_option"
            )
    has_default = "default" in table
    if required is None:
        required = not has_default
    elif required and has_default:
        raise bad(
            "required", "a parameter with a default is never missing: drop required or default", "no required"
        )
    elif not required and not has_default and used:
        raise bad("required", "the command needs a value for {" + name + "}: give it a default", "a default")
    param = Param(
        name=name,
        type=kind,
        required=required,
        pattern=pattern,
        min=low,
        max=high,
        max_length=(max_length or MAX_LENGTH) if kind == "string" else None,
        description=description,
        allow_option=allow_option,
        extra=extra,
        declared=True,
    )
    if choices is not None:
        if not choices:
            raise bad("choices", f"expected {PARAM_KEYS['choices']}, got []")
        if kind == "bool":
            raise bad("choices", "a bool parameter is true or false already", "no choices")
        try:
            listed = msgspec.structs.replace(param, choices=tuple(choices))  # "" may be one
            values = tuple(_check_value(listed, choice, starts and not allow_option) for choice in choices)
        except ParamError as e:
            raise bad("choices", f"a choice does not fit the parameter: {e}") from None
        param = msgspec.structs.replace(param, choices=values)
    if has_default:
        try:
            value = _check_value(param, table["default"], starts and not allow_option)
        except ParamError as e:
            raise bad("default", f"the default does not fit the parameter's own rules: {e}") from None
        param = msgspec.structs.replace(param, default=value, has_default=True)
    return param


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _empty_allowed(param: Param) -> bool:
    if param.choices is not None:
        return "" in param.choices
    return param.pattern is not None and _compiled(param.pattern).fullmatch("") is not None


# --------------------------------------------------------------------------------------------
# values (request time)
# --------------------------------------------------------------------------------------------


def normalize(
    task: str, params: Any, declared: Sequence[Param], *, open_ended: bool = False
) -> dict[str, Any]:
    """The parameters to store for a request: each value checked against its parameter's
    rules (a string converted for an int, number or bool parameter), defaults filled in.
    ParamError names the first parameter that does not fit, and why."""
    if not isinstance(params, Mapping):
        raise ParamError("params must be an object of name → value")
    for name in params:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ParamError(
                f"parameter name {name!r} is not allowed: use letters, digits and '_'", str(name)
            )
    by_name = {p.name: p for p in declared}
    missing = [p.name for p in declared if p.required and p.name not in params]
    if missing:
        names = ", ".join(map(repr, missing))
        raise ParamError(f"task {task!r} needs parameter(s) {names}{_takes(declared)}", missing[0])
    if not open_ended:
        unknown = [name for name in params if name not in by_name]
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise ParamError(f"task {task!r} has no parameter {names}{_takes(declared)}", unknown[0])
    out: dict[str, Any] = {}
    for name, value in params.items():
        param = by_name.get(name)
        out[name] = _check_value(param, value, False) if param is not None else _no_nul(name, value)
    for param in declared:
        if param.name not in out and param.has_default:
            out[param.name] = param.default
    return out


#: The default of a task's `max_params`: parameters larger than this, as JSON, are refused.
MAX_PARAMS = 64 * 1024


def check_size(task: str, values: Mapping[str, Any], limit: int) -> int:
    """The size of `values` as JSON (how they are stored and sent), or ParamError when it is
    over `limit`: parameters ride in every event and listing of the job, and each stalled
    listener may hold a copy, so a job's parameters must stay small (a large input belongs in
    a file the job is given the path of)."""
    size = len(msgspec.json.encode(values))
    if size > limit:
        raise ParamError(
            f"task {task!r}: the parameters are {format_size(size)} as JSON ({size} bytes),"
            f" over its max_params of {format_size(limit)}: pass a large input as a file path instead"
        )
    return size


def _check_value(param: Param, value: Any, leads: bool) -> Any:
    """`value` as the parameter holds it, or ParamError (``leads``: refuse a leading '-')."""
    name = param.name
    if param.type == "any":
        return _no_nul(name, value)
    if param.type == "string":
        if not param.declared and isinstance(value, int | float) and not isinstance(value, bool):
            text = as_text(name, value)  # an implied placeholder also takes a number, as always
        elif isinstance(value, str):
            text = value
        else:
            expected = "a string" if param.declared else "text or a number"
            raise ParamError(f"parameter {name!r} must be {expected}, not {_kind(value)}", name)
        if "\0" in text:
            raise ParamError(f"parameter {name!r} must not contain NUL characters", name)
        if param.max_length is not None and len(text) > param.max_length:
            raise ParamError(f"parameter {name!r} is longer than {param.max_length} characters", name)
        if text == "" and not _empty_allowed(param):
            raise ParamError(f"parameter {name!r} must not be empty", name)
        if param.pattern is not None and not _compiled(param.pattern).fullmatch(text):
            raise ParamError(
                f"parameter {name!r}: {_show(text)} does not match the pattern {param.pattern!r}", name
            )
        if leads and text.startswith("-"):
            raise ParamError(
                f"parameter {name!r} must not begin with '-' (it would start a command argument)", name
            )
    elif param.type == "bool":
        if isinstance(value, str) and value.lower() in _BOOL_TEXT:
            value = _BOOL_TEXT[value.lower()]
        if not isinstance(value, bool):
            raise ParamError(f"parameter {name!r} must be true or false, not {_show(value)}", name)
    else:
        value = _number(param, value)
    if param.choices is not None and not any(_same(value, c) for c in param.choices):
        shown = ", ".join(_show(c) for c in param.choices)
        raise ParamError(f"parameter {name!r} must be one of {shown}, not {_show(value)}", name)
    return value


def _number(param: Param, value: Any) -> int | float:
    name, whole = param.name, param.type == "int"
    expected = "a whole number" if whole else "a number"
    if isinstance(value, str):
        text = value.strip()
        if whole and _INT_TEXT.fullmatch(text):
            value = int(text)
        elif not whole and _NUMBER_TEXT.fullmatch(text):
            value = int(text) if _INT_TEXT.fullmatch(text) else float(text)
        else:
            raise ParamError(f"parameter {name!r} must be {expected}, not {_show(value)}", name)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (whole and not isinstance(value, int))
    ):
        raise ParamError(f"parameter {name!r} must be {expected}, not {_show(value)}", name)
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamError(f"parameter {name!r} must be a finite number, not {_show(value)}", name)
    low = param.min if param.min is not None else (INT_MIN if whole else None)
    high = param.max if param.max is not None else (INT_MAX if whole else None)
    if low is not None and value < low:
        raise ParamError(f"parameter {name!r} must be {low!r} or more, not {value!r}", name)
    if high is not None and value > high:
        raise ParamError(f"parameter {name!r} must be {high!r} or less, not {value!r}", name)
    return value


def _same(value: Any, choice: Any) -> bool:
    return (type(value) is type(choice) and value == choice) or (
        isinstance(value, int | float) and isinstance(choice, int | float) and value == choice
    )


def _no_nul(name: str, value: Any) -> Any:
    """`value` unchanged, or ParamError if a string anywhere in it holds a NUL."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\0" in item:
                raise ParamError(f"parameter {name!r} must not contain NUL characters", name)
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return value


def _kind(value: Any) -> str:
    return {type(None): "null", bool: "true or false", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)  # fmt: skip


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _takes(params: Sequence[Param]) -> str:
    names = [p.name if p.required else f"{p.name} (optional)" for p in params]
    return f"; it takes: {', '.join(names)}" if names else "; it takes none"


def json_schema(
    params: Sequence[Param], *, open_ended: bool, command: Sequence[str] | None
) -> dict[str, Any]:
    """The JSON Schema of a task's ``params`` object (string forms of typed values, which the
    daemon also takes, are left out: this is the canonical shape)."""
    starts = leading(command or ())
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {p.name: p.schema(leading=p.name in starts) for p in params},
        "additionalProperties": open_ended,
    }
    required = [p.name for p in params if p.required]
    if required:
        schema["required"] = required
    return schema
