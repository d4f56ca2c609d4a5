"""The dashboard: a few static files (HTML, CSS, ES modules) served at / and /dashboard/….

No build step and nothing from a CDN: the files in this folder are what the browser gets.
They hold no data, so they are served without the token (see BearerAuth); everything the
page shows comes from /api/v1, with the token the page asks for in an Authorization header.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from stoker.api.common import ApiError

HERE = Path(__file__).parent
PREFIX = "/dashboard/"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page runs only its own files and talks only to this daemon: data from the API (job output,
# parameters) can never become script, and no other site may frame the page. (nosniff and
# X-Frame-Options come with every answer: api/doors.py.)
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_public(scope: Scope) -> bool:
    """A request for one of the dashboard's files (which need no token)."""
    path: str = scope.get("path", "")
    return scope.get("method") in ("GET", "HEAD") and (path == "/" or path.startswith(PREFIX))


def routes() -> list[Route]:
    # The names are fixed when the daemon starts: a request names a file of this folder or
    # gets a 404; it never becomes a path.
    files = {path.name: path for path in HERE.iterdir() if path.suffix in TYPES}

    async def index(request: Request) -> Response:
        return _file(files["index.html"])

    async def asset(request: Request) -> Response:
        path = files.get(request.path_params["file"])
        if path is None:
            raise ApiError(404, "not_found", "no such dashboard file")
        return _file(path)

    return [Route("/", index), Route(PREFIX + "{file}", asset)]


def _file(path: Path) -> Response:
    return Response(path.read_bytes(), media_type=TYPES[path.suffix], headers=HEADERS)
