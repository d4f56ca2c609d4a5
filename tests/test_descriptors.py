"""The daemon's file descriptors: TCP clients cannot take those it keeps for its own socket and
for spawning, and an accept that fails for want of one backs off quietly (issue 24, finding 1).

The daemons here run under a low RLIMIT_NOFILE (soft and hard, so the daemon cannot raise it)
and are given more connections than that. They must go on answering `stoker status` on the unix
socket, restarting a crashing program, and not spin: their CPU time and log size over the flood
are bounded (generously: these are "no spin, no flood" checks, not timings).
"""

from __future__ import annotations

import itertools
import logging
import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Stoker, free_port, wait_for
from hypothesis import given
from hypothesis import strategies as st

from stoker.api.listeners import SAY_EVERY, Trouble, tcp_descriptor_ceiling
from stoker.client import Client

TOKEN = "descriptors-test-token"
HALF = b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthori"  # half a head, never finished
LIMIT = 256  # the daemon's RLIMIT_NOFILE, soft and hard
FLOOD = 600  # connections the flood keeps trying to hold: more than LIMIT
FLOOD_SECONDS = 20
CPU_BOUND = 5.0  # seconds of daemon CPU over the flood: a spinning accept loop takes ~all of it
LOG_BOUND = 100_000  # bytes the daemon may log over the flood


@given(st.integers(1, 10**7))
def test_the_tcp_ceiling_keeps_a_reserve_below_the_limit(limit: int) -> None:
    ceiling = tcp_descriptor_ceiling(limit)
    assert 0 <= ceiling < limit
    assert limit - ceiling >= min(limit, 64)  # the reserve: at least 64, or all of a tiny limit
    assert ceiling >= limit // 2 or limit < 128  # and TCP gets at least half of a usable limit


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 30)), max_size=200))
def test_a_trouble_is_said_once_a_minute_at_most(steps: list[tuple[bool, float]]) -> None:
    """Whatever the pattern of failures and successes, each kind of line is said at most once
    per SAY_EVERY, and the first failure always is."""
    now = 0.0
    trouble = Trouble(lambda: "the door", clock=lambda: now)
    said: list[tuple[float, str]] = []
    handler = _Collect(said, lambda: now)
    logging.getLogger("stoker").addHandler(handler)
    try:
        for failed, wait in steps:
            now += wait
            if failed:
                trouble.happened("EMFILE")
            else:
                trouble.over("again")
    finally:
        logging.getLogger("stoker").removeHandler(handler)
    for kind in ("WARNING", "INFO"):
        times = [t for t, level in said if level == kind]
        assert all(b - a >= SAY_EVERY for a, b in itertools.pairwise(times))
    if any(failed for failed, _ in steps):
        assert said and said[0][1] == "WARNING"


class _Collect(logging.Handler):
    def __init__(self, into: list[tuple[float, str]], clock: Callable[[], float]) -> None:
        super().__init__()
        self.into, self.clock = into, clock

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append((self.clock(), record.levelname))


@pytest.fixture
def many_files() -> Iterator[None]:
    """This test process holds hundreds of sockets at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def start(stoker: Stoker) -> tuple[int, int]:
    """A daemon with a TCP door and a program that crashes every half second: (pid, port)."""
    port = free_port()
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{port}"
        token = "{TOKEN}"
        [programs.crasher]
        command = ["sh", "-c", "echo run >> {stoker.root}/runs; sleep 0.5; exit 1"]
        start_seconds = 0
        stable_seconds = 0
        backoff = {{ min = "0.2s", max = "1s" }}
        """
    )
    daemon = stoker.up(preexec_fn=low_limit)
    return daemon.pid, port


def runs(stoker: Stoker) -> int:
    try:
        return (stoker.root / "runs").read_text().count("run\n")
    except FileNotFoundError:
        return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def status_over_unix(stoker: Stoker) -> dict[str, object]:
    """`stoker status`'s request; a daemon that cannot accept leaves it waiting, then fails."""
    return Client(socket_path=stoker.state_dir / "stoker.sock", timeout=15).status()


def get_over_tcp(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"GET /api/v1/status HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


class Flood:
    """Keeps trying to hold `count` half-sent requests open on the TCP port, from 8 client
    addresses (so that the bound per client is not what stops it): a connection the daemon
    closes is opened again within a second."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.stop = threading.Event()
        self.held: list[socket.socket] = []
        self.opened = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self) -> Flood:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)
        for sock in self.held:
            sock.close()

    def run(self) -> None:
        while not self.stop.is_set():
            alive = []
            for sock in self.held:  # drop what the daemon closed (or answered)
                sock.setblocking(False)
                try:
                    gone = sock.recv(65536) is not None
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    sock.close()
                else:
                    alive.append(sock)
            self.held = alive
            while len(self.held) < self.count and not self.stop.is_set():
                source = f"127.0.0.{2 + len(self.held) % 8}"
                try:
                    sock = socket.create_connection(
                        ("127.0.0.1", self.port), timeout=5, source_address=(source, 0)
                    )
                    sock.sendall(HALF)
                except OSError:
                    break  # the backlog is full: the daemon is not accepting; try again later
                self.held.append(sock)
                self.opened += 1
            self.stop.wait(1)  # the flood's pace: each second, what was closed is opened again


def test_a_flood_of_half_open_connections_past_the_limit_leaves_the_daemon_whole(
    stoker: Stoker, many_files: None
) -> None:
    pid, port = start(stoker)
    wait_for(lambda: runs(stoker) >= 2, what="the crasher to run twice")
    cpu, log_size = cpu_seconds(pid), stoker.daemon_log.stat().st_size
    with Flood(port, FLOOD) as flood:
        wait_for(lambda: flood.opened >= LIMIT, 30, "the flood to open more connections than the limit")
        ends = time.monotonic() + FLOOD_SECONDS
        before, answered = runs(stoker), 0
        while time.monotonic() < ends:
            assert status_over_unix(stoker)["pid"] == pid
            answered += 1
            time.sleep(1)  # the pace of a person typing `stoker status` (not a wait for a state)
        restarted = runs(stoker) - before
        used = cpu_seconds(pid) - cpu
        logged = stoker.daemon_log.stat().st_size - log_size
        opened = flood.opened
    print(f"\n{opened} connections opened by the flood; {answered} statuses answered;"
          f" the crasher ran {restarted} times; daemon CPU {used:.2f} s, log +{logged} bytes")  # fmt: skip
    assert opened > LIMIT
    assert restarted >= 3, f"the crasher ran {restarted} times during the flood:\n{stoker.log_text()[-3000:]}"
    assert "Too many open files" not in stoker.log_text()
    assert logged < LOG_BOUND, stoker.log_text()[-3000:]
    assert used < CPU_BOUND, f"{used:.2f} s of CPU over a {FLOOD_SECONDS} s flood"
    # The flood is over: TCP requests are answered again.
    wait_for(lambda: get_over_tcp(port) == 200, 30, "a TCP request answered")


def test_an_accept_without_descriptors_backs_off_and_says_so_once(stoker: Stoker, many_files: None) -> None:
    """The owner's unix socket has no bound (it is the owner's door): here its connections take
    every descriptor, so that accept() itself fails on both listeners. The daemon must not spin
    or flood its log meanwhile, and must serve both doors once they are given back."""
    pid, port = start(stoker)
    path = str(stoker.state_dir / "stoker.sock")
    held: list[socket.socket] = []
    try:
        for _ in range(LIMIT + 50):  # the backlog takes what the daemon cannot accept
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(5)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                break
            held.append(sock)
        wait_for(
            lambda: len(os.listdir(f"/proc/{pid}/fd")) >= LIMIT - 1,
            30,
            "the daemon to run out of descriptors",
        )
        cpu, log_size = cpu_seconds(pid), stoker.daemon_log.stat().st_size
        tcp = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
        held += tcp
        wait_for(
            lambda: stoker.daemon_log.stat().st_size > log_size, 30, "the daemon to say it cannot accept"
        )
        time.sleep(10)  # the span over which CPU and log are measured (not a wait for a state)
        used = cpu_seconds(pid) - cpu
        logged = stoker.daemon_log.stat().st_size - log_size
        said = stoker.log_text()[log_size:]
    finally:
        for sock in held:
            sock.close()
    print(f"\ndaemon CPU {used:.2f} s over 10 s without descriptors; log +{logged} bytes:\n{said}")
    assert "Too many open files" in said
    assert logged < 10_000, said[-3000:]
    assert said.count("cannot accept connections on") <= 4, said  # a line or two per door, not per failure
    assert used < CPU_BOUND / 2, f"{used:.2f} s of CPU over 10 s"
    # given back: both doors serve again
    wait_for(lambda: status_over_unix(stoker)["pid"] == pid, 30, "status answered")
    wait_for(lambda: get_over_tcp(port) == 200, 30, "a TCP request answered")


def test_tcp_connections_past_the_ceiling_are_answered_503_at_once(stoker: Stoker, many_files: None) -> None:
    """Event streams with the token are long answers, not unfinished heads: the bound on those
    does not apply to them, the descriptor ceiling does."""
    pid, port = start(stoker)
    ceiling = tcp_descriptor_ceiling(LIMIT)
    streams, answers = [], []
    try:
        for _ in range(LIMIT):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            streams.append(sock)
            answer = b""
            try:
                sock.sendall(
                    f"GET /api/v1/events HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
                )
                while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
                    answer += chunk
            except ConnectionResetError:  # refused before its request came: the reset lost the answer
                answer = b"reset"
            answers.append(answer)
        served = [a for a in answers if a.startswith(b"HTTP/1.1 200 ")]
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 503 ") or a == b"reset"]
        assert len(refused) + len(served) == LIMIT, {a[:20] for a in answers}
        assert refused and len(served) < ceiling  # each served one took a descriptor below it
        # One more, that waits for the answer before it asks: 503 at once, in the API's shape.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503 ") and b'"code":"busy"' in answer, answer
        # What is kept: the unix socket answers, the crasher is restarted.
        before = runs(stoker)
        assert status_over_unix(stoker)["pid"] == pid
        wait_for(
            lambda: runs(stoker) >= before + 3, 30, f"the crasher to run again:\n{stoker.log_text()[-3000:]}"
        )
    finally:
        for sock in streams:
            sock.close()
    print(f"\n{len(served)} event streams served, {len(refused)} answered 503")
    said = stoker.log_text()
    assert "Too many open files" not in said
    assert said.count("refusing connections on") == 1, said[-3000:]  # once, not once per connection
    wait_for(lambda: get_over_tcp(port) == 200, 30, "a TCP request answered")
