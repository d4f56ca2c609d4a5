"""The SQLite store: one file in the state dir, WAL, written by one thread with group commit.

sqlite3 blocks, so it never runs on the event loop: every operation is a function of the
connection, queued to a single writer thread. The thread runs whatever has queued up in one
transaction (each operation in its own savepoint, so one failure spoils only itself) and
commits once: a burst of enqueues or finishes costs one fsync, not one each. A job the API
answered 201 for has been committed with synchronous=FULL, so it survives the daemon's death
and the machine's. Which requests of a batch are answered ok is decided by the pure core in
store/group.py (`run_group`); `_SqliteTransaction` is its IO here.

Starts and ends of attempts, the bulk of the traffic, are not functions but records
(`_Start`, `_Finish`): each is one guarded update of one row that applies whole or not at all,
so the ones queued side by side run as one executemany per kind, with no savepoint each.

Length: one class, the Store protocol's every operation on SQLite, plus the writer thread whose
batching they all rely on; the contract suite (tests/test_store.py) reads it as one unit.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, Union
from urllib.parse import quote

import msgspec

from stoker.jobstates import Outcome
from stoker.store.base import JOB_COLUMNS as _JOB_COLUMNS
from stoker.store.base import (
    Attempt,
    AttemptEnd,
    Job,
    NewJob,
    QueueCounts,
    SlotRecord,
    StoreError,
    ended,
    job_from_row,
    listing_query,
)
from stoker.store.group import TransactionFailed, run_group

log = logging.getLogger("stoker")

# sqlite3 binds an exact int, float, str or bytearray as it is; anything else (None, a bool)
# first goes through its adapter lookup, which misses: a third of the cost of binding a start's
# or an end's row. Registered, each is one dict hit (what they bind as is unchanged).
sqlite3.register_adapter(type(None), lambda value: value)
sqlite3.register_adapter(bool, int)

_T = TypeVar("_T")
_Operation = Union[Callable[[sqlite3.Connection], Any], "_Start", "_Finish"]
_Request = tuple[_Operation, "asyncio.Future[Any]", bool]  # op, its answer, durable
_Result = tuple["asyncio.Future[Any]", bool, Any]  # the answer, ok, the value or the exception
_BATCH = 512  # operations per transaction at most
# Seconds starts and ends wait for company before a commit (see _Writer._next_batch): LINGER
# while they come thick (the batch before carried at least BUSY of them), else LINGER_QUIET.
LINGER = 0.010
LINGER_QUIET = 0.001
BUSY = 4
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
    """
    -- why a slot was skipped: its schedule's when_file was absent, or the previous run was
    -- still going (overlap = "skip"), NULL for a slot that fired
    ALTER TABLE schedule_slots ADD COLUMN reason TEXT;
    """,
]


_SLOT_COLUMNS = "slot, outcome, job_id, reason, fired_at"  # SlotRecord's fields, in order

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
    " WHERE id = ? AND attempt = ? AND (state = 'queued' OR (state = 'cancelled' AND ?))"
)
FINISH = (
    "UPDATE jobs SET state = ?, run_at = ?, attempt = ?, finished_at = ?, exit_code = ?, error = ?,"
    " output = ?, result = ?, cancel_requested = 0"
    " WHERE id = ? AND state = 'running' AND attempt = ?"
)
# START and then FINISH of the same attempt, in one: guarded as START is
START_TO_END = (
    "UPDATE jobs SET state = ?, run_at = ?, attempt = ?, started_at = ?, node = ?, finished_at = ?,"
    " exit_code = ?, error = ?, output = ?, result = ?, cancel_requested = 0"
    " WHERE id = ? AND attempt = ? AND (state = 'queued' OR (state = 'cancelled' AND ?))"
)
ATTEMPT = (
    "INSERT INTO attempts (job_id, number, started_at, finished_at, outcome, exit_code, error, node)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class _Start(msgspec.Struct, frozen=True):
    """Record `job` running (as `started()` made it), if it is still queued at the attempt before."""

    job: Job
    begun: bool = False  # running already: one cancelled at the attempt before is started too

    def row(self) -> tuple[Any, ...]:
        job = self.job
        return (job.started_at, job.node, job.id, job.attempt - 1, self.begun)

    def answer(self) -> Job:
        return self.job  # the guard makes the row equal to it: not read back


class _Finish(msgspec.Struct, frozen=True):
    """Record the end of an attempt, if the job is still running that attempt; `job` is the row
    as it will read then (`ended()`), `result` the result's JSON."""

    end: AttemptEnd
    job: Job
    result: str | None

    def row(self) -> tuple[Any, ...]:
        job, end = self.job, self.end
        return (str(job.state), job.run_at, job.attempt, job.finished_at, job.exit_code, job.error,
                job.output, self.result, end.job_id, end.attempt)  # fmt: skip

    def whole_row(self, start: _Start) -> tuple[Any, ...]:
        """START_TO_END's row: `start` (of this attempt) and this end, in one."""
        job, began = self.job, start.job
        return (str(job.state), job.run_at, job.attempt, began.started_at, began.node, job.finished_at,
                job.exit_code, job.error, job.output, self.result, job.id, began.attempt - 1,
                start.begun)  # fmt: skip

    def attempt_row(self) -> tuple[Any, ...]:
        end = self.end
        return (end.job_id, end.attempt, self.job.started_at, end.finished_at, str(end.outcome),
                end.exit_code, end.error, self.job.node)  # fmt: skip

    def answer(self) -> Job:
        return self.job


def _apply_one(conn: sqlite3.Connection, change: _Start | _Finish) -> Job | None:
    """One change on its own: its answer, or None where its guard did not hold."""
    if isinstance(change, _Start):
        return change.answer() if conn.execute(START, change.row()).rowcount == 1 else None
    if conn.execute(FINISH, change.row()).rowcount != 1:
        return None
    conn.execute(ATTEMPT, change.attempt_row())
    return change.answer()


def _apply_all(conn: sqlite3.Connection, changes: Sequence[_Start | _Finish]) -> bool:
    """All of `changes` at once, starts before ends (see `_run_of_changes` for why that keeps
    their order); False if any guard did not hold (the caller rolls back and goes one by one).
    A start and the end of that same attempt (a short job, or one a worker began and ended
    between two of its answers) are one update from queued to its end: the row, and the
    indexes on its state, change once instead of twice."""
    starts: dict[int, _Start] = {}
    for change in changes:
        if isinstance(change, _Start):
            starts[change.job.id] = change
    whole: list[tuple[Any, ...]] = []  # started and ended here
    finishes: list[tuple[Any, ...]] = []  # ended here, started before
    attempts: list[tuple[Any, ...]] = []
    for change in changes:
        if isinstance(change, _Finish):
            start = starts.get(change.end.job_id)
            if start is not None and start.job.attempt == change.end.attempt:
                del starts[change.end.job_id]
                whole.append(change.whole_row(start))
            else:
                finishes.append(change.row())
            attempts.append(change.attempt_row())
    for sql, rows in (
        (START, [start.row() for start in starts.values()]),
        (START_TO_END, whole),
        (FINISH, finishes),
    ):
        if rows and conn.executemany(sql, rows).rowcount != len(rows):
            return False
    if attempts:
        conn.executemany(ATTEMPT, attempts)
    return True


def _run_of_changes(batch: Sequence[_Request], begin: int) -> int:
    """Where the run of changes that begins at `batch[begin]` ends. Within a run the starts are
    applied before the ends; that keeps submission order because a run holds each job at most
    once, except for a start followed by the end of that same attempt (which stays in order)."""
    started: set[int] = set()
    finished: set[int] = set()
    at = begin
    while at < len(batch):
        change = batch[at][0]
        if isinstance(change, _Start):
            job_id = change.job.id
            if job_id in started or job_id in finished:
                break
            started.add(job_id)
        elif isinstance(change, _Finish):
            if change.end.job_id in finished:
                break
            finished.add(change.end.job_id)
        else:
            break
        at += 1
    return at


def _job(row: tuple[Any, ...]) -> Job:
    return job_from_row(row, _json)  # (params and result are JSON text here)


def _json(text: str) -> Any:
    """JSON text as stored, decoded by msgspec (a microsecond less than json.loads a row)."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:  # what json.dumps writes and msgspec refuses: NaN, Infinity, "\ud800"
        return json.loads(text)


class _SqliteTransaction:
    """`group.Transaction` on the writer's connection: the IO of one group commit."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def mark(self) -> None:
        self.conn.execute("SAVEPOINT op")

    def undo(self) -> None:
        self.conn.execute("ROLLBACK TO op")
        self.conn.execute("RELEASE op")

    def keep(self) -> None:
        self.conn.execute("RELEASE op")

    def apply(self, request: _Request) -> Any:
        operation = request[0]
        if isinstance(operation, (_Start, _Finish)):
            return _apply_one(self.conn, operation)
        return operation(self.conn)

    def apply_run(self, run: Sequence[_Request]) -> list[Any] | None:
        changes = [change for change, _, _ in run if isinstance(change, (_Start, _Finish))]
        if len(changes) != len(run) or not _apply_all(self.conn, changes):
            return None
        return [change.answer() for change in changes]

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


class _Writer(threading.Thread):
    """The one thread that touches the connection."""

    def __init__(self, path: str) -> None:
        super().__init__(name="stoker-sqlite", daemon=True)
        self.path = path
        self.requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self.urgent = threading.Event()  # set when something other than a start or an end is queued
        self.loop = asyncio.get_running_loop()
        self.sync = "FULL"
        self.linger = LINGER_QUIET  # how long the next start or end waits for company

    def submit(self, operation: _Operation, durable: bool) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        self.requests.put((operation, future, durable))
        if not isinstance(operation, (_Start, _Finish)):
            self.urgent.set()
        return future

    def stop(self) -> None:
        """Stop once what is queued now is done."""
        self.requests.put(None)
        self.urgent.set()

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
        # SQLite would create the database 0644 less the umask, and it gives the -wal, -shm and
        # -journal files the database's mode: made here first, 0600, all of them are private.
        # O_NOFOLLOW, and none of its companions may be a link: SQLite would follow one.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        for suffix in ("-wal", "-shm", "-journal"):
            if os.path.islink(self.path + suffix):
                raise OSError(errno.ELOOP, "a symbolic link, not followed", self.path + suffix)
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
        if isinstance(first[0], (_Start, _Finish)):
            # The dispatcher does not wait for a start or an end (it has moved on), and a commit
            # costs this thread about as much as a dozen of them: under load they wait for more
            # of their kind. 10 ms: `true` commands at 900-1,500/s then share a commit 14-17 ways
            # (8-11 at 5 ms: a third more commits) and 86-89% of the jobs have their start and
            # end in one batch, so one update (START_TO_END; 77-83% at 5 ms); the writer's CPU
            # per job 0.05-0.08 ms against 0.06-0.11 (alternated runs, noisy). While they come
            # thin, 1 ms: a lone job's end, which a waiting client hears only once it is
            # committed, is not held for company that is not coming (enqueue + wait of a `true`
            # job on an idle queue: medians 11.8 and 14.3 ms, against 13.0 and 17.7 at 5 ms).
            # Anything else queued (an enqueue, a read) ends the wait at once.
            # The price: a job's start is on disk up to 10 ms (plus a commit) after it began; a
            # daemon that dies in between leaves the job queued, so it runs again without an
            # interrupted attempt on record (at-least-once holds; the next daemon kills the
            # leftover first).
            self.urgent.wait(self.linger)
        self.urgent.clear()  # before draining: what is queued after this sets it again
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
        changes = sum(1 for operation, _, _ in batch if isinstance(operation, (_Start, _Finish)))
        self.linger = LINGER if changes >= BUSY else LINGER_QUIET
        return batch

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Request]) -> list[_Result]:
        # An accepted job (or a cancel, a pause…) must survive a power cut: fsync before the
        # answer. A claim or a finish need only survive the daemon's death; losing one to a
        # power cut re-runs a job, which at-least-once allows. A later FULL commit syncs
        # everything before it in the WAL anyway.
        sync = "FULL" if any(durable for _, _, durable in batch) else "NORMAL"
        try:
            if sync != self.sync:
                conn.execute(f"PRAGMA synchronous = {sync}")
                self.sync = sync
        except sqlite3.Error as e:
            return [(future, False, StoreError(f"{self.path}: {e}")) for _, future, _ in batch]
        answers = run_group(batch, _SqliteTransaction(conn), _run_of_changes)
        results: list[_Result] = []
        for (_, future, _), (ok, value) in zip(batch, answers, strict=True):
            if isinstance(value, TransactionFailed):  # the disk is full, the file is gone…
                value = StoreError(f"{self.path}: {value.cause}")
            results.append((future, ok, value))
        return results

    def _deliver(self, results: list[_Result]) -> None:
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
        return self._submit(operation, durable)

    def _submit(self, operation: _Operation, durable: bool) -> asyncio.Future[Any]:
        if self._writer is None:
            raise StoreError("the store is not open")
        return self._writer.submit(operation, durable)

    async def open(self) -> None:
        self._writer = _Writer(self.path)
        self._writer.start()
        await self._do(_migrate)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            await asyncio.to_thread(self._writer.join)
            self._writer = None

    async def enqueue(
        self, jobs: Sequence[NewJob], now: float, *, durable: bool = True
    ) -> list[tuple[Job, bool]]:
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

        return await self._do(operation, durable=durable)  # relaxed: synchronous = NORMAL

    async def due(self, queue: str, limit: int, now: float) -> tuple[list[Job], float | None]:
        def operation(conn: sqlite3.Connection) -> tuple[list[Job], float | None]:
            jobs = [_job(row) for row in conn.execute(DUE, (queue, now, limit)).fetchall()]
            (later,) = conn.execute(
                "SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND queue = ? AND run_at > ?",
                (queue, now),
            ).fetchone()
            return jobs, later

        return await self._do(operation, durable=False)

    def start(self, job: Job, *, begun: bool = False) -> asyncio.Future[Job | None]:
        return self._submit(_Start(job, begun), durable=False)

    def finish(self, job: Job, end: AttemptEnd) -> asyncio.Future[Job | None]:
        if (job.id, job.attempt) != (end.job_id, end.attempt):
            raise ValueError(
                f"job {job.id} attempt {job.attempt} given the end of {end.job_id}/{end.attempt}"
            )
        result = msgspec.json.encode(end.result).decode() if end.has_result else None
        return self._submit(_Finish(end, ended(job, end), result), durable=False)

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
        """Counted on a read-only connection of its own, off the writer's thread: counting a
        million queued jobs takes half a second, which the writer would otherwise spend not
        starting or ending any (WAL: a reader sees the last commit and blocks no writer). What
        it sees is what was committed when it began; the writer's uncommitted batch (a few
        milliseconds of starts and ends at most) is not in it."""

        def count() -> dict[str, QueueCounts]:
            conn = sqlite3.connect(f"file:{quote(self.path)}?mode=ro", uri=True)
            try:
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
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from None
            finally:
                conn.close()

        if self._writer is None:
            raise StoreError("the store is not open")
        return await asyncio.to_thread(count)

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

    async def requeue_running(self, node: str, now: float, reason: str, *, crashed: bool = True) -> list[int]:
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
                elif crashed and crashes >= MAX_CRASHES:  # perhaps it is what kills the daemon: stop trying
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
        self, schedule: str, slot: float, job: NewJob | None, now: float, reason: str | None = None
    ) -> tuple[bool, Job | None]:
        def operation(conn: sqlite3.Connection) -> tuple[bool, Job | None]:
            claimed = conn.execute(
                "INSERT OR IGNORE INTO schedule_slots (schedule, slot, fired_at, outcome, reason)"
                " VALUES (?, ?, ?, ?, ?)",
                (schedule, slot, now, "fired" if job is not None else "skipped", None if job else reason),
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

    async def last_slots(self) -> dict[str, SlotRecord]:
        def operation(conn: sqlite3.Connection) -> dict[str, SlotRecord]:
            rows = conn.execute("SELECT schedule, MAX(slot) FROM schedule_slots GROUP BY schedule").fetchall()
            out = {}
            for name, slot in rows:
                row = conn.execute(
                    f"SELECT {_SLOT_COLUMNS} FROM schedule_slots WHERE schedule = ? AND slot = ?",
                    (name, slot),
                ).fetchone()
                out[name] = SlotRecord(*row)
            return out

        return await self._do(operation, durable=False)

    async def slots(self, schedule: str, limit: int) -> list[SlotRecord]:
        def operation(conn: sqlite3.Connection) -> list[SlotRecord]:
            rows = conn.execute(
                f"SELECT {_SLOT_COLUMNS} FROM schedule_slots WHERE schedule = ? ORDER BY slot DESC LIMIT ?",
                (schedule, limit),
            ).fetchall()
            return [SlotRecord(*row) for row in rows]

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

    async def prune_slots(self, fired_before: float, limit: int) -> int:
        def operation(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM schedule_slots WHERE rowid IN (SELECT s.rowid FROM schedule_slots s"
                " WHERE s.fired_at < ? AND s.slot < (SELECT MAX(m.slot) FROM schedule_slots m"
                " WHERE m.schedule = s.schedule) LIMIT ?)",
                (fired_before, limit),
            ).rowcount

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
