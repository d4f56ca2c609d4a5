"""`env_file`: variables from a ``.env`` file, read each time a program starts or a job's
attempt begins (as systemd's EnvironmentFile= is), so that a deploy that rewrites the file
and restarts the program is all it takes.

The syntax is the common subset of docker's, systemd's and the dotenv libraries': ``KEY=VALUE``
lines, an optional ``export`` before the key, ``#`` comment lines, values bare (trimmed, `` #``
starts a comment), in single quotes (taken as written) or double quotes (``\\n``, ``\\t``,
``\\"``, ``\\\\`` escapes). No ``$VAR`` expansion: a value is what the file says. Pure: `parse`
takes text; `read` is its thin shell.
"""

from __future__ import annotations

import re

_LINE = re.compile(r"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.]*)[ \t]*=[ \t]*(.*)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}
MAX_SIZE = 1024 * 1024  # a .env file is a few lines: a bigger one is a mistake, not a read


class EnvFileError(ValueError):
    """The file cannot be read or a line is not KEY=VALUE: the message names the file and line."""


def parse(text: str, path: str = ".env") -> dict[str, str]:
    """The variables of `text`, in order; EnvFileError naming `path` and the line otherwise."""
    variables: dict[str, str] = {}
    # lines end at \n (or \r\n) only: str.splitlines would also split a value at \x0c, \x85…
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip(" \t\r")
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.fullmatch(stripped)
        if match is None:
            raise EnvFileError(f"{path}: line {number}: expected KEY=VALUE, got {stripped[:60]!r}")
        name, raw = match.groups()
        try:
            variables[name] = _value(raw)
        except ValueError as e:
            raise EnvFileError(f"{path}: line {number}: {name}: {e}") from None
    return variables


def _value(raw: str) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = _closing(raw, quote)
        rest = raw[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise ValueError(f"expected nothing but a comment after the closing {quote}, got {rest[:30]!r}")
        body = raw[1:end]
        if quote == "'":
            return body
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body)
    return re.split(r"[ \t]+#", raw, maxsplit=1)[0].strip(" \t")


def _closing(raw: str, quote: str) -> int:
    i = 1
    while i < len(raw):
        if raw[i] == "\\" and quote == '"':
            i += 2
            continue
        if raw[i] == quote:
            return i
        i += 1
    raise ValueError(f"the value opens a {quote} that does not close on its line")


def read(path: str) -> dict[str, str]:
    """The variables of the file at `path`; EnvFileError saying why not."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SIZE + 1)
    except OSError as e:
        raise EnvFileError(f"env_file {path}: cannot read it ({e.strerror or e})") from None
    if len(data) > MAX_SIZE:
        raise EnvFileError(f"env_file {path}: larger than {MAX_SIZE // 1024} KB; expected a .env file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise EnvFileError(f"env_file {path}: not UTF-8 text (bad byte at offset {e.start})") from None
    return parse(text, f"env_file {path}")
