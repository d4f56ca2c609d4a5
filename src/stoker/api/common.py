"""What every route module shares: the error type, JSON responses, times."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from stoker.api import schemas
from stoker.views import iso

__all__ = ["ApiError", "api_error_response", "error_response", "iso", "json_response", "output_event", "sse"]


class ApiError(Exception):
    """Raised by a route; answered as ``{"error": {"code", "message"}}`` with `status`."""

    def __init__(
        self, status: int, code: str, message: str, *, param: str | None = None, index: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.param, self.index = param, index


def json_response(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


def error_response(
    status: int, code: str, message: str, *, param: str | None = None, index: int | None = None
) -> Response:
    return json_response(schemas.ErrorBody(schemas.ErrorDetail(code, message, param, index)), status)


def api_error_response(exc: ApiError) -> Response:
    """How an ApiError is answered (by the app's handler, and by the enqueue's short way in)."""
    response = error_response(exc.status, exc.code, exc.message, param=exc.param, index=exc.index)
    if exc.status == 413:  # the rest of a body too large is not worth reading: close
        response.headers["Connection"] = "close"
    return response


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event whose data is `data` as JSON."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + msgspec.json.encode(data) + b"\n\n"


def output_event(name: str, data: bytes) -> bytes:
    """An event of followed output: {"name": program instance or "", "text": …}."""
    return sse({"name": name, "text": data.decode("utf-8", "replace")})
