"""A command line read the way /bin/sh would split it, to decide whether it needs a shell.

cron hands every command to ``sh -c``; stoker runs a command directly unless told otherwise.
The two agree on a line of plain words (quotes and backslashes included, which stoker's
command string honours too). Anything else a shell does (pipes, lists, redirections, ``$``,
backticks, globs, ``~``, a leading ``VAR=value``, comments) must still go through one.

:func:`scan` tokenizes only as far as that decision, and the importers' peeling of a leading
``cd DIR &&`` and trailing redirections, need: words keep their place in the text (so the
part left can be cut out as written) and say whether a shell would change them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Longest first: the operators sh knows between and around words.
_OPERATORS = ("&&", "||", ";;", ">>", ">&", "<&", "&>", ">|", "<<", "<>", "|", "&", ";", "<", ">", "(", ")")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


class ShellSyntaxError(ValueError):
    """A line /bin/sh would refuse: an unterminated quote, ``$(`` or backtick."""


@dataclass(frozen=True)
class Token:
    """A word (``value`` is what the program would get: quotes and backslashes removed) or an
    operator (``value`` is the operator, a redirection's file descriptor included: ``2>``).
    ``start``/``end`` locate it in the scanned text; ``expands``: a shell would change the
    word (a variable, a command substitution, a glob, ``~``); ``assigns``: it is written
    ``NAME=…`` unquoted (a variable assignment, when it begins a command)."""

    kind: str  # "word" | "op"
    value: str
    start: int
    end: int
    expands: bool = False
    assigns: bool = False


def scan(text: str) -> list[Token]:
    """The tokens of a command line; a ``#`` comment ends it (its text is dropped)."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\n":
            i += 1
            continue
        if c == "#":  # a comment, as sh reads one at the start of a word
            break
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is not None:
            tokens.append(Token("op", op, i, i + len(op)))
            i += len(op)
            continue
        start = i
        value, i, expands = _word(text, i)
        if i < n and text[i] in "<>" and value.isdigit() and not expands:
            op = next(o for o in _OPERATORS if text.startswith(o, i))  # 2>, 2>>, 2>&
            tokens.append(Token("op", value + op, start, i + len(op)))
            i += len(op)
            continue
        assigns = _ASSIGNMENT.match(text, start) is not None
        tokens.append(Token("word", value, start, i, expands, assigns))
    return tokens


def _word(text: str, i: int) -> tuple[str, int, bool]:
    """One word from `i`: its value, where it ends, and whether a shell would expand it."""
    out: list[str] = []
    expands = text[i] == "~"
    n = len(text)
    while i < n:
        c = text[i]
        if c in " \t\n" or any(text.startswith(o, i) for o in _OPERATORS if o not in ("(", ")")):
            break
        if c in "()":
            break
        if c == "\\":
            if i + 1 < n:
                out.append(text[i + 1])
            i += 2
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("an unterminated ' quote")
            out.append(text[i + 1 : end])
            i = end + 1
        elif c == '"':
            i, inner, dollar = _double_quoted(text, i + 1)
            out.append(inner)
            expands = expands or dollar
        elif c == "$" or c == "`":
            expands = True
            end = _substitution_end(text, i)
            out.append(text[i:end])
            i = end
        else:
            if c in "*?[":
                expands = True
            out.append(c)
            i += 1
    return "".join(out), i, expands


def _double_quoted(text: str, i: int) -> tuple[int, str, bool]:
    out: list[str] = []
    dollar = False
    while i < len(text):
        c = text[i]
        if c == '"':
            return i + 1, "".join(out), dollar
        if c == "\\" and i + 1 < len(text) and text[i + 1] in '$`"\\\n':
            out.append(text[i + 1])
            i += 2
        elif c in "$`":
            dollar = True
            end = _substitution_end(text, i)
            out.append(text[i:end])
            i = end
        else:
            out.append(c)
            i += 1
    raise ShellSyntaxError('an unterminated " quote')


def _substitution_end(text: str, i: int) -> int:
    """Where a ``$…`` or backtick expansion starting at `i` ends (its contents are opaque here:
    the line goes to a shell anyway)."""
    if text[i] == "`":
        end = text.find("`", i + 1)
        if end < 0:
            raise ShellSyntaxError("an unterminated backtick")
        return end + 1
    if text.startswith("$(", i) or text.startswith("${", i):
        close = ")" if text[i + 1] == "(" else "}"
        depth, j = 0, i + 1
        while j < len(text):
            if text[j] in "({":
                depth += 1
            elif text[j] in ")}":
                depth -= 1
                if depth == 0 and text[j] == close:
                    return j + 1
            elif text[j] == "'":
                j = text.find("'", j + 1)
                if j < 0:
                    break
            j += 1
        raise ShellSyntaxError(f"an unterminated {text[i : i + 2]}")
    j = i + 1
    while j < len(text) and (text[j].isalnum() or text[j] == "_"):
        j += 1
    if j == i + 1 and j < len(text) and text[j] in "?!#$*@-0123456789":
        j += 1
    return j


def needs_shell(tokens: list[Token]) -> bool:
    """Whether these tokens mean more than "run this program with these words"."""
    if any(t.kind == "op" or t.expands for t in tokens):
        return True
    return bool(tokens) and tokens[0].assigns
