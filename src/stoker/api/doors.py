"""What a browser's page may not do through the TCP door, and the headers on every answer.

Every TCP request but the dashboard's files needs the token (BearerAuth), and a page of another
site cannot have it. These checks are the second wall, for the day something else authenticates
a browser (a proxy in front that signs users in with a cookie and adds the token itself):

- a request that a page of another origin sent is refused (403): by `Sec-Fetch-Site`, which
  browsers set and no page can (but a link to the dashboard, a GET, may come from anywhere), else
  by an `Origin` that is not the origin the request was sent to (`Host`, or the
  `X-Forwarded-Host` of a proxy). Clients that are not browsers send neither.
- a body (POST, PUT, PATCH, DELETE) must be `application/json` (415): a page of another site can
  send text/plain, a form or an untyped blob without asking the daemon first, never JSON.
  supervisord's XML-RPC (/RPC2) takes `text/xml` instead, which no page can send unasked
  either (supervisord_door.py).

The unix socket trusts its file mode and is not checked. Every answer, on both doors, says
`nosniff` (a browser never reads JSON or text as a script or a page) and may not be framed.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stoker.api.common import error_response
from stoker.api.supervisord_door import not_xml, speaks_supervisord

ON_EVERY_ANSWER = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"))
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # a link, an image: never a change
JSON = b"application/json"


def from_unix_socket(scope: Scope) -> bool:
    server = scope.get("server")
    return server is None or server[1] is None


def cross_origin(method: str, headers: Mapping[bytes, bytes]) -> str | None:
    """Why the request comes from a page of another origin, or None: it does not, or it comes
    from no browser, or it is a link followed to here (a GET with no Origin). Go's net/http
    CrossOriginProtection judges the same way, and here a foreign Origin is refused on a GET too."""
    site = headers.get(b"sec-fetch-site")  # sent by every current browser to localhost and over https
    if site in (b"same-origin", b"none"):  # "none": the user typed the address
        return None  # (so a proxy in front that rewrites Host does not matter)
    if site is not None and method not in SAFE_METHODS:
        return f"Sec-Fetch-Site: {site.decode('latin-1')}"
    origin = headers.get(b"origin")
    if origin is None:
        return None
    ours = [headers.get(b"host", b"")]
    if forwarded := headers.get(b"x-forwarded-host"):  # a proxy's: no page can set it unasked
        ours.append(forwarded.split(b",")[0].strip())
    if any(
        host and origin.lower() in (b"http://" + host.lower(), b"https://" + host.lower()) for host in ours
    ):
        return None
    return f"Origin: {origin.decode('latin-1')}"


def not_json(method: str, headers: Mapping[bytes, bytes]) -> bytes | None:
    """The Content-Type of a body that is not JSON (b"" when it has none), or None when the
    request is fine: not a method with a body, no body at all (a bare POST to restart), or JSON."""
    if method not in BODY_METHODS:
        return None
    length = headers.get(b"content-length", b"0").strip()
    if b"transfer-encoding" not in headers and (not length.isdigit() or int(length) == 0):
        return None  # a malformed length never gets here: the HTTP parser refuses it
    content_type = headers.get(b"content-type", b"")
    if content_type.split(b";")[0].strip().lower() == JSON:
        return None
    return content_type


class Doors:
    """The checks above on TCP requests, and the headers on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [header for header in ON_EVERY_ANSWER if header[0] not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if not from_unix_socket(scope):
            headers = dict(scope["headers"])
            if (why := cross_origin(scope["method"], headers)) is not None:
                refusal = error_response(
                    403, "cross_origin", f"refused: a page of another site sent this request ({why})"
                )
                await refusal(scope, receive, send_with_headers)
                return
            # supervisord's XML-RPC takes XML, and only XML (why that is safe: supervisord_door)
            xml = speaks_supervisord(scope["path"])
            if (content_type := (not_xml if xml else not_json)(scope["method"], headers)) is not None:
                got = f"Content-Type: {content_type.decode('latin-1')}" if content_type else "no Content-Type"
                wanted = "XML, Content-Type: text/xml" if xml else "JSON with Content-Type: application/json"
                refusal = error_response(
                    415, "unsupported_media_type", f"send the body as {wanted} (got {got})"
                )
                await refusal(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)
