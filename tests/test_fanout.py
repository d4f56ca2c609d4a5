"""A thousand listeners on /api/v1/events while a batch of jobs runs (issue 24, finding 8):
every listener gets every event, and `stoker status` is answered meanwhile. The daemon's CPU
time and the slowest status are printed (`-s`), for docs/reliability.md, not asserted."""

from __future__ import annotations

import os
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Stoker, wait_for

from stoker.client import Client

LISTENERS = 1000
JOBS = 300
DONE = b'"state":"succeeded"'


@pytest.fixture
def many_files() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Listeners:
    """`count` event streams on the unix socket, read by one thread: how many finished jobs
    each has seen so far."""

    def __init__(self, path: str, count: int) -> None:
        self.selector = selectors.DefaultSelector()
        self.connected = [False] * count
        self.done = [0] * count
        self.tails = [b""] * count
        self.closed: list[int] = []
        self.socks = []
        for i in range(count):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(path)
            sock.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: stoker\r\n\r\n")
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, i)
            self.socks.append(sock)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                i = key.data
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    chunk = sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    self.selector.unregister(sock)
                    self.closed.append(i)
                    continue
                seen = self.tails[i] + chunk  # an event may be split between two reads
                if not self.connected[i] and b'"type":"connected"' in seen:
                    self.connected[i] = True
                self.done[i] += seen.count(DONE)
                self.tails[i] = seen[-(len(DONE) - 1) :]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        for sock in self.socks:
            sock.close()
        self.selector.close()


def test_a_thousand_event_listeners_get_every_event_of_a_batch_and_status_answers(
    stoker: Stoker, many_files: None
) -> None:
    stoker.write(
        """
        [tasks.noop]
        command = "true"
        [queues.default]
        concurrency = 8
        """
    )
    daemon = stoker.up()
    path = str(stoker.state_dir / "stoker.sock")
    listeners = Listeners(path, LISTENERS)
    statuses: list[float] = []
    stop = threading.Event()

    def ask_status() -> None:  # `stoker status`, as someone would type it, all along
        client = Client(socket_path=path, timeout=120)
        while not stop.is_set():
            began = time.monotonic()
            assert client.status()["pid"] == daemon.pid
            statuses.append(time.monotonic() - began)
            stop.wait(0.2)

    try:
        wait_for(lambda: all(listeners.connected), 60, "every listener connected")
        cpu, began = cpu_seconds(daemon.pid), time.monotonic()
        asker = threading.Thread(target=ask_status, daemon=True)
        asker.start()
        assert len(stoker.client.enqueue_many("noop", [{} for _ in range(JOBS)])) == JOBS
        wait_for(
            lambda: min(listeners.done) >= JOBS or listeners.closed,
            600,
            f"every listener to see {JOBS} jobs succeed (fewest so far: {min(listeners.done)})",
        )
        used, took = cpu_seconds(daemon.pid) - cpu, time.monotonic() - began
        stop.set()
        asker.join(120)
    finally:
        stop.set()
        listeners.close()
    assert not listeners.closed, f"{len(listeners.closed)} event streams were closed"
    assert min(listeners.done) == max(listeners.done) == JOBS
    assert statuses, "status was never answered"
    print(
        f"\n{LISTENERS} listeners, {JOBS} jobs: every listener saw every job succeed;"
        f" daemon CPU {used:.2f} s, {took:.1f} s from enqueue until the last listener had"
        f" them all; status answered {len(statuses)} times, slowest {max(statuses) * 1000:.0f} ms"
    )
