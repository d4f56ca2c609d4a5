"""Text for a terminal: what a terminal would act on, shown instead as a visible escape.

Programs, jobs, webhooks and other nodes write text the CLI prints (STATUS=, errors, output,
reasons, node names). Printed raw, ESC sequences in it could retitle the window, clear the
screen, hide or fake lines, or (on some terminals) answer back as if typed; bidi overrides
could reorder what the operator reads. So every such character is shown as an escape, the way
`cat -v` and `less` show them, so that the operator sees something was there:

- ``\\xHH`` for a C0 control (0x00-0x1f) and DEL, and for a byte that is not UTF-8 (0x80-0xff,
  carried as a surrogateescape surrogate, U+DC80-U+DCFF);
- ``\\uHHHH`` for a C1 control (U+0080-U+009F), a bidi embedding, override or isolate
  (U+202A-U+202E, U+2066-U+2069) and any other surrogate.

Hex digits are lowercase. In `lines` text (logs, output) a newline and a tab are kept, and a
carriage return right before a newline (CRLF: it overwrites nothing); in a cell (one line of a
table or a listing) those are escaped too.

The escaping can be undone exactly: a run of backslashes is doubled when what follows it in
the output would read as an escape (``x`` and two hex digits, ``u`` and four, or an escape);
every other backslash is left alone, so `App\\Jobs\\Mail` or a regex `^\\d+$` print as they are.
Reading back: a run of 2n+1 backslashes before ``xHH``/``uHHHH`` is n backslashes and the
escaped character, a run of 2n is n backslashes and the text; any other backslash is itself.
Text with none of these characters and no backslash before such a look-alike is unchanged.
"""

from __future__ import annotations

import re

# Always shown as escapes: C0 but tab, newline and carriage return; DEL and C1; bidi
# embeddings, overrides and isolates (the Trojan Source set); surrogates (bytes not UTF-8,
# or half a pair: neither can be written to a UTF-8 terminal).
_ALWAYS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_LOOKALIKE = r"x[0-9a-f]{2}|u[0-9a-f]{4}"
_ESCAPED_IN_LINES = rf"[{_ALWAYS}]|\r(?!\n)"
_ESCAPED_IN_CELL = rf"[{_ALWAYS}\t\n\r]"
# What gets escaped, or a run of backslashes before something that will read as an escape.
# Sources, not compiled patterns: compiling them costs ~1 ms that `stoker status` need not pay
# when every cell is plain (re compiles each once, on first use, and keeps it).
_LINES = rf"{_ESCAPED_IN_LINES}|\\+(?={_ESCAPED_IN_LINES}|{_LOOKALIKE})"
_CELL = rf"{_ESCAPED_IN_CELL}|\\+(?={_ESCAPED_IN_CELL}|{_LOOKALIKE})"
# the end of a chunk whose escaping depends on what comes next (a stream holds it back)
_UNDECIDED = r"(?:\\+(?:x[0-9a-f]?|u[0-9a-f]{0,3})?|\\*\r)\Z"
_RAW_IN_JSON = rf"[{_ALWAYS}]"


def _escape(match: re.Match[str]) -> str:
    text = match.group()
    if text[0] == "\\":
        return text + text
    code = ord(text)
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def visible(text: str) -> str:
    """Text of many lines (output, a log) safe for a terminal: newlines and tabs kept."""
    return re.sub(_LINES, _escape, text)


def cell(text: str) -> str:
    """Text for one line (a table cell, a listed value): newlines and tabs escaped too."""
    if text.isprintable() and "\\" not in text:  # the usual case: no control is printable
        return text
    return re.sub(_CELL, _escape, text)


def visible_bytes(data: bytes) -> bytes:
    """Output as the daemon stored it (UTF-8, or not), safe for a terminal, in UTF-8: a byte
    that is not part of UTF-8 text is shown as ``\\xHH``."""
    return visible(data.decode("utf-8", "surrogateescape")).encode()


class Stream:
    """`visible` for text that arrives in pieces (followed output): the same result as for the
    whole text, however it is cut. The end of a piece whose escaping depends on what follows
    (a carriage return, a run of backslashes) waits for the next piece, or for `end`."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        undecided = re.search(_UNDECIDED, text)
        cut = undecided.start() if undecided else len(text)
        self._held = text[cut:]
        return visible(text[:cut])

    def end(self) -> str:
        held, self._held = self._held, ""
        return visible(held)


def json_text(value: object) -> str:
    """`value` as one line of JSON that reads back to the same value: non-ASCII kept (中文, é),
    and what JSON leaves raw but a terminal would act on (DEL, C1, bidi, surrogates) written
    as the JSON escape ``\\uHHHH``. (json.dumps already escapes C0 and newlines.)"""
    import json

    return re.sub(_RAW_IN_JSON, lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))
