"""Trigger arithmetic: `every` slots, cron expressions with Debian cron's semantics, DST."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from stoker.schedule.triggers import (
    Cron,
    Every,
    Reboot,
    TriggerError,
    fire_times,
    parse_cron,
    zone_named,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
UTC = dt.UTC


def at(zone: dt.tzinfo, *fields: int, fold: int = 0) -> float:
    return dt.datetime(*fields, tzinfo=zone, fold=fold).timestamp()  # type: ignore[misc]


def local(times: list[float], zone: dt.tzinfo) -> list[str]:
    return [dt.datetime.fromtimestamp(t, zone).isoformat() for t in times]


def cron_times(expr: str, zone: dt.tzinfo, start: float, n: int) -> list[str]:
    return local(fire_times(parse_cron(expr, zone), start, n), zone)


# every ---------------------------------------------------------------------------------------


def test_every_slots_are_aligned_to_the_epoch() -> None:
    every = Every(1800)
    start = at(UTC, 2026, 11, 23, 9, 41, 7)
    assert local(fire_times(every, start, 3), UTC) == [
        "2026-11-23T10:00:00+00:00",
        "2026-11-23T10:30:00+00:00",
        "2026-11-23T11:00:00+00:00",
    ]
    slot = at(UTC, 2026, 11, 23, 10, 0)
    assert every.next_after(slot) == slot + 1800  # strictly after
    assert every.next_after(slot - 0.000001) == slot


def test_every_is_exact_over_many_slots() -> None:
    every = Every(0.25)
    times = fire_times(every, 1_700_000_000.1, 10_000)
    assert all(b - a == pytest.approx(0.25, abs=1e-6) for a, b in itertools.pairwise(times))
    assert all(round(t * 4) == t * 4 for t in times)  # on the grid, no drift


def test_every_refuses_nonsense() -> None:
    for bad in (0, -5, 0.0001):
        with pytest.raises(TriggerError):
            Every(bad)


@given(st.floats(1, 86400 * 7), st.floats(0, 2_000_000_000))
def test_every_next_is_the_following_multiple(seconds: float, t: float) -> None:
    every = Every(seconds)
    nxt = every.next_after(t)
    assert nxt is not None and nxt > t - 1e-6 and nxt - t <= seconds + 1e-6
    step = round(seconds * 1_000_000)
    assert round(nxt * 1_000_000) % step == 0


# cron basics ---------------------------------------------------------------------------------


def test_cron_fields_names_steps() -> None:
    start = at(UTC, 2026, 11, 23, 9, 41)  # a Monday
    assert cron_times("*/15 * * * *", UTC, start, 3) == [
        "2026-11-23T09:45:00+00:00",
        "2026-11-23T10:00:00+00:00",
        "2026-11-23T10:15:00+00:00",
    ]
    assert cron_times("30 8 * JAN-MAR MON-FRI", UTC, start, 2) == [
        "2027-01-01T08:30:00+00:00",
        "2027-01-04T08:30:00+00:00",
    ]


def test_day_of_month_or_day_of_week() -> None:
    # Both restricted: either matches (13th of the month OR any Friday), as Debian cron does.
    start = at(UTC, 2026, 11, 1, 0, 0)
    assert cron_times("0 12 13 * FRI", UTC, start, 4) == [
        "2026-11-06T12:00:00+00:00",
        "2026-11-13T12:00:00+00:00",
        "2026-11-20T12:00:00+00:00",
        "2026-11-27T12:00:00+00:00",
    ]
    # One of them "*": only the other one counts.
    assert cron_times("0 12 13 * *", UTC, start, 2) == [
        "2026-11-13T12:00:00+00:00",
        "2026-12-13T12:00:00+00:00",
    ]


def test_last_weekday_and_nth() -> None:
    start = at(UTC, 2026, 11, 1, 0, 0)
    assert cron_times("0 0 L * *", UTC, start, 2) == [
        "2026-11-30T00:00:00+00:00",
        "2026-12-31T00:00:00+00:00",
    ]
    assert cron_times("0 0 * * MON#1", UTC, start, 2) == [
        "2026-11-02T00:00:00+00:00",
        "2026-12-07T00:00:00+00:00",
    ]
    # cronsim has no W (nearest weekday): refused with a clear message rather than misread
    with pytest.raises(TriggerError, match="day-of-month"):
        parse_cron("0 0 15W * *", UTC)


@pytest.mark.parametrize(
    ("macro", "first"),
    [
        ("@hourly", "2026-11-23T10:00:00+00:00"),
        ("@daily", "2026-11-24T00:00:00+00:00"),
        ("@midnight", "2026-11-24T00:00:00+00:00"),
        ("@weekly", "2026-11-29T00:00:00+00:00"),
        ("@monthly", "2026-12-01T00:00:00+00:00"),
        ("@yearly", "2027-01-01T00:00:00+00:00"),
        ("@ANNUALLY", "2027-01-01T00:00:00+00:00"),
    ],
)
def test_macros(macro: str, first: str) -> None:
    assert cron_times(macro, UTC, at(UTC, 2026, 11, 23, 9, 41), 1) == [first]


def test_reboot_has_no_slots() -> None:
    trigger = parse_cron("@reboot", UTC)
    assert isinstance(trigger, Reboot) and trigger.next_after(0) is None


@pytest.mark.parametrize(
    ("expr", "field"),
    [
        ("61 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 32 * *", "day"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day"),
        ("* * * *", "number of fields"),
        ("@sometimes", "number of fields"),
        ("*/0 * * * *", "minute"),
    ],
)
def test_bad_expressions_name_the_field(expr: str, field: str) -> None:
    with pytest.raises(TriggerError) as info:
        parse_cron(expr, UTC)
    assert field in str(info.value) and repr(expr) in str(info.value)


def test_zones() -> None:
    assert zone_named("Europe/Berlin") == BERLIN
    with pytest.raises(TriggerError, match="unknown time zone 'Mars/Olympus'"):
        zone_named("Mars/Olympus")
    assert zone_named(None).utcoffset(dt.datetime(2026, 1, 1)) is not None


# DST -----------------------------------------------------------------------------------------


def test_berlin_spring_forward_runs_a_skipped_time_right_after_the_gap() -> None:
    start = at(BERLIN, 2026, 3, 28, 12, 0)  # 2026-03-29 02:00 → 03:00
    assert cron_times("30 2 * * *", BERLIN, start, 3) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert cron_times("0 * * * *", BERLIN, at(BERLIN, 2026, 3, 29, 0, 30), 3) == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]


def test_berlin_fall_back_runs_a_fixed_time_once_and_wildcards_twice() -> None:
    start = at(BERLIN, 2026, 10, 24, 12, 0)  # 2026-10-25 03:00 → 02:00
    assert cron_times("30 2 * * *", BERLIN, start, 2) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    assert cron_times("30 * * * *", BERLIN, at(BERLIN, 2026, 10, 25, 1, 0), 4) == [
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:30:00+01:00",
    ]


def test_new_york() -> None:
    spring = at(NEW_YORK, 2026, 3, 7, 12, 0)  # 2026-03-08 02:00 → 03:00
    assert cron_times("15 2 * * *", NEW_YORK, spring, 2) == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:15:00-04:00",
    ]
    fall = at(NEW_YORK, 2026, 10, 31, 12, 0)  # 2026-11-01 02:00 → 01:00
    assert cron_times("15 1 * * *", NEW_YORK, fall, 2) == [
        "2026-11-01T01:15:00-04:00",
        "2026-11-02T01:15:00-05:00",
    ]


def test_sydney() -> None:
    fall = at(SYDNEY, 2026, 4, 4, 12, 0)  # 2026-04-05 03:00 → 02:00
    assert cron_times("30 2 * * *", SYDNEY, fall, 2) == [
        "2026-04-05T02:30:00+11:00",
        "2026-04-06T02:30:00+10:00",
    ]
    spring = at(SYDNEY, 2026, 10, 3, 12, 0)  # 2026-10-04 02:00 → 03:00
    assert cron_times("30 2 * * *", SYDNEY, spring, 2) == [
        "2026-10-04T03:00:00+11:00",
        "2026-10-05T02:30:00+11:00",
    ]


# properties ----------------------------------------------------------------------------------

EXPRESSIONS = [
    "* * * * *",
    "*/7 * * * *",
    "30 2 * * *",
    "0 */3 * * *",
    "15,45 1-3 * * *",
    "0 0 13 * FRI",
    "0 0 L * *",
    "0 12 * * MON#2",
    "5 4 * * SUN",
    "@hourly",
]
ZONES = [BERLIN, NEW_YORK, SYDNEY, UTC, ZoneInfo("Asia/Shanghai")]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(EXPRESSIONS),
    st.sampled_from(ZONES),
    st.integers(1_600_000_000, 1_900_000_000),
)
def test_fire_times_increase_and_match_cronsim(expr: str, zone: ZoneInfo, start: int) -> None:
    trigger = parse_cron(expr, zone)
    assert isinstance(trigger, Cron)
    ours = fire_times(trigger, start, 12)
    assert all(a < b for a, b in itertools.pairwise(ours)), local(ours, zone)
    assert ours[0] > start
    it = CronSim(
        trigger.expression if not expr.startswith("@") else "0 * * * *",
        dt.datetime.fromtimestamp(start, zone),
    )
    assert ours == [next(it).timestamp() for _ in range(12)]


# stoker cron ----------------------------------------------------------------------------------


def _cron_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stoker", "cron", *args], capture_output=True, text=True, timeout=60
    )


def test_cron_command_prints_the_next_times() -> None:
    result = _cron_cli("30 2 * * *", "--tz", "Europe/Berlin", "--after", "2026-03-28T12:00", "-n", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    as_json = _cron_cli("@daily", "--tz", "UTC", "--after", "2026-11-23T09:00:00Z", "-n", "2", "--json")
    assert json.loads(as_json.stdout) == ["2026-11-24T00:00:00+00:00", "2026-11-25T00:00:00+00:00"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["61 * * * *"], "bad minute"),
        (["* * * * *", "--tz", "Nowhere/Town"], "unknown time zone"),
        (["* * * * *", "--after", "yesterday"], "ISO 8601"),
        (["* * * * *", "-n", "0"], "-n must be 1 or more"),
    ],
)
def test_cron_command_refuses_bad_input(args: list[str], message: str) -> None:
    result = _cron_cli(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_fire_times_until_stops_at_a_time() -> None:
    every = Every(10)
    assert fire_times(every, 100, 5, until=130) == [110, 120, 130]  # at or before it
    assert fire_times(every, 100, 2, until=1000) == [110, 120]  # the count comes first
    assert fire_times(every, 100, 5, until=105) == []
    daily = parse_cron("0 3 * * *", UTC)
    start = at(UTC, 2026, 11, 20, 12, 0)
    assert local(fire_times(daily, start, 10, until=at(UTC, 2026, 11, 23, 3, 0)), UTC) == [
        "2026-11-21T03:00:00+00:00",
        "2026-11-22T03:00:00+00:00",
        "2026-11-23T03:00:00+00:00",
    ]
