"""The JSON shapes of the HTTP API (and of `--json`), as msgspec types.

The same types encode responses, decode requests and generate the OpenAPI document, so the
document cannot drift from what the daemon really sends.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec


class CrashLoop(msgspec.Struct, kw_only=True):
    """An instance's unexpected ends since its last stable run (stoker.supervise.state)."""

    exits: int
    seconds: float  # from the first of them to the latest


class ProgramInstance(msgspec.Struct, kw_only=True):
    name: str
    program: str
    instance: int
    state: str  # stopped starting running backoff stopping exited fatal
    pid: int | None
    exit_code: int | None
    restarts: int
    started_at: dt.datetime | None
    uptime: float | None
    memory: int | None
    node: str
    error: str | None
    waiting_for: list[str] = []  # programs it waits for before it starts (depends_on)
    status_text: str | None = None  # the program's own last sd_notify STATUS=
    stopped_by_hand: bool = False  # stays stopped, across daemon restarts, until started by hand
    cpu: float | None = None  # percent of one core since the previous look (api/usage.py)
    # the cluster view (?all_nodes=1) only, for another node's instances: seconds since that node
    # last heartbeated (null: this daemon's own, live), and whether that is over node_timeout
    # (lapsed: this is the last state it published, not known to hold)
    node_silent_for: float | None = None
    node_lapsed: bool = False
    singleton: bool = False  # one node of the cluster runs it at a time
    holder: str | None = None  # a singleton's node: the one that holds its lease (None: nobody, or unknown)
    placement: str | None = None  # why this node keeps it stopped: `nodes`, or a singleton held elsewhere
    crash_loop: CrashLoop | None = None  # in a crash loop (restarts back off): its exits so far
    retry_at: dt.datetime | None = None  # in backoff: when it tries again


class DaemonStatus(msgspec.Struct, kw_only=True):
    version: str
    node: str
    pid: int
    uptime: float
    started_at: dt.datetime
    store: str
    config: str
    state_dir: str
    programs: int
    instances: int


class Node(msgspec.Struct, kw_only=True):
    """A daemon sharing the store (PostgreSQL); on SQLite, only this one."""

    name: str
    local: bool  # this daemon
    alive: bool  # heard from within node_timeout
    silent_for: float | None  # seconds since its last heartbeat (the store's clock); null for this daemon
    host: str | None
    pid: int | None
    version: str | None  # of stoker, as it last published
    joined_at: dt.datetime | None  # when it took its name (this daemon: when it started)
    instances: int  # program instances it runs (as it last published)
    states: dict[str, int]  # instances per state


class SignalRequest(msgspec.Struct, forbid_unknown_fields=True):
    signal: str | int


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    param: str | None = None  # invalid_params: the parameter at fault, when there is one
    index: int | None = None  # a batch: the item of `params` at fault (nothing was stored)


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class Accepted(msgspec.Struct):
    ok: bool
    message: str


class Job(msgspec.Struct, kw_only=True):
    id: int
    task: str
    queue: str
    state: str  # queued running succeeded failed cancelled
    params: dict[str, Any]
    priority: int
    attempt: int
    max_attempts: int
    run_at: dt.datetime
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    exit_code: int | None
    error: str | None
    output: str | None
    result: Any
    key: str | None
    node: str | None
    schedule: str | None
    slot: dt.datetime | None = None  # the schedule slot it fired for


class Attempt(msgspec.Struct, kw_only=True):
    number: int
    started_at: dt.datetime | None
    finished_at: dt.datetime
    outcome: str  # succeeded failed "timed out" cancelled interrupted
    exit_code: int | None
    error: str | None
    node: str | None


class JobDetail(Job, kw_only=True):
    """One job with the record of every attempt that has ended."""

    attempts: list[Attempt]


# What SQLite's INTEGER holds: a priority past it would be refused by the store (a 500), not here.
Priority = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]

# A job's parameters: an object, or an empty array meaning none, since that is what PHP's
# json_encode makes of an empty array (`['params' => []]`), and PHP apps are a main caller.
NoParams = Annotated[list[Any], msgspec.Meta(max_length=0, description="no parameters (PHP's [])")]
Params = dict[str, Any] | NoParams


class TaskOnly(msgspec.Struct):
    """The task an enqueue request names, read on its own so that an unknown task is the
    error reported, not the shape of parameters it could never take."""

    task: str


class EnqueueRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    task: str
    params: Params = {}
    run_at: str | None = None  # ISO 8601; without an offset, the daemon's local time
    delay: str | float | None = None  # "5m" or seconds
    key: str | None = None
    priority: Priority = 0


class EnqueueManyRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Many jobs of one task in one transaction: each item of `params` is one job's parameters."""

    task: str
    params: list[Params]
    run_at: str | None = None
    delay: str | float | None = None
    priority: Priority = 0


class Queue(msgspec.Struct, kw_only=True):
    name: str
    concurrency: int
    paused: bool
    queued: int
    running: int
    done_per_minute: int = 0  # jobs that ended succeeded on this node in the last 60 s
    failed_per_minute: int = 0  # jobs that ended failed (no attempt left) on this node in the last 60 s
    durability: str = "durable"  # or "relaxed": [queues.NAME] durability (docs/enqueue.md)


class TaskParam(msgspec.Struct, kw_only=True):
    """One parameter of a task and the rules its value must meet (null: no such rule)."""

    name: str
    type: str  # "string", "int", "number", "bool"; "any": an extra listed in `params = [...]`
    required: bool
    default: Any = None  # the value a job gets when it is not given (null: none)
    choices: list[Any] | None = None
    pattern: str | None = None  # a regular expression (Python's) the whole value must match
    min: int | float | None = None
    max: int | float | None = None
    max_length: int | None = None
    description: str | None = None
    allow_option: bool = False  # the value may begin a command argument with '-'
    extra: bool = False  # not in the command's argv (the program reads STOKER_JOB_PARAMS)


class Task(msgspec.Struct, kw_only=True):
    """A task of the config: what a job may run, and the parameters it takes."""

    name: str
    kind: str  # "command" or "call"
    queue: str
    required: list[str]  # parameters it needs (a command's {placeholders} without a default)
    optional: list[str]  # parameters it also accepts
    open_ended: bool  # a call task without `params`: any keyword parameters
    params: list[TaskParam]  # every parameter it takes, with its rules
    max_attempts: int
    timeout: float | None  # seconds


class Schedule(msgspec.Struct, kw_only=True):
    name: str
    trigger: str  # "every 30m" or "cron */30 * * * *"
    timezone: str | None
    task: str
    paused: bool
    next_run: dt.datetime | None
    last_run: dt.datetime | None
    last_state: str | None  # the state of its latest job, or "skipped"
    last_job: int | None
    last_reason: str | None = None  # why the latest slot was skipped
    when_file: str | None = None  # its slots run only while this file exists (as in the config)


class ScheduleSlot(msgspec.Struct, kw_only=True):
    """One recorded slot of a schedule: its history."""

    slot: dt.datetime
    state: str  # its job's state, "skipped" (no job ran), or "pruned" (its job was deleted)
    job: int | None
    reason: str | None  # why it was skipped
    recorded_at: dt.datetime | None  # when it was fired or skipped


Series = dict[str, list[float | None]]  # figure → its points, one per slot (null: none)


class History(msgspec.Struct, kw_only=True):
    """`GET /api/v1/history` (stoker.history): the points of the range's slots, oldest first."""

    range: str  # 1h | 6h | 24h
    step: int  # seconds per slot: 10 for 1h, 120 for 6h and 24h
    times: list[float]  # each slot's start, epoch seconds; the last slot is still open
    omitted: int  # names not kept (more than 32 queues, programs or schedules)
    # by name: enqueued started succeeded failed (jobs in the slot), depth (most queued),
    # wait_p50 wait_p95 (seconds from due to start), run_p50 run_p95 (seconds an attempt ran)
    queues: dict[str, Series]
    # by name: memory (bytes, the most), cpu (percent of one core), running (instances),
    # restarts, changes (state changes)
    programs: dict[str, Series]
    # by name: lateness (seconds, the most), succeeded, failed (its jobs that ended so)
    schedules: dict[str, Series]
    daemon: Series  # rss (bytes), cpu (percent of one core): the daemon process itself
