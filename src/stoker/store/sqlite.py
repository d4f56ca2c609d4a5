"""The SQLite store: one file in the state dir, WAL, written by one thread with group commit.

sqlite3 blocks, so it never runs on the event loop: every operation is a function of the
connection, queued to a single writer thread. The thread runs whatever has queued up in one
transaction (each operation in its own savepoint, so one failure spoils only itself) and
commits once: a burst of enqueues or finishes costs one fsync, not one each. A job the API
answered 201 for has been committed with synchronous=FULL, so it survives the daemon's death
and the machine's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from stoker.jobs.rules import JobState, Outcome
from stoker.store.base import JOB_COLUMNS as _JOB_COLUMNS
from stoker.store.base import Attempt, AttemptEnd, Job, NewJob, QueueCounts, StoreError, listing_query

log = logging.getLogger("stoker")

_T = TypeVar("_T")
_Request = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", bool]  # op, its answer, durable
_BATCH = 512  # operations per transaction at most
MAX_CRASHES = 3  # a job that was running when the daemon died this often is not run again

# Each entry migrates from version N to N+1; never edit one that has shipped, add another.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: clients poll ids
        task TEXT NOT NULL,
        queue TEXT NOT NULL,
        state TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        priority INTEGER NOT NULL DEFAULT 0,
        attempt INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 1,
        run_at REAL NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        exit_code INTEGER,
        error TEXT,
        output TEXT,
        result TEXT,
        key TEXT,
        node TEXT,
        schedule TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    );
    -- claiming: the next due jobs of a queue, by priority
    CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
    -- waking up: the earliest run_at of a queue
    CREATE INDEX jobs_due ON jobs (queue, run_at) WHERE state = 'queued';
    -- dedup: one live job per key
    CREATE UNIQUE INDEX jobs_live_key ON jobs (key) WHERE key IS NOT NULL AND state IN ('queued', 'running');
    CREATE INDEX jobs_running ON jobs (node) WHERE state = 'running';
    CREATE INDEX jobs_state ON jobs (state, id);
    CREATE INDEX jobs_task ON jobs (task, id);
    CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
    CREATE TABLE attempts (
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        started_at REAL,
        finished_at REAL NOT NULL,
        outcome TEXT NOT NULL,
        exit_code INTEGER,
        error TEXT,
        node TEXT
    );
    CREATE INDEX attempts_job ON attempts (job_id);
    CREATE TABLE paused_queues (name TEXT PRIMARY KEY);
    """,
    """
    -- each (schedule, slot) fires at most once, whichever daemon gets there first
    CREATE TABLE schedule_slots (
        schedule TEXT NOT NULL,
        slot REAL NOT NULL,
        fired_at REAL NOT NULL,
        outcome TEXT NOT NULL,  -- fired, skipped (the previous run was still going)
        job_id INTEGER,
        PRIMARY KEY (schedule, slot)
    );
    CREATE TABLE paused_schedules (name TEXT PRIMARY KEY);
    CREATE INDEX jobs_schedule ON jobs (schedule, id) WHERE schedule IS NOT NULL;
    ALTER TABLE jobs ADD COLUMN slot REAL;  -- the schedule slot a job fired for
    """,
]


# INDEXED BY: left alone the planner picks jobs_due and sorts every due job (with a million
# queued, seconds per read); jobs_claim yields them already in order and stops after LIMIT.
DUE = (
    f"SELECT {_JOB_COLUMNS} FROM jobs INDEXED BY jobs_claim"
    " WHERE state = 'queued' AND queue = ? AND run_at <= ?"
    " ORDER BY priority DESC, run_at, id LIMIT ?"
)
START = (
    "UPDATE jobs SET state = 'running', attempt = attempt + 1, started_at = ?, node = ?,"
    " finished_at = NULL, exit_code = NULL"
    " WHERE id = ? AND state = 'queued' AND attempt = ? RETURNING id"
)


_STATES = {str(state): state for state in JobState}  # a lookup; JobState(…) costs more per row


def _job(row: tuple[Any, ...]) -> Job:
    (id_, task, queue_, state, params, priority, attempt, max_attempts, run_at, created_at,
     started_at, finished_at, exit_code, error, output, result, key, node, schedule, cancel_requested,
     slot) = row  # fmt: skip
    return Job(
        id=id_,
        task=task,
        queue=queue_,
        state=_STATES[state],
        params=json.loads(params),
        priority=priority,
        attempt=attempt,
        max_attempts=max_attempts,
        run_at=run_at,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        exit_code=exit_code,
        error=error,
        output=output,
        result=None if result is None else json.loads(result),
        key=key,
        node=node,
        schedule=schedule,
        cancel_requested=bool(cancel_requested),
        slot=slot,
    )


class _Writer(threading.Thread):
    """The one thread that touches the connection."""

    def __init__(self, path: str) -> None:
        super().__init__(name="stoker-sqlite", daemon=True)
        self.path = path
        self.requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self.loop = asyncio.get_running_loop()
        self.sync = "FULL"

    def submit(self, operation: Callable[[sqlite3.Connection], _T], durable: bool) -> asyncio.Future[_T]:
        future: asyncio.Future[_T] = self.loop.create_future()
        self.requests.put((operation, future, durable))
        return future

    def run(self) -> None:
        try:
            conn = self._connect()
        except Exception as e:  # every request fails with the reason
            self._fail_all(StoreError(f"cannot open {self.path}: {e}"))
            return
        try:
            while (batch := self._next_batch()) is not None:
                self._deliver(self._run_batch(conn, batch))
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def _next_batch(self) -> list[_Request] | None:
        first = self.requests.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < _BATCH:
            try:
                item = self.requests.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.requests.put(None)  # stop after this batch
                break
            batch.append(item)
        return batch

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[_Request]
    ) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            # An accepted job (or a cancel, a pause…) must survive a power cut: fsync before the
            # answer. A claim or a finish need only survive the daemon's death; losing one to a
            # power cut re-runs a job, which at-least-once allows. A later FULL commit syncs
            # everything before it in the WAL anyway.
            sync = "FULL" if any(durable for _, _, durable in batch) else "NORMAL"
            if sync != self.sync:
                conn.execute(f"PRAGMA synchronous = {sync}")
                self.sync = sync
            conn.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:  # alone in its transaction: no savepoint needed
                operation, future, _ = batch[0]
                try:
                    value = operation(conn)
                except Exception as e:
                    conn.execute("ROLLBACK")
                    return [(future, False, e)]
                conn.execute("COMMIT")
                return [(future, True, value)]
            for operation, future, _ in batch:
                conn.execute("SAVEPOINT op")
                try:
                    value = operation(conn)
                except Exception as e:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((future, False, e))
                else:
                    conn.execute("RELEASE op")
                    results.append((future, True, value))
            conn.execute("COMMIT")
        except sqlite3.Error as e:  # the disk is full, the file is gone…: nothing of this batch holds
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = StoreError(f"{self.path}: {e}")
            return [(future, False, error) for _, future, _ in batch]
        return results

    def _deliver(self, results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
        def settle() -> None:
            for future, ok, value in results:
                if future.done():  # the caller gave up waiting
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # pragma: no cover - the loop is closed: nobody is waiting
            pass

    def _fail_all(self, error: Exception) -> None:
        while True:
            item = self.requests.get()
            if item is None:
                return
            self._deliver([(item[1], False, error)])


class SqliteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._writer: _Writer | None = None

    def _do(
        self, operation: Callable[[sqlite3.Connection], _T], *, durable: bool = True
    ) -> asyncio.Future[_T]:
        if self._writer is None:
            raise StoreError("the store is not open")
        return self._writer.submit(operation, durable)

    async def open(self) -> None:
        self._writer = _Writer(self.path)
        self._writer.start()
        await self._do(_migrate)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.requests.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None

    async def enqueue(self, jobs: Sequence[NewJob], now: float) -> list[tuple[Job, bool]]:
        def operation(conn: sqlite3.Connection) -> list[tuple[Job, bool]]:
            out = []
            for new in jobs:
                if new.key is not None:
                    row = conn.execute(
                        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE key = ? AND state IN ('queued', 'running')",
                        (new.key,),
                    ).fetchone()
                    if row is not None:
                        out.append((_job(row), False))
                        continue
                out.append((_insert_job(conn, new, now), True))
            return out

        return await self._do(operation)

    async def due(self, queue: str, limit: int, now: float) -> tuple[list[Job], float | None]:
        def operation(conn: sqlite3.Connection) -> tuple[list[Job], float | None]:
            jobs = [_job(row) for row in conn.execute(DUE, (queue, now, limit)).fetchall()]
            (later,) = conn.execute(
                "SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND queue = ? AND run_at > ?",
                (queue, now),
            ).fetchone()
            return jobs, later

        return await self._do(operation, durable=False)

    def start(self, job: Job) -> asyncio.Future[Job | None]:
        # The guard makes the row equal to `job`, so it is not read back.
        def operation(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(START, (job.started_at, job.node, job.id, job.attempt - 1)).fetchone()
            return None if row is None else job

        return self._do(operation, durable=False)

    async def finish(self, end: AttemptEnd) -> Job | None:
        def operation(conn: sqlite3.Connection) -> Job | None:
            finished = end.next.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
            result = json.dumps(end.result) if end.has_result else None
            updated = conn.execute(
                "UPDATE jobs SET state = ?, run_at = COALESCE(?, run_at), attempt = attempt - ?,"
                " finished_at = ?, exit_code = ?, error = ?, output = ?, result = ?, cancel_requested = 0"
                f" WHERE id = ? AND state = 'running' AND attempt = ? RETURNING {_JOB_COLUMNS}",
                (
                    str(end.next.state),
                    end.next.run_at,
                    0 if end.next.counts else 1,
                    end.finished_at if finished else None,
                    end.exit_code,
                    end.error,
                    end.output,
                    result,
                    end.job_id,
                    end.attempt,
                ),
            ).fetchone()
            if updated is None:  # not running this attempt (any more): nothing to record
                return None
            job = _job(updated)
            conn.execute(
                "INSERT INTO attempts (job_id, number, started_at, finished_at, outcome, exit_code, error,"
                " node) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (end.job_id, end.attempt, job.started_at, end.finished_at, str(end.outcome), end.exit_code,
                 end.error, job.node),
            )  # fmt: skip
            return job

        return await self._do(operation, durable=False)

    async def get(self, job_id: int) -> Job | None:
        def operation(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else _job(row)

        return await self._do(operation, durable=False)

    async def attempts(self, job_id: int) -> list[Attempt]:
        def operation(conn: sqlite3.Connection) -> list[Attempt]:
            rows = conn.execute(
                "SELECT job_id, number, started_at, finished_at, outcome, exit_code, error, node"
                " FROM attempts WHERE job_id = ? ORDER BY rowid",
                (job_id,),
            ).fetchall()
            return [Attempt(r[0], r[1], r[2], r[3], Outcome(r[4]), r[5], r[6], r[7]) for r in rows]

        return await self._do(operation, durable=False)

    async def jobs(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[Job]:
        sql, args = listing_query(
            "jobs", "?", state=state, queue=queue, task=task, limit=limit, before=before
        )

        def operation(conn: sqlite3.Connection) -> list[Job]:
            return [_job(row) for row in conn.execute(sql, args).fetchall()]

        return await self._do(operation, durable=False)

    async def cancel(self, job_id: int, now: float) -> Job | None:
        def operation(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                "UPDATE jobs SET state = CASE state WHEN 'queued' THEN 'cancelled' ELSE state END,"
                " finished_at = CASE state WHEN 'queued' THEN ? ELSE finished_at END,"
                " cancel_requested = CASE state WHEN 'running' THEN 1 ELSE cancel_requested END"
                f" WHERE id = ? RETURNING {_JOB_COLUMNS}",
                (now, job_id),
            ).fetchone()
            return None if row is None else _job(row)

        return await self._do(operation)

    async def retry(self, job_id: int, now: float) -> Job | None:
        def operation(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                "UPDATE jobs SET state = 'queued', attempt = 0, run_at = ?, finished_at = NULL,"
                " cancel_requested = 0"
                f" WHERE id = ? AND state IN ('failed', 'cancelled') RETURNING {_JOB_COLUMNS}",
                (now, job_id),
            ).fetchone()
            return None if row is None else _job(row)

        return await self._do(operation)

    async def queue_counts(self) -> dict[str, QueueCounts]:
        def operation(conn: sqlite3.Connection) -> dict[str, QueueCounts]:
            counts: dict[str, QueueCounts] = {}
            for name, queued in conn.execute(
                "SELECT queue, COUNT(*) FROM jobs WHERE state = 'queued' GROUP BY queue"
            ).fetchall():
                counts[name] = QueueCounts(queued=queued)
            for name, running in conn.execute(
                "SELECT queue, COUNT(*) FROM jobs WHERE state = 'running' GROUP BY queue"
            ).fetchall():
                counts[name] = QueueCounts(queued=counts.get(name, QueueCounts()).queued, running=running)
            return counts

        return await self._do(operation, durable=False)

    async def paused_queues(self) -> set[str]:
        return await self._names_in("paused_queues")

    async def set_paused(self, queue: str, paused: bool) -> None:
        await self._set_member("paused_queues", queue, paused)

    # paused_queues and paused_schedules: tables of names, a name present = paused
    async def _names_in(self, table: str) -> set[str]:
        def operation(conn: sqlite3.Connection) -> set[str]:
            return {name for (name,) in conn.execute(f"SELECT name FROM {table}").fetchall()}

        return await self._do(operation, durable=False)

    async def _set_member(self, table: str, name: str, member: bool) -> None:
        def operation(conn: sqlite3.Connection) -> None:
            if member:
                conn.execute(f"INSERT OR IGNORE INTO {table} (name) VALUES (?)", (name,))
            else:
                conn.execute(f"DELETE FROM {table} WHERE name = ?", (name,))

        await self._do(operation)

    async def requeue_running(self, node: str, now: float, reason: str) -> list[int]:
        def operation(conn: sqlite3.Connection) -> list[int]:
            rows = conn.execute(
                "SELECT id, attempt, started_at, cancel_requested FROM jobs"
                " WHERE state = 'running' AND node = ?",
                (node,),
            ).fetchall()
            requeued = []
            for job_id, attempt, started_at, cancel_requested in rows:
                conn.execute(
                    "INSERT INTO attempts (job_id, number, started_at, finished_at, outcome, error, node)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (job_id, attempt, started_at, now, str(Outcome.INTERRUPTED), reason, node),
                )
                (crashes,) = conn.execute(
                    "SELECT COUNT(*) FROM attempts WHERE job_id = ? AND outcome = ? AND error = ?",
                    (job_id, str(Outcome.INTERRUPTED), reason),
                ).fetchone()
                if cancel_requested:  # asked for while nobody could act on it: it still holds
                    state, error, finished = "cancelled", "cancelled", now
                elif crashes >= MAX_CRASHES:  # perhaps it is what kills the daemon: stop trying
                    error = f"{reason}, {crashes} times: not run again (retry it by hand)"
                    state, finished = "failed", now
                else:
                    state, error, finished = "queued", reason, None
                    requeued.append(job_id)
                conn.execute(
                    "UPDATE jobs SET state = ?, attempt = attempt - ?, run_at = ?, error = ?,"
                    " finished_at = ?, cancel_requested = 0 WHERE id = ?",
                    (state, 1 if state == "queued" else 0, now, error, finished, job_id),
                )
            return requeued

        return await self._do(operation, durable=False)

    async def fire(
        self, schedule: str, slot: float, job: NewJob | None, now: float
    ) -> tuple[bool, Job | None]:
        def operation(conn: sqlite3.Connection) -> tuple[bool, Job | None]:
            claimed = conn.execute(
                "INSERT OR IGNORE INTO schedule_slots (schedule, slot, fired_at, outcome)"
                " VALUES (?, ?, ?, ?)",
                (schedule, slot, now, "fired" if job is not None else "skipped"),
            ).rowcount
            if not claimed:
                return False, None
            if job is None:
                return True, None
            created = _insert_job(conn, job, now)
            conn.execute(
                "UPDATE schedule_slots SET job_id = ? WHERE schedule = ? AND slot = ?",
                (created.id, schedule, slot),
            )
            return True, created

        return await self._do(operation)

    async def last_slots(self) -> dict[str, tuple[float, str, int | None]]:
        def operation(conn: sqlite3.Connection) -> dict[str, tuple[float, str, int | None]]:
            rows = conn.execute("SELECT schedule, MAX(slot) FROM schedule_slots GROUP BY schedule").fetchall()
            out = {}
            for name, slot in rows:
                outcome, job_id = conn.execute(
                    "SELECT outcome, job_id FROM schedule_slots WHERE schedule = ? AND slot = ?", (name, slot)
                ).fetchone()
                out[name] = (slot, outcome, job_id)
            return out

        return await self._do(operation, durable=False)

    async def latest_job_of(self, schedule: str) -> Job | None:
        def operation(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE schedule = ? ORDER BY id DESC LIMIT 1", (schedule,)
            ).fetchone()
            return None if row is None else _job(row)

        return await self._do(operation, durable=False)

    async def paused_schedules(self) -> set[str]:
        return await self._names_in("paused_schedules")

    async def set_schedule_paused(self, schedule: str, paused: bool) -> None:
        await self._set_member("paused_schedules", schedule, paused)

    async def prune(self, finished_before: float, limit: int) -> list[int]:
        def operation(conn: sqlite3.Connection) -> list[int]:
            rows = conn.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_at < ?"
                " AND state IN ('succeeded', 'failed', 'cancelled') LIMIT ?) RETURNING id",
                (finished_before, limit),
            ).fetchall()
            return [row[0] for row in rows]

        return await self._do(operation, durable=False)


def _insert_job(conn: sqlite3.Connection, new: NewJob, now: float) -> Job:
    row = conn.execute(
        "INSERT INTO jobs (task, queue, state, params, priority, max_attempts, run_at,"
        " created_at, key, schedule, slot) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)"
        f" RETURNING {_JOB_COLUMNS}",
        (
            new.task,
            new.queue,
            json.dumps(new.params, separators=(",", ":")),
            new.priority,
            new.max_attempts,
            new.run_at,
            now,
            new.key,
            new.schedule,
            new.slot,
        ),
    ).fetchone()
    return _job(row)


def _migrate(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    version = 0 if row is None else row[0]
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the database is at schema version {version}, newer than this stoker knows "
            f"({len(MIGRATIONS)}): upgrade stoker"
        )
    for number in range(version, len(MIGRATIONS)):
        for statement in MIGRATIONS[number].split(";"):
            if statement.strip():
                conn.execute(statement)
        log.info("store: schema migrated to version %d", number + 1)
    if row is None:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS),))
    else:
        conn.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))
    return len(MIGRATIONS)
