"""Test harness: a real daemon in a temp dir, driven through the real CLI and socket.

Every daemon a test starts is stopped at teardown, and anything it left behind (found by the
STOKER_SUPERVISOR marker every child carries) is killed, so tests stay hermetic.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from stoker.client import Client, ClientError

# No property test has a deadline: on a shared 2-core machine one example now and then takes
# 700 ms for reasons of its own (seen: an empty graph), and a deadline is a timing assertion.
settings.register_profile("stoker", deadline=None)
settings.load_profile("stoker")

REQUIRE_ALL = os.environ.get("STOKER_TEST_REQUIRE_ALL") == "1"


def need(tool: str) -> str:
    """The path of a system tool; skip the test plainly without it (fail under CI's REQUIRE_ALL)."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (apt-get install it; .ci/run does)"
        if REQUIRE_ALL:
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


async def wait_for_async(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """`wait_for` inside an event loop (it sleeps without blocking it); `predicate` may be a
    coroutine function."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


# stoker's annotations of its own program logs (docs/operating.md): a timestamp before each line,
# a marker line at each start and exit.
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d ", re.MULTILINE)
MARKER = re.compile(r"^--- .* ---$")


def output_of(log: str) -> str:
    """A program log as the program wrote it: stoker's timestamps and marker lines taken off."""
    lines = STAMP.sub("", log).splitlines(keepends=True)
    return "".join(line for line in lines if not MARKER.match(line.rstrip("\n")))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Stoker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "stoker.toml"
        self.state_dir = root / ".stoker"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.daemon_log = root / "daemon.stderr"

    # config and CLI ------------------------------------------------------------------------

    def write(self, toml: str) -> None:
        self.config.write_text(textwrap.dedent(toml))

    def cli(
        self, *args: str, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stoker", "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            input=input,
        )

    def json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    @property
    def client(self) -> Client:
        return Client(socket_path=self.state_dir / "stoker.sock", timeout=30)

    # the daemon ----------------------------------------------------------------------------

    def up(
        self,
        *,
        wait: bool = True,
        preexec_fn: Callable[[], Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `stoker up` in the foreground as a child of the test; wait until it answers.
        `preexec_fn` runs in the child before the exec (to set a resource limit, say); `env`
        is added to the test's environment (a preloaded libfaketime, say)."""
        assert self.daemon is None or self.daemon.poll() is not None, "daemon already running"
        log = open(self.daemon_log, "ab")  # noqa: SIM115 - handed to the child
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "stoker", "-c", str(self.config), "up"],
            stdout=log,
            stderr=log,
            cwd=self.root,
            preexec_fn=preexec_fn,
            env=None if env is None else {**os.environ, **env},
        )
        log.close()
        if wait:
            wait_for(self._answers, what=f"the daemon to answer; its log:\n{self.log_text()}")
        return self.daemon

    def _answers(self) -> bool:
        assert self.daemon is not None
        if self.daemon.poll() is not None:
            raise AssertionError(f"daemon exited with {self.daemon.returncode}:\n{self.log_text()}")
        try:
            self.client.status()
        except ClientError:
            return False
        return True

    def log_text(self) -> str:
        return self.daemon_log.read_text(errors="replace") if self.daemon_log.exists() else ""

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM the foreground daemon and wait for it to exit."""
        assert self.daemon is not None
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
        return self.daemon.wait(timeout)

    def kill(self) -> None:
        assert self.daemon is not None
        self.daemon.kill()
        self.daemon.wait(10)

    # looking -------------------------------------------------------------------------------

    def programs(self) -> dict[str, dict[str, Any]]:
        return {row["name"]: row for row in self.client.programs()}

    def wait_state(self, name: str, state: str, timeout: float = 15, **where: Any) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            row = self.programs().get(name)  # None until a reload in flight has added it
            if row is not None and row["state"] == state and all(row[k] == v for k, v in where.items()):
                return row
            return None

        return wait_for(
            check, timeout, f"{name} to be {state} {where or ''}; log:\n{self.log_text()[-3000:]}"
        )

    def cleanup(self) -> list[int]:
        """Stop the daemon and kill any process it left; return the leftovers' pids."""
        if self.daemon is not None and self.daemon.poll() is None:
            try:
                self.terminate(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()
        leftovers = kill_marked(str(self.state_dir))
        remove_cgroups(str(self.state_dir))
        return leftovers


def remove_cgroups(state_dir: str) -> None:
    """Kill and remove the cgroups a daemon of `state_dir` left (one SIGKILLed leaves them for
    the next daemon of its state dir, which a test's temp dir never has)."""
    from stoker.supervise import cgroups

    try:
        with open("/proc/self/mountinfo") as f, open("/proc/self/cgroup") as g:
            home = cgroups.locate(f.read(), g.read())
    except OSError:
        return
    if home is not None and os.path.isdir(tree := os.path.join(home, cgroups.tree_name(state_dir))):
        cgroups.kill_and_remove(tree)


def marked_pids(state_dir: str) -> list[int]:
    """Processes started under this state dir's daemon (they carry STOKER_SUPERVISOR)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("STOKER_SUPERVISOR") == state_dir and proc.status() != "zombie":
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def kill_marked(state_dir: str) -> list[int]:
    pids = marked_pids(state_dir)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


@pytest.fixture
def stoker(tmp_path: Path) -> Iterator[Stoker]:
    s = Stoker(tmp_path)
    try:
        yield s
    finally:
        leftovers = s.cleanup()
        assert not leftovers, f"processes survived the daemon: {leftovers}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def unused_tcp_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A real PostgreSQL server for the whole session (see tests/postgres.py)."""
    from postgres import binaries, run_server

    bindir = binaries()
    if bindir is None:
        message = "PostgreSQL is not installed (apt-get install postgresql; .ci/run does)"
        if REQUIRE_ALL:
            pytest.fail(message)
        pytest.skip(message)
    yield from run_server(bindir)


@pytest.fixture
def postgres_url(postgres_server: Any) -> str:
    """The URL of an empty database of its own on the session's PostgreSQL server."""
    from postgres import fresh_database

    return fresh_database(postgres_server)


# --------------------------------------------------------------------------------------------
# Tests by cost: markers (registered in pyproject) given by what a test uses, so that
# `pytest -m "not slow"` (make test-fast) is a loop of seconds. docs/development-tests.md.
# --------------------------------------------------------------------------------------------

# Fixtures (used directly or through another fixture) that start something costly.
COST_BY_FIXTURE = {
    "stoker": "daemon",
    "open_stoker": "daemon",  # test_files', test_contained's: a daemon in a dir other users reach
    "postgres_server": "postgres",
    "browser": "browser",
}
# Files, and tests, that start it themselves, without those fixtures.
COST_BY_FILE = {
    "test_examples.py": "examples",
    "test_example_jobs.py": "examples",
    "test_examples_php.py": "examples",
    "test_dashboard.py": "browser",
    "test_partitions.py": "postgres",  # its own server, in a network namespace (tests/netbench.py)
}
COST_BY_TEST = {
    "test_install.py::test_the_wheel_installs_a_working_stoker": "daemon",
    "test_doors.py::test_a_page_of_another_site_in_chromium_cannot_queue_a_job": "browser",
}
SLOW = ("daemon", "postgres", "browser", "examples")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        costs = {cost for name, cost in COST_BY_FIXTURE.items() if name in fixtures}
        costs.update(marker.name for marker in item.iter_markers() if marker.name in SLOW)  # by hand
        test = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
        for cost in (COST_BY_FILE.get(item.path.name), COST_BY_TEST.get(test)):
            if cost:
                costs.add(cost)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "postgres" in callspec.params.values():
            costs.add("postgres")  # a backend parameter (its fixture asks for postgres_url then only)
        for cost in sorted(costs):
            item.add_marker(cost)
        item.add_marker("slow" if costs else "unit")
