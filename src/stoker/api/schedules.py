"""The schedules routes of the control API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stoker.api import schemas
from stoker.api.common import ApiError, iso, json_response
from stoker.api.jobs import job_json
from stoker.schedule.scheduler import Scheduler, UnknownSchedule


def routes(scheduler: Callable[[], Scheduler | None]) -> list[Route]:
    async def describe(s: Scheduler) -> list[schemas.Schedule]:
        last = await s.store.last_slots()
        out = []
        for name, config in s.config.schedules.items():
            slot, outcome, job_id = last.get(name, (None, None, None))
            zone = getattr(s.triggers[name], "zone", None)  # a cron schedule's own zone
            last_state = outcome if outcome == "skipped" else None
            if job_id is not None:
                job = await s.store.get(job_id)
                last_state = str(job.state) if job is not None else None  # None: pruned
            out.append(
                schemas.Schedule(
                    name=name,
                    trigger=s.triggers[name].describe(),
                    timezone=config.timezone if config.cron is not None else None,
                    task=config.task,
                    paused=name in s.paused,
                    next_run=None if name in s.paused else _in_zone(s.next_run.get(name), zone),
                    last_run=_in_zone(slot, zone),
                    last_state=last_state,
                    last_job=job_id,
                )
            )
        return out

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


def _in_zone(t: float | None, zone: dt.tzinfo | None) -> dt.datetime | None:
    """A cron schedule's times in its own zone ("03:00+08:00" reads as what was asked for)."""
    if t is None or zone is None:
        return iso(t)
    return dt.datetime.fromtimestamp(t, zone)
