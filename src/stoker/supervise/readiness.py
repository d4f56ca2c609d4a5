"""What `ready = "…"` asks for, parsed (pure: no sockets here; see probes.py for the checks).

    ready = "tcp:8080"                         a TCP connect to 127.0.0.1:8080 succeeds
    ready = "tcp:10.0.0.5:8080"  "tcp:[::1]:8080"
    ready = "http://127.0.0.1:8080/health"     a GET answers 2xx (https too)
    ready = "notify"                           the program sends READY=1 on $NOTIFY_SOCKET

`{instance}` is expanded first, like in `command`, so `tcp:80{instance}` gives each instance
its own port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

EXPECTED = '"tcp:PORT", "tcp:HOST:PORT", an "http://…" or "https://…" URL, or "notify"'


class ReadyError(ValueError):
    """A `ready` value that is none of the accepted forms; the message says why."""


@dataclass(frozen=True, slots=True)
class ReadyCheck:
    kind: Literal["tcp", "http", "notify"]
    host: str = ""
    port: int = 0
    url: str = ""

    def __str__(self) -> str:
        if self.kind == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp:{host}:{self.port}"
        return self.url if self.kind == "http" else "notify"


def parse_ready(text: str) -> ReadyCheck:
    value = text.strip()
    if value == "notify":
        return ReadyCheck("notify")
    if value.startswith("tcp:"):
        host, port = _host_port(value[4:])
        return ReadyCheck("tcp", host=host, port=port)
    if value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        if not parts.hostname:
            raise ReadyError(f"{value!r} has no host")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number or out of range
        except ValueError as e:
            raise ReadyError(f"{value!r}: {e}") from None
        return ReadyCheck("http", url=value)
    raise ReadyError(f"{text!r} is not a readiness check")


def _host_port(rest: str) -> tuple[str, int]:
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", rest
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ReadyError(f"tcp:{rest}: write an IPv6 address in brackets, like tcp:[::1]:8080")
    if not host:
        raise ReadyError(f"tcp:{rest} has an empty host")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ReadyError(f"tcp:{rest}: the port must be a number from 1 to 65535")
    return host, int(port_text)
