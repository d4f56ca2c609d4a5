"""The in-memory next jobs of a queue (stoker.jobs.ready): pure, tested against a model store."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stoker.jobs.ready import CAPACITY, Ready, order
from stoker.jobs.rules import JobState
from stoker.store import Job


def job(id_: int, priority: int = 0, run_at: float = 0.0) -> Job:
    return Job(id=id_, task="t", queue="q", state=JobState.QUEUED, params={}, priority=priority,
               attempt=0, max_attempts=1, run_at=run_at, created_at=0.0)  # fmt: skip


def test_takes_by_priority_then_run_at_then_id() -> None:
    ready = Ready()
    for j in (job(1), job(2, priority=5), job(3, run_at=-5), job(4, priority=5, run_at=-1)):
        ready.add(j)
    assert [ready.take().id for _ in range(4)] == [4, 2, 3, 1]
    assert len(ready) == 0


def test_adding_twice_holds_it_once_and_drop_forgets() -> None:
    ready = Ready()
    ready.add(job(1))
    ready.add(job(1))
    ready.add(job(2))
    assert len(ready) == 2 and 1 in ready
    ready.drop(1)
    ready.drop(99)  # not here: fine
    assert len(ready) == 1 and 1 not in ready and ready.take().id == 2


def test_a_read_does_not_bring_back_what_was_taken_or_dropped_while_it_was_out() -> None:
    ready = Ready()
    ready.add(job(1))
    ready.add(job(2))
    ready.begin_read()
    assert ready.reading
    taken = ready.take()  # started: the read, submitted before, still saw it queued
    ready.drop(2)  # cancelled likewise
    ready.end_read([job(1), job(2), job(3)], limit=10)
    assert taken.id == 1 and not ready.reading
    assert [ready.take().id] == [3] and len(ready) == 0


def test_a_read_leaves_out_jobs_held_elsewhere() -> None:
    """A job sent ahead to a worker is still queued in the store; a read must not bring it back
    (and a short page still means complete)."""
    ready = Ready()
    ready.begin_read()
    ready.end_read([job(1), job(2)], limit=10, held=lambda job_id: job_id == 1)
    assert ready.complete and 1 not in ready and ready.first().id == 2 and len(ready) == 1


def test_complete_when_a_read_comes_back_short() -> None:
    ready = Ready()
    assert not ready.complete
    ready.begin_read()
    ready.end_read([job(1)], limit=2)
    assert ready.complete
    ready.stale()
    assert not ready.complete
    ready.begin_read()
    ready.end_read([job(1), job(2)], limit=2)  # a full page: there may be more
    assert not ready.complete


def test_stale_while_reading_is_not_undone_by_the_answer() -> None:
    ready = Ready()
    ready.begin_read()
    ready.stale()  # e.g. a delayed job fell due after the read was submitted
    ready.end_read([], limit=10)
    assert not ready.complete


def test_a_failed_read_changes_nothing() -> None:
    ready = Ready()
    ready.add(job(1))
    ready.begin_read()
    ready.end_read(None, limit=10)
    assert not ready.reading and not ready.complete and len(ready) == 1


def test_holds_at_most_capacity_keeping_the_first_in_order() -> None:
    ready = Ready()
    ready.begin_read()
    ready.end_read([job(i) for i in range(1, CAPACITY + 1)], limit=CAPACITY + 10)
    assert ready.complete
    ready.add(job(CAPACITY + 1, priority=1))  # jumps the line; the last in order goes
    assert len(ready) == CAPACITY and not ready.complete
    assert ready.take().id == CAPACITY + 1 and CAPACITY not in ready


# A model: the store's queued jobs, reads answered as of when they were submitted (the store
# takes operations in order), interleaved with enqueues, starts and cancels.
operation = st.one_of(
    st.tuples(st.just("enqueue"), st.integers(0, 2)),
    st.tuples(st.just("take"), st.just(0)),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("send_read"), st.integers(1, 6)),
    st.tuples(st.just("answer_read"), st.just(0)),
    st.tuples(st.just("stale"), st.just(0)),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(operation, max_size=80))
def test_never_starts_a_job_twice_or_one_not_queued_and_complete_means_complete(
    ops: list[tuple[str, int]],
) -> None:
    ready = Ready()
    queued: dict[int, Job] = {}
    started: set[int] = set()
    pending: tuple[list[Job], int] | None = None  # the answer of the read that is out
    next_id = 1
    for name, arg in ops:
        if name == "enqueue":
            new = job(next_id, priority=arg)
            next_id += 1
            queued[new.id] = new
            ready.add(new)
        elif name == "take" and len(ready):
            taken = ready.take()
            assert taken.id in queued and taken.id not in started
            del queued[taken.id]
            started.add(taken.id)
        elif name == "cancel":
            ready.drop(arg)
            queued.pop(arg, None)
        elif name == "send_read" and pending is None:
            ready.begin_read()
            pending = (sorted(queued.values(), key=order)[:arg], arg)
        elif name == "answer_read" and pending is not None:
            ready.end_read(*pending)
            pending = None
        elif name == "stale":
            ready.stale()
        if ready.complete:
            assert all(j in ready for j in queued)
    while len(ready):
        taken = ready.take()
        assert taken.id in queued and taken.id not in started
        started.add(taken.id)
        del queued[taken.id]
