"""Tests for stoker.terminal: nothing a terminal would act on gets through, printable text is
unchanged, and the escaping can be undone exactly."""

from __future__ import annotations

import re
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from stoker.terminal import Stream, cell, visible, visible_bytes

BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]


def shown_as_escape(code: int) -> bool:
    """The characters the module promises to escape, written out independently of it."""
    return code < 0x20 or 0x7F <= code <= 0x9F or code in BIDI or 0xD800 <= code <= 0xDFFF


def kept_in_lines(code: int) -> bool:
    return code in (0x09, 0x0A)


def unescape(text: str) -> str:
    """The reading-back rule of the module's docstring: runs of backslashes before an escape
    look-alike are halved; an odd one out begins an escape; any other backslash is itself."""

    def back(m: re.Match[str]) -> str:
        run, tail = m.group(1), m.group(2)
        kept = "\\" * (len(run) // 2)
        if len(run) % 2 == 0:
            return kept + tail
        code = int(tail[1:], 16)
        if tail[0] == "x" and code >= 0x80:
            return kept + chr(0xDC00 + code)  # a byte, as surrogateescape carries it
        return kept + chr(code)

    return re.sub(r"(\\+)(x[0-9a-f]{2}|u[0-9a-f]{4})", back, text)


def assert_safe(out: str, *, lines: bool) -> None:
    for i, ch in enumerate(out):
        code = ord(ch)
        if code == 0x0D:
            assert lines and out[i + 1 : i + 2] == "\n", repr(out)
        elif shown_as_escape(code):
            assert lines and kept_in_lines(code), repr(out)


# exhaustive ----------------------------------------------------------------------------------


def test_every_code_point_alone() -> None:
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        for render, lines in ((visible, True), (cell, False)):
            out = render(ch)
            if shown_as_escape(code) and not (lines and kept_in_lines(code)):
                if 0xDC80 <= code <= 0xDCFF:
                    assert out == f"\\x{code - 0xDC00:02x}"
                elif code < 0x80:
                    assert out == f"\\x{code:02x}"
                else:
                    assert out == f"\\u{code:04x}"
            else:
                assert out == ch, hex(code)


def test_every_byte_alone() -> None:
    for byte in range(256):
        data = bytes([byte])
        out = visible_bytes(data)
        if byte >= 0x80:  # half a UTF-8 sequence
            assert out == f"\\x{byte:02x}".encode()
        elif byte in (0x09, 0x0A) or 0x20 <= byte < 0x7F:
            assert out == data
        else:
            assert out == f"\\x{byte:02x}".encode()


@pytest.mark.parametrize(
    ("text", "lines", "shown"),
    [
        ("\x1b]0;pwned\x07\x1b[2J", "\\x1b]0;pwned\\x07\\x1b[2J", "\\x1b]0;pwned\\x07\\x1b[2J"),
        ("a\nb\tc", "a\nb\tc", "a\\x0ab\\x09c"),
        ("dos\r\nline\r\n", "dos\r\nline\r\n", "dos\\x0d\\x0aline\\x0d\\x0a"),
        ("50%\r100%\n", "50%\\x0d100%\n", "50%\\x0d100%\\x0a"),
        ("evil\u202egnp.exe", "evil\\u202egnp.exe", "evil\\u202egnp.exe"),
        ("\x9b31m", "\\u009b31m", "\\u009b31m"),
        ("\x7f", "\\x7f", "\\x7f"),
        # backslashes alone stay: PHP class names, regexes, Windows paths
        ("App\\Jobs\\Mail", "App\\Jobs\\Mail", "App\\Jobs\\Mail"),
        ("^\\d+\\.\\w$", "^\\d+\\.\\w$", "^\\d+\\.\\w$"),
        ("C:\\new\\xml", "C:\\new\\xml", "C:\\new\\xml"),
        # ... unless they would read as an escape
        ("literal \\x1b", "literal \\\\x1b", "literal \\\\x1b"),
        ("\\u202e", "\\\\u202e", "\\\\u202e"),
        ("\\\\x00", "\\\\\\\\x00", "\\\\\\\\x00"),
        ("\\\x1b", "\\\\\\x1b", "\\\\\\x1b"),
        ("\\\n", "\\\n", "\\\\\\x0a"),
        ("\\\r\n", "\\\r\n", "\\\\\\x0d\\x0a"),
        ("\\\r", "\\\\\\x0d", "\\\\\\x0d"),
        ("\\X1B \\xZZ \\u12", "\\X1B \\xZZ \\u12", "\\X1B \\xZZ \\u12"),
    ],
)
def test_examples(text: str, lines: str, shown: str) -> None:
    assert visible(text) == lines
    assert cell(text) == shown
    assert unescape(lines) == unescape(shown) == text


def test_bytes_not_utf8() -> None:
    data = "café ".encode() + b"\xff\xfe" + "中".encode()[:2] + b"\x1b[31m\n"
    out = visible_bytes(data)
    assert out == "café \\xff\\xfe\\xe4\\xb8\\x1b[31m\n".encode()
    assert unescape(out.decode()).encode("utf-8", "surrogateescape") == data


# properties ----------------------------------------------------------------------------------

# text rich in what matters: controls, bidi, backslashes, look-alikes, surrogates, CRLF
pieces = st.sampled_from(
    ["\\", "x", "u", "1", "b", "f", "0", "\r", "\n", "\t", "\x1b", "\x7f", "\x85", "\u202e",
     "\u2067", "\udc80", "\udcff", "\ud800", "a", " ", "中", "é", "\\x1b", "\\u202e"]
)  # fmt: skip
texts = st.one_of(st.text(), st.lists(pieces).map("".join))


@given(texts)
@example("\\\\\\x1b\x1b\\")
def test_nothing_a_terminal_acts_on_gets_through(text: str) -> None:
    assert_safe(visible(text), lines=True)
    assert_safe(cell(text), lines=False)


@given(texts)
def test_the_escaping_can_be_undone(text: str) -> None:
    assert unescape(visible(text)) == text
    assert unescape(cell(text)) == text


@given(
    st.binary()
    | st.lists(st.sampled_from([b"\\", b"x", b"1", b"\xc3", b"\xa9", b"\x1b", b"\r", b"\n"])).map(b"".join)
)
def test_bytes_can_be_recovered(data: bytes) -> None:
    out = visible_bytes(data)
    out.decode()  # valid UTF-8 whatever came in
    assert_safe(out.decode(), lines=True)
    assert unescape(out.decode()).encode("utf-8", "surrogateescape") == data


@given(
    st.text(st.characters(blacklist_categories=("Cc", "Cs"))).filter(
        lambda t: not any(ord(c) in BIDI for c in t)
    )
)
def test_printable_text_is_unchanged(text: str) -> None:
    if not re.search(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4})", text):
        assert visible(text) == text
        assert cell(text) == text


@given(texts, st.lists(st.integers(0, 60)))
def test_a_stream_is_escaped_as_the_whole_text(text: str, cuts: list[int]) -> None:
    bounds = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]
    stream = Stream()
    assert "".join(stream.feed(p) for p in pieces) + stream.end() == visible(text)


def test_a_stream_holds_back_only_what_is_undecided() -> None:
    stream = Stream()
    assert stream.feed("ok\nline\\") == "ok\nline"
    assert stream.feed("x1") == ""
    assert stream.feed("b more\r") == "\\\\x1b more"
    assert stream.feed("\n") == "\r\n"
    assert stream.feed("progress\r") == "progress"
    assert stream.feed("done") == "\\x0ddone"
    assert stream.feed("\\") == ""
    assert stream.end() == "\\"
