"""A small synchronous client of the control API (the CLI's, and the Python API's).

`stoker status` must answer in tens of milliseconds, and importing http.client alone costs
~25 ms (it pulls in email and ssl). So the unix socket, which every CLI command uses, is spoken
with a minimal HTTP/1.1 exchange written here (one request per connection, Content-Length or
chunked bodies); http.client is imported only for a TCP URL.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

# typing, pathlib and urllib cost milliseconds `stoker status` does not have (see locate.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, BinaryIO, Protocol
    from urllib.parse import SplitResult

    from stoker.config import Config

    class _Response(Protocol):
        status: int

        def read(self) -> bytes: ...

        def __iter__(self) -> Iterator[bytes]: ...


class ClientError(Exception):
    """The daemon refused (status >= 400) or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotRunning(ClientError):
    """Nothing listens on the socket: the daemon is not running."""


class _UnixResponse:
    """The response of one request on its own connection."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file: BinaryIO = sock.makefile("rb")
        status_line = self._file.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ClientError(f"not an HTTP answer from the daemon: {status_line[:80]!r}")
        self.status = int(parts[1])
        self.headers: dict[str, str] = {}
        while (line := self._file.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def _chunks(self) -> Iterator[bytes]:
        try:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int(self._file.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        return
                    yield self._file.read(size)
                    self._file.readline()  # the CRLF after each chunk
            elif "content-length" in self.headers:
                yield self._file.read(int(self.headers["content-length"]))
            else:
                while data := self._file.read(65536):
                    yield data
        finally:
            self._file.close()
            self._sock.close()

    def read(self) -> bytes:
        return b"".join(self._chunks())

    def __iter__(self) -> Iterator[bytes]:
        """The body line by line (for server-sent events), as it arrives."""
        pending = b""
        for chunk in self._chunks():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line + b"\n"
        if pending:
            yield pending


def _unix_request(
    path: str, method: str, target: str, headers: dict[str, str], body: bytes | None, timeout: float | None
) -> _UnixResponse:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise NotRunning(f"the daemon is not running (no answer on {path})") from None
    head = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append(f"Content-Length: {len(body or b'')}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
    return _UnixResponse(sock)


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
        self.url: SplitResult | None = None
        if url:
            from urllib.parse import urlsplit

            self.url = urlsplit(url)
        self.token = token
        self.timeout = timeout

    @classmethod
    def for_config(cls, config: Config, timeout: float | None = 60.0) -> Client:
        return cls(socket_path=os.path.join(config.daemon.state_dir, "stoker.sock"), timeout=timeout)

    # plumbing ------------------------------------------------------------------------------

    def _tcp_request(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None, timeout: float | None
    ) -> _Response:
        import http.client

        assert self.url is not None
        host = self.url.hostname or "127.0.0.1"
        port = self.url.port or (443 if self.url.scheme == "https" else 80)
        cls = http.client.HTTPSConnection if self.url.scheme == "https" else http.client.HTTPConnection
        conn = cls(host, port, timeout=timeout)
        try:
            conn.request(method, target, body=body, headers=headers)
            return conn.getresponse()
        except http.client.HTTPException as e:
            raise ClientError(f"cannot talk to the daemon: {e}") from None

    def _send(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> _Response:
        wait = self.timeout if timeout is None else (timeout or None)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            if self.socket_path is not None:
                response: _Response = _unix_request(self.socket_path, method, path, headers, data, wait)
            else:
                response = self._tcp_request(method, path, headers, data, wait)
        except ClientError:
            raise
        except ConnectionRefusedError:
            raise NotRunning("the daemon is not running (connection refused)") from None
        except OSError as e:
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
        response = self._send("GET", path, timeout=0)  # 0: no timeout while following
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


_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~:")


def _quote(name: str) -> str:
    if _SAFE.issuperset(name):  # config names always are; urllib costs an import
        return name
    from urllib.parse import quote

    return quote(name, safe=":")
