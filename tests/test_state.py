"""Unit tests of the pure program state machine (stoker.supervise.state).

No processes, no clocks, no sleeps: time is a number passed in, and the tests play the part of
the shell (performing Spawn by reporting Spawned/SpawnFailed, delivering Timer at the deadline
the machine asked for, reporting Exited only for a process that exists).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from stoker.supervise.state import (
    ACTIVE,
    CancelTimer,
    Event,
    Exited,
    KillGroup,
    Machine,
    Policy,
    Ready,
    Restart,
    SendStopSignal,
    SetTimer,
    Spawn,
    Spawned,
    SpawnFailed,
    Start,
    State,
    Stop,
    StopPending,
    Streak,
    Timer,
    WatchdogPing,
    Withdrawn,
    backoff_delay,
    wants_restart,
)

J = 0.5  # the jitter every table test passes: delay = 3/4 of the schedule
P = Policy(
    restart="on-failure",
    success_exit_codes=frozenset({0}),
    start_seconds=1.0,
    backoff_min=1.0,
    backoff_max=60.0,
    max_restarts=2,
    stop_timeout=10.0,
)
D1 = backoff_delay(P, 1, J)  # 0.75
D2 = backoff_delay(P, 2, J)  # 1.5


# Reaching each state with real events --------------------------------------------------------


def drive(m: Machine, steps: list[tuple[Event, float]]) -> list[list[object]]:
    return [list(m.handle(ev, now, J)) for ev, now in steps]


def reach(variant: str, policy: Policy = P) -> tuple[Machine, float]:
    """A fresh Machine driven into `variant`, and a time at which to deliver the next event.

    The time is strictly before any pending deadline, so a Timer delivered then is stale.
    """
    m = Machine(policy)
    if variant == "stopped":
        return m, 0.0
    assert m.handle(Start(), 0.0, J) == [Spawn()]
    if variant == "starting_inflight":  # Spawn asked for, not reported yet
        return m, 0.1
    if variant == "stopping_inflight":  # stopped while the spawn was in flight
        assert m.handle(Stop(), 0.0, J) == [SetTimer(10.0)]
        return m, 1.0
    assert m.handle(Spawned(100), 0.0, J) == [SetTimer(policy.start_seconds)]
    if variant == "starting":
        return m, 0.5
    if variant == "backoff":
        assert m.handle(Exited(1), 0.5, J) == [CancelTimer(), SetTimer(0.5 + D1)]
        return m, 1.0
    if variant == "fatal":
        drive(
            m,
            [
                (Exited(1), 0.5),  # failure 1
                (Timer(), 0.5 + D1),
                (Spawned(101), 0.5 + D1),
                (Exited(1), 1.5),  # failure 2
                (Timer(), 1.5 + D2),
                (Spawned(102), 1.5 + D2),
            ],
        )
        assert m.handle(Exited(1), 3.5, J) == [CancelTimer()]  # failure 3 > max_restarts
        assert m.state is State.FATAL
        return m, 10.0
    assert m.handle(Timer(), 1.0, J) == []
    assert m.state is State.RUNNING
    if variant == "running":
        return m, 5.0
    if variant == "running_in_loop":  # crashed once after a good start (not stable): restarted
        assert m.handle(Exited(1), 5.0, J) == [Spawn()]
        m.handle(Spawned(101), 5.0, J)
        assert m.handle(Timer(), 6.0, J) == []
        assert (m.state, m.streak) == (State.RUNNING, Streak(1, 5.0, 5.0))
        return m, 8.0
    if variant == "exited":
        assert m.handle(Exited(0), 5.0, J) == []
        return m, 6.0
    assert m.handle(Stop(), 5.0, J) == [SendStopSignal(), SetTimer(15.0)]
    if variant == "stopping":
        return m, 6.0
    assert variant == "stopping_killed", variant
    assert m.handle(Timer(), 15.0, J) == [KillGroup()]
    return m, 16.0


VARIANT_STATE = {
    "stopped": State.STOPPED,
    "starting_inflight": State.STARTING,
    "starting": State.STARTING,
    "running": State.RUNNING,
    "running_in_loop": State.RUNNING,
    "backoff": State.BACKOFF,
    "stopping": State.STOPPING,
    "stopping_inflight": State.STOPPING,
    "stopping_killed": State.STOPPING,
    "exited": State.EXITED,
    "fatal": State.FATAL,
}


@pytest.mark.parametrize("variant", list(VARIANT_STATE))
def test_reach_helper(variant: str) -> None:
    m, now = reach(variant)
    assert m.state is VARIANT_STATE[variant]
    assert (m.pid is not None) == (
        variant in ("starting", "running", "running_in_loop", "stopping", "stopping_killed")
    )
    assert m.deadline is None or now < m.deadline


# The table: every (state, event) pair ---------------------------------------------------------

TIMER_AT_DEADLINE = "timer@deadline"
TIMER_EARLY = "timer-early"

EVENTS: dict[str, Event | str] = {
    "start": Start(),
    "stop": Stop(),
    "stop_pending": StopPending(),
    "restart": Restart(),
    "spawned": Spawned(200),
    "spawn_failed": SpawnFailed("no such file"),
    "exit1": Exited(1),
    "exit0": Exited(0),
    "killed": Exited(None, signal=9),
    "timer": TIMER_AT_DEADLINE,
    "stale_timer": TIMER_EARLY,
    "ready": Ready(),
    "ping": WatchdogPing(),
    "withdrawn": Withdrawn(),
}

Check = Callable[[Machine], None]


@dataclass(frozen=True)
class Cell:
    state: State | None  # None: a protocol violation the shell never sends; only "no crash"
    actions: Callable[[float], list[object]] = lambda t: []
    check: Check | None = None
    xfail: str | None = None


NA = Cell(None)


def same(variant: str) -> Cell:
    return Cell(VARIANT_STATE[variant])


def fresh_start(m: Machine) -> None:
    assert m.failures == 0
    assert m.error is None
    assert m.deadline is None


def failed_once(m: Machine) -> None:
    assert m.failures == 1
    assert m.error is not None


def cell_for(variant: str, ev: str) -> Cell:
    st_ = VARIANT_STATE[variant]
    inflight = variant in ("starting_inflight", "stopping_inflight")
    has_proc = variant in ("starting", "running", "running_in_loop", "stopping", "stopping_killed")
    up = variant in ("starting", "running", "running_in_loop")
    restart_wanted = ev in ("exit1", "killed")  # on-failure policy

    if ev == "start":
        if variant in ("stopped", "exited", "fatal"):
            return Cell(State.STARTING, lambda t: [Spawn()], fresh_start)
        if variant == "backoff":
            return Cell(State.STARTING, lambda t: [CancelTimer(), Spawn()], fresh_start)
        return same(variant)  # starting/running: already wanted; stopping: start after
    if ev == "stop_pending":  # a stop has begun; its turn comes later
        if variant == "starting_inflight":  # no process yet (put off, say): stopped now
            return Cell(State.STOPPING, lambda t: [SetTimer(t + 10.0)])
        if variant == "backoff":  # nothing to wait for: stopped now, the retry dropped
            return Cell(State.STOPPED, lambda t: [CancelTimer()], _no_deadline)
        return Cell(st_, lambda t: [], _deadline_kept(variant))  # runs on until its Stop
    if ev in ("stop", "restart"):
        if variant == "starting_inflight":
            return Cell(State.STOPPING, lambda t: [SetTimer(t + 10.0)])
        if up:
            return Cell(State.STOPPING, lambda t: [SendStopSignal(), SetTimer(t + 10.0)])
        if st_ is State.STOPPING:
            return same(variant)
        if ev == "restart":
            if variant == "backoff":
                return Cell(State.STARTING, lambda t: [CancelTimer(), Spawn()], fresh_start)
            return Cell(State.STARTING, lambda t: [Spawn()], fresh_start)
        if variant == "backoff":
            return Cell(State.STOPPED, lambda t: [CancelTimer()], _no_deadline)
        return Cell(State.STOPPED)
    if ev == "spawned":
        if variant == "starting_inflight":
            return Cell(State.STARTING, lambda t: [SetTimer(t + 1.0)], _pid(200))
        if variant == "stopping_inflight":
            # the deadline of the stop (asked at 0) stands
            return Cell(State.STOPPING, lambda t: [SendStopSignal(), SetTimer(10.0)], _pid(200))
        return NA  # no spawn in flight
    if ev == "spawn_failed":
        if variant == "starting_inflight":
            return Cell(State.BACKOFF, lambda t: [SetTimer(t + D1)], _error("no such file", 1))
        if variant == "stopping_inflight":
            return Cell(State.STOPPED, lambda t: [CancelTimer()], _error("no such file", 0))
        return NA
    if ev in ("exit1", "exit0", "killed"):
        if inflight:
            return NA  # there is no process to exit
        if not has_proc:
            return Cell(st_, lambda t: [], _deadline_kept(variant))
        if st_ is State.STOPPING:
            cancel = variant == "stopping"
            return Cell(State.STOPPED, lambda t: [CancelTimer()] if cancel else [], _no_pid)
        if variant == "running":
            if restart_wanted:
                return Cell(State.STARTING, lambda t: [Spawn()], _restarted)
            return Cell(State.EXITED, lambda t: [], _no_pid)
        if variant == "running_in_loop":  # its second crash with no stable run between: a loop
            if restart_wanted:
                return Cell(State.BACKOFF, lambda t: [SetTimer(t + D1)], _crash_loop_of(2))
            return Cell(State.EXITED, lambda t: [], _no_pid)
        assert variant == "starting"  # died before start_seconds
        if restart_wanted:
            return Cell(State.BACKOFF, lambda t: [CancelTimer(), SetTimer(t + D1)], _early_death(ev))
        return Cell(State.EXITED, lambda t: [CancelTimer()], _no_pid)
    if ev in ("ready", "ping"):  # P has no readiness check and no watchdog: both are noise
        return Cell(st_, lambda t: [], _deadline_kept(variant))
    if ev == "withdrawn":
        if variant == "stopping_inflight":  # the put-off spawn is dropped: the stop is done
            return Cell(State.STOPPED, lambda t: [CancelTimer()], _no_deadline)
        return Cell(st_, lambda t: [], _deadline_kept(variant))
    if ev == "timer":
        if variant == "starting":
            return Cell(State.RUNNING, lambda t: [], _no_deadline)
        if variant == "backoff":
            return Cell(State.STARTING, lambda t: [Spawn()], _restarted)
        if variant in ("stopping", "stopping_inflight"):
            return Cell(State.STOPPING, lambda t: [KillGroup()], _no_deadline)
        return same(variant)  # no deadline: nothing to do
    assert ev == "stale_timer"
    return Cell(st_, lambda t: [], _deadline_kept(variant))


def _no_deadline(m: Machine) -> None:
    assert m.deadline is None


def _no_pid(m: Machine) -> None:
    assert m.pid is None


def _pid(pid: int) -> Check:
    def check(m: Machine) -> None:
        assert m.pid == pid

    return check


def _error(text: str, failures: int) -> Check:
    def check(m: Machine) -> None:
        assert m.error == text
        assert m.failures == failures
        assert m.pid is None

    return check


def _crash_loop_of(ends: int) -> Check:
    def check(m: Machine) -> None:
        assert m.streak is not None and m.streak.ends == ends
        assert m.crash_loop(m.streak.last) is m.streak
        assert (m.failures, m.pid) == (0, None)  # not a failed start

    return check


def _restarted(m: Machine) -> None:
    assert m.restarts == 1
    assert m.pid is None
    assert m.deadline is None


def _early_death(ev: str) -> Check:
    def check(m: Machine) -> None:
        failed_once(m)
        assert m.error is not None
        if ev == "exit1":
            assert "code 1" in m.error
            assert m.exit_code == 1
        else:
            assert "killed by SIGKILL" in m.error
            assert m.exit_code is None
            assert m.exit_signal == 9
        assert " after " in m.error  # how long it lived, so the operator can compare

    return check


def _deadline_kept(variant: str) -> Check:
    def check(m: Machine) -> None:
        ref, _ = reach(variant)
        assert m.deadline == ref.deadline
        assert m.failures == ref.failures

    return check


def _cases() -> list[object]:
    cases = []
    for variant in VARIANT_STATE:
        for ev in EVENTS:
            cell = cell_for(variant, ev)
            marks = [pytest.mark.xfail(strict=True, reason=cell.xfail)] if cell.xfail else []
            cases.append(pytest.param(variant, ev, cell, id=f"{variant}-{ev}", marks=marks))
    return cases


@pytest.mark.parametrize(("variant", "ev", "cell"), _cases())
def test_every_state_event_pair(variant: str, ev: str, cell: Cell) -> None:
    m, t = reach(variant)
    event = EVENTS[ev]
    if event == TIMER_AT_DEADLINE:
        t = m.deadline if m.deadline is not None else t
        event = Timer()
    elif event == TIMER_EARLY:
        event = Timer()
    assert not isinstance(event, str)
    actions = m.handle(event, t, J)
    assert isinstance(m.state, State)
    if cell.state is None:
        return  # a protocol violation: only "does not blow up"
    assert (m.state, actions) == (cell.state, cell.actions(t))
    if m.state is not VARIANT_STATE[variant]:
        assert m.since == t
    if cell.check is not None:
        cell.check(m)


def test_table_covers_every_state() -> None:
    assert set(VARIANT_STATE.values()) == set(State)


# Follow-ups: what a pending start / stop does later -------------------------------------------


@pytest.mark.parametrize("first", [Restart(), Start()])
def test_start_or_restart_while_stopping_starts_after_the_exit(first: Event) -> None:
    m, t = reach("stopping")
    assert m.handle(first, t, J) == []
    assert m.handle(Exited(None, signal=15), t + 1, J) == [CancelTimer(), Spawn()]
    assert m.state is State.STARTING
    assert m.failures == 0
    assert m.restarts == 1


def test_restart_in_running_stops_then_spawns() -> None:
    m, t = reach("running")
    assert m.handle(Restart(), t, J) == [SendStopSignal(), SetTimer(t + 10.0)]
    assert m.state is State.STOPPING
    assert m.handle(Exited(0), t + 0.2, J) == [CancelTimer(), Spawn()]
    assert m.state is State.STARTING
    assert m.pid is None
    assert m.handle(Spawned(300), t + 0.3, J) == [SetTimer(t + 1.3)]
    assert m.pid == 300


def test_restart_resets_the_failure_streak() -> None:
    m, t = reach("starting")
    m.handle(Exited(1), t, J)
    m.handle(Timer(), m.deadline or 0, J)
    m.handle(Spawned(101), 1.25, J)
    assert m.failures == 1
    assert m.handle(Restart(), 1.5, J) == [SendStopSignal(), SetTimer(11.5)]
    assert m.handle(Exited(None, signal=15), 1.6, J) == [CancelTimer(), Spawn()]
    assert m.failures == 0


def test_stop_after_restart_cancels_the_pending_start() -> None:
    m, t = reach("running")
    m.handle(Restart(), t, J)
    assert m.handle(Stop(), t + 0.1, J) == []
    assert m.handle(Exited(0), t + 0.2, J) == [CancelTimer()]
    assert m.state is State.STOPPED


def test_restart_while_spawn_in_flight_then_spawn_fails() -> None:
    m, t = reach("starting_inflight")
    assert m.handle(Restart(), t, J) == [SetTimer(t + 10.0)]
    assert m.handle(SpawnFailed("ENOENT"), t + 0.1, J) == [CancelTimer(), Spawn()]
    assert m.state is State.STARTING
    assert m.error == "ENOENT"


def test_stop_while_spawn_in_flight_and_kill_deadline_passes() -> None:
    m, _ = reach("stopping_inflight")
    assert m.handle(Timer(), 10.0, J) == [KillGroup()]
    # the spawn finally reports: ask it to stop, with a fresh deadline
    assert m.handle(Spawned(7), 11.0, J) == [SendStopSignal(), SetTimer(21.0)]
    assert m.handle(Exited(None, signal=15), 12.0, J) == [CancelTimer()]
    assert m.state is State.STOPPED


def test_stopping_killed_waits_for_the_exit() -> None:
    m, t = reach("stopping_killed")
    assert m.deadline is None
    assert m.handle(Timer(), t + 100, J) == []
    assert m.state is State.STOPPING
    assert m.handle(Exited(None, signal=9), t + 100, J) == []
    assert m.state is State.STOPPED
    assert m.exit_signal == 9


def test_spawned_clears_previous_exit_and_error() -> None:
    m, _ = reach("backoff")
    assert m.error is not None
    m.handle(Timer(), m.deadline or 0, J)
    m.handle(Spawned(5), 2.0, J)
    assert (m.error, m.exit_code, m.exit_signal, m.started_at) == (None, None, None, 2.0)


def test_spawn_failed_keeps_error_and_backs_off() -> None:
    m = Machine(Policy())
    m.handle(Start(), 0.0, 0.0)
    actions = m.handle(SpawnFailed("permission denied"), 0.0, 0.0)
    assert actions == [SetTimer(backoff_delay(Policy(), 1, 0.0))]
    assert m.state is State.BACKOFF
    assert m.error == "permission denied"
    assert m.failures == 1
    assert m.pid is None


# Restart policy --------------------------------------------------------------------------------


def crash_early(m: Machine, now: float, pid: int, exit_code: int | None = 1) -> list[object]:
    """Spawned at `now`, died at once (a failed start)."""
    m.handle(Spawned(pid), now, J)
    return list(m.handle(Exited(exit_code), now, J))


def test_running_crash_restarts_at_once_with_restart_always() -> None:
    """Crashes after stable runs (stable_seconds, 60 s, apart): each is restarted at once."""
    m = Machine(Policy(restart="always"))
    m.handle(Start(), 0.0)
    m.handle(Spawned(1), 0.0)
    m.handle(Timer(), 1.0)
    for i in range(1, 6):
        assert m.handle(Exited(1), 60.0 * i) == [Spawn()]
        assert m.state is State.STARTING
        assert m.restarts == i
        assert m.failures == 0
        assert m.streak == Streak(1, 60.0 * i, 60.0 * i)  # each one a streak of its own
        assert m.crash_loop(60.0 * i) is None
        assert m.handle(Spawned(i + 1), 60.0 * i) == [SetTimer(60.0 * i + 1.0)]
        assert m.handle(Timer(), 60.0 * i + 1.0) == []
        assert m.state is State.RUNNING


def test_exited_with_success_code_is_restarted_with_restart_always() -> None:
    m, t = reach("running", Policy(restart="always"))
    assert m.handle(Exited(0), t, J) == [Spawn()]


def test_max_restarts_makes_fatal_after_the_failed_start_after_the_last_restart() -> None:
    policy = Policy(max_restarts=3, backoff_min=1.0, backoff_max=60.0)
    m = Machine(policy)
    now = 0.0
    assert m.handle(Start(), now, J) == [Spawn()]
    spawns = 1
    for n in range(1, 4):
        actions = crash_early(m, now, pid=n)
        assert actions == [CancelTimer(), SetTimer(now + backoff_delay(policy, n, J))]
        assert m.state is State.BACKOFF
        assert m.failures == n
        now = m.deadline or 0.0
        assert m.handle(Timer(), now, J) == [Spawn()]
        spawns += 1
        assert m.restarts == n
    assert spawns == 4
    assert crash_early(m, now, pid=4) == [CancelTimer()]  # the 4th failed start
    assert m.state is State.FATAL
    assert m.failures == 4
    # says why, and which count is which: 4 failed starts are the first and the 3 restarts
    assert (
        m.error
        == "gave up after 4 failed starts (the first and max_restarts = 3 restarts): exited with code 1 after 0.00s"
    )
    assert m.deadline is None
    assert m.restarts == 3
    # fatal stays fatal until asked
    assert m.handle(Timer(), now + 1000, J) == []
    assert m.state is State.FATAL
    assert m.handle(Start(), now + 1000, J) == [Spawn()]
    assert (m.state, m.failures, m.error) == (State.STARTING, 0, None)


def test_max_restarts_with_spawn_failures() -> None:
    m = Machine(Policy(max_restarts=1))
    m.handle(Start(), 0.0, J)
    assert m.handle(SpawnFailed("ENOENT"), 0.0, J) == [SetTimer(backoff_delay(m.policy, 1, J))]
    m.handle(Timer(), m.deadline or 0.0, J)
    assert m.handle(SpawnFailed("ENOENT"), 5.0, J) == []
    assert m.state is State.FATAL
    assert m.error == "gave up after 2 failed starts (the first and max_restarts = 1 restart): ENOENT"


def test_max_restarts_zero_never_gives_up() -> None:
    policy = Policy(max_restarts=0, backoff_min=1.0, backoff_max=60.0)
    m = Machine(policy)
    now = 0.0
    m.handle(Start(), now, J)
    for n in range(1, 500):
        actions = crash_early(m, now, pid=n)
        assert m.state is State.BACKOFF
        assert actions[-1] == SetTimer(now + backoff_delay(policy, n, J))
        now = m.deadline or 0.0
        assert m.handle(Timer(), now, J) == [Spawn()]
    assert m.failures == 499
    assert backoff_delay(policy, m.failures, J) == 60.0 * 0.75


def test_streak_resets_after_running_start_seconds() -> None:
    policy = Policy(backoff_min=1.0, backoff_max=60.0, start_seconds=2.0)
    m = Machine(policy)
    m.handle(Start(), 0.0, 0.0)
    crash_early(m, 0.0, 1)
    m.handle(Timer(), m.deadline or 0.0, 0.0)
    crash_early(m, 0.5, 2)
    assert m.failures == 2
    m.handle(Timer(), m.deadline or 0.0, 0.0)  # at 1.5
    m.handle(Spawned(3), 1.5, 0.0)
    assert m.handle(Timer(), 3.5, 0.0) == []
    assert m.state is State.RUNNING
    assert m.failures == 0
    # after a stable run (60 s) a crash is restarted at once, and a later early death backs
    # off from the minimum again
    assert m.handle(Exited(1), 70.0, 0.0) == [Spawn()]
    m.handle(Spawned(4), 70.0, 0.0)
    assert m.handle(Exited(1), 70.1, 0.0) == [CancelTimer(), SetTimer(70.1 + 0.5)]
    assert m.failures == 1


# Crash loops after a good start ----------------------------------------------------------------

CP = Policy(restart="always", start_seconds=1.0, backoff_min=1.0, backoff_max=60.0, max_restarts=2)


def run_then_crash(m: Machine, start: float, run: float, pid: int) -> list[object]:
    """Spawned at `start`, up start_seconds, crashed `run` seconds after its spawn."""
    m.handle(Spawned(pid), start, J)
    if run >= m.policy.start_seconds:
        assert m.handle(Timer(), start + m.policy.start_seconds, J) == []
        assert m.state is State.RUNNING
    return list(m.handle(Exited(1), start + run, J))


def test_a_crash_loop_after_good_starts_backs_off_like_failed_starts() -> None:
    """A program that runs 3 s and dies: the first crash is restarted at once, every later one
    waits in backoff, step n-1 for the n-th; max_restarts (failed starts) never comes into it."""
    m = Machine(CP)
    m.handle(Start(), 0.0, J)
    assert run_then_crash(m, 0.0, 3.0, 1) == [Spawn()]  # the first: at once
    assert (m.state, m.streak, m.crash_loop(3.0)) == (State.STARTING, Streak(1, 3.0, 3.0), None)
    now = 3.0
    for n in range(2, 12):
        at = now + 3.0
        assert run_then_crash(m, now, 3.0, n) == [SetTimer(at + backoff_delay(CP, n - 1, J))]
        assert m.state is State.BACKOFF
        assert m.streak == Streak(n, 3.0, at)
        assert m.crash_loop(at) == Streak(n, 3.0, at)  # "crash loop: n exits in at-3 s"
        assert m.failures == 0  # no failed start: max_restarts is not near
        assert m.error == "exited with code 1 after 3.00s"  # why it is backing off
        now = m.deadline or 0.0
        assert m.handle(Timer(), now, J) == [Spawn()]
    assert backoff_delay(CP, 10, J) == 45.0  # the cap, jittered: one try a minute at most


def test_a_stable_run_ends_the_crash_loop() -> None:
    m = Machine(CP)
    m.handle(Start(), 0.0, J)
    run_then_crash(m, 0.0, 3.0, 1)
    run_then_crash(m, 3.0, 3.0, 2)
    start = m.deadline or 0.0
    m.handle(Timer(), start, J)
    m.handle(Spawned(3), start, J)
    m.handle(Timer(), start + 1.0, J)
    assert m.crash_loop(start + 59.9) == Streak(2, 3.0, 6.0)  # not stable yet: still the loop
    assert m.crash_loop(start + 60.0) is None  # up stable_seconds: that loop is over
    assert m.handle(Exited(1), start + 100.0, J) == [Spawn()]  # at once again
    assert m.streak == Streak(1, start + 100.0, start + 100.0)


def test_failed_starts_and_crashes_make_one_loop() -> None:
    """A failed start and a crash after a good start, with no stable run between: a loop. The
    crash waits its step of the loop; the failed start keeps its own (its failure count)."""
    m = Machine(CP)
    m.handle(Start(), 0.0, J)
    assert crash_early(m, 0.0, 1) == [CancelTimer(), SetTimer(D1)]  # a failed start
    m.handle(Timer(), D1, J)
    assert run_then_crash(m, D1, 5.0, 2) == [SetTimer(D1 + 5.0 + D1)]  # the second end: backoff
    assert (m.state, m.failures, m.streak) == (State.BACKOFF, 0, Streak(2, 0.0, D1 + 5.0))
    m.handle(Timer(), m.deadline or 0.0, J)
    t = m.deadline or (2 * D1 + 5.0)
    assert crash_early(m, t, 3) == [CancelTimer(), SetTimer(t + D1)]  # failures: 1 again
    assert (m.failures, m.streak) == (1, Streak(3, 0.0, t))


@pytest.mark.parametrize("ev", [Start(), Restart(), Stop()])
def test_an_operator_start_stop_or_restart_forgets_the_loop(ev: Event) -> None:
    m = Machine(CP)
    m.handle(Start(), 0.0, J)
    run_then_crash(m, 0.0, 3.0, 1)
    run_then_crash(m, 3.0, 3.0, 2)
    assert m.state is State.BACKOFF and m.streak is not None
    m.handle(ev, 7.0, J)
    assert m.streak is None and m.crash_loop(7.0) is None
    if not isinstance(ev, Stop):
        assert m.state is State.STARTING  # a fresh chance: the backoff is dropped


def test_coming_to_rest_forgets_the_loop() -> None:
    m = Machine(Policy(restart="on-failure", start_seconds=1.0))
    m.handle(Start(), 0.0, J)
    run_then_crash(m, 0.0, 3.0, 1)
    assert m.streak is not None
    m.handle(Spawned(2), 3.0, J)
    assert m.handle(Exited(0), 3.5, J) == [CancelTimer()]  # not restarted: exited
    assert (m.state, m.streak) == (State.EXITED, None)


def test_a_hang_in_a_crash_loop_waits_like_a_crash() -> None:
    policy = Policy(start_seconds=0.0, backoff_min=1.0, watchdog=5.0)
    m = spawned_at_zero(policy)
    assert m.handle(Timer(), 5.0, J) == [SendStopSignal(), SetTimer(15.0)]  # hung: the 1st end
    assert m.streak == Streak(1, 5.0, 5.0)
    assert m.handle(Exited(None, signal=15), 5.1, J) == [CancelTimer(), Spawn()]  # at once
    m.handle(Spawned(8), 5.1, J)
    assert m.handle(Timer(), 10.1, J) == [SendStopSignal(), SetTimer(20.1)]  # hung again
    assert m.handle(Exited(None, signal=15), 10.2, J) == [CancelTimer(), SetTimer(10.2 + D1)]
    assert (m.state, m.streak) == (State.BACKOFF, Streak(2, 5.0, 10.1))


def test_stable_seconds_zero_restarts_every_crash_after_a_good_start_at_once() -> None:
    m = Machine(msgspec_replace(CP, stable_seconds=0.0))
    m.handle(Start(), 0.0, J)
    now = 0.0
    for pid in range(1, 6):
        assert run_then_crash(m, now, 1.5, pid) == [Spawn()]
        now += 1.5
        assert m.crash_loop(now) is None
    # a failed start after a good run is still the second end of that streak
    assert crash_early(m, now, 9) == [CancelTimer(), SetTimer(now + D1)]
    assert m.crash_loop(now) == Streak(2, now, now)


# A stop that has begun (StopPending) --------------------------------------------------------


def test_an_exit_after_the_stop_began_leaves_it_stopped() -> None:
    for variant in ("running", "starting"):
        m, t = reach(variant, Policy(restart="always"))
        assert m.handle(StopPending(), t, J) == []
        assert m.state is VARIANT_STATE[variant]  # it runs on until its turn
        m.handle(Exited(1), t + 0.1, J)
        assert (m.state, m.pid, m.streak) == (State.STOPPED, None, None)
        assert m.handle(Stop(), t + 0.2, J) == []  # its turn comes: nothing left to do
        assert m.state is State.STOPPED


def test_a_hang_or_an_unready_start_after_the_stop_began_is_not_retried() -> None:
    m = spawned_at_zero(Policy(start_seconds=0.0, watchdog=5.0))
    m.handle(StopPending(), 1.0, J)
    m.handle(Timer(), 5.0, J)  # hung: stopped
    assert m.handle(Exited(None, signal=15), 5.1, J) == [CancelTimer()]
    assert m.state is State.STOPPED
    m = spawned_at_zero(RP)
    m.handle(Timer(), 1.0, J)
    m.handle(StopPending(), 2.0, J)
    m.handle(Timer(), 30.0, J)  # not ready in time: stopped
    assert m.handle(Exited(None, signal=15), 30.1, J) == [CancelTimer()]
    assert (m.state, m.failures) == (State.STOPPED, 0)


def test_a_restart_in_flight_becomes_a_stop_when_the_stop_begins() -> None:
    m, t = reach("running")
    m.handle(Restart(), t, J)
    assert m.handle(StopPending(), t + 0.1, J) == []
    assert m.handle(Exited(0), t + 0.2, J) == [CancelTimer()]
    assert m.state is State.STOPPED


def test_an_operator_start_after_the_stop_began_wins() -> None:
    m, t = reach("running", Policy(restart="always"))
    m.handle(StopPending(), t, J)
    m.handle(Start(), t + 0.1, J)  # (a no-op for the process, but the latest word)
    assert m.handle(Exited(1), t + 0.2, J) == [Spawn()]
    m, t = reach("stopped")
    m.handle(StopPending(), t, J)
    assert m.handle(Start(), t, J) == [Spawn()]


def test_restart_never() -> None:
    policy = Policy(restart="never")
    m, t = reach("running", policy)
    assert m.handle(Exited(1), t, J) == []
    assert m.state is State.EXITED
    m, t = reach("starting", policy)
    assert m.handle(Exited(1), t, J) == [CancelTimer()]  # not a failed start: not restarted
    assert (m.state, m.failures) == (State.EXITED, 0)


@pytest.mark.parametrize(
    ("restart", "codes", "exit_code", "expected"),
    [
        ("always", {0}, 0, True),
        ("always", {0}, 1, True),
        ("always", {0}, None, True),
        ("never", {0}, 0, False),
        ("never", {0}, 1, False),
        ("never", {0}, None, False),
        ("on-failure", {0}, 0, False),
        ("on-failure", {0}, 1, True),
        ("on-failure", {0}, 255, True),
        ("on-failure", {0}, None, True),  # death by a signal is a failure
        ("on-failure", {0, 3}, 3, False),
        ("on-failure", {0, 3}, 0, False),
        ("on-failure", {3}, 0, True),
        ("on-failure", set(), 0, True),
    ],
)
def test_wants_restart(restart: str, codes: set[int], exit_code: int | None, expected: bool) -> None:
    policy = Policy(restart=restart, success_exit_codes=frozenset(codes))
    assert wants_restart(policy, exit_code) is expected


@pytest.mark.parametrize(
    ("exit_code", "sig", "expected"),
    [
        (0, None, State.EXITED),
        (3, None, State.EXITED),
        (1, None, State.STARTING),
        (None, 9, State.STARTING),
    ],
)
def test_on_failure_with_custom_success_codes(
    exit_code: int | None, sig: int | None, expected: State
) -> None:
    m, t = reach("running", Policy(restart="on-failure", success_exit_codes=frozenset({0, 3})))
    m.handle(Exited(exit_code, signal=sig), t, J)
    assert m.state is expected
    assert (m.exit_code, m.exit_signal) == (exit_code, sig)


def test_start_seconds_zero_is_running_at_spawned() -> None:
    m = Machine(Policy(start_seconds=0.0))
    assert m.handle(Start(), 0.0) == [Spawn()]
    assert m.handle(Spawned(9), 0.25) == []
    assert (m.state, m.pid, m.deadline, m.since, m.failures) == (State.RUNNING, 9, None, 0.25, 0)


def test_restarts_count_every_spawn_after_the_first() -> None:
    m = Machine(Policy())
    m.handle(Start(), 0.0)
    assert m.restarts == 0
    m.handle(Spawned(1), 0.0)
    m.handle(Stop(), 0.5)
    m.handle(Exited(None, signal=15), 0.6)
    assert m.restarts == 0
    m.handle(Start(), 1.0)
    assert m.restarts == 1
    m.handle(SpawnFailed("x"), 1.0)
    m.handle(Timer(), m.deadline or 0.0)
    assert m.restarts == 2


# backoff_delay ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "full"),
    [
        (0, 1.0),
        (1, 1.0),
        (2, 2.0),
        (3, 4.0),
        (4, 8.0),
        (6, 32.0),
        (7, 60.0),
        (8, 60.0),
        (10**9, 60.0),
    ],
)
def test_backoff_delay_doubles_and_caps(failures: int, full: float) -> None:
    policy = Policy(backoff_min=1.0, backoff_max=60.0)
    assert backoff_delay(policy, failures, 0.0) == full / 2
    assert backoff_delay(policy, failures, 0.5) == full * 0.75
    just_below_one = 1.0 - 2.0**-53
    assert full / 2 <= backoff_delay(policy, failures, just_below_one) <= full


mins = st.floats(min_value=0.0, max_value=3600.0, allow_nan=False)
spans = st.floats(min_value=0.0, max_value=86400.0, allow_nan=False)
jitters = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
failure_counts = st.integers(min_value=0, max_value=10**30)


@given(lo=mins, span=spans, jitter=jitters, failures=failure_counts)
def test_backoff_delay_bounds(lo: float, span: float, jitter: float, failures: int) -> None:
    policy = Policy(backoff_min=lo, backoff_max=lo + span)
    d = backoff_delay(policy, failures, jitter)
    assert d >= 0.0
    assert policy.backoff_min / 2 <= d <= policy.backoff_max
    if failures <= 60:
        full = min(policy.backoff_max, lo * 2.0 ** max(failures - 1, 0))
        assert full / 2 <= d <= full


@given(lo=mins, span=spans, jitter=jitters, failures=st.integers(0, 10**6))
def test_backoff_delay_monotone_in_failures(lo: float, span: float, jitter: float, failures: int) -> None:
    policy = Policy(backoff_min=lo, backoff_max=lo + span)
    assert backoff_delay(policy, failures, jitter) <= backoff_delay(policy, failures + 1, jitter)


@given(lo=mins, span=spans, failures=failure_counts, a=jitters, b=jitters)
def test_backoff_delay_monotone_in_jitter(lo: float, span: float, failures: int, a: float, b: float) -> None:
    assume(a <= b)
    policy = Policy(backoff_min=lo, backoff_max=lo + span)
    assert backoff_delay(policy, failures, a) <= backoff_delay(policy, failures, b)


def test_backoff_delay_huge_failures_do_not_overflow() -> None:
    policy = Policy(backoff_min=1e300, backoff_max=1e301)
    assert backoff_delay(policy, 10**100, 0.0) == 1e301 / 2
    assert backoff_delay(Policy(), 2**2000, 0.0) == 30.0


# Crash loops must not burn CPU -----------------------------------------------------------------


def crash_loop_spawns(
    policy: Policy, jitters_: list[float], horizon: float, run_for: float = 0.0, cap: int = 10_000
) -> int:
    """Spawns within `horizon` seconds of a program that dies `run_for` seconds after each spawn.

    The shell delivers each Timer exactly at its deadline.
    """
    m = Machine(policy)
    now = 0.0
    pending = m.handle(Start(), now)
    spawns = 0
    i = 0
    while now <= horizon and spawns < cap:
        jitter = jitters_[i % len(jitters_)]
        i += 1
        if Spawn() in pending:
            spawns += 1
            m.handle(Spawned(spawns), now, jitter)
            if policy.start_seconds > 0 and run_for >= policy.start_seconds:
                now += policy.start_seconds
                m.handle(Timer(), now, jitter)
                run = run_for - policy.start_seconds
            else:
                run = run_for
            now += run
            pending = m.handle(Exited(1), now, jitter)
            continue
        assert m.state is State.BACKOFF, m
        assert m.deadline is not None and m.deadline > now
        now = m.deadline
        pending = m.handle(Timer(), now, jitter)
    return spawns


@settings(max_examples=200)
@given(js=st.lists(jitters, min_size=1, max_size=20))
def test_crash_loop_is_bounded(js: list[float]) -> None:
    policy = Policy(start_seconds=1.0, backoff_min=1.0, backoff_max=60.0)
    spawns = crash_loop_spawns(policy, js, horizon=60.0)
    assert spawns <= 10
    # and it keeps trying: over an hour the delay is capped at max (one try per ≤ 60 s)
    assert crash_loop_spawns(policy, js, horizon=3600.0) >= 3600 // 60


@settings(max_examples=200)
@given(js=st.lists(jitters, min_size=1, max_size=20), run_for=st.sampled_from([1.0, 1.2, 3.0, 20.0]))
def test_crash_loop_after_good_starts_is_bounded(js: list[float], run_for: float) -> None:
    """A program that starts fine and dies `run_for` seconds later, again and again (pm2's
    blind spot): bounded as failed starts are (the first crash is restarted at once, every
    later one waits), and still tried about once a minute after an hour."""
    policy = Policy(start_seconds=1.0, backoff_min=1.0, backoff_max=60.0)
    assert crash_loop_spawns(policy, js, horizon=60.0, run_for=run_for) <= 10
    assert crash_loop_spawns(policy, js, horizon=3600.0, run_for=run_for) >= 3600 // (60 + run_for)


@given(run_for=st.sampled_from([60.0, 61.0, 300.0]))
def test_crashes_after_stable_runs_are_each_restarted_at_once(run_for: float) -> None:
    policy = Policy(start_seconds=1.0, backoff_min=1.0, backoff_max=60.0, stable_seconds=60.0)
    hour = 3600.0
    assert crash_loop_spawns(policy, [0.5], horizon=hour, run_for=run_for) == hour // run_for + 1


def test_crash_loop_of_spawn_failures_is_bounded() -> None:
    m = Machine(Policy(backoff_min=1.0, backoff_max=60.0))
    now, spawns = 0.0, 0
    actions = m.handle(Start(), now, 0.0)
    while now <= 60.0:
        assert actions == [Spawn()]
        spawns += 1
        m.handle(SpawnFailed("ENOENT"), now, 0.0)
        now = m.deadline or 0.0
        actions = m.handle(Timer(), now, 0.0)
    assert spawns <= 10


def test_crash_loop_with_start_seconds_zero_is_bounded() -> None:
    policy = Policy(start_seconds=0.0, backoff_min=1.0, backoff_max=60.0)
    assert crash_loop_spawns(policy, [0.5], horizon=60.0, run_for=0.01) <= 10


def test_exit_after_start_seconds_counts_as_started_even_before_the_timer() -> None:
    m = Machine(Policy(restart="always", start_seconds=1.0, max_restarts=1))
    m.handle(Start(), 0.0, J)
    assert m.handle(Spawned(1), 0.0, J) == [SetTimer(1.0)]
    # the program ran 5 s; its exit is processed before the (due) Timer
    assert m.handle(Exited(1), 5.0, J) == [CancelTimer(), Spawn()]
    assert (m.state, m.failures) == (State.STARTING, 0)


def test_stray_exit_in_backoff_keeps_the_retry() -> None:
    m, t = reach("backoff")
    deadline = m.deadline
    m.handle(Exited(0), t, J)
    assert m.deadline == deadline
    assert m.handle(Timer(), deadline or 0.0, J) == [Spawn()]


# Readiness and the watchdog ------------------------------------------------------------------

RP = Policy(start_seconds=1.0, backoff_min=1.0, max_restarts=1, needs_ready=True, ready_timeout=30.0)


def spawned_at_zero(policy: Policy) -> Machine:
    m = Machine(policy)
    assert m.handle(Start(), 0.0, J) == [Spawn()]
    m.handle(Spawned(7), 0.0, J)
    return m


def test_ready_before_start_seconds_waits_for_start_seconds() -> None:
    m = spawned_at_zero(RP)
    assert m.deadline == 1.0
    assert m.handle(Ready(), 0.2, J) == []  # ready, but not up long enough yet
    assert m.state is State.STARTING
    assert m.handle(Timer(), 1.0, J) == []
    assert (m.state, m.since, m.failures) == (State.RUNNING, 1.0, 0)


def test_not_ready_at_start_seconds_stays_starting_until_ready() -> None:
    m = spawned_at_zero(RP)
    assert m.handle(Timer(), 1.0, J) == [SetTimer(30.0)]  # now waiting for ready, up to 30 s
    assert m.state is State.STARTING
    assert m.handle(Ready(), 12.5, J) == [CancelTimer()]
    assert (m.state, m.since, m.deadline) == (State.RUNNING, 12.5, None)


def test_ready_with_start_seconds_zero_is_running_at_once() -> None:
    m = spawned_at_zero(msgspec_replace(RP, start_seconds=0.0))
    assert (m.state, m.deadline) == (State.STARTING, 30.0)
    assert m.handle(Ready(), 0.05, J) == [CancelTimer()]
    assert m.state is State.RUNNING


def test_never_ready_is_stopped_and_counts_as_a_failed_start() -> None:
    m = spawned_at_zero(RP)
    m.handle(Timer(), 1.0, J)
    assert m.handle(Timer(), 30.0, J) == [SendStopSignal(), SetTimer(40.0)]
    assert (m.state, m.error) == (State.STOPPING, "not ready within 30s")
    assert m.handle(Exited(None, signal=15), 30.1, J) == [CancelTimer(), SetTimer(30.1 + D1)]
    assert (m.state, m.failures, m.error) == (State.BACKOFF, 1, "not ready within 30s")
    # the next try fails the same way: max_restarts = 1 is used up
    m.handle(Timer(), 30.1 + D1, J)
    t = 30.1 + D1
    m.handle(Spawned(8), t, J)
    m.handle(Timer(), t + 1.0, J)
    m.handle(Timer(), t + 30.0, J)
    assert m.handle(Exited(None, signal=15), t + 30.5, J) == [CancelTimer()]
    assert m.state is State.FATAL
    assert (
        m.error
        == "gave up after 2 failed starts (the first and max_restarts = 1 restart): not ready within 30s"
    )


def test_stop_while_stopping_an_unready_instance_leaves_it_stopped() -> None:
    m = spawned_at_zero(RP)
    m.handle(Timer(), 1.0, J)
    m.handle(Timer(), 30.0, J)
    assert m.handle(Stop(), 30.05, J) == []
    assert m.handle(Exited(None, signal=15), 30.1, J) == [CancelTimer()]
    assert (m.state, m.failures) == (State.STOPPED, 0)


def test_restart_while_stopping_an_unready_instance_starts_afresh() -> None:
    m = spawned_at_zero(RP)
    m.handle(Timer(), 1.0, J)
    m.handle(Timer(), 30.0, J)
    assert m.handle(Restart(), 30.05, J) == []
    assert m.handle(Exited(None, signal=15), 30.1, J) == [CancelTimer(), Spawn()]
    assert (m.state, m.failures) == (State.STARTING, 0)


def test_ready_from_an_old_process_or_outside_starting_is_ignored() -> None:
    m = Machine(RP)
    assert m.handle(Ready(), 0.0, J) == []  # stopped
    m.handle(Start(), 0.0, J)
    assert m.handle(Ready(), 0.0, J) == []  # spawn in flight: no process to be ready
    m.handle(Spawned(7), 0.0, J)
    m.handle(Ready(), 0.5, J)
    m.handle(Timer(), 1.0, J)
    assert m.handle(Ready(), 2.0, J) == []  # already running
    m.handle(Exited(1), 5.0, J)  # crash: restarted at once
    m.handle(Spawned(8), 5.0, J)
    m.handle(Timer(), 6.0, J)
    assert m.state is State.STARTING  # the new process must say ready itself


def test_ready_is_ignored_without_a_readiness_check() -> None:
    m = spawned_at_zero(P)
    assert m.handle(Ready(), 0.5, J) == []
    assert m.state is State.STARTING


WP = Policy(start_seconds=0.0, backoff_min=1.0, watchdog=5.0)


def test_watchdog_starts_when_running_and_pings_push_it_back() -> None:
    m = spawned_at_zero(WP)
    assert (m.state, m.deadline) == (State.RUNNING, 5.0)
    assert m.handle(WatchdogPing(), 3.0, J) == [SetTimer(8.0)]
    assert m.handle(Timer(), 5.0, J) == []  # stale: the ping moved the deadline
    assert m.state is State.RUNNING


def test_silent_watchdog_stops_and_restarts_at_once() -> None:
    m = spawned_at_zero(WP)
    assert m.handle(Timer(), 5.0, J) == [SendStopSignal(), SetTimer(15.0)]
    assert (m.state, m.error) == (State.STOPPING, "watchdog: no ping within 5s")
    assert m.handle(Timer(), 15.0, J) == [KillGroup()]  # hung hard: SIGKILL at stop_timeout
    assert m.handle(Exited(None, signal=9), 15.1, J) == [Spawn()]
    assert (m.state, m.restarts, m.failures) == (State.STARTING, 1, 0)


def test_silent_watchdog_with_restart_never_is_exited() -> None:
    m = spawned_at_zero(msgspec_replace(WP, restart="never"))
    m.handle(Timer(), 5.0, J)
    assert m.handle(Exited(None, signal=15), 5.1, J) == [CancelTimer()]
    assert (m.state, m.error) == (State.EXITED, "watchdog: no ping within 5s")


def test_operator_stop_during_a_watchdog_restart_wins() -> None:
    m = spawned_at_zero(WP)
    m.handle(Timer(), 5.0, J)
    m.handle(Stop(), 5.05, J)
    assert m.handle(Exited(None, signal=15), 5.1, J) == [CancelTimer()]
    assert m.state is State.STOPPED


def test_pings_are_ignored_outside_running_or_without_a_watchdog() -> None:
    m = Machine(WP)
    assert m.handle(WatchdogPing(), 0.0, J) == []
    r = spawned_at_zero(P)
    r.handle(Timer(), 1.0, J)
    assert r.handle(WatchdogPing(), 2.0, J) == []
    assert r.deadline is None


def test_withdrawn_spawn_after_a_restart_spawns_again() -> None:
    m = Machine(P)
    m.handle(Start(), 0.0, J)  # the shell puts the spawn off
    assert m.handle(Restart(), 0.5, J) == [SetTimer(10.5)]
    assert m.handle(Withdrawn(), 0.6, J) == [CancelTimer(), Spawn()]
    assert m.state is State.STARTING


def msgspec_replace(policy: Policy, **changes: object) -> Policy:
    from dataclasses import replace

    return replace(policy, **changes)  # type: ignore[arg-type]


# Random physically sensible event sequences -----------------------------------------------------

policies = st.builds(
    Policy,
    restart=st.sampled_from(["always", "on-failure", "never"]),
    success_exit_codes=st.frozensets(st.integers(0, 3), max_size=3),
    start_seconds=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    backoff_min=st.sampled_from([0.1, 1.0, 5.0]),
    backoff_max=st.sampled_from([5.0, 60.0]),
    max_restarts=st.integers(0, 4),
    stop_timeout=st.sampled_from([0.0, 0.5, 10.0]),
    needs_ready=st.booleans(),
    ready_timeout=st.sampled_from([0.5, 2.0, 60.0]),
    watchdog=st.sampled_from([0.0, 0.0, 1.0, 30.0]),
    stable_seconds=st.sampled_from([0.0, 2.0, 60.0]),
)


@dataclass
class Shell:
    """What the supervisor's shell knows: its timer, its spawn in flight, its process."""

    m: Machine
    now: float = 0.0
    timer: float | None = None
    in_flight: bool = False
    proc: int | None = None
    killed: bool = False
    spawns: int = 0
    next_pid: int = 1000
    pending: bool = False  # a StopPending, and no Start or Restart since
    log: list[tuple[str, float, list[object]]] = field(default_factory=list)

    def send(self, event: Event, jitter: float = 0.5) -> list[object]:
        before = self.m.state
        if isinstance(event, StopPending):
            self.pending = True
        elif isinstance(event, Start | Restart):
            self.pending = False
        actions = list(self.m.handle(event, self.now, jitter))
        self.log.append((repr(event), self.now, actions))
        for a in actions:
            if isinstance(a, Spawn):
                assert not self.pending, self.log  # nothing starts once a stop has begun
                assert not self.in_flight and self.proc is None, self.log
                # the machine restarts on its own at once only the first end of a streak
                if isinstance(event, Exited):
                    assert self.m.streak is None or self.m.streak.ends == 1, self.log
                self.in_flight = True
                self.spawns += 1
            elif isinstance(a, SendStopSignal):
                assert self.proc is not None, self.log
            elif isinstance(a, KillGroup):
                assert self.m.state is State.STOPPING, self.log
                self.killed = True
            elif isinstance(a, SetTimer):
                assert a.at >= self.now, self.log
                self.timer = a.at
                self.killed = False
            elif isinstance(a, CancelTimer):
                assert self.timer is not None, self.log
                self.timer = None
            else:  # pragma: no cover
                raise AssertionError(a)
        if self.m.state is not State.STOPPING:
            self.killed = False
        if self.m.state is not before:
            assert self.m.since == self.now
        return actions


class RandomLife(RuleBasedStateMachine):
    sh: Shell

    @initialize(policy=policies)
    def setup(self, policy: Policy) -> None:
        self.sh = Shell(Machine(policy))

    @rule()
    def start(self) -> None:
        self.sh.send(Start())

    @rule()
    def stop(self) -> None:
        self.sh.send(Stop())

    @rule()
    def restart(self) -> None:
        self.sh.send(Restart())

    @rule()
    def stop_pending(self) -> None:
        self.sh.send(StopPending())

    @precondition(lambda self: self.sh.in_flight)
    @rule()
    def spawned(self) -> None:
        self.sh.in_flight = False
        self.sh.next_pid += 1
        self.sh.proc = self.sh.next_pid
        self.sh.send(Spawned(self.sh.next_pid))

    @precondition(lambda self: self.sh.in_flight)
    @rule(jitter=jitters)
    def spawn_failed(self, jitter: float) -> None:
        self.sh.in_flight = False
        self.sh.send(SpawnFailed("ENOENT"), jitter)

    @precondition(lambda self: self.sh.proc is not None)
    @rule(
        code=st.one_of(st.none(), st.integers(0, 3)),
        sig=st.sampled_from([9, 15]),
        jitter=jitters,
    )
    def exited(self, code: int | None, sig: int, jitter: float) -> None:
        self.sh.proc = None
        self.sh.send(Exited(code, None if code is not None else sig), jitter)

    @precondition(lambda self: self.sh.in_flight and self.sh.m.state is State.STOPPING)
    @rule(jitter=jitters)
    def withdrawn(self, jitter: float) -> None:
        # the shell had put the spawn off (a dependency not ready) and drops it on the stop
        self.sh.in_flight = False
        self.sh.send(Withdrawn(), jitter)

    @precondition(lambda self: self.sh.proc is not None)
    @rule()
    def ready(self) -> None:
        self.sh.send(Ready())

    @precondition(lambda self: self.sh.proc is not None)
    @rule()
    def ping(self) -> None:
        self.sh.send(WatchdogPing())

    @precondition(lambda self: self.sh.timer is not None)
    @rule(jitter=jitters)
    def timer_fires(self, jitter: float) -> None:
        assert self.sh.timer is not None
        self.sh.now = max(self.sh.now, self.sh.timer)
        self.sh.timer = None
        self.sh.send(Timer(), jitter)

    @precondition(lambda self: self.sh.timer is not None and self.sh.timer > self.sh.now)
    @rule()
    def stale_timer(self) -> None:
        before = (self.sh.m.state, self.sh.m.deadline, self.sh.m.failures, self.sh.m.pid)
        assert self.sh.send(Timer()) == []
        assert (self.sh.m.state, self.sh.m.deadline, self.sh.m.failures, self.sh.m.pid) == before

    @rule(dt=st.floats(min_value=0.0, max_value=100.0))
    def time_passes(self, dt: float) -> None:
        # a correct shell fires a timer when it is due, before anything later happens
        later = self.sh.now + dt
        self.sh.now = later if self.sh.timer is None else min(later, self.sh.timer)

    @invariant()
    def consistent(self) -> None:
        sh = self.sh
        m = sh.m
        pol = m.policy
        assert isinstance(m.state, State)
        assert m.pid == sh.proc
        assert m.deadline == sh.timer
        if m.pid is not None:
            assert m.state in ACTIVE
        if m.state in ACTIVE and not sh.in_flight:
            assert m.pid is not None
        if sh.in_flight:
            assert m.state in (State.STARTING, State.STOPPING)
        # awaiting something time-bound: a timer is set
        if m.state is State.BACKOFF:
            assert sh.timer is not None
        if m.state is State.STARTING and m.pid is not None and (pol.start_seconds > 0 or pol.needs_ready):
            assert sh.timer is not None
        if m.state is State.STOPPING:
            assert sh.timer is not None or sh.killed
        if m.state is State.RUNNING:
            assert (sh.timer is not None) == (pol.watchdog > 0)
        if m.state in (State.STOPPED, State.EXITED, State.FATAL):
            assert sh.timer is None
        # counters
        assert m.failures >= 0
        if pol.max_restarts > 0:
            assert m.failures <= pol.max_restarts + 1
            if m.failures > pol.max_restarts:  # gave up; only an operator's stop moves on
                assert m.state in (State.FATAL, State.STOPPED)
        if m.state is State.FATAL:
            assert pol.max_restarts > 0
            assert m.failures == pol.max_restarts + 1
            assert m.error
        if m.state is State.RUNNING and pol.start_seconds > 0:
            assert m.failures == 0  # with start_seconds = 0 the streak ends at a long-enough exit
        assert m.restarts == max(sh.spawns - 1, 0)
        # the crash-loop record
        if m.state in (State.STOPPED, State.EXITED, State.FATAL):
            assert m.streak is None
        if m.streak is not None:
            assert m.streak.ends >= 1
            assert m.streak.first <= m.streak.last <= sh.now
        if m.state not in (State.STOPPED, State.EXITED, State.FATAL):
            assert (m.streak.ends if m.streak else 0) >= m.failures  # failed starts are ends too
        loop = m.crash_loop(sh.now)
        assert loop is None or (loop is m.streak and loop.ends >= 2)
        if sh.pending:
            assert m.state is not State.BACKOFF  # no retry waits once a stop has begun


RandomLife.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
test_random_life = RandomLife.TestCase


def test_an_unexpected_exit_says_why_with_the_last_line_of_output() -> None:
    """The error of a failed start, a crash and a bad final exit: how, after how long, and the
    program's last words (the shell reads them from its output); a clean exit has none."""
    m = Machine(CP)
    m.handle(Start(), 0.0, J)
    m.handle(Spawned(1), 0.0, J)
    m.handle(Exited(255, None, "Connection refused"), 0.03, J)
    assert (m.state, m.error) == (State.BACKOFF, "exited with code 255 after 0.03s: Connection refused")
    m.handle(Timer(), m.deadline or 0.0, J)
    m.handle(Spawned(2), 10.0, J)
    assert m.error is None  # a new process: no error of its own yet
    m.handle(Timer(), 11.0, J)
    m.handle(Exited(None, 9), 10.0 + 754.2, J)
    assert m.error == "killed by SIGKILL after 12m34s"
    never = Machine(Policy(restart="never", start_seconds=0.0))
    never.handle(Start(), 0.0, J)
    never.handle(Spawned(3), 0.0, J)
    never.handle(Exited(0, None, "done"), 5.0, J)
    assert (never.state, never.error) == (State.EXITED, None)
    never.handle(Start(), 6.0, J)
    never.handle(Spawned(4), 6.0, J)
    never.handle(Exited(2, None, "usage: x FILE"), 6.0 + 2 * 3600 + 300, J)
    assert (never.state, never.error) == (State.EXITED, "exited with code 2 after 2h05m: usage: x FILE")
