"""Unit tests of the dispatcher's pure core (stoker.jobs.dispatch_core).

No daemon, no worker, no clock: every small case of each decision is enumerated and checked
against the rule as the docstrings state it (a reference written the plain way), hypothesis
covers larger inputs, and a state machine plays a worker that follows stoker.jobs.worker's
revoke rule against a daemon that follows `successor`: the two must always agree on which jobs
ran.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from stoker.backoff import backoff_delay
from stoker.jobs import dispatch_core as core
from stoker.jobs.attempt import AttemptResult
from stoker.jobs.dispatch_core import (
    FALLBACK_POLL,
    PREFETCH,
    QUICK,
    READ_BELOW,
    STORE_RETRY,
    TakeBack,
    ahead_for,
    deal,
    lane_capacity,
    successor,
)
from stoker.jobs.rules import JobState, Outcome
from stoker.store import Job

# claiming ----------------------------------------------------------------------------------


@pytest.mark.parametrize("open", [True, False])
def test_room_is_what_concurrency_leaves_while_the_queue_is_open(open: bool) -> None:
    for concurrency, running in itertools.product(range(5), range(7)):
        got = core.room(concurrency, running, open)
        assert got == (concurrency - running if open else 0)


def test_fill_takes_what_the_room_allows_and_says_when_the_queue_is_then_full() -> None:
    for concurrency, running, open, held in itertools.product(range(4), range(6), [False, True], range(7)):
        take, full = core.fill(concurrency, running, open, held)
        room = core.room(concurrency, running, open)
        assert 0 <= take <= held
        assert take <= max(room, 0)
        assert take == max(room, 0) or take == held  # the room is full, or nothing is left
        assert full == (open and room - take == 0)  # (over concurrency after a reload: not full)
        if not open:
            assert (take, full) == (0, False)


def test_should_read_reads_ahead_while_little_is_held_and_the_store_may_have_more() -> None:
    for held, complete, reading, open in itertools.product(
        range(READ_BELOW + 3), [False, True], [False, True], [False, True]
    ):
        got = core.should_read(held, complete, reading, open)
        assert got == (held < READ_BELOW and not complete and not reading and open)


def job(job_id: int, *, cancel_requested: bool = False, attempt: int = 1, max_attempts: int = 3) -> Job:
    return Job(
        id=job_id, task="t", queue="q", state=JobState.RUNNING, params={}, priority=0, attempt=attempt,
        max_attempts=max_attempts, run_at=0.0, created_at=0.0, started_at=100.0,
        cancel_requested=cancel_requested,
    )  # fmt: skip


def test_a_claims_answer_gives_back_its_untaken_slots_and_stops_the_cancelled() -> None:
    ids = [1, 2, 3]
    for count in range(1, 4):
        for got in range(count + 1):
            for requested in itertools.product([False, True], repeat=got):
                for unseen_bits in itertools.product([False, True], repeat=len(ids) + 1):
                    unseen = {i for i, bit in zip([*ids, 99], unseen_bits, strict=True) if bit}
                    jobs = [job(i, cancel_requested=r) for i, r in zip(ids[:got], requested, strict=True)]
                    answer = core.claimed(count, jobs, unseen)
                    assert answer.give_back == count - got
                    assert answer.stale == (got < count)
                    expected = [j.id for j in jobs if j.id in unseen or j.cancel_requested]
                    assert list(answer.stop) == expected
                    assert answer.interrupted is None


def test_a_claim_a_fence_overtook_interrupts_all_it_got_and_still_gives_back_and_stops() -> None:
    for count in range(1, 4):
        for got in range(count + 1):
            jobs = [job(i, cancel_requested=i == 2) for i in range(1, got + 1)]
            answer = core.claimed(count, jobs, {1}, "fenced meanwhile")
            assert answer.interrupted == "fenced meanwhile"
            assert answer.give_back == count - got and answer.stale == (got < count)
            assert list(answer.stop) == [i for i in (1, 2) if i <= got]


# prefetch ----------------------------------------------------------------------------------


def test_ahead_for_a_worker_that_ran_nothing_or_slow_jobs_is_one() -> None:
    assert ahead_for(None) == 1
    assert ahead_for(QUICK) == ahead_for(3600.0) == 1
    assert ahead_for(0.0) == PREFETCH


@given(st.floats(0.0, QUICK, exclude_max=True), st.floats(0.001, 0.1), st.floats(0.001, 0.1))
def test_ahead_for_grows_with_the_hold_it_must_fill(took: float, a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert 2 <= ahead_for(took, low) <= ahead_for(took, high) <= PREFETCH


def reference_capacity(stopped: bool, answered: bool, alive: bool, in_flight: int, ahead: int,
                       jobs: int, max_jobs: int) -> int:  # fmt: skip
    """The rule as the dispatcher applied it before the core: one more at a time while the
    run goes on, its worker lives, has no more than `ahead` in hand and fits them all."""
    if stopped or answered or not alive:
        return 0
    more = 0
    while in_flight + more <= ahead and jobs + in_flight + more + 1 <= max_jobs:
        more += 1
    return more


def test_lane_capacity_every_small_case() -> None:
    for stopped, answered, alive, in_flight, took, jobs, max_jobs in itertools.product(
        [False, True], [False, True], [False, True], range(1, 6), [None, 0.0001, 0.002, QUICK],
        range(5), range(1, 8),
    ):  # fmt: skip
        got = lane_capacity(stopped, answered, alive, in_flight, took, jobs, max_jobs)
        expected = reference_capacity(stopped, answered, alive, in_flight, ahead_for(took), jobs, max_jobs)
        assert got == expected, (stopped, answered, alive, in_flight, took, jobs, max_jobs)


def check_deal(capacities: list[int], jobs: int) -> None:
    order = deal(capacities, jobs)
    counts = Counter(order)
    assert len(order) == min(jobs, sum(max(0, c) for c in capacities))
    for lane, count in counts.items():
        assert 0 <= lane < len(capacities) and count <= capacities[lane]
    # in turn: each round visits the lanes that still have room once each, in their order
    rounds: list[list[int]] = [[]]
    for lane in order:
        if rounds[-1] and lane <= rounds[-1][-1]:
            rounds.append([])
        rounds[-1].append(lane)
    for number, dealt in enumerate(rounds):
        expected = [lane for lane, c in enumerate(capacities) if c > number]
        if number < len(rounds) - 1:
            assert dealt == expected
        else:  # the last round may stop short, for want of jobs
            assert dealt == expected[: len(dealt)]
    # so no lane has two more than another that had room for them
    for a, b in itertools.permutations(range(len(capacities)), 2):
        if counts[a] >= counts[b] + 2:
            assert counts[b] == max(0, capacities[b])


def test_deal_every_small_case() -> None:
    for lanes in range(4):
        for capacities in itertools.product(range(-1, 4), repeat=lanes):
            for jobs in range(11):
                check_deal(list(capacities), jobs)


@given(st.lists(st.integers(0, PREFETCH + 1), max_size=8), st.integers(0, 300))
def test_deal_any_case(capacities: list[int], jobs: int) -> None:
    check_deal(capacities, jobs)


# revocation --------------------------------------------------------------------------------


def test_take_back_every_case() -> None:
    for queue, job_id in itertools.product(["a", "b"], [1, 2]):
        assert TakeBack().takes(queue, job_id)  # a reload, the shutdown: everything
        assert TakeBack(queue="a").takes(queue, job_id) == (queue == "a")  # a pause
        assert TakeBack(job=1).takes(queue, job_id) == (job_id == 1)  # a cancel


class Sent:
    """A job sent ahead whose answer says `revoked` or not, counting the looks at it."""

    def __init__(self, revoked: bool, looks: list[int]) -> None:
        self._revoked = revoked
        self.looks = looks

    @property
    def revoked(self) -> bool:
        self.looks.append(1)
        return self._revoked


def test_successor_every_small_case() -> None:
    for sent in range(6):
        for flags in itertools.product([False, True], repeat=sent):
            leading = next((i for i, f in enumerate(flags) if not f), sent)
            looks: list[int] = []
            died = successor(False, [Sent(f, looks) for f in flags])
            assert (died.back, died.begins, died.release) == (sent, False, False)
            assert looks == []  # a worker that died began none of them, whatever they say
            then = successor(True, [Sent(f, looks) for f in flags])
            assert then.back == leading  # the ones taken back in time, up front
            assert then.begins == (leading < sent)  # the next has begun
            assert then.release == (not then.begins)
            assert len(looks) == min(sent, leading + 1)  # no further than needed


# the attempt's end --------------------------------------------------------------------------


def result(outcome: Outcome, *, exit_code: int | None = None, output: str = "", ended_at: float | None = None,
           error: str | None = None) -> AttemptResult:  # fmt: skip
    return AttemptResult(outcome, exit_code=exit_code, error=error, output=output, ended_at=ended_at)


def test_attempt_end_every_outcome_and_attempt() -> None:
    for outcome, attempt, max_attempts in itertools.product(Outcome, range(1, 4), range(1, 4)):
        if attempt > max_attempts:
            continue
        end = core.attempt_end(job(5, attempt=attempt, max_attempts=max_attempts), result(outcome),
                               now=200.0, jitter=0.5, backoff=(2.0, 10.0))  # fmt: skip
        assert (end.job_id, end.attempt, end.outcome, end.finished_at) == (5, attempt, outcome, 200.0)
        expected = {
            Outcome.SUCCEEDED: JobState.SUCCEEDED,
            Outcome.CANCELLED: JobState.CANCELLED,
            Outcome.INTERRUPTED: JobState.QUEUED,
        }.get(outcome, JobState.QUEUED if attempt < max_attempts else JobState.FAILED)
        assert end.next.state is expected
        assert end.next.counts == (outcome is not Outcome.INTERRUPTED)
        if expected is JobState.QUEUED:
            assert end.next.run_at is not None
            again = end.next.run_at - end.finished_at
            assert again == (0 if outcome is Outcome.INTERRUPTED else backoff_delay(2.0, 10.0, attempt, 0.5))


def test_attempt_end_the_workers_clock_never_puts_the_end_in_the_daemons_future() -> None:
    for ended_at in (None, 150.0, 200.0, 250.0):
        end = core.attempt_end(job(1), result(Outcome.SUCCEEDED, ended_at=ended_at), now=200.0, jitter=0.0,
                               backoff=None)  # fmt: skip
        assert end.finished_at == (200.0 if ended_at is None else min(ended_at, 200.0))


def test_attempt_end_a_failed_commands_error_ends_with_its_last_line_of_output() -> None:
    cases = [
        (Outcome.FAILED, 75, "x\nSMTP 451 greylisted  \n\n", "exited with code 75: SMTP 451 greylisted"),
        (Outcome.FAILED, 75, "   \n", "exited with code 75"),  # nothing printed: as it was
        (Outcome.FAILED, None, "a line\n", "exited with code 75"),  # a call's error has its traceback
        (Outcome.TIMED_OUT, 75, "a line\n", "exited with code 75"),
        (Outcome.FAILED, 1, "y" * 500, "exited with code 75: " + "y" * core.LAST_LINE),
    ]
    for outcome, code, output, error in cases:
        end = core.attempt_end(job(1), result(outcome, exit_code=code, output=output, error="exited with code 75"),
                               now=1.0, jitter=0.0, backoff=None)  # fmt: skip
        assert end.error == error and end.output == output


def test_start_refused_every_answer() -> None:
    assert core.start_refused(job(1), None) is None
    assert core.start_refused(None, None) == (Outcome.CANCELLED, "cancelled before it started")
    for recorded in (job(1), None):
        outcome, reason = core.start_refused(recorded, OSError("disk full")) or (None, "")
        assert outcome is Outcome.INTERRUPTED and reason.endswith("could not record its start: disk full")


# timing -------------------------------------------------------------------------------------


def test_earliest_and_due_now() -> None:
    for current, run_at in itertools.product([None, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0]):
        assert core.earliest(current, run_at) == min(x for x in (current, run_at) if x is not None)
    for later, now in itertools.product([None, 1.0, 2.0], [1.0, 2.0]):
        assert core.due_now(later, now) == (later is not None and later <= now)


@given(
    st.floats(0, 1e6), st.floats(0, 2 * FALLBACK_POLL), st.none() | st.floats(-1e3, 1e3), st.floats(0, 1e9)
)
def test_sleep_for_wakes_for_the_poll_or_the_earliest_due_job(
    polled: float, since: float, due_in: float | None, wall: float
) -> None:
    now = polled + since
    delay = core.sleep_for(now=now, polled=polled, due=None if due_in is None else wall + due_in, wall=wall)
    assert delay <= FALLBACK_POLL - since + 1e-6
    if due_in is not None:
        assert delay <= due_in + 1e-6
        assert delay == pytest.approx(min(FALLBACK_POLL - since, due_in), abs=1e-6)
    assert core.poll_due(now, polled) == (since >= FALLBACK_POLL)


def test_retry_at() -> None:
    assert core.retry_at(10.0) == 10.0 + STORE_RETRY


# the revoke protocol, both sides ------------------------------------------------------------


class RevokeProtocol(RuleBasedStateMachine):
    """One worker and the daemon's view of it. The worker follows stoker.jobs.worker: requests
    run in the order sent; just before it answers a job it takes in what has arrived, answers
    `revoked` each request taken back that it has not begun, then the job; an idle worker
    begins what it is sent at once. The daemon follows the dispatcher: a request to an idle
    worker counts as begun; more go ahead while one runs; at the end of the one it counts as
    running, `successor` says which of those sent ahead begun, went back, or wait. Messages
    each way arrive in order, whenever hypothesis likes; the worker may die at any point."""

    def __init__(self) -> None:
        super().__init__()
        self.ids = itertools.count(1)
        self.to_worker: deque[tuple[str, int]] = deque()
        self.to_daemon: deque[tuple[str, int]] = deque()
        # the worker
        self.pending: deque[int] = deque()  # arrived, not begun
        self.revokes: set[int] = set()
        self.current: int | None = None
        self.dead = False
        self.began: list[int] = []  # by this worker, in order
        self.ran: set[int] = set()  # by any worker
        # the daemon
        self.answers: dict[int, str] = {}  # "done" or "revoked", as read
        self.running: int | None = None  # the job it counts as running on the worker
        self.sent: list[int] = []  # sent ahead, in order
        self.counted: list[int] = []  # every job it counted as begun on this worker, in order
        self.failed: list[int] = []  # counted as begun on a worker that died
        self.back: list[int] = []  # sent back to the queue: never ran
        self.lost = False

    # the daemon

    @precondition(lambda self: not self.lost)
    @rule()
    def send(self) -> None:
        job_id = next(self.ids)
        if not self.dead:  # (written to a dead worker's channel, it goes nowhere)
            self.to_worker.append(("request", job_id))
        if self.running is None:  # an idle worker: it begins it
            self.running = job_id
            self.counted.append(job_id)
        else:
            self.sent.append(job_id)

    @precondition(lambda self: not self.lost and self.sent)
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.sent))
        if not self.dead:
            self.to_worker.append(("revoke", job_id))

    @precondition(lambda self: bool(self.to_daemon))
    @rule(count=st.integers(1, 4))
    def daemon_reads(self, count: int) -> None:
        """A read of up to `count` answers; their callbacks run after it, in order."""
        read = [self.to_daemon.popleft() for _ in range(min(count, len(self.to_daemon)))]
        for kind, job_id in read:
            self.answers[job_id] = kind
        for kind, job_id in read:
            if kind == "done":
                assert job_id == self.running, "the worker answered a job the daemon had not counted"
                self.ended(answered=True)

    @precondition(lambda self: self.dead and not self.to_daemon and not self.lost)
    @rule()
    def daemon_sees_the_loss(self) -> None:
        self.lost = True
        if self.running is not None:
            self.ended(answered=False)

    @precondition(lambda self: self.lost)
    @rule()
    def a_new_worker(self) -> None:
        """The pool starts another in the dead one's place (the jobs go on from here)."""
        self.pending.clear()
        self.revokes.clear()
        self.current = None
        self.dead = self.lost = False
        self.failed += self.counted
        self.began, self.counted = [], []

    def ended(self, answered: bool) -> None:
        looks: list[int] = []
        then = successor(
            answered, [Sent(self.answers.get(job_id) == "revoked", looks) for job_id in self.sent]
        )
        self.back += self.sent[: then.back]
        self.sent = self.sent[then.back :]
        self.running = None
        if then.begins:
            self.running = self.sent.pop(0)
            self.counted.append(self.running)
        assert then.release == (answered and self.running is None)

    # the worker

    @precondition(lambda self: not self.dead and bool(self.to_worker))
    @rule()
    def worker_receives(self) -> None:
        kind, job_id = self.to_worker.popleft()
        if kind == "request":
            self.pending.append(job_id)
        else:
            self.revokes.add(job_id)
        if self.current is None and self.pending:  # idle: it begins what arrives
            self.begin()

    @precondition(lambda self: not self.dead and self.current is not None)
    @rule(more=st.integers(0, 3))
    def worker_answers(self, more: int) -> None:
        for _ in range(min(more, len(self.to_worker))):  # what has arrived meanwhile
            kind, job_id = self.to_worker.popleft()
            (self.pending.append if kind == "request" else self.revokes.add)(job_id)
        for job_id in [j for j in self.pending if j in self.revokes]:
            self.pending.remove(job_id)
            self.to_daemon.append(("revoked", job_id))
        self.revokes.clear()
        assert self.current is not None
        self.to_daemon.append(("done", self.current))
        self.current = None
        if self.pending:
            self.begin()

    def begin(self) -> None:
        self.current = self.pending.popleft()
        self.began.append(self.current)
        self.ran.add(self.current)

    @precondition(lambda self: not self.dead)
    @rule()
    def worker_dies(self) -> None:
        self.dead = True
        self.to_worker.clear()

    # what both must agree on

    @invariant()
    def a_job_sent_back_never_ran(self) -> None:
        assert not set(self.back) & self.ran

    @invariant()
    def the_worker_runs_in_the_order_the_daemon_counts(self) -> None:
        # the daemon may be behind (answers on their way) or ahead (a request on its way)
        known = min(len(self.began), len(self.counted))
        assert self.began[:known] == self.counted[:known]

    @invariant()
    def every_job_is_accounted_for_once(self) -> None:
        places = self.failed + self.counted + self.back + self.sent
        assert len(places) == len(set(places))
        assert set(places) == set(range(1, len(places) + 1))

    @invariant()
    def once_the_loss_is_seen_the_daemon_knows_all_that_began(self) -> None:
        if self.lost:
            assert self.began == self.counted[: len(self.began)] and not self.sent and self.running is None


RevokeProtocol.TestCase.settings = settings(max_examples=400, stateful_step_count=50, deadline=None)
test_revoke_protocol = RevokeProtocol.TestCase
