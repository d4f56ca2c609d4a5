"""POST /api/v1/jobs taken straight to its handler: a web app's request path, the API's
busiest, skips what every other route goes through and does not need (starlette's error and
exception middleware, the router's walk over every route's pattern, two more wrappers of each
message sent). The handler is the route's own (api/jobs.py: decode, check against the task,
hand to the store's writer), and its errors are answered as the app would answer them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from stoker.api.common import ApiError, api_error_response, error_response
from stoker.store import StoreError

PATH = "/api/v1/jobs"


class EnqueueDoor:
    def __init__(self, app: ASGIApp, enqueue: Callable[[Request], Awaitable[Response]]) -> None:
        self.app = app
        self.enqueue = enqueue

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            response = await self.enqueue(Request(scope, receive, send))
        except ApiError as exc:
            response = api_error_response(exc)
        except StoreError as exc:  # the database refused (disk full, file gone): nothing was accepted
            response = error_response(503, "store_unavailable", str(exc))
        await response(scope, receive, send)
