"""A cap on request bodies, so that no request can make the daemon hold an unbounded body in
memory (uvicorn hands the whole body to the route, and the routes decode it at once)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stoker.api.common import ApiError, error_response

# The largest legitimate body is a batch of 10,000 jobs (api/jobs.py MAX_BATCH): 16 MB leaves
# each of them 1.6 KB of parameters.
MAX_BODY = 16 * 2**20


def _too_large(limit: int) -> str:
    return f"the request body is over {limit // 2**20} MB"


class BodyLimit:
    """Refuse a body over `limit` bytes with 413: at once when its Content-Length says so
    (before a byte of it is read), else (chunked) as soon as what has come passes the limit.
    The answer closes the connection, so the rest of the body is never read either."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = error_response(413, "too_large", _too_large(self.limit))
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # raised inside the route that reads the body: answered by its ApiError handler
                    raise ApiError(413, "too_large", _too_large(self.limit))
            return message

        await self.app(scope, limited, send)
