"""Durations and sizes: the spellings stoker.toml and the CLI accept, and what they print."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker.durations import (
    InvalidValue,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("10s", 10.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2m30s", 150.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("1m250ms", 60.25),
        ("0s", 0.0),
        ("30", 30.0),
        ("2.5", 2.5),
        (" 10s ", 10.0),
    ],
)
def test_parse_duration_strings(text: str, seconds: float) -> None:
    assert parse_duration(text, where="x") == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "seconds"), [(0, 0.0), (10, 10.0), (2.5, 2.5)])
def test_parse_duration_numbers_are_seconds(value: float, seconds: float) -> None:
    result = parse_duration(value, where="x")
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "value",
    [
        "ten",
        "",
        "   ",
        "10x",
        "10sec",
        "5M",
        "s",
        "1.2.3s",
        "-5s",
        "10s junk",
        "1e3s",
        "nan",
        "inf",
    ],
)
def test_parse_duration_rejects_junk_strings(value: str) -> None:
    with pytest.raises(ValueError, match="expected a duration like"):
        parse_duration(value, where="start_seconds")


@pytest.mark.parametrize("value", [-1, -0.5, math.inf, -math.inf, math.nan])
def test_parse_duration_rejects_negative_and_non_finite(value: float) -> None:
    with pytest.raises(ValueError, match="zero or more seconds"):
        parse_duration(value, where="x")


@pytest.mark.parametrize("value", [True, False, None, [1], {"s": 1}, b"10s"])
def test_parse_duration_rejects_other_types(value: object) -> None:
    # A TOML `true` must never silently mean one second.
    with pytest.raises(InvalidValue):
        parse_duration(value, where="x")


def test_parse_duration_huge_number_string_is_refused_not_inf() -> None:
    with pytest.raises(InvalidValue):
        parse_duration("9" * 400 + "d", where="x")


def test_duration_error_message_names_where_expected_and_got() -> None:
    with pytest.raises(InvalidValue) as info:
        parse_duration("ten", where="--in")
    assert str(info.value) == (
        '--in: expected a duration like "10s", "5m", "250ms" or a number of seconds, got "ten"'
    )
    assert info.value.where == "--in"
    assert info.value.value == "ten"
    assert isinstance(info.value, ValueError)


def test_duration_error_without_where_has_no_prefix() -> None:
    with pytest.raises(InvalidValue) as info:
        parse_duration("ten", where="")
    assert str(info.value).startswith("expected a duration")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512KB", 512 * 1024),
        ("50MB", 50 * 1024**2),
        ("1GB", 1024**3),
        ("1TB", 1024**4),
        ("512K", 512 * 1024),
        ("512KiB", 512 * 1024),
        ("512kb", 512 * 1024),
        ("1.5GB", 1536 * 1024**2),
        ("10B", 10),
        ("10", 10),
        ("1 MB", 1024**2),
        ("0", 0),
    ],
)
def test_parse_size_strings(text: str, size: int) -> None:
    assert parse_size(text, where="x") == size


def test_one_kb_is_1024_bytes() -> None:
    assert parse_size("1KB", where="x") == parse_size("1KiB", where="x") == 1024


@pytest.mark.parametrize(("value", "size"), [(0, 0), (4096, 4096), (1e6, 1_000_000)])
def test_parse_size_numbers_are_bytes(value: float, size: int) -> None:
    result = parse_size(value, where="x")
    assert result == size
    assert isinstance(result, int)


@pytest.mark.parametrize(
    "value", ["lots", "", "10XB", "MB", "-1KB", "1e3KB", "1.5.0MB", True, None, [1], 1.5, -1]
)
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(InvalidValue):
        parse_size(value, where="log.max_size")


def test_parse_size_huge_string_is_refused_not_overflow() -> None:
    with pytest.raises(InvalidValue):
        parse_size("9" * 400 + "TB", where="x")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (90, "1m30s"),
        (3600, "1h"),
        (86400 + 3600 + 60 + 1, "1d1h1m1s"),
        (0.25, "250ms"),
        (1.5, "1.5s"),
        (60.25, "1m0.25s"),
        (7200, "2h"),
        (-3, "-3s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_duration_refuses_non_finite() -> None:
    with pytest.raises(ValueError):
        format_duration(math.inf)


@given(st.integers(min_value=0, max_value=10**9).map(lambda ms: ms / 1000))
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds), where="x") == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (1023, "1023B"), (1024, "1KB"), (1536, "1.5KB"), (50 * 1024**2, "50MB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=2**50))
def test_format_size_parses_back_closely(size: int) -> None:
    assert parse_size(format_size(size), where="x") == pytest.approx(size, rel=0.05, abs=1)


@given(st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.none()))
def test_parsers_only_raise_value_error(value: object) -> None:
    for parse in (parse_duration, parse_size):
        with contextlib.suppress(ValueError):
            parse(value, where="x")
