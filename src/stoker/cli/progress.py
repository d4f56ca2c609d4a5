"""Progress of `stoker start|stop|restart` while the daemon carries it out.

A restart of ten instances answers once every one of them is back (each must run its
`start_seconds`): eleven silent seconds. While the command waits for that answer, this follows
the daemon's event stream (GET /api/v1/events) in a thread and says each instance as it
settles (comes back running, stops, or fails: with why), on stderr, so that stdout keeps the
table (or, with --json, the one JSON document, and no progress at all). On a terminal a last
line, rewritten in place, counts what is still awaited; into a pipe or a file, the plain
lines only.
"""

from __future__ import annotations

import sys
import threading
import time

from stoker.terminal import cell

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from stoker.client import Client

CONNECT_WAIT = 5.0  # seconds to wait for the event stream before going ahead without progress
_FAILED = ("backoff", "fatal", "exited")
_SETTLED = {
    "start": ("running", *_FAILED),
    "restart": ("running", *_FAILED),
    "stop": ("stopped", "exited", "fatal"),
}
_WORDS = {"start": "starting", "restart": "restarting", "stop": "stopping"}


class Progress:
    """Says each of `before`'s instances (their rows before the action) as it settles."""

    def __init__(self, client: Client, action: str, before: list[dict[str, Any]], out: TextIO) -> None:
        self.client = client
        self.action = action
        self.pids = {r["name"]: r["pid"] for r in before}
        self.waiting = set(self.pids)
        self.total = len(self.pids)
        self.out = out
        self.tty = out.isatty()
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._done = False
        self._status_shown = False
        self._thread = threading.Thread(target=self._follow, name="stoker progress", daemon=True)
        # On a terminal: the waiting line's seconds go on counting between events.
        self._ticking = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="stoker progress clock", daemon=True)

    def __enter__(self) -> Progress:
        if self.total:
            # A daemon thread: it blocks reading the stream, and ends with the command.
            self._thread.start()
            self._connected.wait(CONNECT_WAIT)  # (no stream: the action goes ahead, silently)
            self._say(f"{_WORDS[self.action]} {self._what()}…")
            if self.tty and self.total > 1:
                self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ticking.set()
        with self._lock:
            self._done = True
            self._clear_status()

    def _tick(self) -> None:
        while not self._ticking.wait(1.0):
            with self._lock:
                if self._done or not self.waiting:
                    return
                self._clear_status()
                self._status()
                self.out.flush()

    def _what(self) -> str:
        if self.total == 1:
            return next(iter(self.pids))
        return f"{self.total} instances"

    def _follow(self) -> None:
        try:
            for event in self.client.events():
                if event.get("type") == "connected":
                    self._connected.set()
                elif event.get("type") == "program":
                    self._seen(event["program"])
                if self._done:
                    return
        except Exception:  # the stream broke: the answer still comes, and says it all
            self._connected.set()

    def finish(self, rows: list[dict[str, Any]]) -> None:
        """The daemon's answer (every instance settled): say those the stream has not yet."""
        for row in rows:
            self._seen(row, final=True)

    def _seen(self, row: dict[str, Any], final: bool = False) -> None:
        with self._lock:
            name = row.get("name")
            if name not in self.waiting or (row.get("state") not in _SETTLED[self.action] and not final):
                return
            old = row["state"] == "running" and row.get("pid") == self.pids[name]
            if self.action == "restart" and old and not final:
                return  # still the old process: not back yet
            self.waiting.discard(name)
            line = f"{name} {row['state']}"
            if row.get("pid") and row["state"] == "running":
                line += f", pid {row['pid']}"
            if row["state"] in _FAILED and row.get("error"):
                line += f": {row['error']}"
            if self.total > 1:
                line += f" ({self.total - len(self.waiting)} of {self.total})"
            self._write(line)

    def _say(self, line: str) -> None:
        with self._lock:
            self._write(line)

    def _write(self, line: str) -> None:
        """A line, and on a terminal the waiting line after it (the lock held)."""
        if self._done:
            return
        self._clear_status()
        self.out.write(cell(line) + "\n")
        self._status()
        self.out.flush()

    def _status(self) -> None:
        """On a terminal: the line that counts what is still awaited (the lock held)."""
        if self.tty and self.waiting and self.total > 1:
            waited = time.monotonic() - self.started
            self.out.write(f"  … waiting for {len(self.waiting)} of {self.total} ({waited:.0f}s)")
            self._status_shown = True

    def _clear_status(self) -> None:
        if self._status_shown:
            self.out.write("\r\x1b[K")
            self._status_shown = False
            self.out.flush()


def progress(client: Client, action: str, names: list[str]) -> Progress:
    """A Progress for `action` on the instances NAMEs select now (read from the daemon)."""
    before: dict[str, dict[str, Any]] = {}
    for name in names:
        for row in client.programs(name):
            before[row["name"]] = row
    return Progress(client, action, list(before.values()), sys.stderr)
