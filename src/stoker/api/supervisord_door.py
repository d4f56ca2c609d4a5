"""What the doors (api/doors.py, BearerAuth) let through for supervisord's clients, and why it
is safe.

supervisorctl, Ansible's supervisorctl module, Cesi and the monitoring checks speak supervisord's
API: XML-RPC POSTs to /RPC2 with `Content-Type: text/xml` and, over TCP, HTTP basic auth; and
`tail -f` / `maintail -f` GET /logtail/NAME/CHANNEL and /mainlogtail. On those paths only:

- basic auth is accepted with the token as the password (any user name), besides the Bearer
  header. A browser sends basic credentials on its own only for an origin where someone typed
  them into its prompt or its address bar: the daemon never asks for them (its 401 says
  `WWW-Authenticate: Bearer`, which no browser prompts for), and a page of another site does
  not know the token to send them itself.
- a body must be XML (`text/xml` or `application/xml`), never JSON, a form or plain text. A
  page of another site can POST text/plain or a form without asking first, never text/xml:
  that needs a CORS preflight, which the daemon never answers with a permission. So a forged
  form post cannot reach an XML-RPC method, with or without credentials.
- the cross-site check (Sec-Fetch-Site, Origin) of every other path applies here too.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

XMLRPC_PATH = "/RPC2"
XML_TYPES = frozenset({b"text/xml", b"application/xml"})


def speaks_supervisord(path: str) -> bool:
    """Whether `path` is one of supervisord's (XML-RPC, log tails)."""
    return path == XMLRPC_PATH or path == "/mainlogtail" or path.startswith("/logtail/")


def basic_password(credentials: bytes) -> bytes:
    """The password of `Authorization: Basic <credentials>` (b"" if it is not well formed)."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""
    _user, colon, password = decoded.partition(b":")
    return password if colon else b""


def not_xml(method: str, headers: Mapping[bytes, bytes]) -> bytes | None:
    """The Content-Type of a body that is not XML (b"" when it has none), or None when the
    request is fine: not a POST with a body, or XML."""
    if method not in ("POST", "PUT", "PATCH", "DELETE"):
        return None
    length = headers.get(b"content-length", b"0").strip()
    if b"transfer-encoding" not in headers and (not length.isdigit() or int(length) == 0):
        return None  # (an empty call is refused by the route: there is no method to call)
    content_type = headers.get(b"content-type", b"")
    if content_type.split(b";")[0].strip().lower() in XML_TYPES:
        return None
    return content_type
