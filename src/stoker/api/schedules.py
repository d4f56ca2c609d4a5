"""The schedules routes of the control API."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stoker.api import schemas
from stoker.api.common import ApiError, json_response
from stoker.api.jobs import job_json
from stoker.schedule.scheduler import Scheduler, UnknownSchedule, slot_time


async def describe(s: Scheduler, names: Iterable[str] | None = None) -> list[schemas.Schedule]:
    """Schedules in the contract's JSON shape: all of them, or those `names` (that exist)."""
    last = await s.store.last_slots()
    wanted = s.config.schedules if names is None else [n for n in names if n in s.config.schedules]
    out = []
    for name in wanted:
        config = s.config.schedules[name]
        trigger = s.triggers[name]
        slot, outcome, job_id = last.get(name, (None, None, None))
        last_state = outcome if outcome == "skipped" else None
        if job_id is not None:
            job = await s.store.get(job_id)
            last_state = str(job.state) if job is not None else None  # None: pruned
        next_run = None if name in s.paused else s.next_run.get(name)
        out.append(
            schemas.Schedule(
                name=name,
                trigger=trigger.describe(),
                timezone=config.timezone if config.cron is not None else None,
                task=config.task,
                paused=name in s.paused,
                next_run=None if next_run is None else slot_time(trigger, next_run),
                last_run=None if slot is None else slot_time(trigger, slot),
                last_state=last_state,
                last_job=job_id,
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

    return [
        Route("/api/v1/schedules", list_schedules),
        Route("/api/v1/schedules/{name}/{action}", act, methods=["POST"]),
    ]
