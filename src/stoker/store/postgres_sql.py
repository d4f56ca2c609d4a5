"""The PostgreSQL store's SQL: its schema's migrations, the statements its operations run, and
the conversions between stoker's values and the rows (jsonb holds neither NUL nor NaN).

Kept apart from the store's class so that the database's side can be read in one place: what a
node's claim, an attempt's end and an enqueue do to the tables, statement by statement.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from stoker.jobstates import JobState
from stoker.store.base import JOB_COLUMNS as _JOB_COLUMNS
from stoker.store.base import AttemptEnd, Job, NewJob, StoreError, job_from_row

log = logging.getLogger("stoker")

Conn = AsyncConnection[tuple[Any, ...]]
MIGRATION_LOCK = 0x73746F6B6572  # pg_advisory_xact_lock key: "stoker" in ASCII

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
SLOT_COLUMNS = "slot, outcome, job_id, reason, fired_at"  # SlotRecord's fields, in order

LIVE_KEY = "key IS NOT NULL AND state IN ('queued', 'running')"  # jobs_live_key's predicate

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
# A node taken for dead claims nothing (its heartbeat older than the node timeout, the second
# pair of parameters): the others may be queueing its jobs again at this moment (issue 21).
CLAIM = (
    "UPDATE stoker.jobs SET state = 'running', attempt = attempt + 1, started_at = %s, node = %s,"
    " finished_at = NULL, exit_code = NULL"
    " WHERE id IN (SELECT id FROM stoker.jobs WHERE state = 'queued' AND queue = %s AND run_at <= %s"
    "  AND NOT EXISTS (SELECT 1 FROM stoker.nodes WHERE name = %s"
    "   AND heartbeat_at < extract(epoch FROM clock_timestamp())::float8 - %s)"
    "  ORDER BY priority DESC, run_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
    f" RETURNING {_JOB_COLUMNS}"
)
# An attempt's end: the job's row and the attempt's record in one statement (one round trip),
# the record only if the row was running that attempt.
ENDED = (
    "ended AS (UPDATE stoker.jobs SET state = %s, run_at = COALESCE(%s, run_at),"
    " attempt = attempt - %s, finished_at = %s, exit_code = %s, error = %s, output = %s,"
    " result = %s::jsonb, cancel_requested = false"
    " WHERE id = %s AND state = 'running' AND attempt = %s AND node = %s AND started_at = %s"
    f" RETURNING {_JOB_COLUMNS}),"
    " recorded AS (INSERT INTO stoker.attempts (job_id, number, started_at, finished_at, outcome,"
    " exit_code, error, node) SELECT id, %s, started_at, %s, %s, %s, %s, node FROM ended)"
)
FINISH = f"WITH {ENDED} SELECT {_JOB_COLUMNS} FROM ended"
# An end and the claim of the slot it frees, one statement: the ended job's row (if it was
# running that attempt) first, marked true, then the claimed ones. The claim cannot take the
# ended row (one statement sees one snapshot, in which that row is running).
FINISH_AND_CLAIM = (
    f"WITH {ENDED}, claimed AS ({CLAIM})"
    f" SELECT true, {_JOB_COLUMNS} FROM ended UNION ALL SELECT false, {_JOB_COLUMNS} FROM claimed"
)
INSERT_JOB = (
    "INSERT INTO stoker.jobs (task, queue, state, params, priority, max_attempts, run_at, created_at, key,"
    " schedule, slot) VALUES (%s, %s, 'queued', %s::jsonb, %s, %s, %s, %s, %s, %s, %s)"
)

NOW = "extract(epoch FROM clock_timestamp())::float8"  # the server's clock, for heartbeats


def job_of(row: tuple[Any, ...]) -> Job:
    return job_from_row(row, as_is)  # (params and result: jsonb, decoded by psycopg)


def as_is(value: Any) -> Any:
    return value


def pg_text(value: str | None) -> str | None:
    """PostgreSQL's text cannot hold NUL, which a program's output may: it becomes U+FFFD."""
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


def pg_json(value: Any) -> str:
    """`value` as JSON that jsonb accepts: it holds neither NUL in a string (U+FFFD instead) nor
    NaN or ±Infinity, which Python's json writes and SQLite keeps (null instead)."""
    text = json.dumps(value, separators=(",", ":"))
    if "\\u0000" in text or "NaN" in text or "Infinity" in text:  # rare: look closer
        text = json.dumps(jsonb_safe(value), separators=(",", ":"), allow_nan=False)
    return text


def jsonb_safe(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {jsonb_safe(str(k)): jsonb_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonb_safe(v) for v in value]
    return value


def end_values(end: AttemptEnd, node: str | None, started_at: float | None) -> tuple[Any, ...]:
    """The parameters of `ENDED` for `end` of the attempt `node` started at `started_at`."""
    finished = end.next.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
    return (
        str(end.next.state),
        end.next.run_at,
        0 if end.next.counts else 1,
        end.finished_at if finished else None,
        end.exit_code,
        pg_text(end.error),
        pg_text(end.output),
        pg_json(end.result) if end.has_result else None,
        end.job_id,
        end.attempt,
        node,
        started_at,
        end.attempt,
        end.finished_at,
        str(end.outcome),
        end.exit_code,
        pg_text(end.error),
    )


def job_values(new: NewJob, now: float) -> tuple[Any, ...]:
    return (new.task, new.queue, pg_json(new.params), new.priority, new.max_attempts, new.run_at, now,
            new.key, new.schedule, new.slot)  # fmt: skip


async def insert_jobs(conn: Conn, jobs: Sequence[NewJob], now: float) -> list[Job]:
    """Insert jobs that have no key, in one pipelined round trip; the jobs in their order."""
    cursor = conn.cursor()
    await cursor.executemany(
        f"{INSERT_JOB} RETURNING {_JOB_COLUMNS}", [job_values(new, now) for new in jobs], returning=True
    )
    inserted = []
    while True:  # one result set per job, in order
        row = await cursor.fetchone()
        assert row is not None
        inserted.append(job_of(row))
        if not cursor.nextset():
            return inserted


async def enqueue_one(conn: Conn, new: NewJob, now: float) -> tuple[Job, bool]:
    """Insert `new`, or answer the live job that has its key (and False)."""
    while True:
        if new.key is not None:
            cursor = await conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM stoker.jobs WHERE key = %s AND {LIVE_KEY}", (new.key,)
            )
            row = await cursor.fetchone()
            if row is not None:
                return job_of(row), False
        # Another node may insert the same key between the two statements: then the unique index
        # makes this insert wait for its commit and insert nothing, and the select finds it.
        cursor = await conn.execute(
            f"{INSERT_JOB} ON CONFLICT (key) WHERE {LIVE_KEY} DO NOTHING RETURNING {_JOB_COLUMNS}",
            job_values(new, now),
        )
        row = await cursor.fetchone()
        if row is not None:
            return job_of(row), True


async def migrate(conn: Conn) -> int:
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
