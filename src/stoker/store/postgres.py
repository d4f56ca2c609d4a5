"""The PostgreSQL store: the Store protocol on a server that several daemons (nodes) can share.

Its semantics are the SQLite store's (tests/test_store.py runs one contract on both). Like it,
every operation goes through one lane: an asyncio task that takes whatever has queued up, runs
it in submission order in one transaction on a pooled connection and commits once. That keeps
the protocol's promise that operations take effect in the order they are submitted (`start`
answers later, and a read submitted after it sees the job running), and a burst of starts and
ends costs one commit.

Durability. A batch holding anything a client was promised (an enqueue, a cancel, a pause…)
commits with the server's `synchronous_commit`, by default `on`: the WAL is flushed to the
server's disk (and to its synchronous standbys, if it has any) before the answer, so a job
answered 201 survives the daemon's death, the server's and its machine's, as SQLite's
synchronous=FULL does. A batch of only starts, ends and reads commits with
`synchronous_commit = off` (SQLite's NORMAL): a crash of the server's machine may lose its last
fraction of a second, which runs a job again, as at-least-once allows. A server run with
`fsync = off`, or with `synchronous_commit = off` for stoker's role, keeps none of this (the
store says so in the log when it opens).

The tables live in a schema of their own, `stoker`, so they never meet an application's own
`jobs` table in a shared database. Migrations run under a transaction-scoped advisory lock:
nodes that start at once take turns, and the later ones find the schema up to date.

Several nodes. Every node reads the same next jobs (`due`) and they race for each: the guarded
start lets exactly one win; the dispatcher runs a job only once its start is confirmed on a
shared store, and `finish` records an end only for an attempt this store started, so the loser
neither runs the job nor touches the winner's record. Correct, but each job costs every node a
start. `claim` (one statement, FOR UPDATE SKIP LOCKED) starts jobs without that race; the
dispatcher does not use it yet (it needs a claim-then-run path instead of read-ahead): that is
the cluster's next step. Enqueues, retries, fired slots and re-queued jobs NOTIFY the other
nodes (`subscribe`), so they read the queue at once rather than at the next safety-net poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from stoker.jobstates import JobState, Outcome
from stoker.store.base import JOB_COLUMNS as _JOB_COLUMNS
from stoker.store.base import (
    Attempt,
    AttemptEnd,
    Job,
    NewJob,
    NodeRecord,
    QueueCounts,
    SlotRecord,
    StoreError,
    job_from_row,
    listing_query,
)

log = logging.getLogger("stoker")

_T = TypeVar("_T")
_Conn = AsyncConnection[tuple[Any, ...]]
_Operation = Callable[[_Conn], Awaitable[Any]]
_BATCH = 512  # operations per transaction at most
_RETRIES = 3  # a batch another node deadlocked with (the server aborts one side) runs again
CONNECT_TIMEOUT = 10  # seconds, unless the URL sets connect_timeout
POOL_TIMEOUT = 10.0  # seconds a batch waits for a connection before it fails
MAX_CRASHES = 3  # as in the SQLite store: a job running when its daemon died this often is not run again
MIGRATION_LOCK = 0x73746F6B6572  # pg_advisory_xact_lock key: "stoker" in ASCII
# NOTIFY "<origin> queued <queue>", "<origin> cancel <job id>", "<origin> paused -", "<origin> leases -"
CHANNEL = "stoker_jobs"
LISTEN_RETRY_MAX = 30.0  # seconds between attempts to listen again, at most

# Each entry migrates from version N to N+1; never edit one that has shipped, add another.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE stoker.jobs (
        id bigserial PRIMARY KEY,  -- never reused: clients poll ids
        task text NOT NULL,
        queue text NOT NULL,
        state text NOT NULL,
        params jsonb NOT NULL DEFAULT '{}',
        priority bigint NOT NULL DEFAULT 0,
        attempt integer NOT NULL DEFAULT 0,
        max_attempts integer NOT NULL DEFAULT 1,
        run_at double precision NOT NULL,  -- times: Unix seconds, as everywhere in stoker
        created_at double precision NOT NULL,
        started_at double precision,
        finished_at double precision,
        exit_code integer,
        error text,
        output text,
        result jsonb,
        key text,
        node text,
        schedule text,
        cancel_requested boolean NOT NULL DEFAULT false,
        slot double precision  -- the schedule slot a job fired for
    );
    -- claiming: the next due jobs of a queue, by priority
    CREATE INDEX jobs_claim ON stoker.jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
    -- waking up: the earliest run_at of a queue
    CREATE INDEX jobs_due ON stoker.jobs (queue, run_at) WHERE state = 'queued';
    -- dedup: one live job per key
    CREATE UNIQUE INDEX jobs_live_key ON stoker.jobs (key)
        WHERE key IS NOT NULL AND state IN ('queued', 'running');
    CREATE INDEX jobs_running ON stoker.jobs (node) WHERE state = 'running';
    CREATE INDEX jobs_state ON stoker.jobs (state, id);
    CREATE INDEX jobs_task ON stoker.jobs (task, id);
    CREATE INDEX jobs_queue ON stoker.jobs (queue, id);
    CREATE INDEX jobs_finished ON stoker.jobs (finished_at) WHERE finished_at IS NOT NULL;
    CREATE INDEX jobs_schedule ON stoker.jobs (schedule, id) WHERE schedule IS NOT NULL;
    CREATE TABLE stoker.attempts (
        id bigserial PRIMARY KEY,  -- their order
        job_id bigint NOT NULL REFERENCES stoker.jobs (id) ON DELETE CASCADE,
        number integer NOT NULL,
        started_at double precision,
        finished_at double precision NOT NULL,
        outcome text NOT NULL,
        exit_code integer,
        error text,
        node text
    );
    CREATE INDEX attempts_job ON stoker.attempts (job_id);
    CREATE TABLE stoker.paused_queues (name text PRIMARY KEY);
    -- each (schedule, slot) fires at most once, whichever node gets there first
    CREATE TABLE stoker.schedule_slots (
        schedule text NOT NULL,
        slot double precision NOT NULL,
        fired_at double precision NOT NULL,
        outcome text NOT NULL,  -- fired, skipped (the previous run was still going)
        job_id bigint,
        PRIMARY KEY (schedule, slot)
    );
    CREATE TABLE stoker.paused_schedules (name text PRIMARY KEY);
    """,
    """
    -- the daemons (nodes) sharing this database: who holds each name, and when it last said it
    -- is alive, by the server's clock (the nodes' clocks may disagree)
    CREATE TABLE stoker.nodes (
        name text PRIMARY KEY,
        member text NOT NULL,  -- the store (daemon) that holds the name: a random id
        host text NOT NULL,
        pid integer NOT NULL,
        joined_at double precision NOT NULL,
        heartbeat_at double precision NOT NULL
    );
    """,
    """
    -- the cluster view: each node's program instances as it last published them (a JSON array
    -- of the API's program objects), when (the server's clock) and by which stoker version;
    -- NULL until the node's first publish
    ALTER TABLE stoker.nodes
        ADD COLUMN programs jsonb,
        ADD COLUMN published_at double precision,
        ADD COLUMN version text;
    """,
    """
    -- singleton programs: which node runs each, until when (the server's clock); a lease whose
    -- expires_at has passed is free for any node to take
    CREATE TABLE stoker.leases (
        name text PRIMARY KEY,  -- the program
        holder text NOT NULL,  -- the node (stoker.nodes.name) that runs it
        member text NOT NULL,  -- the daemon that holds the node's name (stoker.nodes.member)
        acquired_at double precision NOT NULL,
        expires_at double precision NOT NULL
    );
    """,
    """
    -- why a slot was skipped: its schedule's when_file was absent, or the previous run was
    -- still going (overlap = "skip"), NULL for a slot that fired
    ALTER TABLE stoker.schedule_slots ADD COLUMN reason text;
    """,
]
_SLOT_COLUMNS = "slot, outcome, job_id, reason, fired_at"  # SlotRecord's fields, in order

_LIVE_KEY = "key IS NOT NULL AND state IN ('queued', 'running')"  # jobs_live_key's predicate

DUE = (
    f"SELECT {_JOB_COLUMNS} FROM stoker.jobs"
    " WHERE state = 'queued' AND queue = %s AND run_at <= %s"
    " ORDER BY priority DESC, run_at, id LIMIT %s"
)
LATER = "SELECT min(run_at) FROM stoker.jobs WHERE state = 'queued' AND queue = %s AND run_at > %s"
START = (
    "UPDATE stoker.jobs SET state = 'running', attempt = attempt + 1, started_at = %s, node = %s,"
    " finished_at = NULL, exit_code = NULL"
    " WHERE id = %s AND state = 'queued' AND attempt = %s RETURNING id"
)
# Due jobs that no other transaction holds, started in the same statement: concurrent claims
# from several nodes skip each other's rows instead of waiting for them or sharing them.
CLAIM = (
    "UPDATE stoker.jobs SET state = 'running', attempt = attempt + 1, started_at = %s, node = %s,"
    " finished_at = NULL, exit_code = NULL"
    " WHERE id IN (SELECT id FROM stoker.jobs WHERE state = 'queued' AND queue = %s AND run_at <= %s"
    "  ORDER BY priority DESC, run_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
    f" RETURNING {_JOB_COLUMNS}"
)
# An attempt's end: the job's row and the attempt's record in one statement (one round trip),
# the record only if the row was running that attempt.
_ENDED = (
    "ended AS (UPDATE stoker.jobs SET state = %s, run_at = COALESCE(%s, run_at),"
    " attempt = attempt - %s, finished_at = %s, exit_code = %s, error = %s, output = %s,"
    " result = %s::jsonb, cancel_requested = false"
    " WHERE id = %s AND state = 'running' AND attempt = %s AND node = %s AND started_at = %s"
    f" RETURNING {_JOB_COLUMNS}),"
    " recorded AS (INSERT INTO stoker.attempts (job_id, number, started_at, finished_at, outcome,"
    " exit_code, error, node) SELECT id, %s, started_at, %s, %s, %s, %s, node FROM ended)"
)
FINISH = f"WITH {_ENDED} SELECT {_JOB_COLUMNS} FROM ended"
# An end and the claim of the slot it frees, one statement: the ended job's row (if it was
# running that attempt) first, marked true, then the claimed ones. The claim cannot take the
# ended row (one statement sees one snapshot, in which that row is running).
FINISH_AND_CLAIM = (
    f"WITH {_ENDED}, claimed AS ({CLAIM})"
    f" SELECT true, {_JOB_COLUMNS} FROM ended UNION ALL SELECT false, {_JOB_COLUMNS} FROM claimed"
)
_INSERT_JOB = (
    "INSERT INTO stoker.jobs (task, queue, state, params, priority, max_attempts, run_at, created_at, key,"
    " schedule, slot) VALUES (%s, %s, 'queued', %s::jsonb, %s, %s, %s, %s, %s, %s, %s)"
)

_NOW = "extract(epoch FROM clock_timestamp())::float8"  # the server's clock, for heartbeats


def _job(row: tuple[Any, ...]) -> Job:
    return job_from_row(row, _as_is)  # (params and result: jsonb, decoded by psycopg)


def _as_is(value: Any) -> Any:
    return value


def _text(value: str | None) -> str | None:
    """PostgreSQL's text cannot hold NUL, which a program's output may: it becomes U+FFFD."""
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


def _json(value: Any) -> str:
    """`value` as JSON that jsonb accepts: it holds neither NUL in a string (U+FFFD instead) nor
    NaN or ±Infinity, which Python's json writes and SQLite keeps (null instead)."""
    text = json.dumps(value, separators=(",", ":"))
    if "\\u0000" in text or "NaN" in text or "Infinity" in text:  # rare: look closer
        text = json.dumps(_jsonb_safe(value), separators=(",", ":"), allow_nan=False)
    return text


def _jsonb_safe(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {_jsonb_safe(str(k)): _jsonb_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonb_safe(v) for v in value]
    return value


def describe(url: str) -> str:
    """Where `url` points, for messages: database, host, port and user; never the password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "a store URL that is not valid (postgresql://user@host:port/database)"
    host = parts.get("host") or "the default host"
    port = f":{parts['port']}" if parts.get("port") else ""
    where = f"database {parts.get('dbname') or '(the user name)'} on {host}{port}"
    return f"{where} as {parts['user']}" if parts.get("user") else where


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reason(error: BaseException) -> str:
    """A psycopg error's message on one line (libpq's carry hints on lines of their own)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


class _NotOurs(Exception):
    """A node name this store no longer holds (an operation's own failure, not the batch's)."""


@dataclass(slots=True)
class _Request:
    operation: _Operation
    future: asyncio.Future[Any]
    durable: bool  # a client was promised it: commit with the server's synchronous_commit


class _Lane:
    """The one task that runs operations against the database: in order, many per transaction.

    An operation is an async function of the connection. It may run more than once: when one
    operation of a batch fails, the transaction is rolled back (the failure spoils only that
    operation's answer) and the others run again without it. So an operation keeps no state
    between runs but what it builds afresh, and answers only through its return value.
    """

    def __init__(self, pool: AsyncConnectionPool[_Conn], where: str) -> None:
        self.pool = pool
        self.where = where
        self.requests: asyncio.Queue[_Request | None] = asyncio.Queue()
        self.closing = False
        self.task = asyncio.create_task(self._run(), name="stoker-postgres")

    def submit(self, operation: Callable[[_Conn], Awaitable[_T]], durable: bool) -> asyncio.Future[_T]:
        if self.closing:
            raise StoreError("the store is closed")
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self.requests.put_nowait(_Request(operation, future, durable))
        return future

    async def close(self) -> None:
        """Run what was submitted, then stop."""
        self.closing = True
        self.requests.put_nowait(None)
        await self.task

    async def _run(self) -> None:
        try:
            while (batch := await self._next_batch()) is not None:
                await self._run_batch(batch)
        finally:  # cancelled, or a bug: whoever still waits learns it rather than hanging
            while not self.requests.empty():
                request = self.requests.get_nowait()
                if request is not None and not request.future.done():
                    request.future.set_exception(StoreError("the store was closed"))

    async def _next_batch(self) -> list[_Request] | None:
        first = await self.requests.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < _BATCH and not self.requests.empty():
            item = self.requests.get_nowait()
            if item is None:
                self.requests.put_nowait(None)  # stop after this batch
                break
            batch.append(item)
        return batch

    async def _run_batch(self, batch: list[_Request]) -> None:
        failed: dict[int, BaseException] = {}  # operations that failed on their own
        values: dict[int, Any] = {}
        problem: StoreError | None = None
        for attempt in range(1, _RETRIES + 1):
            try:
                async with self.pool.connection(timeout=POOL_TIMEOUT) as conn:
                    values = await self._transaction(conn, batch, failed)
            except (errors.DeadlockDetected, errors.SerializationFailure) as e:  # with another node: again
                problem = StoreError(f"PostgreSQL ({self.where}): {_reason(e)}")
                if attempt < _RETRIES:
                    log.info("store: %s; running the batch again", _reason(e))
                    continue
            except PoolTimeout as e:
                problem = StoreError(f"PostgreSQL ({self.where}): no connection: {_reason(e)}")
            except psycopg.Error as e:  # the server or the connection: nothing of this batch holds
                problem = StoreError(f"PostgreSQL ({self.where}): {_reason(e)}")
                await self.pool.check()  # drop connections that broke with it: the next batch reconnects
            else:
                problem = None
            break
        for index, request in enumerate(batch):
            if request.future.done():  # the caller gave up waiting
                continue
            if index in failed:
                request.future.set_exception(failed[index])
            elif problem is not None:
                request.future.set_exception(problem)
            else:
                request.future.set_result(values[index])

    async def _transaction(
        self, conn: _Conn, batch: list[_Request], failed: dict[int, BaseException]
    ) -> dict[int, Any]:
        while True:
            durable = any(request.durable for index, request in enumerate(batch) if index not in failed)
            await conn.execute("BEGIN" if durable else "BEGIN; SET LOCAL synchronous_commit = off")
            values: dict[int, Any] = {}
            for index, request in enumerate(batch):
                if index in failed:
                    continue
                try:
                    values[index] = await request.operation(conn)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    raise  # the connection or the server, not this operation
                except Exception as e:
                    failed[index] = e
                    break
            else:
                await conn.execute("COMMIT")
                return values
            await conn.execute("ROLLBACK")  # the failed one's effects, and the others': run those again


class _StatementLane:
    """The lane of the operations that are one statement each and need only survive the
    daemon's death, not the server's (claims and attempt ends): each runs on its own in
    autocommit, in order, on a connection of the lane's own whose commits do not wait for the
    disk (synchronous_commit = off for its session). One round trip each, where the main lane's
    transaction takes three; and a claim never waits behind what the main lane is committing.
    The connection is not the pool's: its session setting must never reach a durable commit.
    """

    def __init__(self, conninfo: str, where: str) -> None:
        self.conninfo = conninfo
        self.where = where
        self.requests: asyncio.Queue[_Request | None] = asyncio.Queue()
        self.closing = False
        self.conn: _Conn | None = None
        self.task = asyncio.create_task(self._run(), name="stoker-postgres-statements")

    def submit(self, operation: Callable[[_Conn], Awaitable[_T]]) -> asyncio.Future[_T]:
        if self.closing:
            raise StoreError("the store is closed")
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self.requests.put_nowait(_Request(operation, future, durable=False))
        return future

    async def close(self) -> None:
        """Run what was submitted, then stop."""
        self.closing = True
        self.requests.put_nowait(None)
        await self.task

    async def _run(self) -> None:
        try:
            while (request := await self.requests.get()) is not None:
                await self._run_one(request)
        finally:  # cancelled, or a bug: whoever still waits learns it rather than hanging
            while not self.requests.empty():
                left = self.requests.get_nowait()
                if left is not None and not left.future.done():
                    left.future.set_exception(StoreError("the store was closed"))
            if self.conn is not None:
                await self.conn.close()

    async def _connection(self) -> _Conn:
        if self.conn is None or self.conn.broken or self.conn.closed:
            if self.conn is not None:
                await self.conn.close()
                self.conn = None
            conn = await AsyncConnection.connect(self.conninfo, autocommit=True)
            await conn.execute("SET synchronous_commit = off")
            self.conn = conn
        return self.conn

    async def _run_one(self, request: _Request) -> None:
        error: BaseException
        for attempt in range(1, _RETRIES + 1):
            try:
                value = await request.operation(await self._connection())
            except (errors.DeadlockDetected, errors.SerializationFailure) as e:  # with another node: again
                error = StoreError(f"PostgreSQL ({self.where}): {_reason(e)}")
                if attempt < _RETRIES:
                    continue
            except (
                psycopg.Error
            ) as e:  # the server or the connection (the next one reconnects), or the statement
                error = StoreError(f"PostgreSQL ({self.where}): {_reason(e)}")
            except Exception as e:  # the operation's own
                error = e
            else:
                if not request.future.done():
                    request.future.set_result(value)
                return
            break
        if not request.future.done():
            request.future.set_exception(error)


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.where = describe(url)
        self._pool: AsyncConnectionPool[_Conn] | None = None
        self._lane: _Lane | None = None
        # Claims and attempt ends have a lane of their own (`_StatementLane`). Nothing orders
        # them after an operation still in the main lane, nor the other way round: a claim takes
        # only queued, due rows, an end only the row of the attempt this store started; an
        # enqueue, a retry or a cancel that must come first has been answered (committed) before
        # the dispatcher claims or ends anything it affects.
        self._statements: _StatementLane | None = None
        self._claims: _StatementLane | None = None  # (claims apart: a freed slot waits for no end)
        # (job id, attempt) → (node, started_at) of each attempt this store started and has not
        # seen end: whose attempt an end belongs to
        self._started: dict[tuple[int, int], tuple[str | None, float | None]] = {}
        self._origin = os.urandom(8).hex()  # this store's notifications, which it does not need to hear
        self._conninfo = ""
        self._listener: asyncio.Task[None] | None = None

    # lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            options = conninfo_to_dict(self.url)
        except psycopg.Error:
            raise StoreError(
                "[daemon] store is not a valid PostgreSQL URL (postgresql://user@host:port/database)"
            ) from None
        options.setdefault("connect_timeout", CONNECT_TIMEOUT)
        options.setdefault("application_name", "stoker")
        conninfo = self._conninfo = make_conninfo("", **options)
        try:
            conn = await AsyncConnection.connect(conninfo, autocommit=True)
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL ({self.where}): {_reason(e)}") from None
        try:
            await _migrate(conn)
            await self._warn_if_not_durable(conn)
        except psycopg.Error as e:
            raise StoreError(f"PostgreSQL ({self.where}): {_reason(e)}") from None
        finally:
            await conn.close()
        # two connections: the lane's, and one ready when the lane's breaks
        pool: AsyncConnectionPool[_Conn] = AsyncConnectionPool(
            conninfo, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False, name="stoker"
        )
        await pool.open()
        self._pool = pool
        self._lane = _Lane(pool, self.where)
        self._statements = _StatementLane(conninfo, self.where)
        self._claims = _StatementLane(conninfo, self.where)

    async def _warn_if_not_durable(self, conn: _Conn) -> None:
        cursor = await conn.execute("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
        fsync, synchronous_commit = await cursor.fetchone() or ("on", "on")
        if fsync == "off":
            log.warning("store: PostgreSQL runs with fsync = off: a crash of its machine can lose "
                        "accepted jobs")  # fmt: skip
        elif synchronous_commit == "off":
            log.warning("store: PostgreSQL runs with synchronous_commit = off: a crash of its machine can "
                        "lose the jobs accepted in its last moments")  # fmt: skip

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        for lane in (self._claims, self._statements):
            if lane is not None:
                await lane.close()
        self._statements = self._claims = None
        if self._lane is not None:
            await self._lane.close()
            self._lane = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # other nodes -----------------------------------------------------------------------------

    def subscribe(
        self,
        *,
        queued_elsewhere: Callable[[str | None], None],
        cancel_asked: Callable[[int], None],
        pauses_changed: Callable[[], Awaitable[None]],
        leases_released: Callable[[], None] | None = None,
    ) -> None:
        """Hear what other stores (other nodes) say: `queued_elsewhere(queue)` when they queue
        jobs of `queue`, `cancel_asked(job_id)` when they are asked to cancel a running job
        (whichever node runs it stops it), `pauses_changed()` when they pause or resume a
        queue or a schedule, `leases_released()` when they give up singleton leases. LISTEN
        on a connection of its own, woken by the server, never polling. After the connection
        is (re)made it calls `queued_elsewhere(None)` and `pauses_changed()`: what was said
        while nobody listened is unknown (a cancel said then is not heard: that job runs to
        its end; a release said then is found at the next renewal)."""
        assert self._listener is None, "one subscriber"
        self._listener = asyncio.create_task(
            self._listen(queued_elsewhere, cancel_asked, pauses_changed, leases_released),
            name="stoker-postgres-listen",
        )

    async def _listen(
        self,
        queued_elsewhere: Callable[[str | None], None],
        cancel_asked: Callable[[int], None],
        pauses_changed: Callable[[], Awaitable[None]],
        leases_released: Callable[[], None] | None,
    ) -> None:
        delay = 0.5
        while True:
            try:
                async with await AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    queued_elsewhere(None)
                    await pauses_changed()
                    async for notice in conn.notifies():
                        origin, kind, what = notice.payload.split(" ", 2)
                        if origin == self._origin:
                            continue
                        if kind == "queued":
                            queued_elsewhere(what)
                        elif kind == "cancel":
                            cancel_asked(int(what))
                        elif kind == "paused":
                            await pauses_changed()
                        elif kind == "leases" and leases_released is not None:
                            leases_released()
            except (psycopg.Error, StoreError) as e:  # StoreError: pauses_changed could not read
                log.warning("store: not hearing other nodes (%s): trying again in %.1fs",
                            _reason(e), delay)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_RETRY_MAX)

    async def join(self, node: str, timeout: float) -> None:
        """Take the name `node` among the daemons sharing the database. StoreError if another
        daemon holds it and is alive (a heartbeat within `timeout`, or, on this host, its
        process): two daemons under one name would re-queue each other's jobs."""
        host, pid = socket.gethostname(), os.getpid()

        async def operation(conn: _Conn) -> tuple[str, int] | None:
            cursor = await conn.execute(
                f"INSERT INTO stoker.nodes (name, member, host, pid, joined_at, heartbeat_at)"
                f" VALUES (%s, %s, %s, %s, {_NOW}, {_NOW}) ON CONFLICT (name) DO UPDATE"
                " SET member = excluded.member, host = excluded.host, pid = excluded.pid,"
                " joined_at = excluded.joined_at, heartbeat_at = excluded.heartbeat_at"
                " WHERE stoker.nodes.heartbeat_at < excluded.heartbeat_at - %s"
                "  OR (stoker.nodes.host = excluded.host AND stoker.nodes.pid = excluded.pid)"
                " RETURNING name",
                (node, self._origin, host, pid, timeout),
            )
            if await cursor.fetchone() is not None:
                return None
            cursor = await conn.execute("SELECT host, pid FROM stoker.nodes WHERE name = %s", (node,))
            holder = await cursor.fetchone()
            return None if holder is None else (holder[0], holder[1])

        holder = await self._do(operation)
        if holder is None:
            return
        if holder[0] == host and not _pid_alive(holder[1]):  # it died here, moments ago: take over
            await self._take_over(node, host, pid)
            return
        raise StoreError(
            f"node {node!r} is already running on {holder[0]} (pid {holder[1]}) with this database: "
            "give each daemon a [daemon] node of its own"
        )

    async def _take_over(self, node: str, host: str, pid: int) -> None:
        async def operation(conn: _Conn) -> None:
            await conn.execute(
                f"UPDATE stoker.nodes SET member = %s, host = %s, pid = %s, joined_at = {_NOW},"
                f" heartbeat_at = {_NOW} WHERE name = %s",
                (self._origin, host, pid, node),
            )

        await self._do(operation)

    async def heartbeat(self, node: str, timeout: float) -> list[str]:
        """Say that `node` (joined by this store) is alive; answer the nodes that have jobs
        running but no heartbeat within `timeout` (dead, or cut off): theirs to re-queue."""

        async def operation(conn: _Conn) -> tuple[bool, list[str]]:
            cursor = await conn.execute(
                f"UPDATE stoker.nodes SET heartbeat_at = {_NOW} WHERE name = %s AND member = %s"
                " RETURNING name",
                (node, self._origin),
            )
            held = await cursor.fetchone() is not None
            cursor = await conn.execute(
                "SELECT DISTINCT node FROM stoker.jobs WHERE state = 'running' AND node IS NOT NULL"
                " AND node NOT IN (SELECT name FROM stoker.nodes"
                f"  WHERE heartbeat_at >= {_NOW} - %s)",
                (timeout,),
            )
            return held, sorted(name for (name,) in await cursor.fetchall())

        held, lapsed = await self._do(operation, durable=False)
        if not held:  # taken for dead, and the name taken by another daemon: it must not go on
            raise StoreError(f"node {node!r} is no longer this daemon's: another daemon took the name")
        return [name for name in lapsed if name != node]

    async def leave(self, node: str) -> None:
        """Give the name up (the daemon stops; its jobs were ended or queued again), and the
        singleton leases it holds (its programs were stopped): the other nodes, told at once,
        take them without waiting for them to lapse."""

        async def operation(conn: _Conn) -> None:
            cursor = await conn.execute(
                "DELETE FROM stoker.nodes WHERE name = %s AND member = %s RETURNING name",
                (node, self._origin),
            )
            if await cursor.fetchone() is not None:
                await self._release(conn, None)

        await self._do(operation)

    async def publish(self, node: str, programs: bytes, version: str) -> None:
        """Store `programs` (a JSON array of program instances) as what `node` (joined by this
        store) runs now, for the other nodes' view; nothing if the name is no longer ours."""
        text = programs.decode()
        if "\\u0000" in text:  # jsonb holds no NUL (a program's status text might carry one)
            text = _json(json.loads(text))

        async def operation(conn: _Conn) -> None:
            await conn.execute(
                f"UPDATE stoker.nodes SET programs = %s::jsonb, published_at = {_NOW}, version = %s"
                " WHERE name = %s AND member = %s",
                (text, version, node, self._origin),
            )

        # not durable: a snapshot lost in a crash of the server is replaced by the next one
        await self._do(operation, durable=False)

    async def nodes(self, forget: float) -> list[NodeRecord]:
        """The nodes heard from within `forget` seconds, by name, with their published programs;
        ages by the server's clock (the nodes' clocks may disagree)."""

        async def operation(conn: _Conn) -> list[NodeRecord]:
            cursor = await conn.execute(
                f"SELECT name, host, pid, joined_at, {_NOW} - heartbeat_at, version, programs::text,"
                f" {_NOW} - published_at FROM stoker.nodes WHERE heartbeat_at >= {_NOW} - %s ORDER BY name",
                (forget,),
            )
            return [
                NodeRecord(name, host, pid, joined_at, max(0.0, silent), version,
                           None if programs is None else programs.encode(), published)
                for (name, host, pid, joined_at, silent, version, programs,
                     published) in await cursor.fetchall()
            ]  # fmt: skip

        return await self._do(operation, durable=False)

    async def renew_leases(
        self, node: str, lease: float, names: Sequence[str], want: Sequence[str], drop: Sequence[str]
    ) -> tuple[dict[str, str], dict[str, float]]:
        """For node `node` (joined by this store): take or renew the leases of the singleton
        programs `want` for `lease` seconds (server clock): each is taken when free or lapsed,
        renewed when `node` holds it, left alone when another node's is live; give up those of
        `drop`. Answer, for `names`, the live leases: (program → holder, program → seconds
        left). StoreError when the name `node` is no longer this store's: it must not renew
        leases for the daemon that took the name over."""

        async def operation(conn: _Conn) -> tuple[dict[str, str], dict[str, float]]:
            # FOR SHARE: a daemon taking the name over waits for this transaction's end
            cursor = await conn.execute(
                "SELECT 1 FROM stoker.nodes WHERE name = %s AND member = %s FOR SHARE", (node, self._origin)
            )
            if await cursor.fetchone() is None:
                raise _NotOurs(node)
            if drop:
                await self._release(conn, drop)
            for name in sorted(want):  # one order on every node: no deadlock between them
                # The row lock decides between nodes taking a lapsed lease at once: the second
                # waits for the first's commit, then finds the lease live and not its own. A
                # lease is renewed by the daemon (member) that took it, not by the node name:
                # a daemon that took the name of one taken for dead waits for that one's
                # leases to lapse, since it may be alive, cut off, and still stopping its copy.
                await conn.execute(
                    f"INSERT INTO stoker.leases AS l (name, holder, member, acquired_at, expires_at)"
                    f" VALUES (%s, %s, %s, {_NOW}, {_NOW} + %s) ON CONFLICT (name) DO UPDATE"
                    " SET holder = excluded.holder, member = excluded.member,"
                    "  expires_at = excluded.expires_at,"
                    "  acquired_at = CASE WHEN l.member = excluded.member THEN l.acquired_at"
                    "   ELSE excluded.acquired_at END"
                    " WHERE l.member = excluded.member OR l.expires_at < excluded.acquired_at",
                    (name, node, self._origin, lease),
                )
            cursor = await conn.execute(
                f"SELECT name, holder, member, expires_at - {_NOW} FROM stoker.leases"
                f" WHERE name = ANY(%s) AND expires_at >= {_NOW}",
                (list(names),),
            )
            holders, remaining = {}, {}
            for name, holder, member, left in await cursor.fetchall():
                if holder == node and member != self._origin:  # this node's name, an earlier daemon
                    holder = f"{node} (its previous daemon)"
                holders[name], remaining[name] = holder, left
            return holders, remaining

        try:
            return await self._do(operation, durable=False)
        except _NotOurs:
            raise StoreError(
                f"node {node!r} is no longer this daemon's: another daemon took the name"
            ) from None

    async def _release(self, conn: _Conn, names: Sequence[str] | None) -> None:
        """Give up this daemon's leases of `names` (None: all), and tell the other nodes."""
        if names is None:
            cursor = await conn.execute(
                "DELETE FROM stoker.leases WHERE member = %s RETURNING name", (self._origin,)
            )
        else:
            cursor = await conn.execute(
                "DELETE FROM stoker.leases WHERE member = %s AND name = ANY(%s) RETURNING name",
                (self._origin, list(names)),
            )
        if await cursor.fetchall():
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._origin} leases -"))

    async def _tell(self, conn: _Conn, queues: Iterable[str]) -> None:
        """Tell the nodes that listen: jobs of `queues` were queued (they hear it at the commit)."""
        for queue in sorted(set(queues)):
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._origin} queued {queue}"))

    def _do(self, operation: Callable[[_Conn], Awaitable[_T]], *, durable: bool = True) -> asyncio.Future[_T]:
        if self._lane is None:
            raise StoreError("the store is not open")
        return self._lane.submit(operation, durable)

    def _statement(
        self, operation: Callable[[_Conn], Awaitable[_T]], *, claim: bool = False
    ) -> asyncio.Future[_T]:
        """Run `operation`, one statement, on a statement lane (`_StatementLane`)."""
        lane = self._claims if claim else self._statements
        if lane is None:
            raise StoreError("the store is not open")
        return lane.submit(operation)

    # jobs ----------------------------------------------------------------------------------

    async def enqueue(
        self, jobs: Sequence[NewJob], now: float, *, durable: bool = True
    ) -> list[tuple[Job, bool]]:
        async def operation(conn: _Conn) -> list[tuple[Job, bool]]:
            if all(new.key is None for new in jobs):  # one round trip for the lot
                stored = [(job, True) for job in await _insert_jobs(conn, jobs, now)]
            else:
                stored = [await _enqueue_one(conn, new, now) for new in jobs]
            await self._tell(conn, (job.queue for job, created in stored if created))
            return stored

        return await self._do(operation, durable=durable)  # relaxed: synchronous_commit = off

    async def due(self, queue: str, limit: int, now: float) -> tuple[list[Job], float | None]:
        async def operation(conn: _Conn) -> tuple[list[Job], float | None]:
            cursor = await conn.execute(DUE, (queue, now, limit))
            jobs = [_job(row) for row in await cursor.fetchall()]
            cursor = await conn.execute(LATER, (queue, now))
            row = await cursor.fetchone()
            return jobs, None if row is None else row[0]

        return await self._do(operation, durable=False)

    def start(self, job: Job, *, begun: bool = False) -> asyncio.Future[Job | None]:
        # (`begun`: never here; jobs are not sent ahead on a shared store)
        # The guard makes the row equal to `job`, so it is not read back.
        async def operation(conn: _Conn) -> Job | None:
            cursor = await conn.execute(START, (job.started_at, job.node, job.id, job.attempt - 1))
            return None if await cursor.fetchone() is None else job

        answer = self._do(operation, durable=False)
        answer.add_done_callback(self._remember_start)
        return answer

    def _remember_start(self, answer: asyncio.Future[Job | None]) -> None:
        if not answer.cancelled() and answer.exception() is None and (job := answer.result()) is not None:
            self._started[(job.id, job.attempt)] = (job.node, job.started_at)

    async def claim(self, queue: str, limit: int, now: float, node: str) -> list[Job]:
        """Start up to `limit` due jobs of `queue` on `node` in one statement, in the order `due`
        reads them; rows another node is claiming at this moment are skipped, not shared."""

        async def operation(conn: _Conn) -> list[Job]:
            cursor = await conn.execute(CLAIM, (now, node, queue, now, limit))
            return self._claimed([_job(row) for row in await cursor.fetchall()])

        return await self._statement(operation, claim=True)

    def _claimed(self, jobs: list[Job]) -> list[Job]:
        for job in jobs:
            self._started[(job.id, job.attempt)] = (job.node, job.started_at)
        return sorted(jobs, key=lambda job: (-job.priority, job.run_at, job.id))

    def finish_and_claim(
        self, job: Job, end: AttemptEnd, queue: str, limit: int, now: float, node: str
    ) -> asyncio.Future[tuple[Job | None, list[Job]]]:
        """`finish(job, end)` and `claim(queue, limit, now, node)` in one statement (one round
        trip where there were two): the job as its end recorded it, and the jobs claimed."""
        owner = self._started.pop((end.job_id, end.attempt), None)

        async def operation(conn: _Conn) -> tuple[Job | None, list[Job]]:
            if owner is None:  # not an attempt this store started: only the claim
                cursor = await conn.execute(CLAIM, (now, node, queue, now, limit))
                return None, self._claimed([_job(row) for row in await cursor.fetchall()])
            cursor = await conn.execute(
                FINISH_AND_CLAIM, (*_end_values(end, *owner), now, node, queue, now, limit)
            )
            rows = await cursor.fetchall()
            ended = [_job(row[1:]) for row in rows if row[0]]
            return (ended[0] if ended else None), self._claimed([_job(row[1:]) for row in rows if not row[0]])

        return self._statement(operation, claim=True)

    def finish(self, job: Job, end: AttemptEnd) -> asyncio.Future[Job | None]:
        # Only an attempt this store started: with several nodes, a node that lost the race for
        # a job (its start answered None) still reports an end for that attempt number, which
        # must not end the attempt the winner is running. (`job` is not trusted to be the row:
        # another node may have written it meanwhile, so the row is read back.)
        owner = self._started.pop((end.job_id, end.attempt), None)
        if owner is None:
            nothing: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
            nothing.set_result(None)
            return nothing
        node, started_at = owner

        async def operation(conn: _Conn) -> Job | None:
            cursor = await conn.execute(FINISH, _end_values(end, node, started_at))
            row = await cursor.fetchone()  # None: not running this attempt (any more), nothing recorded
            return None if row is None else _job(row)

        return self._statement(operation)

    async def get(self, job_id: int) -> Job | None:
        async def operation(conn: _Conn) -> Job | None:
            cursor = await conn.execute(f"SELECT {_JOB_COLUMNS} FROM stoker.jobs WHERE id = %s", (job_id,))
            row = await cursor.fetchone()
            return None if row is None else _job(row)

        return await self._do(operation, durable=False)

    async def attempts(self, job_id: int) -> list[Attempt]:
        async def operation(conn: _Conn) -> list[Attempt]:
            cursor = await conn.execute(
                "SELECT job_id, number, started_at, finished_at, outcome, exit_code, error, node"
                " FROM stoker.attempts WHERE job_id = %s ORDER BY id",
                (job_id,),
            )
            rows = await cursor.fetchall()
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
            "stoker.jobs", "%s", state=state, queue=queue, task=task, limit=limit, before=before
        )

        async def operation(conn: _Conn) -> list[Job]:
            cursor = await conn.execute(sql, args)
            return [_job(row) for row in await cursor.fetchall()]

        return await self._do(operation, durable=False)

    async def cancel(self, job_id: int, now: float) -> Job | None:
        async def operation(conn: _Conn) -> Job | None:
            cursor = await conn.execute(
                "UPDATE stoker.jobs SET state = CASE state WHEN 'queued' THEN 'cancelled' ELSE state END,"
                " finished_at = CASE state WHEN 'queued' THEN %s ELSE finished_at END,"
                " cancel_requested = CASE state WHEN 'running' THEN true ELSE cancel_requested END"
                f" WHERE id = %s RETURNING {_JOB_COLUMNS}",
                (now, job_id),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            job = _job(row)
            if job.state is JobState.RUNNING:  # perhaps on another node: it stops the run
                await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._origin} cancel {job.id}"))
            return job

        return await self._do(operation)

    async def retry(self, job_id: int, now: float) -> Job | None:
        async def operation(conn: _Conn) -> Job | None:
            cursor = await conn.execute(
                "UPDATE stoker.jobs SET state = 'queued', attempt = 0, run_at = %s, finished_at = NULL,"
                " cancel_requested = false"
                f" WHERE id = %s AND state IN ('failed', 'cancelled') RETURNING {_JOB_COLUMNS}",
                (now, job_id),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            job = _job(row)
            await self._tell(conn, [job.queue])
            return job

        return await self._do(operation)

    async def queue_counts(self) -> dict[str, QueueCounts]:
        async def operation(conn: _Conn) -> dict[str, QueueCounts]:
            cursor = await conn.execute(
                "SELECT queue, count(*) FILTER (WHERE state = 'queued'),"
                " count(*) FILTER (WHERE state = 'running')"
                " FROM stoker.jobs WHERE state IN ('queued', 'running') GROUP BY queue"
            )
            return {name: QueueCounts(queued, running) for name, queued, running in await cursor.fetchall()}

        return await self._do(operation, durable=False)

    async def paused_queues(self) -> set[str]:
        return await self._names_in("stoker.paused_queues")

    async def set_paused(self, queue: str, paused: bool) -> None:
        await self._set_member("stoker.paused_queues", queue, paused)

    # paused_queues and paused_schedules: tables of names, a name present = paused
    async def _names_in(self, table: str) -> set[str]:
        async def operation(conn: _Conn) -> set[str]:
            cursor = await conn.execute(f"SELECT name FROM {table}")
            return {name for (name,) in await cursor.fetchall()}

        return await self._do(operation, durable=False)

    async def _set_member(self, table: str, name: str, member: bool) -> None:
        async def operation(conn: _Conn) -> None:
            if member:
                await conn.execute(f"INSERT INTO {table} (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))
            else:
                await conn.execute(f"DELETE FROM {table} WHERE name = %s", (name,))
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._origin} paused -"))

        await self._do(operation)

    async def requeue_running(self, node: str, now: float, reason: str) -> list[int]:
        async def operation(conn: _Conn) -> list[int]:
            # FOR UPDATE: another node requeueing the same lapsed node's jobs waits, then finds none
            cursor = await conn.execute(
                "SELECT id, queue, attempt, started_at, cancel_requested FROM stoker.jobs"
                " WHERE state = 'running' AND node = %s ORDER BY id FOR UPDATE",
                (node,),
            )
            requeued, queues = [], set()
            for job_id, queue, attempt, started_at, cancel_requested in await cursor.fetchall():
                await conn.execute(
                    "INSERT INTO stoker.attempts (job_id, number, started_at, finished_at, outcome, error,"
                    " node) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (job_id, attempt, started_at, now, str(Outcome.INTERRUPTED), reason, node),
                )
                counted = await conn.execute(
                    "SELECT count(*) FROM stoker.attempts WHERE job_id = %s AND outcome = %s AND error = %s",
                    (job_id, str(Outcome.INTERRUPTED), reason),
                )
                (crashes,) = await counted.fetchone() or (0,)
                if cancel_requested:  # asked for while nobody could act on it: it still holds
                    state, error, finished = "cancelled", "cancelled", now
                elif crashes >= MAX_CRASHES:  # perhaps it is what kills the daemon: stop trying
                    error = f"{reason}, {crashes} times: not run again (retry it by hand)"
                    state, finished = "failed", now
                else:
                    state, error, finished = "queued", reason, None
                    requeued.append(job_id)
                    queues.add(queue)
                await conn.execute(
                    "UPDATE stoker.jobs SET state = %s, attempt = attempt - %s, run_at = %s, error = %s,"
                    " finished_at = %s, cancel_requested = false WHERE id = %s",
                    (state, 1 if state == "queued" else 0, now, error, finished, job_id),
                )
            await self._tell(conn, queues)
            return requeued

        return await self._do(operation, durable=False)

    # schedules -----------------------------------------------------------------------------

    async def fire(
        self, schedule: str, slot: float, job: NewJob | None, now: float, reason: str | None = None
    ) -> tuple[bool, Job | None]:
        async def operation(conn: _Conn) -> tuple[bool, Job | None]:
            # the primary key decides: a second node inserting the same slot waits for the first
            # one's transaction, then inserts nothing
            cursor = await conn.execute(
                "INSERT INTO stoker.schedule_slots (schedule, slot, fired_at, outcome, reason)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (schedule, slot, now, "fired" if job is not None else "skipped", None if job else reason),
            )
            if cursor.rowcount != 1:
                return False, None
            if job is None:
                return True, None
            [created] = await _insert_jobs(conn, [job], now)
            await conn.execute(
                "UPDATE stoker.schedule_slots SET job_id = %s WHERE schedule = %s AND slot = %s",
                (created.id, schedule, slot),
            )
            await self._tell(conn, [created.queue])
            return True, created

        return await self._do(operation)

    async def last_slots(self) -> dict[str, SlotRecord]:
        async def operation(conn: _Conn) -> dict[str, SlotRecord]:
            cursor = await conn.execute(
                f"SELECT DISTINCT ON (schedule) schedule, {_SLOT_COLUMNS} FROM stoker.schedule_slots"
                " ORDER BY schedule, slot DESC"
            )
            return {name: SlotRecord(*rest) for name, *rest in await cursor.fetchall()}

        return await self._do(operation, durable=False)

    async def slots(self, schedule: str, limit: int) -> list[SlotRecord]:
        async def operation(conn: _Conn) -> list[SlotRecord]:
            cursor = await conn.execute(
                f"SELECT {_SLOT_COLUMNS} FROM stoker.schedule_slots WHERE schedule = %s"
                " ORDER BY slot DESC LIMIT %s",
                (schedule, limit),
            )
            return [SlotRecord(*row) for row in await cursor.fetchall()]

        return await self._do(operation, durable=False)

    async def latest_job_of(self, schedule: str) -> Job | None:
        async def operation(conn: _Conn) -> Job | None:
            cursor = await conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM stoker.jobs WHERE schedule = %s ORDER BY id DESC LIMIT 1",
                (schedule,),
            )
            row = await cursor.fetchone()
            return None if row is None else _job(row)

        return await self._do(operation, durable=False)

    async def paused_schedules(self) -> set[str]:
        return await self._names_in("stoker.paused_schedules")

    async def set_schedule_paused(self, schedule: str, paused: bool) -> None:
        await self._set_member("stoker.paused_schedules", schedule, paused)

    async def prune(self, finished_before: float, limit: int) -> list[int]:
        async def operation(conn: _Conn) -> list[int]:
            cursor = await conn.execute(
                "DELETE FROM stoker.jobs WHERE id IN (SELECT id FROM stoker.jobs WHERE finished_at < %s"
                " AND state IN ('succeeded', 'failed', 'cancelled') LIMIT %s) RETURNING id",
                (finished_before, limit),
            )
            return [row[0] for row in await cursor.fetchall()]

        return await self._do(operation, durable=False)


def _end_values(end: AttemptEnd, node: str | None, started_at: float | None) -> tuple[Any, ...]:
    """The parameters of `_ENDED` for `end` of the attempt `node` started at `started_at`."""
    finished = end.next.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
    return (
        str(end.next.state),
        end.next.run_at,
        0 if end.next.counts else 1,
        end.finished_at if finished else None,
        end.exit_code,
        _text(end.error),
        _text(end.output),
        _json(end.result) if end.has_result else None,
        end.job_id,
        end.attempt,
        node,
        started_at,
        end.attempt,
        end.finished_at,
        str(end.outcome),
        end.exit_code,
        _text(end.error),
    )


def _job_values(new: NewJob, now: float) -> tuple[Any, ...]:
    return (new.task, new.queue, _json(new.params), new.priority, new.max_attempts, new.run_at, now, new.key,
            new.schedule, new.slot)  # fmt: skip


async def _insert_jobs(conn: _Conn, jobs: Sequence[NewJob], now: float) -> list[Job]:
    """Insert jobs that have no key, in one pipelined round trip; the jobs in their order."""
    cursor = conn.cursor()
    await cursor.executemany(
        f"{_INSERT_JOB} RETURNING {_JOB_COLUMNS}", [_job_values(new, now) for new in jobs], returning=True
    )
    inserted = []
    while True:  # one result set per job, in order
        row = await cursor.fetchone()
        assert row is not None
        inserted.append(_job(row))
        if not cursor.nextset():
            return inserted


async def _enqueue_one(conn: _Conn, new: NewJob, now: float) -> tuple[Job, bool]:
    """Insert `new`, or answer the live job that has its key (and False)."""
    while True:
        if new.key is not None:
            cursor = await conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM stoker.jobs WHERE key = %s AND {_LIVE_KEY}", (new.key,)
            )
            row = await cursor.fetchone()
            if row is not None:
                return _job(row), False
        # Another node may insert the same key between the two statements: then the unique index
        # makes this insert wait for its commit and insert nothing, and the select finds it.
        cursor = await conn.execute(
            f"{_INSERT_JOB} ON CONFLICT (key) WHERE {_LIVE_KEY} DO NOTHING RETURNING {_JOB_COLUMNS}",
            _job_values(new, now),
        )
        row = await cursor.fetchone()
        if row is not None:
            return _job(row), True


async def _migrate(conn: _Conn) -> int:
    async with conn.transaction():
        # Nodes starting at once take turns here; the lock ends with the transaction.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE SCHEMA IF NOT EXISTS stoker;"
            " CREATE TABLE IF NOT EXISTS stoker.schema_version (version integer NOT NULL)"
        )
        cursor = await conn.execute("SELECT version FROM stoker.schema_version")
        row = await cursor.fetchone()
        version = 0 if row is None else row[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"the database is at schema version {version}, newer than this stoker knows "
                f"({len(MIGRATIONS)}): upgrade stoker"
            )
        for number in range(version, len(MIGRATIONS)):
            await conn.execute(MIGRATIONS[number])  # several statements: possible without parameters
            log.info("store: PostgreSQL schema migrated to version %d", number + 1)
        if row is None:
            await conn.execute("INSERT INTO stoker.schema_version (version) VALUES (%s)", (len(MIGRATIONS),))
        elif version < len(MIGRATIONS):
            await conn.execute("UPDATE stoker.schema_version SET version = %s", (len(MIGRATIONS),))
    return len(MIGRATIONS)
