"""stoker/skew.py: the offset between the database server's clock and a node's, and when it
is applied (pure: numbers in, numbers out)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker.skew import BOUND, MAX_TRIP, RELEASE, THRESHOLD, NodeClock, applied, describe, estimate

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


class Clocks:
    """A machine's two clocks, set by hand: `wall` (stepped) and `mono` (only ever forward)."""

    def __init__(self, wall: float, mono: float = 500.0) -> None:
        self.wall_at, self.mono_at = wall, mono

    def wall(self) -> float:
        return self.wall_at

    def mono(self) -> float:
        return self.mono_at

    def advance(self, seconds: float) -> None:
        self.wall_at += seconds
        self.mono_at += seconds


def node_clock(clocks: Clocks) -> NodeClock:
    return NodeClock(wall=clocks.wall, monotonic=clocks.mono)


def test_a_clock_within_the_threshold_reads_the_wall_exactly() -> None:
    clocks = Clocks(1000.0)
    clock = node_clock(clocks)
    assert clock() == 1000.0  # no reading yet: the wall clock
    assert not clock.observe(500.0, 1000.3, 500.0)
    assert clock.offset == 0.0 and clock() == 1000.0
    clocks.advance(7.0)
    assert clock() == 1007.0


def test_a_clock_ahead_reads_the_servers_time_and_says_so_once() -> None:
    clocks = Clocks(1048.0)
    clock = node_clock(clocks)
    assert clock.observe(499.0, 1000.0, 501.0)  # 48 s ahead: now corrected, and said
    assert clock.offset == pytest.approx(-48.0) and clock() == pytest.approx(1000.0)
    clocks.advance(10.0)
    assert clock() == pytest.approx(1010.0)
    assert not clock.observe(510.0, 1010.1, 510.0)  # still off: said already
    assert clock.offset == pytest.approx(-47.9)
    clocks.wall_at -= 47.6  # stepped back by hand: 0.3 s ahead, past the release
    assert clock() == pytest.approx(1010.1) and clock.offset == pytest.approx(-0.3)
    clocks.wall_at -= 0.2  # in step: seen at once, said at the next reading
    assert clock() == clocks.wall_at and clock.offset == 0.0
    assert clock.observe(510.0, 1010.2, 510.0)
    assert clock.offset == 0.0 and not clock.observe(510.0, 1010.2, 510.0)


def test_a_jump_of_the_wall_clock_between_readings_is_seen_at_once() -> None:
    clocks = Clocks(2000.0)
    clock = node_clock(clocks)
    assert not clock.observe(500.0, 2000.0, 500.0)
    clocks.advance(1.0)
    clocks.wall_at += 90.0  # the node's clock jumps 90 s ahead
    assert clock() == pytest.approx(2001.0) and clock.offset == pytest.approx(-90.0)
    assert clock.observe(501.0, 2001.0, 501.0)  # the heartbeat says it
    clocks.wall_at -= 90.0  # and back
    assert clock() == 2001.0 and clock.offset == 0.0


@given(times, seconds, st.lists(st.tuples(st.floats(min_value=0, max_value=60), seconds), max_size=20))
def test_the_clock_reads_the_servers_within_the_threshold_whatever_the_wall_does(
    start: float, skew: float, steps: list[tuple[float, float]]
) -> None:
    """The server's clock and the monotonic one keep one pace; the wall clock jumps by
    anything. After one reading, every `clock()` is the server's time within the threshold,
    and exactly the wall clock's when that is within the release of it."""
    clocks = Clocks(start + skew)
    clock = node_clock(clocks)
    server = start
    clock.observe(clocks.mono_at, server, clocks.mono_at)
    for elapsed, jump in steps:
        clocks.advance(elapsed)
        server += elapsed
        clocks.wall_at += jump
        now = clock()
        assert abs(now - server) <= THRESHOLD + 1e-6
        if abs(clocks.wall_at - server) <= RELEASE:
            assert now == clocks.wall_at


def test_the_log_line_names_the_node_and_the_direction() -> None:
    assert (
        describe("x", -48.0) == "node x: clock 48.0 s ahead of the database server; using the server's time"
    )
    assert describe("y", 3.5) == "node y: clock 3.5 s behind the database server; using the server's time"


def test_a_slow_round_trip_is_used_only_when_there_is_no_other() -> None:
    clocks = Clocks(3000.0)
    clock = node_clock(clocks)
    assert not clock.observe(490.0, 3000.0, 510.0)  # a 20 s round trip, the first: used (in step)
    assert clock.anchor == 2500.0 and clock() == 3000.0
    assert clock.observe(500.0, 2990.0, 500.5)  # a quick one: 10.25 s ahead
    assert clock() == pytest.approx(2989.75)
    clocks.advance(1.0)
    assert not clock.observe(500.0, 1.0, 502.0)  # a 2 s round trip: not used
    assert clock() == pytest.approx(2990.75)


@given(
    st.lists(
        st.tuples(st.floats(min_value=0, max_value=MAX_TRIP), st.floats(min_value=0, max_value=1)), min_size=1
    ),
    seconds,
)
def test_after_a_quick_reading_the_clock_is_within_the_bound(
    readings: list[tuple[float, float]], skew: float
) -> None:
    """Readings whose round trip took at most MAX_TRIP, the server's clock read anywhere in it:
    `clock()` is within BOUND of the server's."""
    clocks = Clocks(10_000.0 + skew)
    clock = node_clock(clocks)
    server = 10_000.0
    for trip, at in readings:
        sent = clocks.mono_at
        clock.observe(sent, server + at * trip, sent + trip)
        clocks.advance(trip)
        server += trip
        assert abs(clock() - server) <= BOUND + 1e-6
