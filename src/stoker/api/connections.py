"""TCP connections that have not sent a whole request head yet: a deadline each, and a bound.

uvicorn's h11 protocol closes a connection that stays idle between requests
(`timeout_keep_alive`), but the first byte of a request cancels that timer and nothing takes
its place: a client that sends half its headers holds a connection, and a file descriptor
shared with every program and job, for ever, and nothing bounds how many such clients there
are (uvicorn never grew the `--timeout-request-start` of its issue #157). ASGI middleware
cannot help, since the app is called once a head is complete. So the guard is a small subclass
of the protocol, on TCP only (the unix socket is its owner's door):

- From the connection's start, and from the end of each answer on a kept-alive connection, the
  client has `HEAD_TIMEOUT` to send a whole request head, and first the rest of any body the
  answer did not need to read (a request refused without its token: 401 at once). Otherwise it
  is answered 408 and closed (closed without a word if it sent nothing: an idle connection).
- At most `PER_CLIENT` such connections per client address, and `TOTAL` in all. One more, and
  the one waiting longest is closed (answered 503 if it had sent part of a head): a flood of
  half-open connections cannot lock anyone out, each newcomer gets its turn.

Once its head has come, a request belongs to the app, which asks for the token at once; an
answer that lasts (events, followed logs, `wait=S`) or the body of a request with the token is
never cut.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, ClassVar, Generic, TypeVar

import msgspec
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

from stoker.api import schemas
from stoker.api.doors import ON_EVERY_ANSWER

HEAD_TIMEOUT = 10.0  # seconds: a client that means it sends a head in one go
PER_CLIENT = 128  # a browser opens 6 connections, a proxy in front a few dozen to keep alive
TOTAL = 1024  # file descriptors: the daemon raises its limit to 65,536 (daemon/main.py)

C = TypeVar("C")


class Waiting(Generic[C]):
    """The connections waiting for a request head, oldest first, and which must go to keep
    at most `per_client` of one client address and `total` in all."""

    def __init__(self, per_client: int, total: int) -> None:
        assert per_client >= 1 and total >= 1  # the newest connection is never the one to go
        self.per_client, self.total = per_client, total
        self.clients: dict[C, str] = {}  # connection → its client's address, oldest first
        self.by_client: dict[str, dict[C, None]] = {}  # each client's, oldest first

    def add(self, connection: C, client: str) -> list[C]:
        """`connection` waits from now (it is the newest); returns those to close."""
        self.remove(connection)
        self.clients[connection] = client
        mine = self.by_client.setdefault(client, {})
        mine[connection] = None
        gone = []
        if len(mine) > self.per_client:
            gone.append(next(iter(mine)))
            self.remove(gone[-1])
        if len(self.clients) > self.total:
            gone.append(next(iter(self.clients)))
            self.remove(gone[-1])
        return gone

    def remove(self, connection: C) -> None:
        client = self.clients.pop(connection, None)
        if client is not None:
            mine = self.by_client[client]
            del mine[connection]
            if not mine:
                del self.by_client[client]


def answer(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer with the API's error shape, that closes the connection."""
    body = msgspec.json.encode(schemas.ErrorBody(schemas.ErrorDetail(code, message)))
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(b"connection", b"close"), *ON_EVERY_ANSWER]
    head = b"HTTP/1.1 %d %s\r\n" % (status, STATUS_PHRASES[status])
    return head + b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n" + body


class OneWrite:
    """The transport as an answer's cycle sees it: the head of an answer whose body has a
    known, non-zero length is held until that body, and the two go in one write. uvicorn writes
    them apart, which costs a second system call and wakes the client twice (it reads the head,
    then waits again for the body): for small answers, the enqueue's 201 first, that was a
    tenth of the daemon's time per request. A streamed answer's head (no Content-Length: events,
    followed output) is never held."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.head = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.head:
            data, self.head = self.head + bytes(data), b""
        elif bytes(data[:9]) == b"HTTP/1.1 " and _announces_body(bytes(data)):
            self.head = bytes(data)
            return
        self.transport.write(data)

    def close(self) -> None:
        if self.head:
            self.transport.write(self.head)
            self.head = b""
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def _announces_body(head: bytes) -> bool:
    at = head.lower().find(b"\r\ncontent-length:")
    if at < 0:
        return False
    value = head[at + 17 : head.find(b"\r\n", at + 2)].strip()
    return value.isdigit() and int(value) > 0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the deadline and the bound above (see guarded_protocol)."""

    waiting: ClassVar[Waiting[GuardedH11Protocol]]
    head_timeout: ClassVar[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline: asyncio.TimerHandle | None = None  # set while a request head is awaited
        self.since: object = None  # the request before the awaited one: a new one means it came
        self.heard = False  # bytes came since the wait began
        self.tcp = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        self.tcp = sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
        if self.tcp:
            self.wait_for_head()

    def wait_for_head(self) -> None:
        # bytes of the next request (or of a body no one read) may be in h11's buffer already
        self.since, self.heard = self.cycle, bool(self.conn.trailing_data[0])
        self.deadline = self.loop.call_later(
            self.head_timeout, self.refuse, 408, "timeout", f"no whole request within {self.head_timeout:g}s"
        )
        for other in self.waiting.add(self, self.client[0] if self.client else ""):
            other.refuse(503, "busy", "too many connections are sending a request: this one waited longest")

    def stop_waiting(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
            self.waiting.remove(self)

    def refuse(self, status: int, code: str, message: str) -> None:
        self.stop_waiting()
        if not self.transport.is_closing():
            if self.heard:
                self.transport.write(answer(status, code, message))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.heard = True
        super().data_received(data)
        self.one_write()
        if self.deadline is not None and self.cycle is not self.since:  # a request head came
            self.stop_waiting()

    def on_response_complete(self) -> None:
        answered = self.cycle
        super().on_response_complete()  # may start a pipelined request at once
        self.one_write()
        if self.tcp and self.deadline is None and self.cycle is answered and not self.transport.is_closing():
            self.wait_for_head()

    def one_write(self) -> None:
        """A new request's cycle writes its answer through OneWrite (before its app runs: the
        cycle's task is only scheduled yet)."""
        cycle = self.cycle
        if cycle is not None and not isinstance(cycle.transport, OneWrite):
            cycle.transport = OneWrite(self.transport)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_waiting()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        # What is not HTTP gets the API's error shape too (uvicorn's own is text/plain).
        self.stop_waiting()
        self.transport.write(answer(400, "bad_request", "not a valid HTTP/1.1 request"))
        self.transport.close()


def guarded_protocol(
    head_timeout: float = HEAD_TIMEOUT, per_client: int = PER_CLIENT, total: int = TOTAL
) -> type[GuardedH11Protocol]:
    """The protocol class for one server (uvicorn.Config(http=…)): its connections share one
    count of those waiting."""

    class Guarded(GuardedH11Protocol):
        pass

    Guarded.waiting = Waiting(per_client, total)
    Guarded.head_timeout = head_timeout
    return Guarded
