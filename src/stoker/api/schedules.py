"""The schedules routes of the control API."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stoker.api import schemas
from stoker.api.common import ApiError, json_response
from stoker.schedule.scheduler import Scheduler, UnknownSchedule, slot_time
from stoker.views import describe_schedules as describe
from stoker.views import job_json

MAX_SLOTS = 1000  # slots of a schedule's history in one answer, at most


async def history(s: Scheduler, name: str, limit: int) -> list[schemas.ScheduleSlot]:
    """The latest `limit` recorded slots of `name`, newest first, each with its job's state."""
    trigger = s.triggers.get(name)
    out = []
    for record in await s.store.slots(name, limit):
        state = "skipped"
        if record.outcome != "skipped":
            job = None if record.job_id is None else await s.store.get(record.job_id)
            state = "pruned" if job is None else str(job.state)
        out.append(
            schemas.ScheduleSlot(
                slot=slot_time(trigger, record.slot),
                state=state,
                job=record.job_id,
                reason=record.reason,
                recorded_at=None if record.recorded_at is None else slot_time(trigger, record.recorded_at),
            )
        )
    return out


def routes(scheduler: Callable[[], Scheduler | None]) -> list[Route]:
    async def list_schedules(request: Request) -> Response:
        s = scheduler()
        return json_response([] if s is None else await describe(s))

    async def act(request: Request) -> Response:
        s = scheduler()
        name, action = request.path_params["name"], request.path_params["action"]
        if s is None:
            raise ApiError(404, "not_found", f"no schedule {name!r}: the config has no [schedules.NAME]")
        try:
            if action == "run":
                job = await s.run_now(name)
                return json_response(job_json(job), 201)
            if action in ("pause", "resume"):
                await s.pause(name, action == "pause")
                return json_response(next(x for x in await describe(s) if x.name == name))
        except UnknownSchedule as e:
            raise ApiError(404, "not_found", str(e)) from None
        raise ApiError(404, "not_found", f"no action {action!r}: use run, pause or resume")

    async def slots(request: Request) -> Response:
        s = scheduler()
        name = request.path_params["name"]
        if s is None:
            raise ApiError(404, "not_found", f"no schedule {name!r}: the config has no [schedules.NAME]")
        try:
            s.known(name)
        except UnknownSchedule as e:
            raise ApiError(404, "not_found", str(e)) from None
        limit = request.query_params.get("limit") or "20"
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_SLOTS:
            raise ApiError(422, "invalid", f"limit: expected a whole number from 1 to {MAX_SLOTS}")
        return json_response(await history(s, name, int(limit)))

    return [
        Route("/api/v1/schedules", list_schedules),
        Route("/api/v1/schedules/{name}/slots", slots),
        Route("/api/v1/schedules/{name}/{action}", act, methods=["POST"]),
    ]
