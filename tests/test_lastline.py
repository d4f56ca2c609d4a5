"""The last line of a program's output that its exit's error ends with (stoker.supervise.lastline):
however the output was chunked, bounded, on one line, without terminal escapes."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from stoker.supervise.lastline import HOLD, LIMIT, LastLine, clean


def last(*chunks: bytes) -> str | None:
    tracker = LastLine()
    for chunk in chunks:
        tracker.feed(chunk)
    return tracker.line()


def test_the_last_line_that_says_something() -> None:
    assert last(b"") is None
    assert last(b"\n\n  \n") is None
    assert last(b"starting\nError: Connection refused\n") == "Error: Connection refused"
    assert last(b"starting\nError: Connection refused\n\n   \n") == "Error: Connection refused"
    assert last(b"starting\nhalf a li", b"ne, then death") == "half a line, then death"  # unfinished
    assert last(b"one\n", b"\n", b"two") == "two"
    assert last(b"one\ntw", b"o\n", b"\n") == "two"


def test_nodes_version_trailer_is_not_the_reason() -> None:
    crash = b"    at Socket.emit (node:events:519:28)\nError: connect ECONNREFUSED 127.0.0.1:5672\n\nNode.js v20.11.1\n"
    assert last(crash) == "Error: connect ECONNREFUSED 127.0.0.1:5672"


def test_escapes_and_controls_are_dropped_and_length_bounded() -> None:
    assert clean(b"\x1b[31mFATAL\x1b[0m: disk\tfull") == "FATAL: disk full"
    assert clean(b"10%\r50%\rfailed at 51%") == "failed at 51%"
    assert clean("caf\u00e9 \u2713".encode() + b"\xff") == "caf\u00e9 \u2713\ufffd"
    long = clean(b"x" * 1000)
    assert len(long) == LIMIT and long.endswith("\u2026")


def test_a_line_without_end_is_held_bounded() -> None:
    tracker = LastLine()
    for _ in range(100):
        tracker.feed(b"y" * 1000)
    assert len(tracker._partial) == HOLD
    assert tracker.line() == "y" * (LIMIT - 1) + "\u2026"


@given(
    st.lists(
        st.sampled_from([b"a", b"bc", b"\n", b" ", b"\n\n", b"Node.js v1.2\n", b"\x1b[1m"]), max_size=30
    ),
    st.data(),
)
def test_chunking_does_not_change_the_answer(pieces: list[bytes], data: st.DataObject) -> None:
    text = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert last(*chunks) == last(text)
    lines = [clean(line) for line in text.split(b"\n") if not re.fullmatch(rb"\s*Node\.js v[\d.]+\s*", line)]
    expected = [line for line in lines if line]
    assert last(text) == (expected[-1] if expected else None)
