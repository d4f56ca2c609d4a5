"""`GET /api/v1/history`: the recent figures the dashboard's charts draw (stoker.history)."""

from __future__ import annotations

import math
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stoker.api import schemas
from stoker.api.common import ApiError, json_response
from stoker.history import RANGES, History

#: the query parameters that keep only some names of a group (repeated, or comma-separated)
FILTERS = {"queue": "queues", "program": "programs", "schedule": "schedules"}


def history_json(
    history: History, range_: str, now: float, names: dict[str, set[str]] | None
) -> schemas.History:
    window = history.window(range_, now, names)

    def series(group: str) -> dict[str, dict[str, list[float | None]]]:
        return {
            name: {
                figure: [None if math.isnan(v) else v for v in points] for figure, points in figures.items()
            }
            for name, figures in window[group].items()
        }

    return schemas.History(
        range=range_,
        step=window["step"],
        times=window["times"],
        omitted=window["omitted"],
        queues=series("queues"),
        programs=series("programs"),
        schedules=series("schedules"),
        daemon=series("daemon").get("daemon", {}),
    )


def routes(history: History | None) -> list[Route]:
    async def get(request: Request) -> Response:
        if history is None:
            raise ApiError(404, "not_found", "no history: the config says [daemon] history = false")
        q = request.query_params
        range_ = q.get("range") or "1h"
        if range_ not in RANGES:
            raise ApiError(422, "invalid", f"range: expected one of {', '.join(RANGES)}, not {range_!r}")
        names: dict[str, set[str]] = {}
        for key, group in FILTERS.items():
            wanted = {n for value in q.getlist(key) for n in value.split(",") if n}
            if wanted:
                names[group] = wanted
        return json_response(history_json(history, range_, time.time(), names or None))

    return [Route("/api/v1/history", get)]
