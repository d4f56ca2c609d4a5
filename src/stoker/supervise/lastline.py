"""The last line a program wrote: what its error ends with when it exits unexpectedly.

A crash-looping program's status said only "exited with code 255 after 0.03s" while the reason
("Connection refused") sat in its log. The instance feeds each run's output through a
`LastLine` per stream as it reads it, and the exit's error ends with what it holds (stderr's
when the run wrote any there, else stdout's), as a failed job's error ends with its output's
last line.

Bounded: it keeps at most `HOLD` bytes of the current line and of the last complete one,
whatever the program writes; the line it gives is at most `LIMIT` characters, on one line,
without terminal escapes.
"""

from __future__ import annotations

import re

__all__ = ["HOLD", "LIMIT", "LastLine", "clean"]

HOLD = 4096  # bytes of a line kept while it is read
LIMIT = 200  # characters of the line given (as a failed job's: stoker.jobs.dispatch_core.LAST_LINE)

# Colour and cursor sequences (CSI), and the other escapes a terminal program writes.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
# Lines that close a crash report without saying anything about it: Node.js ends every
# uncaught exception's stack with its version ("Node.js v20.11.1"); the line before says why.
_TRAILERS = re.compile(rb"^\s*Node\.js v\d+(\.\d+)*\s*$")


def clean(raw: bytes) -> str:
    """One line as the error shows it: decoded, escapes dropped, the text after the last
    carriage return (a progress bar's latest state), spaces trimmed, at most LIMIT chars."""
    text = _ESCAPES.sub("", raw.decode("utf-8", "replace"))
    pieces = [p for p in text.split("\r") if p.strip()]
    text = _CONTROLS.sub(" ", pieces[-1] if pieces else "").strip()
    return text if len(text) <= LIMIT else text[: LIMIT - 1].rstrip() + "…"


def _telling(line: bytes) -> bool:
    return bool(line.strip()) and not _TRAILERS.match(line) and bool(clean(line))


class LastLine:
    """The last line worth showing of one stream of one run, fed its output chunk by chunk."""

    __slots__ = ("_last", "_partial")

    def __init__(self) -> None:
        self._partial = b""  # the start (HOLD bytes at most) of the line not yet ended
        self._last = b""  # the last telling line that ended

    def feed(self, data: bytes) -> None:
        end = data.rfind(b"\n")
        if end < 0:
            if len(self._partial) < HOLD:
                self._partial = (self._partial + data)[:HOLD]
            return
        # The lines this chunk ends, last first, until one says something.
        while True:
            start = data.rfind(b"\n", 0, end) + 1
            line = data[start:end][:HOLD]
            if start == 0:
                line = (self._partial + line)[:HOLD]
            if _telling(line):
                self._last = line
                break
            if start == 0:
                break
            end = start - 1
        self._partial = data[data.rfind(b"\n") + 1 :][:HOLD]

    def line(self) -> str | None:
        """The last telling line, the unfinished one included (a program may die mid-line);
        None when the run wrote nothing worth showing."""
        for raw in (self._partial, self._last):
            if _telling(raw):
                return clean(raw)
        return None
