"""The daemon's listening sockets: file descriptors kept for the daemon, and accept() errors.

Every connection costs a descriptor, from the same table as the daemon's own: its unix socket's
clients, each program's log file, pipe and pidfd, each job's. TCP is anyone's door, so:

- A TCP connection may not take a descriptor at or above `tcp_descriptor_ceiling(limit)`: the
  kernel hands out the lowest free one, so a number that high means every one below is taken.
  Such a connection is answered 503 at once, without a byte read, and closed. What is above the
  ceiling stays for the unix socket (`stoker status` answers during a TCP flood) and for
  spawning (a crashed program restarts). The unix socket has no ceiling: it is its owner's.
- When accept() fails for want of descriptors anyway (EMFILE, ENFILE, ENOBUFS, ENOMEM), asyncio
  stops watching that listener for a second and tries again (selector_events.py). But it goes
  on calling accept() for the rest of its round, up to `backlog` (uvicorn's: 2,048) times, each
  failure logged with its traceback: about 2,000 a second per listener, a core spinning and
  133 MB of log in 30 s (issue 24). Here the first failure of a round goes to asyncio, which
  pauses; the rest of the round ends at once; and the trouble is logged once a minute at most,
  with a count, not once per failure (`quiet_accept_errors` drops asyncio's own report).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from stoker.api.connections import answer

log = logging.getLogger("stoker")

RESERVE = 64  # descriptors at least, kept from TCP clients; a quarter of a larger limit
SAY_EVERY = 60.0  # seconds: how often a lasting trouble is said again
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ASYNCIO_REPORT = "socket.accept() out of system resource"  # asyncio's message for them
BUSY = answer(503, "busy", "the daemon is short of file descriptors: try again later")


def tcp_descriptor_ceiling(limit: int) -> int:
    """The lowest descriptor number a TCP connection may not have, under an open-file `limit`:
    a quarter of the limit (at least RESERVE) is kept for the daemon's own needs."""
    return max(0, limit - max(RESERVE, limit // 4))


class Trouble:
    """One listener's trouble, said when it begins and then once a `SAY_EVERY` at most while it
    comes back (with how many times it happened meanwhile); its end is said too, as rarely: a
    trouble that comes and goes each second is two lines a minute, not two a second."""

    def __init__(self, what: Callable[[], str], clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what  # asked when said: a listener is named once it is bound
        self.clock = clock
        self.unsaid = 0  # occurrences since it was last said
        self.said_at: float | None = None
        self.over_said_at: float | None = None
        self.now = False  # it happened, and nothing went well since

    def happened(self, message: str) -> None:
        self.unsaid += 1
        self.now = True
        now = self.clock()
        if self.said_at is None or now - self.said_at >= SAY_EVERY:
            again = "" if self.said_at is None else f" ({self.unsaid} times since it was last said)"
            log.warning("%s: %s%s", self.what(), message, again)
            self.said_at, self.unsaid = now, 0

    def over(self, message: str) -> None:
        if not self.now:
            return
        self.now = False
        now = self.clock()
        if self.over_said_at is None or now - self.over_said_at >= SAY_EVERY:
            log.info("%s: %s", self.what(), message)
            self.over_said_at = now


class Listener(socket.socket):
    """A listening socket whose accept() keeps the rules above; asyncio (through uvicorn's
    `create_server(sock=…)`) calls it when a connection waits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ceiling: int | None = None  # TCP: set by the daemon once it knows its limit
        self.round_failed = False  # an accept() failed in this round of asyncio's
        self.failing = Trouble(lambda: f"cannot accept connections on {self.where()}")
        self.refusing = Trouble(lambda: f"refusing connections on {self.where()}")

    def where(self) -> str:
        name = self.getsockname()
        return f"{name[0]}:{name[1]}" if isinstance(name, tuple) else "the unix socket"

    def accept(self) -> tuple[socket.socket, Any]:
        if self.round_failed:  # asyncio pauses this listener already: end its round
            raise BlockingIOError(errno.EAGAIN, "paused")
        try:
            conn, address = super().accept()
        except OSError as e:
            if e.errno not in OUT_OF_RESOURCES:
                raise
            self.round_failed = True
            asyncio.get_running_loop().call_soon(self._next_round)
            self.failing.happened(f"{e.strerror}; trying again every second")
            raise
        self.failing.over("accepting again")
        if self.ceiling is None or conn.fileno() < self.ceiling:
            self.refusing.over("accepting again")
            return conn, address
        self.refusing.happened(
            f"a new connection would take descriptor {conn.fileno()}, and those from"
            f" {self.ceiling} on are kept for the daemon: answered 503"
        )
        refuse(conn)
        # The round ends here (the listener stays watched: the next waiting connection is taken
        # on the loop's next turn), so that what else the loop has to do comes between refusals.
        raise BlockingIOError(errno.EAGAIN, "refused")

    def _next_round(self) -> None:
        self.round_failed = False


def refuse(conn: socket.socket) -> None:
    """Answer 503 without reading the request, and close. (What came with it already is taken
    off the socket unread: closing on unread bytes resets the connection, and a reset loses
    the answer too. What comes later still may.)"""
    try:
        conn.setblocking(False)
        conn.send(BUSY)  # a fresh connection's send buffer takes it whole
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1 << 16)
    except OSError:  # BlockingIOError (nothing came yet) among them
        pass
    conn.close()


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Drop asyncio's report of each failed accept() (a Listener says it, once a minute at most);
    anything else is reported as before."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ASYNCIO_REPORT:
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
