"""stoker/skew.py: the offset between the database server's clock and a node's, and when it
is applied (pure: numbers in, numbers out)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker.skew import RELEASE, THRESHOLD, NodeClock, applied, describe, estimate

seconds = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False)
times = st.floats(min_value=1e9, max_value=2e9, allow_nan=False)
trips = st.floats(min_value=0, max_value=5, allow_nan=False)


@given(times, trips, st.floats(min_value=0, max_value=1), seconds)
def test_the_estimate_errs_by_at_most_half_the_round_trip(
    sent: float, trip: float, at: float, offset: float
) -> None:
    received = sent + trip
    server = sent + at * trip + offset  # read somewhere within the round trip
    assert abs(estimate(sent, server, received) - offset) <= trip / 2 + 1e-6


def test_the_estimate_takes_the_midpoint() -> None:
    assert estimate(100.0, 200.0, 102.0) == 99.0
    assert estimate(100.0, 52.0, 102.0) == -49.0


@given(seconds)
def test_nothing_is_applied_from_none_within_the_threshold_and_all_past_it(measured: float) -> None:
    assert applied(0.0, measured) == (measured if abs(measured) > THRESHOLD else 0.0)


@given(seconds, seconds)
def test_an_offset_in_use_stays_until_it_falls_under_the_release(current: float, measured: float) -> None:
    result = applied(current, measured)
    assert result in (0.0, measured)
    if abs(measured) > THRESHOLD:
        assert result == measured
    elif abs(measured) <= RELEASE:
        assert result == 0.0
    else:  # between the two: kept as it was, in use or not
        assert (result != 0.0) == (current != 0.0) or measured == 0.0


@given(st.lists(seconds, max_size=30))
def test_the_applied_offset_is_always_zero_or_the_last_measured(readings: list[float]) -> None:
    current = 0.0
    for measured in readings:
        current = applied(current, measured)
        assert current in (0.0, measured)
        assert abs(current) <= abs(measured) or current == 0.0


def test_a_clock_within_the_threshold_reads_the_wall_exactly() -> None:
    clock = NodeClock(wall=lambda: 1000.0)
    assert not clock.observe(1000.0, 1000.3, 1000.0)
    assert clock.offset == 0.0 and clock() == 1000.0


def test_a_clock_ahead_reads_the_servers_time_and_says_so_once() -> None:
    clock = NodeClock(wall=lambda: 1048.0)
    assert clock.observe(1048.0, 1000.0, 1048.0)  # 48 s ahead: now corrected
    assert clock() == 1000.0
    assert not clock.observe(1048.0, 1000.1, 1048.0)  # still off: said already
    assert clock.offset == pytest.approx(-47.9)
    assert not clock.observe(1048.0, 1047.6, 1048.0)  # within the threshold, past the release
    assert clock.offset == pytest.approx(-0.4)
    assert not clock.observe(1048.0, 1047.9, 1048.0)  # in step again
    assert clock.offset == 0.0 and clock() == 1048.0


def test_the_log_line_names_the_node_and_the_direction() -> None:
    assert (
        describe("x", -48.0) == "node x: clock 48.0 s ahead of the database server; using the server's time"
    )
    assert describe("y", 3.5) == "node y: clock 3.5 s behind the database server; using the server's time"
