"""The data in a pm2 ``ecosystem.config.js``, read without running any JavaScript.

Most ecosystem files are plain data behind ``module.exports =``: objects with bare or quoted
keys, strings in any of the three quotes, numbers, booleans, null, comments and trailing
commas. That is what this reads, plus ``const NAME = <data>;`` declarations used later by
name, and the one piece of code nearly every ecosystem file has: the file's folder,
``__dirname`` (alone, in a template ``${__dirname}/…``, or through ``path.join`` /
``path.resolve`` of ``require("path")``). Anything else that would need JavaScript to run
(other ``require()``, ``process.env.X``, arithmetic, spreads) is refused at its line, with the
way out: write the value itself, or let node print the file as JSON and import that.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

AS_JSON = (
    "replace it with its value, or let node print the file as JSON and import that: "
    "node -e 'console.log(JSON.stringify(require(\"./FILE\"), null, 2))' > ecosystem.json"
)


class JSError(ValueError):
    """Not plain data: ``line`` is where, the message what was expected there."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line


_TOKEN = re.compile(
    r"""
      (?P<space>[ \t\r\n\ufeff]+)
    | (?P<comment>//[^\n]*|/\*.*?\*/)
    | (?P<string>"(?:[^"\\\n]|\\.|\\\n)*"|'(?:[^'\\\n]|\\.|\\\n)*'|`(?:[^`\\]|\\.)*`)
    | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))
    | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
    | (?P<punct>[{}\[\]:,;=.()])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}
_KEYWORDS = {"true": True, "false": False, "null": None, "Infinity": float("inf"), "NaN": float("nan")}


class _Tokens:
    def __init__(self, text: str) -> None:
        self.items: list[tuple[str, str, int]] = []  # (kind, text, line)
        position, line = 0, 1
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                raise JSError(line, f"expected plain data, got {text[position : position + 20].split()[0]!r}")
            kind = match.lastgroup
            assert kind is not None
            if kind not in ("space", "comment"):
                self.items.append((kind, match.group(), line))
            line += match.group().count("\n")
            position = match.end()
        self.items.append(("end", "", line))
        self.index = 0

    def peek(self) -> tuple[str, str, int]:
        return self.items[self.index]

    def next(self) -> tuple[str, str, int]:
        item = self.items[self.index]
        self.index = min(self.index + 1, len(self.items) - 1)
        return item

    def expect(self, text: str, what: str) -> None:
        kind, got, line = self.next()
        if got != text or kind == "string":
            raise JSError(line, f"expected {what}, got {_shown(kind, got)}")

    def accept(self, text: str) -> bool:
        kind, got, _ = self.peek()
        if got == text and kind == "punct":
            self.next()
            return True
        return False


def _shown(kind: str, text: str) -> str:
    return "the end of the file" if kind == "end" else repr(text)


def exported(text: str, file: str | None = None) -> Any:
    """The value of ``module.exports = …`` (or ``export default …``). JSError otherwise.
    `file` (an absolute path) gives ``__dirname`` and ``__filename`` their values."""
    tokens = _Tokens(text)
    names: dict[str, Any] = {}
    if file is not None:
        names |= {"__dirname": posixpath.dirname(file), "__filename": file}
    result: Any = None
    found = False
    while tokens.peek()[0] != "end":
        kind, word, line = tokens.next()
        if kind == "string":  # a directive: 'use strict'
            pass
        elif word in ("const", "let", "var") and kind == "name":
            name_kind, name, name_line = tokens.next()
            if name_kind != "name":
                raise JSError(name_line, f"expected a name after {word}, got {_shown(name_kind, name)}")
            tokens.expect("=", f"= after {word} {name}")
            if tokens.peek()[:2] == ("name", "require"):  # const path = require("path")
                names[name] = _require(tokens, tokens.next()[2])
            else:
                names[name] = _value(tokens, names)
        elif word == "module" and kind == "name":
            tokens.expect(".", "module.exports")
            _, exports, exports_line = tokens.next()
            if exports != "exports":
                raise JSError(exports_line, f"expected module.exports, got module.{exports}")
            tokens.expect("=", "= after module.exports")
            result, found = _value(tokens, names), True
        elif word == "export" and kind == "name":
            tokens.expect("default", "export default")
            result, found = _value(tokens, names), True
        else:
            raise JSError(line, f"expected module.exports = {{…}}, got {_shown(kind, word)}; {AS_JSON}")
        if not tokens.accept(";"):
            kind, word, line = tokens.peek()
            if kind != "end" and line == tokens.items[tokens.index - 1][2]:
                raise JSError(line, f"expected ; or a new line, got {_shown(kind, word)}; {AS_JSON}")
    if not found:
        raise JSError(None, "expected module.exports = { apps: [...] }, found none")
    return result


def data(text: str) -> Any:
    """One plain value and nothing else: JSON5, the JSON with comments, single quotes, bare keys
    and trailing commas that pm2 reads from a .json file (JSError otherwise)."""
    tokens = _Tokens(text)
    result = _value(tokens, {})
    kind, word, line = tokens.peek()
    if kind != "end":
        raise JSError(line, f"expected the end of the file, got {_shown(kind, word)}")
    return result


def _value(tokens: _Tokens, names: dict[str, Any]) -> Any:
    kind, text, line = tokens.next()
    if kind == "punct" and text == "{":
        return _object(tokens, names)
    if kind == "punct" and text == "[":
        return _array(tokens, names)
    if kind == "string":
        return _string(text, line, names)
    if kind == "number":
        return _number(text)
    if kind == "name":
        if text in _KEYWORDS:
            return _KEYWORDS[text]
        if text == "undefined":
            return _UNDEFINED
        if text == "require" and tokens.peek()[1] == "(":
            value = _require(tokens, line)
        elif text in names:
            value = names[text]
        else:
            value = _UNDEFINED
        if value is _PATH and tokens.peek()[1] == ".":
            return _path_call(tokens, names, line)
        if value is not _UNDEFINED and value is not _PATH and tokens.peek()[1] not in (".", "(", "["):
            return value
        raise JSError(line, f"expected plain data, got {_code(text, tokens)} (JavaScript to run); {AS_JSON}")
    raise JSError(line, f"expected a value (a string, number, object or array), got {_shown(kind, text)}")


def _code(name: str, tokens: _Tokens) -> str:
    """The code a name starts, for the message: ``process.env.HOME``, ``require(…)``."""
    text = name
    while tokens.peek()[1] == "." and tokens.items[tokens.index + 1][0] == "name":
        tokens.next()
        text += "." + tokens.next()[1]
    if tokens.peek()[1] == "(":
        text += "(…)"
    return text


_UNDEFINED: Any = object()  # a key set to undefined is a key not set


def _object(tokens: _Tokens, names: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    while not tokens.accept("}"):
        kind, text, line = tokens.next()
        if kind == "string":
            key = _string(text, line, {})
        elif kind in ("name", "number"):
            key = text
        elif text == ".":
            raise JSError(line, f"expected a key, got '...' (a spread: JavaScript to run); {AS_JSON}")
        else:
            raise JSError(line, f"expected a key or }}, got {_shown(kind, text)}")
        if tokens.peek()[1] in (",", "}") and kind == "name":  # { name } shorthand
            value = names.get(key, _UNDEFINED)
            if value is _UNDEFINED:
                raise JSError(line, f"expected key: value, got {key!r} alone")
        else:
            tokens.expect(":", f"':' after the key {key!r}")
            value = _value(tokens, names)
        if value is not _UNDEFINED:
            result[key] = value
        if not tokens.accept(","):
            tokens.expect("}", "',' or '}'")
            break
    return result


def _array(tokens: _Tokens, names: dict[str, Any]) -> list[Any]:
    result: list[Any] = []
    while not tokens.accept("]"):
        result.append(_value(tokens, names))
        if not tokens.accept(","):
            tokens.expect("]", "',' or ']'")
            break
    return result


def _string(text: str, line: int, names: dict[str, Any]) -> str:
    body = text[1:-1]
    if text[0] == "`" and "${" in body:
        body = _template(body, line, names)
    try:
        return _unescape(body)
    except ValueError:
        raise JSError(line, f"expected a string with valid escapes, got {text}") from None


def _template(body: str, line: int, names: dict[str, Any]) -> str:
    """A template's ``${NAME}`` parts with the names' values (``__dirname``, a const)."""

    def value(match: re.Match[str]) -> str:
        found = names.get(match.group(1).strip(), _UNDEFINED)
        if isinstance(found, bool) or not isinstance(found, str | int | float):
            raise JSError(
                line,
                f"expected plain text, got a template with ${{{match.group(1)}}} "
                f"(JavaScript to run); {AS_JSON}",
            )
        return str(found).replace("\\", "\\\\")  # the text is unescaped after this

    return re.sub(r"\$\{([^}]*)\}", value, body)


_PATH: Any = object()  # node's path module, from require("path")


def _require(tokens: _Tokens, line: int) -> Any:
    """``require("path")`` (after the name): the path module; any other module is code."""
    tokens.expect("(", "require(")
    kind, text, _ = tokens.next()
    module = _string(text, line, {}) if kind == "string" else None
    if module not in ("path", "node:path") or not tokens.accept(")"):
        shown = text if kind == "string" else "…"
        raise JSError(line, f"expected plain data, got require({shown}) (JavaScript to run); {AS_JSON}")
    return _PATH


def _path_call(tokens: _Tokens, names: dict[str, Any], line: int) -> str:
    """``path.join(…)`` / ``path.resolve(…)`` of strings, as node computes them on POSIX;
    ``resolve`` starts from the file's folder (where pm2 is usually started)."""
    tokens.expect(".", "path.")
    _, method, _ = tokens.next()
    if method not in ("join", "resolve") or tokens.peek()[1] != "(":
        raise JSError(line, f"expected plain data, got path.{method} (JavaScript to run); {AS_JSON}")
    tokens.next()
    parts: list[str] = []
    while not tokens.accept(")"):
        part = _value(tokens, names)
        if not isinstance(part, str):
            raise JSError(line, f"expected strings in path.{method}(…), got {part!r}")
        parts.append(part)
        if not tokens.accept(","):
            tokens.expect(")", "',' or ')'")
            break
    if method == "join":
        joined = "/".join(p for p in parts if p)
        return posixpath.normpath(joined) if joined else "."
    base = names.get("__dirname")
    if not isinstance(base, str):
        raise JSError(line, f"expected plain data, got path.resolve (JavaScript to run); {AS_JSON}")
    return posixpath.normpath(posixpath.join(base, *parts))


def _unescape(body: str) -> str:
    """JavaScript's backslash escapes; ValueError for a broken one."""
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        escape = body[i + 1]
        if escape == "u" and body[i + 2 : i + 3] == "{":
            end = body.index("}", i)
            out.append(chr(int(body[i + 3 : end], 16)))
            i = end + 1
        elif escape in "ux":
            size = 4 if escape == "u" else 2
            digits = body[i + 2 : i + 2 + size]
            if not re.fullmatch(f"[0-9a-fA-F]{{{size}}}", digits):
                raise ValueError(f"\\{escape} needs {size} hex digits")
            out.append(chr(int(digits, 16)))
            i += 2 + size
        elif escape == "\n":
            i += 2  # a line continuation
        else:
            out.append(_ESCAPES.get(escape, escape))
            i += 2
    return "".join(out)


def _number(text: str) -> int | float:
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if digits[:2].lower() == "0x":
        return sign * int(digits, 16)
    if re.fullmatch(r"\d+", digits):
        return sign * int(digits)
    return sign * float(digits)
