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

    def __enter__(self) -> Progress:
        if self.total:
            # A daemon thread: it blocks reading the stream, and ends with the command.
            self._thread.start()
            self._connected.wait(CONNECT_WAIT)  # (no stream: the action goes ahead, silently)
            self._say(f"{_WORDS[self.action]} {self._what()}…")
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
            self._clear_status()

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

    def _seen(self, row: dict[str, Any]) -> None:
        name = row.get("name")
        if name not in self.waiting or row.get("state") not in _SETTLED[self.action]:
            return
        if self.action == "restart" and row["state"] == "running" and row.get("pid") == self.pids[name]:
            return  # still the old process: not back yet
        self.waiting.discard(name)
        back = self.total - len(self.waiting)
        line = f"{name} {row['state']}"
        if row.get("pid") and row["state"] == "running":
            line += f", pid {row['pid']}"
        if row["state"] in _FAILED and row.get("error"):
            line += f": {row['error']}"
        if self.total > 1:
            line += f" ({back} of {self.total})"
        self._say(line)

    def _say(self, line: str) -> None:
        with self._lock:
            if self._done:
                return
            self._clear_status()
            self.out.write(cell(line) + "\n")
            if self.tty and self.waiting and self.total > 1:
                waited = time.monotonic() - self.started
                self.out.write(f"  … waiting for {len(self.waiting)} of {self.total} ({waited:.0f}s)")
                self._status_shown = True
            self.out.flush()

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
