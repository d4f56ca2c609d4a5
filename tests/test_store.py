"""The Store contract: every test runs against both stores, a real SQLite file and a real
PostgreSQL server (tests/postgres.py), unless it is marked SQLite-only at the bottom (the file,
its pragmas, its query plans). PostgreSQL's own matters are in test_store_postgres.py."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from stoker.jobs.rules import JobState, Next, Outcome
from stoker.store import AttemptEnd, Job, NewJob, SlotRecord, Store, StoreError
from stoker.store import sqlite as sqlite_store
from stoker.store.base import ended, started
from stoker.store.sqlite import DUE, MIGRATIONS, SqliteStore

NODE = "node-a"
T0 = 1_800_000_000.0


@dataclass(frozen=True)
class Backend:
    """One store's database: `make()` gives a new, unopened store on it (the same data each time)."""

    name: str
    make: Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return sqlite_backend(tmp_path)
    from stoker.store.postgres import PostgresStore

    url = request.getfixturevalue("postgres_url")  # only here: the SQLite runs need no server
    return Backend("postgres", lambda: PostgresStore(url))


@asynccontextmanager
async def opened(backend: Backend) -> AsyncIterator[Store]:
    store = backend.make()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def run(backend: Backend, body: Callable[[Store], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with opened(backend) as store:
            return await body(store)

    return asyncio.run(main())


def sqlite_backend(tmp_path: Path) -> Backend:
    return Backend("sqlite", lambda: SqliteStore(str(tmp_path / "stoker.db")))


def new(task: str = "t", queue: str = "q", **kw: Any) -> NewJob:
    options: dict[str, Any] = {"params": {}, "max_attempts": 3, "run_at": T0}
    options.update(kw)
    return NewJob(task=task, queue=queue, **options)


async def claim(
    store: Store, queue: str, limit: int, now: float, node: str
) -> tuple[list[Job], float | None]:
    """What the dispatcher does: read the due jobs of a queue, start each."""
    due, later = await store.due(queue, limit, now)
    running = [await store.start(started(job, now, node)) for job in due]
    return [job for job in running if job is not None], later


def end(job: Job, outcome: Outcome, nxt: Next, **kw: Any) -> AttemptEnd:
    """The end of `job`'s running attempt."""
    return AttemptEnd(
        job_id=job.id, attempt=job.attempt, outcome=outcome, next=nxt, finished_at=T0 + 10, **kw
    )


async def finish(store: Store, job: Job, outcome: Outcome, nxt: Next, **kw: Any) -> Job | None:
    return await store.finish(job, end(job, outcome, nxt, **kw))


def test_enqueue_then_get(backend: Backend) -> None:
    async def body(store: Store) -> None:
        [(job, created)] = await store.enqueue([new(params={"to": "a@b.c", "n": 2})], T0)
        assert created and job.id == 1 and job.state is JobState.QUEUED
        assert job.params == {"to": "a@b.c", "n": 2} and job.attempt == 0 and job.max_attempts == 3
        assert job.created_at == T0 and job.run_at == T0
        again = await store.get(job.id)
        assert again == job
        assert await store.get(999) is None

    run(backend, body)


def test_claim_by_priority_then_due_time_then_id(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.enqueue(
            [
                new(params={"n": 1}),
                new(params={"n": 2}, priority=5),
                new(params={"n": 3}, run_at=T0 - 5),
                new(params={"n": 4}, priority=5, run_at=T0 - 1),
                new(params={"n": 5}, run_at=T0 + 100),  # not due
                new(params={"n": 6}, queue="other"),
            ],
            T0,
        )
        claimed, _ = await claim(store, "q", 10, T0, NODE)
        assert [j.params["n"] for j in claimed] == [4, 2, 3, 1]
        assert all(j.state is JobState.RUNNING and j.attempt == 1 and j.node == NODE for j in claimed)
        assert (await claim(store, "q", 10, T0, NODE))[0] == []
        later, _ = await claim(store, "q", 10, T0 + 100, NODE)
        assert [j.params["n"] for j in later] == [5]

    run(backend, body)


def test_claim_respects_limit(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.enqueue([new() for _ in range(5)], T0)
        assert len((await claim(store, "q", 2, T0, NODE))[0]) == 2
        assert len((await claim(store, "q", 2, T0, NODE))[0]) == 2
        assert len((await claim(store, "q", 2, T0, NODE))[0]) == 1

    run(backend, body)


def test_start_only_a_job_still_queued_at_that_attempt(backend: Backend) -> None:
    async def body(store: Store) -> None:
        [(a, _), (b, _), (c, _)] = await store.enqueue([new(), new(), new()], T0)
        running = await store.start(started(a, T0 + 1, NODE))
        assert running is not None and running.state is JobState.RUNNING
        assert (running.attempt, running.started_at, running.node) == (1, T0 + 1, NODE)
        assert await store.get(a.id) == running  # what start answers is what it stored
        assert await store.start(started(a, T0 + 2, NODE)) is None  # already running
        await store.cancel(b.id, T0)
        assert await store.start(started(b, T0 + 2, NODE)) is None  # cancelled meanwhile
        stale = await store.retry(b.id, T0)  # queued again, attempt 0: a copy read earlier
        assert stale is not None and await store.start(started(c, T0, NODE)) is not None
        stale_copy = started(msgspec.structs.replace(stale, attempt=3), T0, NODE)
        assert await store.start(stale_copy) is None  # is not this attempt

    run(backend, body)


def test_a_job_begun_before_its_cancel_reached_the_worker_is_started_all_the_same(tmp_path: Path) -> None:
    """A job sent ahead to a worker, cancelled while the worker was already beginning it: the
    dispatcher records the attempt it is (`begun`), so the record tells that it ran; only a
    job cancelled at the attempt before, and only when asked so (SQLite: where jobs are sent
    ahead)."""

    async def body(store: Store) -> None:
        [(a, _), (b, _)] = await store.enqueue([new(), new()], T0)
        await store.cancel(a.id, T0)
        await store.cancel(b.id, T0)
        assert await store.start(started(a, T0 + 1, NODE)) is None  # a cancel holds, as a rule
        running = await store.start(started(a, T0 + 1, NODE), begun=True)
        assert running is not None and await store.get(a.id) == running
        assert running.state is JobState.RUNNING and running.attempt == 1 and running.finished_at is None
        stale = started(msgspec.structs.replace(b, attempt=2), T0, NODE)
        assert await store.start(stale, begun=True) is None  # not at that attempt
        assert await store.start(started(a, T0 + 2, NODE), begun=True) is None  # running already

    run(sqlite_backend(tmp_path), body)


def test_operations_take_effect_in_the_order_they_are_submitted(backend: Backend) -> None:
    """The dispatcher starts a job without waiting and relies on a later read seeing it."""

    async def body(store: Store) -> None:
        await store.enqueue([new(), new()], T0)
        due, _ = await store.due("q", 10, T0)
        starting = store.start(started(due[0], T0, NODE))  # not awaited before the read is submitted
        after, _ = await store.due("q", 10, T0)
        assert [j.id for j in after] == [due[1].id]
        assert (await starting) is not None

    run(backend, body)


def test_dedup_key_returns_the_live_job(backend: Backend) -> None:
    async def body(store: Store) -> None:
        [(first, created)] = await store.enqueue([new(key="k")], T0)
        [(second, created2)] = await store.enqueue([new(key="k", params={"other": 1})], T0)
        assert created and not created2 and second.id == first.id
        [running], _ = await claim(store, "q", 1, T0, NODE)
        [(third, created3)] = await store.enqueue([new(key="k")], T0)
        assert not created3 and third.id == first.id and third.state is JobState.RUNNING
        await finish(store, running, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED))
        [(fourth, created4)] = await store.enqueue([new(key="k")], T0)
        assert created4 and fourth.id != first.id

    run(backend, body)


def test_failed_attempt_goes_back_then_fails(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.enqueue([new(max_attempts=2)], T0)
        [job], _ = await claim(store, "q", 1, T0, NODE)
        retry = Next(JobState.QUEUED, run_at=T0 + 30)
        back = await finish(store, job, Outcome.FAILED, retry, exit_code=3, error="exit 3", output="o1")
        assert back is not None and back.state is JobState.QUEUED and back.run_at == T0 + 30
        assert await store.get(job.id) == back  # what finish answers is what it stored
        assert (
            back.attempt == 1 and back.error == "exit 3" and back.output == "o1" and back.finished_at is None
        )
        assert (await claim(store, "q", 1, T0 + 29, NODE))[0] == []
        [job2], _ = await claim(store, "q", 1, T0 + 30, NODE)
        assert job2.attempt == 2
        done = await finish(store, job2, Outcome.FAILED, Next(JobState.FAILED), exit_code=4, error="x")
        assert done is not None and done.state is JobState.FAILED and done.finished_at == T0 + 10
        assert await store.get(job.id) == done
        attempts = await store.attempts(job.id)
        assert [(a.number, a.outcome, a.exit_code) for a in attempts] == [
            (1, Outcome.FAILED, 3),
            (2, Outcome.FAILED, 4),
        ]
        # an end for an attempt that is not running is refused
        assert await finish(store, job2, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED)) is None

    run(backend, body)


def test_result_is_stored_as_json(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.enqueue([new()], T0)
        [job], _ = await claim(store, "q", 1, T0, NODE)
        done = await finish(
            store, job, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED), result={"a": [1, None]}, has_result=True
        )
        assert done is not None and done.result == {"a": [1, None]}
        assert await store.get(job.id) == done

    run(backend, body)


def test_cancel_queued_and_running(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.enqueue([new(), new()], T0)
        queued = await store.cancel(1, T0 + 1)
        assert queued is not None and queued.state is JobState.CANCELLED and queued.finished_at == T0 + 1
        [running], _ = await claim(store, "q", 5, T0, NODE)
        marked = await store.cancel(running.id, T0 + 1)
        assert marked is not None and marked.state is JobState.RUNNING and marked.cancel_requested
        done = await finish(store, running, Outcome.CANCELLED, Next(JobState.CANCELLED))
        assert done is not None and done.state is JobState.CANCELLED and not done.cancel_requested
        assert await store.cancel(42, T0) is None

    run(backend, body)


def test_retry_only_failed_or_cancelled(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.enqueue([new(max_attempts=1), new()], T0)
        assert await store.retry(1, T0) is None  # queued
        [job, _], _ = await claim(store, "q", 2, T0, NODE)
        await finish(store, job, Outcome.FAILED, Next(JobState.FAILED), error="boom")
        again = await store.retry(job.id, T0 + 50)
        assert again is not None and again.state is JobState.QUEUED and again.attempt == 0
        assert again.run_at == T0 + 50 and again.finished_at is None

    run(backend, body)


def test_requeue_running_records_an_interrupted_attempt(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.enqueue([new(), new(), new()], T0)
        claimed, _ = await claim(store, "q", 2, T0, NODE)
        ids = await store.requeue_running(NODE, T0 + 5, "interrupted")
        assert sorted(ids) == sorted(j.id for j in claimed)
        for job_id in ids:
            job = await store.get(job_id)
            assert (
                job is not None and job.state is JobState.QUEUED and job.attempt == 0 and job.run_at == T0 + 5
            )
            [attempt] = await store.attempts(job_id)
            assert attempt.outcome is Outcome.INTERRUPTED and attempt.number == 1
        assert await store.requeue_running("other-node", T0, "x") == []

    run(backend, body)


def test_requeue_running_honours_cancels_and_gives_up_after_three_crashes(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.enqueue([new(), new()], T0)
        for crash in range(1, 4):
            claimed, _ = await claim(store, "q", 2, T0 + crash, NODE)
            if crash == 1:
                assert len(claimed) == 2
                await store.cancel(2, T0)  # asked for while it runs
            requeued = await store.requeue_running(NODE, T0 + crash, "died")
            job = await store.get(1)
            assert job is not None
            if crash < 3:
                assert requeued == [1] and job.state is JobState.QUEUED and job.attempt == 0
            else:
                assert requeued == [] and job.state is JobState.FAILED
                assert job.error == "died, 3 times: not run again (retry it by hand)"
        cancelled = await store.get(2)
        assert cancelled is not None and cancelled.state is JobState.CANCELLED
        assert [a.outcome for a in await store.attempts(2)] == [Outcome.INTERRUPTED]

    run(backend, body)


def test_paused_queues_persist(backend: Backend) -> None:
    async def first(store: Store) -> None:
        await store.set_paused("build", True)
        await store.set_paused("build", True)
        await store.set_paused("mail", True)
        await store.set_paused("mail", False)

    async def second(store: Store) -> set[str]:
        return await store.paused_queues()

    run(backend, first)
    assert run(backend, second) == {"build"}


def test_counts_due_and_listing(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.enqueue([new(run_at=T0 + 9), new(run_at=T0 + 3), new(queue="b", task="u")], T0)
        assert await claim(store, "q", 5, T0, NODE) == ([], T0 + 3)  # nothing due yet; when to look
        assert await claim(store, "none", 5, T0, NODE) == ([], None)
        claimed, due = await claim(store, "b", 1, T0, NODE)
        assert len(claimed) == 1 and due is None
        counts = await store.queue_counts()
        assert (counts["q"].queued, counts["q"].running) == (2, 0)
        assert (counts["b"].queued, counts["b"].running) == (0, 1)
        assert [j.id for j in await store.jobs()] == [3, 2, 1]
        assert [j.id for j in await store.jobs(queue="q", limit=1)] == [2]
        assert [j.id for j in await store.jobs(before=2)] == [1]
        assert [j.id for j in await store.jobs(state="running")] == [3]
        assert [j.id for j in await store.jobs(task="u")] == [3]

    run(backend, body)


def test_prune_deletes_only_old_finished_jobs(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.enqueue([new() for _ in range(5)], T0)
        jobs, _ = await claim(store, "q", 3, T0, NODE)
        for j in jobs:
            await finish(store, j, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED))
        assert await store.prune(T0 + 10, 100) == []  # finished at T0+10: not before
        first = await store.prune(T0 + 11, 2)
        second = await store.prune(T0 + 11, 2)
        assert len(first) == 2 and len(second) == 1
        assert {j.id for j in await store.jobs()} == {4, 5}
        assert await store.attempts(first[0]) == []

    run(backend, body)


def test_ids_are_never_reused_after_pruning(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.enqueue([new()], T0)
        [j], _ = await claim(store, "q", 1, T0, NODE)
        await finish(store, j, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED))
        await store.prune(T0 + 100, 10)
        [(again, _)] = await store.enqueue([new()], T0)
        assert again.id == 2

    run(backend, body)


def test_one_failing_operation_spoils_only_itself(backend: Backend) -> None:
    async def body(store: Store) -> None:
        good = store.enqueue([new()], T0)
        bad = store.enqueue([new(params={"x": object()})], T0)  # not JSON
        other = store.enqueue([new()], T0)
        results = await asyncio.gather(good, bad, other, return_exceptions=True)
        assert isinstance(results[1], TypeError)
        assert len(await store.jobs()) == 2

    run(backend, body)


def test_schedule_slots_are_its_history_with_why_skipped(backend: Backend) -> None:
    async def body(store: Store) -> None:
        fired, job = await store.fire("tick", T0, new(schedule="tick", slot=T0), T0 + 0.5)
        assert fired and job is not None and job.schedule == "tick"
        absent = "when_file flags/on is absent"
        assert await store.fire("tick", T0 + 60, None, T0 + 60, absent) == (True, None)
        # a slot already recorded stays as it was: another node's answer changes nothing
        assert await store.fire("tick", T0 + 60, new(schedule="tick"), T0 + 61) == (False, None)
        assert await store.fire("tick", T0 + 60, None, T0 + 61, "other") == (False, None)
        assert await store.fire("tock", T0, None, T0, None) == (True, None)
        last = await store.last_slots()
        assert last["tick"] == SlotRecord(T0 + 60, "skipped", None, absent, T0 + 60)
        assert last["tock"] == SlotRecord(T0, "skipped", None, None, T0)
        assert await store.slots("tick", 10) == [
            SlotRecord(T0 + 60, "skipped", None, absent, T0 + 60),
            SlotRecord(T0, "fired", job.id, None, T0 + 0.5),
        ]
        assert [r.slot for r in await store.slots("tick", 1)] == [T0 + 60]
        assert await store.slots("nothing", 10) == []
        assert len(await store.jobs()) == 1

    run(backend, body)


def test_old_slot_records_are_pruned_but_each_schedules_latest_stays(backend: Backend) -> None:
    async def body(store: Store) -> None:
        for minute in range(5):  # tick: five slots fired a minute apart; tock: one, long ago
            await store.fire("tick", T0 + 60 * minute, None, T0 + 60 * minute, None)
        await store.fire("tock", T0 - 3600, None, T0 - 3600, None)
        assert await store.prune_slots(T0, 100) == 0  # none fired before T0 but tock's latest
        assert await store.prune_slots(T0 + 150, 1) == 1  # at most `limit`
        assert await store.prune_slots(T0 + 150, 100) == 2  # T0 and T0+60 and T0+120 in all
        assert [r.slot for r in await store.slots("tick", 10)] == [T0 + 240, T0 + 180]
        assert await store.prune_slots(T0 + 10_000, 100) == 1  # T0+180: T0+240 is tick's latest
        assert [r.slot for r in await store.slots("tick", 10)] == [T0 + 240]
        assert [r.slot for r in await store.slots("tock", 10)] == [T0 - 3600]
        last = await store.last_slots()
        assert (last["tick"].slot, last["tock"].slot) == (T0 + 240, T0 - 3600)
        # the latest still says its slot fired: another node's late try changes nothing
        assert await store.fire("tick", T0 + 240, None, T0 + 10_000, None) == (False, None)

    run(backend, body)


# SQLite-only: the file, its pragmas and its query plans ------------------------------------


def test_schema_version_recorded_and_newer_refused(tmp_path: Path) -> None:
    run(sqlite_backend(tmp_path), lambda store: store.jobs())
    db = sqlite3.connect(tmp_path / "stoker.db")
    assert db.execute("SELECT version FROM schema_version").fetchone() == (len(MIGRATIONS),)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this stoker"):
        run(sqlite_backend(tmp_path), lambda store: store.jobs())


def test_schedule_slots_of_an_older_schema_gain_a_reason(tmp_path: Path) -> None:
    """A database from before `reason` (version 2) keeps its slots; they read with none."""
    db = sqlite3.connect(tmp_path / "stoker.db")
    for migration in MIGRATIONS[:2]:
        db.executescript(migration)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (2)")
    db.execute("INSERT INTO schedule_slots VALUES ('tick', ?, ?, 'skipped', NULL)", (T0, T0))
    db.commit()
    db.close()

    async def body(store: Store) -> None:
        assert (await store.last_slots())["tick"] == SlotRecord(T0, "skipped", None, None, T0)
        await store.fire("tick", T0 + 60, None, T0 + 60, "when_file x is absent")
        assert (await store.last_slots())["tick"].reason == "when_file x is absent"

    run(sqlite_backend(tmp_path), body)


def test_unopenable_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "stoker.db").mkdir()  # a directory where the file should be

    async def main() -> None:
        store = SqliteStore(str(tmp_path / "stoker.db"))
        try:
            await store.open()
        finally:
            await store.close()

    with pytest.raises(StoreError, match=r"stoker\.db"):
        asyncio.run(main())


def test_reading_due_jobs_walks_the_claim_index_in_order(tmp_path: Path) -> None:
    """With a million queued jobs a sort of every due job costs seconds per read: the read must
    read jobs_claim in its order and stop after LIMIT rows (checked on the query plan, not time)."""
    run(sqlite_backend(tmp_path), lambda store: store.jobs())
    db = sqlite3.connect(tmp_path / "stoker.db")
    plan = db.execute("EXPLAIN QUERY PLAN " + DUE, ("q", T0, 5)).fetchall()
    db.close()
    details = " | ".join(row[-1] for row in plan)
    assert "USING INDEX jobs_claim" in details and "TEMP B-TREE" not in details, details


@asynccontextmanager
async def held(store: Store) -> AsyncIterator[None]:
    """Keep the writer busy while the body submits, so everything submitted lands in one batch.
    The body submits only: an answer awaited in it comes once the 10 s hold has run out."""
    assert isinstance(store, SqliteStore)
    go = threading.Event()
    busy = store._do(lambda conn: go.wait(10), durable=False)
    try:
        yield
    finally:
        go.set()
        await busy


def test_starts_and_ends_in_one_batch_each_answer_for_themselves(tmp_path: Path) -> None:
    """Starts and ends queued together run as one statement per kind; a guard that fails among
    them (a cancelled job, an end of an attempt that is not running) spoils only its own."""

    async def body(store: Store) -> None:
        jobs = [job for job, _ in await store.enqueue([new(max_attempts=2) for _ in range(6)], T0)]
        first = [await store.start(started(job, T0, NODE)) for job in jobs[:3]]
        assert all(job is not None for job in first)
        a, b, c = (job for job in first if job is not None)
        await store.cancel(jobs[4].id, T0)
        retry = Next(JobState.QUEUED, run_at=T0 + 30)
        async with held(store):
            ends = [
                store.finish(a, end(a, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED), output="ok")),
                store.finish(b, end(b, Outcome.FAILED, retry, exit_code=1, error="exit 1")),
                store.finish(
                    msgspec.structs.replace(c, attempt=2),
                    msgspec.structs.replace(end(c, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED)), attempt=2),
                ),
            ]
            starts = [store.start(started(job, T0 + 1, NODE)) for job in jobs[3:]]
        answers = await asyncio.gather(*ends, *starts)
        assert [answer is None for answer in answers] == [False, False, True, False, True, False]
        for answer in answers:
            if answer is not None:
                assert await store.get(answer.id) == answer
        assert (await store.get(c.id)) == c  # still running its first attempt
        assert (await store.get(jobs[4].id)).state is JobState.CANCELLED  # type: ignore[union-attr]
        assert [(x.number, x.outcome) for x in await store.attempts(a.id)] == [(1, Outcome.SUCCEEDED)]
        assert [(x.number, x.exit_code) for x in await store.attempts(b.id)] == [(1, 1)]
        assert await store.attempts(c.id) == []

    run(sqlite_backend(tmp_path), body)


def test_starts_and_ends_in_one_batch_take_effect_in_submission_order(tmp_path: Path) -> None:
    """A job that ends before its start was committed; a retried job started again in the batch
    that recorded its failed attempt; and an end submitted before its start is refused, as it
    would be on its own."""

    async def body(store: Store) -> None:
        [(quick, _), (again, _), (early, _)] = await store.enqueue([new(), new(max_attempts=2), new()], T0)
        running_again = await store.start(started(again, T0, NODE))
        assert running_again is not None
        failed = end(running_again, Outcome.FAILED, Next(JobState.QUEUED, run_at=T0))
        running_quick, running_early = started(quick, T0, NODE), started(early, T0, NODE)
        async with held(store):
            pending = asyncio.gather(
                store.start(running_quick),
                store.finish(running_quick, end(running_quick, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED))),
                store.finish(running_again, failed),
                store.start(started(ended(running_again, failed), T0 + 1, NODE)),
            )
        answers = await pending
        assert all(answer is not None for answer in answers)
        assert (await store.get(quick.id)) == answers[1]
        assert answers[1] is not None and answers[1].state is JobState.SUCCEEDED
        assert (await store.get(again.id)) == answers[3]
        assert answers[3] is not None and answers[3].state is JobState.RUNNING and answers[3].attempt == 2
        async with held(store):  # on their own: every guard would hold if the start went first
            too_early = store.finish(
                running_early, end(running_early, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED))
            )
            starting = store.start(running_early)
        assert await too_early is None and await starting == running_early
        assert (await store.get(early.id)) == running_early

    run(sqlite_backend(tmp_path), body)


def test_a_start_and_its_end_in_one_batch_are_one_change(tmp_path: Path) -> None:
    """A short job's start and end, committed together, take the row from queued to its end in
    one update (the record is as if each had applied: the attempt is on record, `started_at`
    is the start's); one cancelled before either applied is refused whole, each answering
    None; one begun before its cancel arrived is started and ended all the same."""

    async def body(store: Store) -> None:
        [(ok, _), (gone, _), (begun, _)] = await store.enqueue([new(), new(), new()], T0)
        await store.cancel(gone.id, T0)
        await store.cancel(begun.id, T0)
        running = [started(job, T0 + 1, NODE) for job in (ok, gone, begun)]
        ends = [end(job, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED), exit_code=0) for job in running]
        async with held(store):
            pending = asyncio.gather(
                store.start(running[0]), store.start(running[1]), store.start(running[2], begun=True),
                *(store.finish(job, e) for job, e in zip(running, ends, strict=True)),
            )  # fmt: skip
        answers = await pending
        assert [answer is None for answer in answers] == [False, True, False, False, True, False]
        for finished in (answers[3], answers[5]):
            assert finished is not None and finished.state is JobState.SUCCEEDED
            stored = await store.get(finished.id)
            assert stored == finished and stored.started_at == T0 + 1 and stored.finished_at == T0 + 10
            [attempt] = await store.attempts(finished.id)
            assert (attempt.number, attempt.outcome, attempt.started_at) == (1, Outcome.SUCCEEDED, T0 + 1)
        left = await store.get(gone.id)
        assert left is not None and left.state is JobState.CANCELLED and left.attempt == 0
        assert await store.attempts(gone.id) == []

    run(sqlite_backend(tmp_path), body)


def test_a_hundred_starts_and_ends_in_one_batch(tmp_path: Path) -> None:
    """A hundred changes of a kind in one batch: each row as it would be on its own, every
    attempt on record; a guard that fails among them (a job cancelled meanwhile) spoils only
    its own change."""

    async def body(store: Store) -> None:
        jobs = [job for job, _ in await store.enqueue([new(max_attempts=2) for _ in range(300)], T0)]
        running = [started(job, T0 + 1, NODE) for job in jobs]
        ends = [
            end(job, Outcome.FAILED, Next(JobState.QUEUED, run_at=T0 + 30), exit_code=3) for job in running
        ]
        async with held(store):  # the first hundred start in one batch, and end in another
            starts = [store.start(job) for job in running[:100]]
        assert all(answer is not None for answer in await asyncio.gather(*starts))
        async with held(store):  # the next hundred start and end in that one
            changes = [store.finish(job, e) for job, e in zip(running[:100], ends[:100], strict=True)]
            changes += [store.start(job) for job in running[100:200]]
            changes += [store.finish(job, e) for job, e in zip(running[100:200], ends[100:200], strict=True)]
        answers = await asyncio.gather(*changes)
        assert all(answer is not None for answer in answers)
        await store.cancel(jobs[270].id, T0)
        async with held(store):  # the last hundred start in one batch, one of them cancelled
            starts = [store.start(job) for job in running[200:]]
        assert [answer is None for answer in await asyncio.gather(*starts)] == [i == 70 for i in range(100)]
        for i, job in enumerate(jobs):
            stored = await store.get(job.id)
            assert stored is not None
            if i == 270:
                assert stored.state is JobState.CANCELLED and stored.attempt == 0
            elif i >= 200:
                assert stored == running[i]
            else:
                assert stored == answers[i if i < 100 else i + 100]
                assert (stored.state, stored.attempt, stored.run_at) == (JobState.QUEUED, 1, T0 + 30)
                assert (stored.started_at, stored.exit_code, stored.node) == (T0 + 1, 3, NODE)
                [attempt] = await store.attempts(job.id)
                assert (attempt.number, attempt.outcome, attempt.exit_code, attempt.started_at) == (
                    1, Outcome.FAILED, 3, T0 + 1,
                )  # fmt: skip

    run(sqlite_backend(tmp_path), body)


def test_only_starts_and_ends_wait_for_company(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Starts and ends wait a little before a commit, to share it; an enqueue or a read queued
    behind them ends the wait, and so does closing the store (here the wait is stretched to a
    minute: nothing may sit it out)."""
    monkeypatch.setattr(sqlite_store, "LINGER", 60.0)
    monkeypatch.setattr(sqlite_store, "LINGER_QUIET", 60.0)

    async def main() -> None:
        async with opened(sqlite_backend(tmp_path)) as store:
            [(job, _)] = await store.enqueue([new()], T0)
            starting = store.start(started(job, T0, NODE))
            [(other, _)] = await asyncio.wait_for(store.enqueue([new()], T0), 10)
            assert await asyncio.wait_for(starting, 10) is not None
            due, _ = await asyncio.wait_for(store.due("q", 10, T0), 10)
            assert [j.id for j in due] == [other.id]
            lingering = store.start(started(other, T0, NODE))
        assert await asyncio.wait_for(lingering, 10) is not None

    asyncio.run(main())


def test_params_json_msgspec_refuses_read_back_as_stored(tmp_path: Path) -> None:
    """Params are written by json.dumps, which also writes NaN, Infinity and lone surrogates
    (a schedule's TOML params may hold a nan); rows are read with msgspec, which refuses those:
    such a job reads back all the same, and its neighbours with it."""
    odd = {"x": float("nan"), "y": float("inf"), "s": "\ud800", "n": 10**30}

    async def body(store: Store) -> None:
        [(plain, _), (job, _)] = await store.enqueue([new(params={"to": "a@b.c"}), new(params=odd)], T0)
        due, _ = await store.due("q", 10, T0)
        assert [d.id for d in due] == [plain.id, job.id] and due[0].params == {"to": "a@b.c"}
        for read in (due[1], await store.get(job.id)):
            assert read is not None and math.isnan(read.params["x"])
            assert (read.params["y"], read.params["s"], read.params["n"]) == (float("inf"), "\ud800", 10**30)

    run(sqlite_backend(tmp_path), body)


def test_a_lone_start_or_end_is_not_held_for_company(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Starts and ends wait LINGER for company only while they come thick (the batch before
    carried at least BUSY of them); a lone job's are committed after LINGER_QUIET, so a client
    waiting for its end is not kept waiting for company that is not coming (LINGER stretched to
    a minute here: a lone start or end answered at all has not sat it out)."""
    monkeypatch.setattr(sqlite_store, "LINGER", 60.0)

    async def main() -> None:
        async with opened(sqlite_backend(tmp_path)) as store:
            [(job, _)] = await store.enqueue([new()], T0)
            running = await asyncio.wait_for(store.start(started(job, T0, NODE)), 10)
            assert running is not None
            done = await asyncio.wait_for(
                store.finish(running, end(running, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED))), 10
            )
            assert done is not None and done.state is JobState.SUCCEEDED
            # a burst, queued while an operation holds the writer so that it is there all
            # together: its batch carries BUSY changes, and the next ones wait for company
            burst = [j for j, _ in await store.enqueue([new() for _ in range(sqlite_store.BUSY)], T0)]
            assert isinstance(store, SqliteStore) and store._writer is not None
            entered, gate = threading.Event(), threading.Event()
            holding = store._do(lambda conn: entered.set() or gate.wait(10))
            assert await asyncio.to_thread(entered.wait, 10)
            starts = [store.start(started(j, T0, NODE)) for j in burst]
            gate.set()
            await asyncio.wait_for(asyncio.gather(holding, *starts), 10)
            assert store._writer.linger == sqlite_store.LINGER

    asyncio.run(main())


def test_relaxed_enqueue_is_committed_without_the_flush(backend: Backend) -> None:
    """A relaxed queue's jobs are committed (any reader sees them) without waiting for the
    disk: on SQLite the commit is made with synchronous = NORMAL, a durable one with FULL."""

    async def body(store: Store) -> None:
        [(relaxed, created)] = await store.enqueue([new(queue="fast")], T0, durable=False)
        assert created
        if isinstance(store, SqliteStore):
            assert store._writer is not None and store._writer.sync == "NORMAL"
        [(durable, _)] = await store.enqueue([new(queue="safe")], T0)
        if isinstance(store, SqliteStore):
            assert store._writer is not None and store._writer.sync == "FULL"
        assert await store.get(relaxed.id) == relaxed and await store.get(durable.id) == durable

    run(backend, body)
    run(backend, lambda store: _both_still_there(store))


async def _both_still_there(store: Store) -> None:
    assert [j.queue for j in await store.jobs()] == ["safe", "fast"]
