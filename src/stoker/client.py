"""A small synchronous client of the control API (the CLI's, and the Python API's).

`stoker status` must answer in tens of milliseconds, and importing http.client alone costs
~25 ms (it pulls in email and ssl). So the unix socket, which every CLI command uses, and a
plain http:// URL are spoken with a minimal HTTP/1.1 exchange written here (Content-Length or
chunked bodies); http.client is imported only for an https:// URL.

A Client keeps its connections alive between calls (a web app's worker that queues one job
per request pays for one connect, not one per job): a small pool, so threads may share one
Client; a connection the daemon closed while it idled is replaced and the request sent again
(once, and only when the daemon had read none of it); a daemon that is down is still
`NotRunning` at once.

Length: the public Client's one method per API route (what users import and read), with the
small HTTP exchange under it; the exchange could move out, but the Client is most of the lines
and is one class by design: it is the Python API.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

from stoker import names

# typing, pathlib and urllib cost milliseconds `stoker status` does not have (see locate.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any, BinaryIO, Protocol
    from urllib.parse import SplitResult

    from stoker.config import Config

    class _Response(Protocol):
        status: int

        def read(self) -> bytes: ...

        def getheader(self, name: str) -> str | None: ...

        def __iter__(self) -> Iterator[bytes]: ...


class ClientError(Exception):
    """The daemon refused (status >= 400) or could not be reached. A refused request's
    parameters: `param` names the parameter at fault, `index` the item of a batch."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param
        self.index = index


class NotRunning(ClientError):
    """Nothing listens on the socket: the daemon is not running."""


class _Stale(Exception):
    """A kept-alive connection the daemon had closed (idle too long, or restarted): nothing of
    the request reached it, so the request is sent again on a new connection."""


class _Connection:
    """One socket to the daemon, kept alive between requests (HTTP/1.1)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file: BinaryIO = sock.makefile("rb")
        self.used = False  # it has carried a whole exchange before

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class _Pool:
    """The idle connections of one Client: a thread takes one (or opens one) for its request
    and puts it back once the answer is read whole, so many threads share a Client safely and
    each request costs no connect. In a child process after fork() the parent's are dropped
    (never used: two processes on one socket would read each other's answers)."""

    MAX_IDLE = 16

    def __init__(self, connect: Callable[[], socket.socket]) -> None:
        import _thread

        self.connect = connect
        self.lock = _thread.allocate_lock()
        self.idle: list[_Connection] = []
        self.pid = os.getpid()

    def take(self) -> _Connection:
        with self.lock:
            if self.pid != os.getpid():
                self.idle, self.pid = [], os.getpid()  # the parent's: left to the parent
            if self.idle:
                return self.idle.pop()
        return _Connection(self.connect())

    def give_back(self, conn: _Connection) -> None:
        conn.used = True
        with self.lock:
            if self.pid == os.getpid() and len(self.idle) < self.MAX_IDLE:
                self.idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


class _RawResponse:
    """The response to one request on a pooled connection; the connection goes back to the
    pool once the body has been read to its end (and the daemon did not ask to close it)."""

    def __init__(self, conn: _Connection, pool: _Pool, no_body: bool) -> None:
        self._conn = conn
        self._pool = pool
        self._file = conn.file
        try:
            status_line = self._file.readline()
        except ConnectionResetError:
            status_line = b""
        if not status_line and conn.used:
            raise _Stale
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ClientError(f"not an HTTP answer from the daemon: {status_line[:80]!r}")
        self.status = int(parts[1])
        self.headers: dict[str, str] = {}
        while (line := self._file.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._no_body = no_body or self.status in (204, 304) or 100 <= self.status < 200

    def _chunks(self) -> Iterator[bytes]:
        whole = False  # the body was read to its end, and its end was marked
        try:
            if self._no_body:
                whole = True
            elif self.headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int(self._file.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self._file.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        whole = True
                        return
                    yield self._file.read(size)
                    self._file.readline()  # the CRLF after each chunk
            elif "content-length" in self.headers:
                yield self._file.read(int(self.headers["content-length"]))
                whole = True
            else:
                while data := self._file.read(65536):
                    yield data
        finally:
            if whole and self.headers.get("connection", "").lower() != "close":
                self._pool.give_back(self._conn)
            else:
                self._conn.close()

    def read(self) -> bytes:
        return b"".join(self._chunks())

    def getheader(self, name: str) -> str | None:
        return self.headers.get(name.lower())

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


def _exchange(
    pool: _Pool, host: str, method: str, target: str, headers: dict[str, str], body: bytes | None,
    timeout: float | None,
) -> _RawResponse:  # fmt: skip
    """One request on a pooled connection; sent once more, on a new one, if the connection
    turns out to have been closed by the daemon before the request reached it."""
    head = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append(f"Content-Length: {len(body or b'')}")
    data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
    for _ in range(2):
        conn = pool.take()
        try:
            conn.sock.settimeout(timeout)
            try:
                conn.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                if not conn.used:
                    raise
                raise _Stale from None
            return _RawResponse(conn, pool, no_body=method == "HEAD")
        except _Stale:
            conn.close()
            pool.close()  # the others idle as long, or longer: closed too, likely
            continue
        except BaseException:
            conn.close()
            raise
    raise ClientError("the daemon closed the connection twice before answering")


class Record(dict[str, "Any"]):
    """A JSON object from the API whose keys read as attributes too: ``job.state``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Client:
    """Talks to a running daemon.

    ``Client()`` finds stoker.toml like the CLI (``$STOKER_CONFIG``, else ./stoker.toml) and
    uses its unix socket; ``Client(config="path/stoker.toml")``, ``Client(socket_path=…)``, or
    ``Client(url="http://host:9100", token=…)`` over TCP.
    """

    def __init__(
        self,
        *,
        config: str | os.PathLike[str] | None = None,
        socket_path: str | Path | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout: float | None = 60.0,
    ) -> None:
        if socket_path is not None and url is not None:
            raise ValueError("give socket_path or url, not both")
        if socket_path is None and url is None:
            socket_path = _socket_of(None if config is None else os.fspath(config))
        self.socket_path = str(socket_path) if socket_path is not None else None
        self.url: SplitResult | None = None
        if url:
            from urllib.parse import urlsplit

            self.url = urlsplit(url)
        self.token = token
        self.timeout = timeout
        self._pool: _Pool | None = None
        self._host = "localhost"
        if self.socket_path is not None:
            self._pool = _Pool(self._connect_unix)
        elif self.url is not None and self.url.scheme != "https":
            self._pool = _Pool(self._connect_tcp)
            self._host = self.url.netloc.rpartition("@")[2] or "127.0.0.1"

    def close(self) -> None:
        """Close the connections kept for the next requests (a later request opens one again)."""
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def for_config(cls, config: Config, timeout: float | None = 60.0) -> Client:
        return cls(socket_path=os.path.join(config.daemon.state_dir, names.SOCKET), timeout=timeout)

    # plumbing ------------------------------------------------------------------------------

    def _connect_unix(self) -> socket.socket:
        assert self.socket_path is not None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise NotRunning(f"the daemon is not running (no answer on {self.socket_path})") from None
        except BaseException:
            sock.close()
            raise
        return sock

    def _connect_tcp(self) -> socket.socket:
        assert self.url is not None
        host = self.url.hostname or "127.0.0.1"
        sock = socket.create_connection((host, self.url.port or 80), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

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
            if self._pool is not None:
                response: _Response = _exchange(self._pool, self._host, method, path, headers, data, wait)
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
                raise ClientError(
                    err["message"],
                    status=response.status,
                    code=err["code"],
                    param=err.get("param"),
                    index=err.get("index"),
                )
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

    def events(self, path: str = "/api/v1/events") -> Iterator[dict[str, Any]]:
        """Follow a server-sent event stream; yields each event's JSON data (with "event": NAME
        added for named events)."""
        yield from _server_sent(self._send("GET", path, timeout=0))  # 0: no timeout while following

    # the API -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/api/v1/status")
        return result

    def programs(self, name: str | None = None, *, all_nodes: bool = False) -> list[dict[str, Any]]:
        """This daemon's instances (those NAME selects); `all_nodes`: every node's sharing its
        store, as each last published them (NAME is not taken then)."""
        if all_nodes:
            path = "/api/v1/programs?all_nodes=1"
        else:
            path = "/api/v1/programs" if name is None else f"/api/v1/programs/{_quote(name)}"
        result: list[dict[str, Any]] = self.request("GET", path)
        return result

    def nodes(self) -> list[dict[str, Any]]:
        """The nodes sharing this daemon's store (on SQLite: this one)."""
        result: list[dict[str, Any]] = self.request("GET", "/api/v1/nodes")
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

    def reload(self, progress: Callable[[dict[str, Any]], None] | None = None) -> Record:
        """Have the daemon re-read its config file and apply what changed (`stoker reload`);
        returns what changed, with the file it read (`config`). `progress(event)` hears each
        instance the reload stops, as it stops: {"type": "stopping", "name", "stop_timeout"},
        then {"type": "stopped", "name"} (and {"type": "started", "name"} for a restart)."""
        if progress is None:
            return Record(self.request("POST", "/api/v1/reload"))
        response = self._send("POST", "/api/v1/reload?progress=1")
        if not (response.getheader("content-type") or "").startswith("text/event-stream"):
            return Record(json.loads(response.read()))  # a daemon from before progress
        for event in _server_sent(response):
            if event.get("type") == "reloaded":
                return Record(event["changes"])
            if event.get("type") == "error":
                raise ClientError(event["error"]["message"], code=event["error"]["code"])
            progress(event)
        raise ClientError("the daemon's answer to the reload ended early")

    def shutdown(self) -> None:
        self.request("POST", "/api/v1/shutdown")

    # jobs ----------------------------------------------------------------------------------

    def enqueue(
        self,
        task: str,
        params: dict[str, Any] | None = None,
        /,
        *,
        delay: str | float | None = None,
        run_at: str | dt.datetime | None = None,
        key: str | None = None,
        priority: int = 0,
        **more_params: Any,
    ) -> Record:
        """Queue one job of `task`; parameters as a dict, or as keyword arguments. Returns the
        job (an existing live one when `key` matches one)."""
        body: dict[str, Any] = {
            "task": task,
            "params": {**(params or {}), **more_params},
            "priority": priority,
        }
        _when(body, delay, run_at)
        if key is not None:
            body["key"] = key
        return Record(self.request("POST", "/api/v1/jobs", body))

    def enqueue_many(
        self,
        task: str,
        params: list[dict[str, Any]],
        *,
        delay: str | float | None = None,
        run_at: str | dt.datetime | None = None,
        priority: int = 0,
    ) -> list[int]:
        """Queue one job per item of `params`, all in one transaction; returns their ids."""
        body: dict[str, Any] = {"task": task, "params": params, "priority": priority}
        _when(body, delay, run_at)
        return [job["id"] for job in self.request("POST", "/api/v1/jobs/batch", body)]

    def job(self, job_id: int) -> Record:
        return Record(self.request("GET", f"/api/v1/jobs/{int(job_id)}"))

    def wait(self, job_id: int, timeout: float | None = None) -> Record:
        """The job once it has finished (succeeded, failed or cancelled); TimeoutError if it has
        not after `timeout` seconds (None: wait as long as it takes)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 300.0 if deadline is None else max(0.0, deadline - time.monotonic())
            step = min(left, 300.0)
            response = self._send("GET", f"/api/v1/jobs/{int(job_id)}?wait={step:.3f}", timeout=step + 30)
            job = Record(json.loads(response.read()))
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout}s")

    def jobs(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[Record]:
        query = {"state": state, "queue": queue, "task": task, "limit": limit, "before": before}
        args = "&".join(f"{k}={_quote(str(v))}" for k, v in query.items() if v is not None)
        return [Record(j) for j in self.request("GET", f"/api/v1/jobs?{args}")]

    def cancel(self, job_id: int) -> Record:
        return Record(self.request("POST", f"/api/v1/jobs/{int(job_id)}/cancel"))

    def retry(self, job_id: int) -> Record:
        return Record(self.request("POST", f"/api/v1/jobs/{int(job_id)}/retry"))

    def job_logs(self, job_id: int, tail: int = 100) -> bytes:
        return self.text(f"/api/v1/jobs/{int(job_id)}/logs?tail={tail}")

    def follow_job_logs(self, job_id: int, tail: int = 100) -> Iterator[dict[str, Any]]:
        return self.events(f"/api/v1/jobs/{int(job_id)}/logs?tail={tail}&follow=1")

    def queues(self) -> list[Record]:
        return [Record(q) for q in self.request("GET", "/api/v1/queues")]

    def tasks(self) -> list[Record]:
        """The config's tasks, each with the parameters it takes and their rules."""
        return [Record(t) for t in self.request("GET", "/api/v1/tasks")]

    def pause(self, queue: str) -> list[Record]:
        return [Record(q) for q in self.request("POST", f"/api/v1/queues/{_quote(queue)}/pause")]

    def resume(self, queue: str) -> list[Record]:
        return [Record(q) for q in self.request("POST", f"/api/v1/queues/{_quote(queue)}/resume")]

    # schedules -----------------------------------------------------------------------------

    def schedules(self) -> list[Record]:
        return [Record(s) for s in self.request("GET", "/api/v1/schedules")]

    def schedule_action(self, name: str, action: str) -> Record:
        """`run` (returns the job it queued), `pause` or `resume` (return the schedule)."""
        return Record(self.request("POST", f"/api/v1/schedules/{_quote(name)}/{action}"))

    def schedule_slots(self, name: str, limit: int = 20) -> list[Record]:
        """The schedule's latest recorded slots, newest first: each one's job and state, or
        "skipped" and why."""
        path = f"/api/v1/schedules/{_quote(name)}/slots?limit={limit}"
        return [Record(s) for s in self.request("GET", path)]


def _server_sent(response: _Response) -> Iterator[dict[str, Any]]:
    """The JSON data of each server-sent event of `response`, as it comes (with "event": NAME
    added for named events)."""
    data: list[str] = []
    name = None
    for raw in response:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif not line and data:
            event = json.loads("\n".join(data))
            if name is not None and isinstance(event, dict):
                event["event"] = name
            yield event
            data, name = [], None


def _when(body: dict[str, Any], delay: str | float | None, run_at: str | dt.datetime | None) -> None:
    if delay is not None:
        body["delay"] = delay
    if run_at is not None:
        body["run_at"] = run_at if isinstance(run_at, str) else run_at.isoformat()


def _socket_of(config: str | None) -> str:
    from stoker.locate import config_file, quick_state_dir

    path = config_file(config)
    state_dir = quick_state_dir(path)
    if state_dir is None:
        from stoker.config import load_config

        state_dir = load_config(path).daemon.state_dir
    return os.path.join(state_dir, names.SOCKET)


_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~:")


def _quote(name: str) -> str:
    if _SAFE.issuperset(name):  # config names always are; urllib costs an import
        return name
    from urllib.parse import quote

    return quote(name, safe=":")


class TaskFunction:
    """What ``@stoker.task`` makes of a function: still callable as it was, plus ``.enqueue``.

    The config remains the one registry of what may run: the decorated function must be named
    by a ``[tasks.NAME]`` table (``call = "module:function"``); NAME is the function's name
    unless ``name=`` says otherwise.
    """

    def __init__(self, function: Any, name: str, client: Client | None, priority: int) -> None:
        self.function = function
        self.name = name
        self.client = client
        self.priority = priority
        self.__doc__ = function.__doc__
        self.__name__ = getattr(function, "__name__", name)
        self.__wrapped__ = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def _client(self) -> Client:
        if self.client is None:
            self.client = Client()
        return self.client

    def enqueue(self, **params_and_options: Any) -> Record:
        """Queue a job of this task: parameters as keyword arguments, plus the options of
        ``Client.enqueue`` (delay, run_at, key, priority)."""
        params_and_options.setdefault("priority", self.priority)
        return self._client().enqueue(self.name, **params_and_options)

    def enqueue_many(self, params: list[dict[str, Any]], **options: Any) -> list[int]:
        options.setdefault("priority", self.priority)
        return self._client().enqueue_many(self.name, params, **options)


def task(
    function: Any = None, /, *, name: str | None = None, client: Client | None = None, priority: int = 0
) -> Any:
    """``@stoker.task`` or ``@stoker.task(name="send_mail", priority=5)``."""

    def wrap(f: Any) -> TaskFunction:
        return TaskFunction(f, name or f.__name__, client, priority)

    return wrap(function) if function is not None else wrap
