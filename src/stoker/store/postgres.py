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

Length: one class, the Store protocol's every operation on PostgreSQL, each a few lines of
SQL use beside its Python; its statements and migrations are in postgres_sql.py and the lanes
that carry them in postgres_lanes.py. Split further, an operation would be read in two places.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

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
    listing_query,
)
from stoker.store.postgres_lanes import Conn, Lane, StatementLane, reason
from stoker.store.postgres_sql import (
    CLAIM,
    DUE,
    FINISH,
    FINISH_AND_CLAIM,
    LATER,
    NOW,
    SLOT_COLUMNS,
    START,
    end_values,
    enqueue_one,
    insert_jobs,
    job_of,
    migrate,
    pg_json,
)

log = logging.getLogger("stoker")

_T = TypeVar("_T")
CONNECT_TIMEOUT = 10  # seconds, unless the URL sets connect_timeout
MAX_CRASHES = 3  # as in the SQLite store: a job running when its daemon died this often is not run again
# NOTIFY "<origin> queued <queue>", "<origin> cancel <job id>", "<origin> paused -", "<origin> leases -"
CHANNEL = "stoker_jobs"
LISTEN_RETRY_MAX = 30.0  # seconds between attempts to listen again, at most


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


class _NotOurs(Exception):
    """A node name this store no longer holds (an operation's own failure, not the batch's)."""


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.where = describe(url)
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._lane: Lane | None = None
        # Claims and attempt ends have a lane of their own (`StatementLane`). Nothing orders
        # them after an operation still in the main lane, nor the other way round: a claim takes
        # only queued, due rows, an end only the row of the attempt this store started; an
        # enqueue, a retry or a cancel that must come first has been answered (committed) before
        # the dispatcher claims or ends anything it affects.
        self._statements: StatementLane | None = None
        self._claims: StatementLane | None = None  # (claims apart: a freed slot waits for no end)
        # (job id, attempt) → (node, started_at) of each attempt this store started and has not
        # seen end: whose attempt an end belongs to
        self._started: dict[tuple[int, int], tuple[str | None, float | None]] = {}
        # the node timeout of join() and heartbeat(): a claim of a node taken for dead takes nothing
        self._node_timeout = math.inf
        # (this machine's monotonic clock when sent, the server's wall clock, the monotonic
        # when answered) at the last join or heartbeat: stoker/skew.py
        self.clock_reading: tuple[float, float, float] | None = None
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
            raise StoreError(f"cannot connect to PostgreSQL ({self.where}): {reason(e)}") from None
        try:
            await migrate(conn)
            await self._warn_if_not_durable(conn)
        except psycopg.Error as e:
            raise StoreError(f"PostgreSQL ({self.where}): {reason(e)}") from None
        finally:
            await conn.close()
        # two connections: the lane's, and one ready when the lane's breaks
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            conninfo, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False, name="stoker"
        )
        await pool.open()
        self._pool = pool
        self._lane = Lane(pool, self.where)
        self._statements = StatementLane(conninfo, self.where)
        self._claims = StatementLane(conninfo, self.where)

    async def _warn_if_not_durable(self, conn: Conn) -> None:
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
                            reason(e), delay)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_RETRY_MAX)

    async def join(self, node: str, timeout: float) -> None:
        """Take the name `node` among the daemons sharing the database. StoreError if another
        daemon holds it and is alive (a heartbeat within `timeout`, or, on this host, its
        process): two daemons under one name would re-queue each other's jobs."""
        self._node_timeout = timeout
        host, pid = socket.gethostname(), os.getpid()

        async def operation(conn: Conn) -> tuple[str, int] | None:
            sent = time.monotonic()
            cursor = await conn.execute(
                f"INSERT INTO stoker.nodes (name, member, host, pid, joined_at, heartbeat_at)"
                f" VALUES (%s, %s, %s, %s, {NOW}, {NOW}) ON CONFLICT (name) DO UPDATE"
                " SET member = excluded.member, host = excluded.host, pid = excluded.pid,"
                " joined_at = excluded.joined_at, heartbeat_at = excluded.heartbeat_at"
                " WHERE stoker.nodes.heartbeat_at < excluded.heartbeat_at - %s"
                "  OR (stoker.nodes.host = excluded.host AND stoker.nodes.pid = excluded.pid)"
                f" RETURNING {NOW}",
                (node, self._origin, host, pid, timeout),
            )
            if (row := await cursor.fetchone()) is not None:
                self.clock_reading = (sent, float(row[0]), time.monotonic())  # as the heartbeat's
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
        async def operation(conn: Conn) -> None:
            await conn.execute(
                f"UPDATE stoker.nodes SET member = %s, host = %s, pid = %s, joined_at = {NOW},"
                f" heartbeat_at = {NOW} WHERE name = %s",
                (self._origin, host, pid, node),
            )

        await self._do(operation)

    async def heartbeat(self, node: str, timeout: float) -> list[str]:
        """Say that `node` (joined by this store) is alive; answer the nodes that have jobs
        running but no heartbeat within `timeout` (dead, or cut off): theirs to re-queue."""
        self._node_timeout = timeout

        async def operation(conn: Conn) -> tuple[bool, list[str]]:
            sent = time.monotonic()
            cursor = await conn.execute(
                f"UPDATE stoker.nodes SET heartbeat_at = {NOW} WHERE name = %s AND member = %s"
                f" RETURNING {NOW}",
                (node, self._origin),
            )
            row = await cursor.fetchone()
            held = row is not None
            if row is not None:  # the server's clock, read within this round trip (stoker/skew.py)
                self.clock_reading = (sent, float(row[0]), time.monotonic())
            cursor = await conn.execute(
                "SELECT DISTINCT node FROM stoker.jobs WHERE state = 'running' AND node IS NOT NULL"
                " AND node NOT IN (SELECT name FROM stoker.nodes"
                f"  WHERE heartbeat_at >= {NOW} - %s)",
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

        async def operation(conn: Conn) -> None:
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
            text = pg_json(json.loads(text))

        async def operation(conn: Conn) -> None:
            await conn.execute(
                f"UPDATE stoker.nodes SET programs = %s::jsonb, published_at = {NOW}, version = %s"
                " WHERE name = %s AND member = %s",
                (text, version, node, self._origin),
            )

        # not durable: a snapshot lost in a crash of the server is replaced by the next one
        await self._do(operation, durable=False)

    async def nodes(self, forget: float) -> list[NodeRecord]:
        """The nodes heard from within `forget` seconds, by name, with their published programs;
        ages by the server's clock (the nodes' clocks may disagree)."""

        async def operation(conn: Conn) -> list[NodeRecord]:
            cursor = await conn.execute(
                f"SELECT name, host, pid, joined_at, {NOW} - heartbeat_at, version, programs::text,"
                f" {NOW} - published_at FROM stoker.nodes WHERE heartbeat_at >= {NOW} - %s ORDER BY name",
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

        async def operation(conn: Conn) -> tuple[dict[str, str], dict[str, float]]:
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
                    f" VALUES (%s, %s, %s, {NOW}, {NOW} + %s) ON CONFLICT (name) DO UPDATE"
                    " SET holder = excluded.holder, member = excluded.member,"
                    "  expires_at = excluded.expires_at,"
                    "  acquired_at = CASE WHEN l.member = excluded.member THEN l.acquired_at"
                    "   ELSE excluded.acquired_at END"
                    " WHERE l.member = excluded.member OR l.expires_at < excluded.acquired_at",
                    (name, node, self._origin, lease),
                )
            cursor = await conn.execute(
                f"SELECT name, holder, member, expires_at - {NOW} FROM stoker.leases"
                f" WHERE name = ANY(%s) AND expires_at >= {NOW}",
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

    async def _release(self, conn: Conn, names: Sequence[str] | None) -> None:
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

    async def _tell(self, conn: Conn, queues: Iterable[str]) -> None:
        """Tell the nodes that listen: jobs of `queues` were queued (they hear it at the commit)."""
        for queue in sorted(set(queues)):
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._origin} queued {queue}"))

    def _do(self, operation: Callable[[Conn], Awaitable[_T]], *, durable: bool = True) -> asyncio.Future[_T]:
        if self._lane is None:
            raise StoreError("the store is not open")
        return self._lane.submit(operation, durable)

    def _statement(
        self, operation: Callable[[Conn], Awaitable[_T]], *, claim: bool = False
    ) -> asyncio.Future[_T]:
        """Run `operation`, one statement, on a statement lane (`StatementLane`)."""
        lane = self._claims if claim else self._statements
        if lane is None:
            raise StoreError("the store is not open")
        return lane.submit(operation)

    # jobs ----------------------------------------------------------------------------------

    async def enqueue(
        self, jobs: Sequence[NewJob], now: float, *, durable: bool = True
    ) -> list[tuple[Job, bool]]:
        async def operation(conn: Conn) -> list[tuple[Job, bool]]:
            if all(new.key is None for new in jobs):  # one round trip for the lot
                stored = [(job, True) for job in await insert_jobs(conn, jobs, now)]
            else:
                stored = [await enqueue_one(conn, new, now) for new in jobs]
            await self._tell(conn, (job.queue for job, created in stored if created))
            return stored

        return await self._do(operation, durable=durable)  # relaxed: synchronous_commit = off

    async def due(self, queue: str, limit: int, now: float) -> tuple[list[Job], float | None]:
        async def operation(conn: Conn) -> tuple[list[Job], float | None]:
            cursor = await conn.execute(DUE, (queue, now, limit))
            jobs = [job_of(row) for row in await cursor.fetchall()]
            cursor = await conn.execute(LATER, (queue, now))
            row = await cursor.fetchone()
            return jobs, None if row is None else row[0]

        return await self._do(operation, durable=False)

    def start(self, job: Job, *, begun: bool = False) -> asyncio.Future[Job | None]:
        # (`begun`: never here; jobs are not sent ahead on a shared store)
        # The guard makes the row equal to `job`, so it is not read back.
        async def operation(conn: Conn) -> Job | None:
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

        async def operation(conn: Conn) -> list[Job]:
            cursor = await conn.execute(CLAIM, (now, node, queue, now, node, self._node_timeout, limit))
            return self._claimed([job_of(row) for row in await cursor.fetchall()])

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

        async def operation(conn: Conn) -> tuple[Job | None, list[Job]]:
            if owner is None:  # not an attempt this store started: only the claim
                cursor = await conn.execute(CLAIM, (now, node, queue, now, node, self._node_timeout, limit))
                return None, self._claimed([job_of(row) for row in await cursor.fetchall()])
            cursor = await conn.execute(
                FINISH_AND_CLAIM,
                (*end_values(end, *owner), now, node, queue, now, node, self._node_timeout, limit),
            )
            rows = await cursor.fetchall()
            ended = [job_of(row[1:]) for row in rows if row[0]]
            claimed = [job_of(row[1:]) for row in rows if not row[0]]
            return (ended[0] if ended else None), self._claimed(claimed)

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

        async def operation(conn: Conn) -> Job | None:
            cursor = await conn.execute(FINISH, end_values(end, node, started_at))
            row = await cursor.fetchone()  # None: not running this attempt (any more), nothing recorded
            return None if row is None else job_of(row)

        return self._statement(operation)

    async def get(self, job_id: int) -> Job | None:
        async def operation(conn: Conn) -> Job | None:
            cursor = await conn.execute(f"SELECT {_JOB_COLUMNS} FROM stoker.jobs WHERE id = %s", (job_id,))
            row = await cursor.fetchone()
            return None if row is None else job_of(row)

        return await self._do(operation, durable=False)

    async def attempts(self, job_id: int) -> list[Attempt]:
        async def operation(conn: Conn) -> list[Attempt]:
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

        async def operation(conn: Conn) -> list[Job]:
            cursor = await conn.execute(sql, args)
            return [job_of(row) for row in await cursor.fetchall()]

        return await self._do(operation, durable=False)

    async def cancel(self, job_id: int, now: float) -> Job | None:
        async def operation(conn: Conn) -> Job | None:
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
            job = job_of(row)
            if job.state is JobState.RUNNING:  # perhaps on another node: it stops the run
                await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._origin} cancel {job.id}"))
            return job

        return await self._do(operation)

    async def retry(self, job_id: int, now: float) -> Job | None:
        async def operation(conn: Conn) -> Job | None:
            cursor = await conn.execute(
                "UPDATE stoker.jobs SET state = 'queued', attempt = 0, run_at = %s, finished_at = NULL,"
                " cancel_requested = false"
                f" WHERE id = %s AND state IN ('failed', 'cancelled') RETURNING {_JOB_COLUMNS}",
                (now, job_id),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            job = job_of(row)
            await self._tell(conn, [job.queue])
            return job

        return await self._do(operation)

    async def queue_counts(self) -> dict[str, QueueCounts]:
        async def operation(conn: Conn) -> dict[str, QueueCounts]:
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
        async def operation(conn: Conn) -> set[str]:
            cursor = await conn.execute(f"SELECT name FROM {table}")
            return {name for (name,) in await cursor.fetchall()}

        return await self._do(operation, durable=False)

    async def _set_member(self, table: str, name: str, member: bool) -> None:
        async def operation(conn: Conn) -> None:
            if member:
                await conn.execute(f"INSERT INTO {table} (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))
            else:
                await conn.execute(f"DELETE FROM {table} WHERE name = %s", (name,))
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._origin} paused -"))

        await self._do(operation)

    async def requeue_running(self, node: str, now: float, reason: str, *, crashed: bool = True) -> list[int]:
        async def operation(conn: Conn) -> list[int]:
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
                elif crashed and crashes >= MAX_CRASHES:  # perhaps it is what kills the daemon: stop trying
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
        async def operation(conn: Conn) -> tuple[bool, Job | None]:
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
            [created] = await insert_jobs(conn, [job], now)
            await conn.execute(
                "UPDATE stoker.schedule_slots SET job_id = %s WHERE schedule = %s AND slot = %s",
                (created.id, schedule, slot),
            )
            await self._tell(conn, [created.queue])
            return True, created

        return await self._do(operation)

    async def last_slots(self) -> dict[str, SlotRecord]:
        async def operation(conn: Conn) -> dict[str, SlotRecord]:
            cursor = await conn.execute(
                f"SELECT DISTINCT ON (schedule) schedule, {SLOT_COLUMNS} FROM stoker.schedule_slots"
                " ORDER BY schedule, slot DESC"
            )
            return {name: SlotRecord(*rest) for name, *rest in await cursor.fetchall()}

        return await self._do(operation, durable=False)

    async def slots(self, schedule: str, limit: int) -> list[SlotRecord]:
        async def operation(conn: Conn) -> list[SlotRecord]:
            cursor = await conn.execute(
                f"SELECT {SLOT_COLUMNS} FROM stoker.schedule_slots WHERE schedule = %s"
                " ORDER BY slot DESC LIMIT %s",
                (schedule, limit),
            )
            return [SlotRecord(*row) for row in await cursor.fetchall()]

        return await self._do(operation, durable=False)

    async def latest_job_of(self, schedule: str) -> Job | None:
        async def operation(conn: Conn) -> Job | None:
            cursor = await conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM stoker.jobs WHERE schedule = %s ORDER BY id DESC LIMIT 1",
                (schedule,),
            )
            row = await cursor.fetchone()
            return None if row is None else job_of(row)

        return await self._do(operation, durable=False)

    async def paused_schedules(self) -> set[str]:
        return await self._names_in("stoker.paused_schedules")

    async def set_schedule_paused(self, schedule: str, paused: bool) -> None:
        await self._set_member("stoker.paused_schedules", schedule, paused)

    async def prune(self, finished_before: float, limit: int) -> list[int]:
        async def operation(conn: Conn) -> list[int]:
            cursor = await conn.execute(
                "DELETE FROM stoker.jobs WHERE id IN (SELECT id FROM stoker.jobs WHERE finished_at < %s"
                " AND state IN ('succeeded', 'failed', 'cancelled') LIMIT %s) RETURNING id",
                (finished_before, limit),
            )
            return [row[0] for row in await cursor.fetchall()]

        return await self._do(operation, durable=False)

    async def prune_slots(self, fired_before: float, limit: int) -> int:
        async def operation(conn: Conn) -> int:
            cursor = await conn.execute(
                "DELETE FROM stoker.schedule_slots WHERE (schedule, slot) IN (SELECT s.schedule, s.slot"
                " FROM stoker.schedule_slots s WHERE s.fired_at < %s AND s.slot < (SELECT max(m.slot)"
                " FROM stoker.schedule_slots m WHERE m.schedule = s.schedule) LIMIT %s)",
                (fired_before, limit),
            )
            return cursor.rowcount

        return await self._do(operation, durable=False)
