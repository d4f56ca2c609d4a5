"""A small synchronous client of the control API (the CLI's, and the Python API's).

Standard library only, so `stoker status` starts fast: http.client over the daemon's unix socket
(or TCP with a token when given a URL).
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stoker.config import Config


class ClientError(Exception):
    """The daemon refused (status >= 400) or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotRunning(ClientError):
    """Nothing listens on the socket: the daemon is not running."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise NotRunning(f"the daemon is not running (no answer on {self._path})") from None
        self.sock = sock


class Client:
    """`Client(socket_path=…)` or `Client(url="http://host:9100", token=…)`."""

    def __init__(
        self,
        *,
        socket_path: str | Path | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout: float | None = 60.0,
    ) -> None:
        if (socket_path is None) == (url is None):
            raise ValueError("give exactly one of socket_path or url")
        self.socket_path = str(socket_path) if socket_path is not None else None
        self.url = urllib.parse.urlsplit(url) if url else None
        self.token = token
        self.timeout = timeout

    @classmethod
    def for_config(cls, config: Config, timeout: float | None = 60.0) -> Client:
        return cls(socket_path=Path(config.daemon.state_dir) / "stoker.sock", timeout=timeout)

    # plumbing ------------------------------------------------------------------------------

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.socket_path is not None:
            return _UnixConnection(self.socket_path, timeout)
        assert self.url is not None
        host = self.url.hostname or "127.0.0.1"
        port = self.url.port or (443 if self.url.scheme == "https" else 80)
        if self.url.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _send(
        self, method: str, path: str, body: Any = None, timeout: float | None = None
    ) -> http.client.HTTPResponse:
        conn = self._connection(self.timeout if timeout is None else timeout)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
        except ClientError:
            raise
        except ConnectionRefusedError:
            raise NotRunning("the daemon is not running (connection refused)") from None
        except (OSError, http.client.HTTPException) as e:
            raise ClientError(f"cannot talk to the daemon: {e}") from None
        if response.status >= 400:
            raw = response.read()
            try:
                err = json.loads(raw)["error"]
                raise ClientError(err["message"], status=response.status, code=err["code"])
            except (ValueError, KeyError, TypeError):
                raise ClientError(
                    f"HTTP {response.status}: {raw[:200].decode(errors='replace')}",
                    status=response.status,
                ) from None
        return response

    def request(self, method: str, path: str, body: Any = None) -> Any:
        response = self._send(method, path, body)
        return json.loads(response.read())

    def text(self, path: str) -> bytes:
        return self._send("GET", path).read()

    def events(self, path: str) -> Iterator[dict[str, Any]]:
        """Follow a server-sent event stream; yields each event's JSON data."""
        response = self._send("GET", path, timeout=None)
        data: list[str] = []
        for raw in response:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif not line and data:
                yield json.loads("\n".join(data))
                data = []

    # the API -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/api/v1/status")
        return result

    def programs(self, name: str | None = None) -> list[dict[str, Any]]:
        path = "/api/v1/programs" if name is None else f"/api/v1/programs/{_quote(name)}"
        result: list[dict[str, Any]] = self.request("GET", path)
        return result

    def program_action(self, name: str, action: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("POST", f"/api/v1/programs/{_quote(name)}/{action}")
        return result

    def signal(self, name: str, sig: str | int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request(
            "POST", f"/api/v1/programs/{_quote(name)}/signal", {"signal": sig}
        )
        return result

    def logs(self, name: str, tail: int = 100, stream: str = "out") -> bytes:
        return self.text(f"/api/v1/programs/{_quote(name)}/logs?tail={tail}&stream={stream}")

    def follow_logs(self, name: str, tail: int = 100, stream: str = "out") -> Iterator[dict[str, Any]]:
        return self.events(f"/api/v1/programs/{_quote(name)}/logs?tail={tail}&stream={stream}&follow=1")

    def shutdown(self) -> None:
        self.request("POST", "/api/v1/shutdown")


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe=":")
