"""The jobs and queues routes of the control API."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from stoker.api import schemas
from stoker.api.common import ApiError, iso, json_response, output_event, sse
from stoker.api.rates import FinishCounts
from stoker.config import internal_queues, internal_tasks
from stoker.durations import InvalidValue, parse_duration
from stoker.events import BUDGET, EventBus
from stoker.jobs.dispatcher import Dispatcher, JobConflict, JobNotFound, UnknownTask
from stoker.jobs.output import current_output, output_path
from stoker.jobs.params import Param, ParamError
from stoker.jobstates import FINISHED, JobState
from stoker.store import Attempt, Job, NewJob
from stoker.supervise.logs import tail
from stoker.views import LIST_OUTPUT, job_json

MAX_LIST = 1000
LIST_BYTES = 8 * 1024 * 1024  # a listing ends after the job that takes it past this much JSON
LIST_FIRST, LIST_PAGE = 20, 500  # jobs read from the store at a time for a listing: first, at most
LIST_PAGE_BYTES = 2 * 1024 * 1024  # and the jobs of one page, about
MAX_WAIT = 300.0
ID_LIMIT = 2**63 - 1  # SQLite's (and PostgreSQL's bigint) largest integer
LATEST = 221845392000.0  # 9000-01-01 UTC: any later run_at could not be shown as a date
MAX_BATCH = 10_000
MAX_TAIL = 100_000
FOLLOW_EVERY = 0.25
_ENCODER = msgspec.json.Encoder()
FOLLOW_BLOCK = 64 * 1024  # a followed job's output is read and sent in blocks of at most this
FOLLOW_BEHIND = 1024 * 1024  # a follower further behind than this skips to the last 1 MB


def attempt_json(a: Attempt) -> schemas.Attempt:
    return schemas.Attempt(
        number=a.number,
        started_at=iso(a.started_at),
        finished_at=iso(a.finished_at),  # type: ignore[arg-type]
        outcome=str(a.outcome),
        exit_code=a.exit_code,
        error=a.error,
        node=a.node,
    )


def event_json(event: dict[str, Any]) -> dict[str, Any]:
    if isinstance(event.get("job"), Job):
        return {**event, "job": job_json(event["job"], limit=LIST_OUTPUT)}
    return event


def parse_when(run_at: str | None, delay: str | float | None, now: float) -> float | None:
    if run_at is not None and delay is not None:
        raise ApiError(422, "invalid", "give run_at or delay, not both")
    if delay is not None:
        try:
            seconds = parse_duration(delay, where="delay")
        except InvalidValue as e:
            raise ApiError(422, "invalid", f"delay: expected {e.expected}") from None
        if now + seconds >= LATEST:
            raise ApiError(422, "invalid", "delay: it would end after the year 9000")
        return now + seconds
    if run_at is not None:
        try:
            when = dt.datetime.fromisoformat(run_at.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(422, "invalid", f"run_at: expected an ISO 8601 time, got {run_at!r}") from None
        if when.tzinfo is None:
            when = when.astimezone()  # the daemon's local time
        at = when.timestamp()
        if not 0 <= at < LATEST:
            raise ApiError(422, "invalid", "run_at: between 1970 and the year 9000")
        return at
    return None


def routes(dispatcher: Callable[[], Dispatcher | None], events: EventBus, log_dir: str) -> list[Route]:
    """`dispatcher()` is None when the config has no tasks (and no job was ever stored)."""

    finishes = FinishCounts()
    events.listen(finishes.observe)

    def need() -> Dispatcher:
        d = dispatcher()
        if d is None:
            raise ApiError(404, "not_found", "no tasks in the config: add a [tasks.NAME] table")
        return d

    async def decode(request: Request, kind: type[Any], tasks: Dispatcher | None = None) -> Any:
        """The body as `kind`. With `tasks`, a body that does not fit but names a task that
        does not exist is refused for its task (404 unknown_task): the likelier mistake, and
        the one a client must hear about, not the shape of parameters it could never take."""
        body = await request.body()
        try:
            return msgspec.json.decode(body, type=kind)
        except msgspec.ValidationError as e:
            if tasks is not None:
                named_task(tasks, body)
            raise ApiError(422, "invalid", str(e)) from None
        except msgspec.DecodeError as e:
            raise ApiError(400, "bad_request", f"the body is not JSON: {e}") from None
        except RecursionError:  # msgspec's own depth limit, not a bug of ours
            raise ApiError(400, "bad_request", "the body's JSON is nested too deeply") from None

    def named_task(d: Dispatcher, body: bytes) -> None:
        """Refuse the body for its task if it names one that does not exist."""
        try:
            name = msgspec.json.decode(body, type=schemas.TaskOnly).task
        except (msgspec.DecodeError, RecursionError):  # no task to speak of: the shape's error
            return
        try:
            d.task(name)
        except UnknownTask as e:
            raise ApiError(404, "unknown_task", str(e)) from None

    def new_job(d: Dispatcher, task: str, params: Any, index: int | None = None, **options: Any) -> NewJob:
        if isinstance(params, list):  # [] (schemas.NoParams): PHP's empty array, no parameters
            params = {}
        try:
            return d.new_job(task, params, **options)
        except UnknownTask as e:
            raise ApiError(404, "unknown_task", str(e)) from None
        except ParamError as e:
            message = str(e) if index is None else f"params[{index}]: {e} (no job was queued)"
            raise ApiError(422, "invalid_params", message, param=e.param, index=index) from None

    async def enqueue(request: Request) -> Response:
        d = need()
        body: schemas.EnqueueRequest = await decode(request, schemas.EnqueueRequest, d)
        now = d.clock()  # this node's view of the store's time (stoker/skew.py)
        run_at = parse_when(body.run_at, body.delay, now)
        new = new_job(d, body.task, body.params, run_at=run_at, priority=body.priority, key=body.key, now=now)
        [(job, created)] = await d.enqueue([new], now)
        return json_response(job_json(job), 201 if created else 200)

    async def enqueue_many(request: Request) -> Response:
        d = need()
        body: schemas.EnqueueManyRequest = await decode(request, schemas.EnqueueManyRequest, d)
        if len(body.params) > MAX_BATCH:
            raise ApiError(413, "too_large", f"at most {MAX_BATCH} jobs per request")
        now = d.clock()  # this node's view of the store's time (stoker/skew.py)
        run_at = parse_when(body.run_at, body.delay, now)
        news = [
            new_job(d, body.task, p, i, run_at=run_at, priority=body.priority, now=now)
            for i, p in enumerate(body.params)
        ]
        stored = await d.enqueue(news, now)
        return json_response([job_json(job) for job, _ in stored], 201)

    async def list_jobs(request: Request) -> Response:
        d = dispatcher()
        if d is None:
            return json_response([])
        q = request.query_params
        state = q.get("state") or None
        if state is not None and state not in JobState.__members__.values():
            choices = ", ".join(s.value for s in JobState)
            raise ApiError(422, "invalid", f"state must be one of {choices}")
        limit = _int(q.get("limit"), "limit", 100)
        before = _int(q.get("before"), "before", None)
        if before is not None:
            before = max(-1, min(before, ID_LIMIT))
        limit = max(1, min(limit, MAX_LIST))
        queue, task = q.get("queue") or None, q.get("task") or None
        # Read a page at a time and stop at LIST_BYTES of JSON: a thousand jobs with large
        # parameters and outputs must not all be in memory at once (a client pages on with
        # before=ID of the last job it got). A page is as many jobs as LIST_PAGE_BYTES holds at
        # the size of those read so far (a stored job holds its whole 64 KB output; its JSON
        # here only the end): the first is small, the next follow the jobs' size.
        body = bytearray(b"[")  # each job's JSON encoded straight onto its end: one copy
        count = read = 0  # jobs in it; bytes of the jobs read
        while count < limit and len(body) < LIST_BYTES:
            fit = LIST_FIRST if not count else LIST_PAGE_BYTES * count // read + 1
            want = min(fit, LIST_PAGE, limit - count)
            page = await d.store.jobs(state=state, queue=queue, task=task, limit=want, before=before)
            for j in page:
                if count:
                    body += b","
                start = len(body)
                _ENCODER.encode_into(job_json(j, limit=LIST_OUTPUT), body, -1)
                count += 1
                read += len(body) - start + len(j.output or "")
                if len(body) >= LIST_BYTES:
                    break
            if len(page) < want:
                break
            before = page[-1].id
        body += b"]"
        return Response(memoryview(body), media_type="application/json")

    async def detail(d: Dispatcher, job: Job) -> schemas.JobDetail:
        output = None
        if job.state is JobState.RUNNING:  # the live end of this attempt's output
            output = current_output(output_path(log_dir, job.id))
        base = job_json(job, output=output)
        attempts = [attempt_json(a) for a in await d.store.attempts(job.id)]
        return schemas.JobDetail(**{f: getattr(base, f) for f in base.__struct_fields__}, attempts=attempts)

    async def get_job(request: Request) -> Response:
        d = need()
        job_id = _job_id(request)
        wait = min(_float(request.query_params.get("wait"), "wait", 0.0), MAX_WAIT)

        def about_it(event: dict[str, Any]) -> bool:
            return event.get("type") == "job" and event["job"].id == job_id

        with events.subscribe(about_it) as subscription:  # before reading: no change slips between
            job = await d.store.get(job_id)
            if job is None:
                raise ApiError(404, "not_found", f"no job {job_id}")
            if wait > 0 and job.state not in FINISHED:
                job = await _wait_finished(d, subscription, job, wait)
        return json_response(await detail(d, job))

    def job_action(
        operation: Callable[[Dispatcher, int], Awaitable[Job]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """POST /jobs/{id}/cancel and /retry: the same answers, another operation."""

        async def endpoint(request: Request) -> Response:
            try:
                job = await operation(need(), _job_id(request))
            except JobNotFound as e:
                raise ApiError(404, "not_found", str(e)) from None
            except JobConflict as e:
                raise ApiError(409, "conflict", str(e)) from None
            return json_response(job_json(job))

        return endpoint

    cancel = job_action(lambda d, job_id: d.cancel(job_id))
    retry = job_action(lambda d, job_id: d.retry(job_id))

    async def job_logs(request: Request) -> Response:
        d = need()
        job_id = _job_id(request)
        job = await d.store.get(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id}")
        lines = max(0, min(_int(request.query_params.get("tail"), "tail", 100), MAX_TAIL))
        path = output_path(log_dir, job_id)
        text = tail(Path(path), lines)
        if request.query_params.get("follow") not in ("1", "true", "yes"):
            return Response(text, media_type="text/plain; charset=utf-8")
        return StreamingResponse(_follow_job(d, events, job, path, text), media_type="text/event-stream")

    async def queues(request: Request) -> Response:
        d = dispatcher()
        if d is None:
            return json_response([])
        counts = await d.store.queue_counts()
        out = []
        internal = internal_queues(d.config)  # a schedule's own: its schedule stands for it
        for name, queue in d.config.queues.items():
            if name in internal:
                continue
            c = counts.get(name)
            out.append(
                schemas.Queue(
                    name=name,
                    concurrency=queue.concurrency,
                    paused=name in d.paused,
                    queued=c.queued if c else 0,
                    running=c.running if c else 0,
                    done_per_minute=finishes.last_minute(name, "succeeded"),
                    failed_per_minute=finishes.last_minute(name, "failed"),
                    durability=queue.durability,
                )
            )
        return json_response(out)

    async def queue_action(request: Request) -> Response:
        d = need()
        name, action = request.path_params["name"], request.path_params["action"]
        internal = internal_queues(d.config)
        if name in internal:
            owner = internal[name]
            raise ApiError(
                404,
                "not_found",
                f"queue {name!r} belongs to schedule {owner!r}: pause or resume the schedule"
                f" instead (`stoker schedule pause {owner}`)",
            )
        if name not in d.config.queues:
            known = ", ".join(q for q in d.config.queues if q not in internal) or "none"
            raise ApiError(404, "not_found", f"no queue {name!r} (queues: {known})")
        if action not in ("pause", "resume"):
            raise ApiError(404, "not_found", f"no action {action!r}: use pause or resume")
        await d.pause(name, action == "pause")
        return await queues(request)

    async def tasks(request: Request) -> Response:
        d = dispatcher()
        if d is None:
            return json_response([])
        internal = internal_tasks(d.config)
        return json_response(
            [
                schemas.Task(
                    name=name,
                    kind="command" if task.command is not None else "call",
                    queue=task.queue,
                    required=list(task.required),
                    optional=list(task.optional),
                    open_ended=task.open_ended,
                    params=[task_param(p) for p in task.params],
                    max_attempts=task.max_attempts,
                    timeout=task.timeout,
                )
                for name, task in d.config.tasks.items()
                if name not in internal  # run by their schedule only: nothing to enqueue
            ]
        )

    async def stream_events(request: Request) -> Response:
        return StreamingResponse(_sse(events), media_type="text/event-stream")

    return [
        Route("/api/v1/jobs", enqueue, methods=["POST"]),
        Route("/api/v1/jobs", list_jobs, methods=["GET"]),
        Route("/api/v1/jobs/batch", enqueue_many, methods=["POST"]),
        Route("/api/v1/jobs/{id:int}", get_job),
        Route("/api/v1/jobs/{id:int}/cancel", cancel, methods=["POST"]),
        Route("/api/v1/jobs/{id:int}/retry", retry, methods=["POST"]),
        Route("/api/v1/jobs/{id:int}/logs", job_logs),
        Route("/api/v1/tasks", tasks),
        Route("/api/v1/queues", queues),
        Route("/api/v1/queues/{name}/{action}", queue_action, methods=["POST"]),
        Route("/api/v1/events", stream_events),
    ]


async def _wait_finished(d: Dispatcher, subscription: Any, job: Job, wait: float) -> Job:
    deadline = time.monotonic() + wait
    iterator = subscription.__aiter__()
    while job.state not in FINISHED:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            event = await asyncio.wait_for(anext(iterator), left)
        except TimeoutError:
            break
        if event.get("type") == "lagged":  # missed some: the store knows
            event = {"job": await d.store.get(job.id) or job}
        job = event["job"]
    return job


async def _follow_job(
    d: Dispatcher, events: EventBus, job: Job, path: str, initial: bytes
) -> AsyncIterator[bytes]:
    """A job's output as server-sent events until the job is finished.

    A running command writes straight to its file, so there is no stream to listen to: the file
    is read for what was added every FOLLOW_EVERY seconds, only while someone follows.
    """
    offset = _size(path)  # the tail was read just before
    if initial:
        yield output_event("", initial)
    with events.subscribe(lambda e: e.get("type") == "job" and e["job"].id == job.id) as subscription:
        job = await d.store.get(job.id) or job
        while True:
            with contextlib.suppress(TimeoutError):
                while True:  # drain what happened to the job meanwhile
                    event = await asyncio.wait_for(subscription.queue.get(), FOLLOW_EVERY)
                    if event.get("type") == "job" and event["job"].id == job.id:
                        job = event["job"]
            size = _size(path)
            if size < offset:
                offset = 0
            if size > offset:
                if size - offset > FOLLOW_BEHIND:  # too far behind to catch up: skip to the end
                    skipped = size - FOLLOW_BEHIND - offset
                    yield output_event("", f"[stoker] {skipped} bytes skipped: reader too slow\n".encode())
                    offset = size - FOLLOW_BEHIND
                with open(path, "rb") as f:
                    f.seek(offset)
                    while offset < size:  # in blocks: each is sent (and gone) before the next is read
                        data = f.read(min(FOLLOW_BLOCK, size - offset))
                        if not data:
                            break
                        offset += len(data)
                        yield output_event("", data)
            if job.state in FINISHED:
                yield sse({"state": str(job.state)}, event="end")
                return


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def sse_event(event: dict[str, Any]) -> bytes:
    """An event as /api/v1/events sends it (made once per event for all its listeners)."""
    return sse(event_json(event))


async def _sse(events: EventBus) -> AsyncIterator[bytes]:
    """The events stream. A listener that lags by more than BUDGET bytes (it stopped reading)
    is dropped: its last event is `lagged`, and the stream ends (clients reconnect)."""
    with events.subscribe(encode=sse_event, budget=BUDGET) as subscription:
        yield sse({"type": "connected"})
        async for batch in subscription.batches():  # what piled up meanwhile: one write
            yield b"".join(batch)


def _job_id(request: Request) -> int:
    job_id = int(request.path_params["id"])
    if job_id > ID_LIMIT:  # the route takes any digits; the store could not even look it up
        raise ApiError(404, "not_found", f"no job {job_id}")
    return job_id


def _int(value: str | None, name: str, default: Any) -> Any:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(422, "invalid", f"{name} must be a whole number") from None


def _float(value: str | None, name: str, default: float) -> float:
    if value is None or value == "":
        return default
    with contextlib.suppress(ValueError):
        number = float(value)
        if number >= 0:
            return number
    raise ApiError(422, "invalid", f"{name} must be a number of seconds")


def task_param(p: Param) -> schemas.TaskParam:
    """A task's parameter as the API shows it."""
    return schemas.TaskParam(
        name=p.name,
        type=p.type,
        required=p.required,
        default=p.default if p.has_default else None,
        choices=list(p.choices) if p.choices is not None else None,
        pattern=p.pattern,
        min=p.min,
        max=p.max,
        max_length=p.max_length,
        description=p.description,
        allow_option=p.allow_option,
        extra=p.extra,
    )
