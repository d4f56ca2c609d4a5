"""Fault injection, hostile input and load, against a real daemon with real processes.

What happens when the daemon is SIGKILLed amid thousands of jobs, when a program crash-loops,
when the disk fills, when the config is wrong, and when the API is fed garbage, huge bodies,
slow clients or a flood. Every assertion is about correctness (nothing lost, nothing run
twice that should not be, bounded spawns and CPU, an answer at all): no timing assertions.
The figures (rates, latencies, RSS at scale) are in bench/scale.py; docs/reliability.md
lists both.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, free_port, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stoker.api.body_limit import MAX_BODY
from stoker.client import Client

PY = sys.executable
FINISHED = ("succeeded", "failed", "cancelled")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def all_jobs(client: Client) -> dict[int, dict[str, Any]]:
    """Every job in the store, through the API's paged listing."""
    out: dict[int, dict[str, Any]] = {}
    before: int | None = None
    while page := client.jobs(limit=1000, before=before):
        out.update((job["id"], dict(job)) for job in page)
        before = min(job["id"] for job in page)
    return out


# --------------------------------------------------------------------------------------------
# Open files: a thousand programs under systemd's default soft limit
# --------------------------------------------------------------------------------------------


def test_more_instances_than_the_soft_open_file_limit_allows_all_run(stoker: Stoker) -> None:
    """systemd starts services with a soft limit of 1024 open files; each instance holds a log
    file, a pipe and a pidfd. Here the soft limit is 256 and there are 150 instances."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"the hard open file limit is {hard}")
    stoker.write(
        """
        [programs.many]
        command = ["sleep", "1000"]
        instances = 150
        start_seconds = 0
        stop_timeout = "2s"
        """
    )
    stoker.up(preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    wait_for(
        lambda: all(r["state"] == "running" for r in stoker.client.programs()),
        30,
        f"150 instances running; log:\n{stoker.log_text()[-2000:]}",
    )
    assert "Too many open files" not in stoker.log_text()


# --------------------------------------------------------------------------------------------
# Hostile config
# --------------------------------------------------------------------------------------------

# A config that uses every section, so a mutation can land anywhere.
BASE = {
    "daemon": {"timezone": "UTC", "shutdown_timeout": "5s"},
    "programs": {
        "db": {"command": "sleep 100", "start_seconds": "1s"},
        "web": {
            "command": ["sleep", "100"],
            "depends_on": ["db"],
            "backoff": {"min": "1s", "max": "1m"},
            "stop_signal": "TERM",
            "log": {"max_size": "1MB", "keep": 3},
        },
    },
    "tasks": {"build": {"command": ["echo", "{pkg}"], "queue": "build", "max_attempts": 3, "timeout": "10m"}},
    "queues": {"build": {"concurrency": 2}},
    "schedules": {
        "nightly": {
            "cron": "0 3 * * *",
            "timezone": "Asia/Shanghai",
            "task": "build",
            "params": {"pkg": "a"},
        },
        "often": {"every": "30m", "command": "true", "overlap": "skip"},
    },
    "notify": {"ops": {"url": "https://hooks.example.com/x", "timeout": "5s"}},
}
# Where a mutation goes: (section, table or None, key).
PLACES = [
    ("daemon", None, k) for k in ("timezone", "shutdown_timeout", "listen", "state_dir", "store", "lisen")
] + [
    ("programs", "web", k)
    for k in ("command", "depends_on", "backoff", "stop_signal", "log", "instances", "start_seconds",
              "restart", "ready", "max_memory", "cron_restart", "environment", "comand")
] + [
    ("tasks", "build", k) for k in ("command", "queue", "max_attempts", "timeout", "backoff", "params", "retries")
] + [("queues", "build", k) for k in ("concurrency", "paralel")] + [
    ("schedules", "nightly", k) for k in ("cron", "timezone", "task", "params", "catch_up", "jitter", "every")
] + [("schedules", "often", k) for k in ("every", "overlap", "command")] + [
    ("notify", "ops", k) for k in ("url", "events", "timeout", "crash_loop", "headers")
]  # fmt: skip
HOSTILE_VALUES: list[Any] = [
    # wrong types
    1, -1, 0, 2**63, 1.5, math.inf, True, [], [1, "x"], {}, {"x": 1}, "",
    # bad durations, cron, zones, names; a cycle (web depends on itself)
    "forever", "-1s", "10 parsecs", "1e400s", "61 * * * *", "* * *", "@hourly now", "0 0 30 2 *",
    "Mars/Olympus", "UTC+25", "../../etc/passwd", "Europe/", ["ghost"], ["web"], ["db", "db"],
    "nope", "KILLME", "1TB", "http://", "ftp://x", "127.0.0.1:99999", "a\x00b", "{missing}",
]  # fmt: skip


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, str):  # astral characters raw: TOML refuses escaped surrogate pairs
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return json.dumps(value)  # int, float: JSON's spelling is TOML's


def toml_text(config: dict[str, Any]) -> str:
    out = []
    for section, body in config.items():
        if section == "daemon":
            out.append("[daemon]")
            out += [f"{k} = {toml_value(v)}" for k, v in body.items()]
            continue
        for name, table in body.items():
            out.append(f"[{section}.{name}]")
            out += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


def check_in_process(path: Path) -> tuple[int, str]:
    """`stoker -c PATH check` in this process: (exit code, stderr). Anything but SystemExit
    escaping main() is what a user would see as a traceback."""
    from stoker.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            main(["-c", str(path), "check"])
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
    return code, err.getvalue()


# One mutation may be refused through another key it relates to: a key that names one of these
# may answer for the mutated one.
RELATED = {
    "depends_on": {"depends_on", "programs"},
    "task": {"task", "params"},
    "params": {"params", "command", "task"},
    "command": {"command", "params", "task"},
    "every": {"every", "cron"},
    "cron": {"cron", "every"},
    "queue": {"queue", "queues"},
    "listen": {"listen", "token"},
    "backoff": {"backoff", "backoff.min", "backoff.max"},
}


def mutated(mutations: list[tuple[tuple[str, str | None, str], Any]]) -> str:
    """BASE with each (place, value) set, as TOML."""
    config = json.loads(json.dumps(BASE))
    for (section, table, key), value in mutations:
        where = config[section] if table is None else config[section][table]
        where[key] = value
        if (section, table, key) == ("schedules", "nightly", "every"):
            where.pop("cron", None)  # one trigger each
    return toml_text(config)


def assert_refused_by_name(path: Path, keys: set[str]) -> int:
    """`stoker check` says ok, or exits 2 with one line that names one of `keys` (or a key
    it relates to): never another exit code, never a traceback."""
    code, err = check_in_process(path)
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith(f"stoker: {path}: ") and err.count("\n") == 1, err
        names = set().union(*(RELATED.get(key, {key}) for key in keys))
        assert any(re.search(rf"\b{re.escape(n)}\b", err) for n in names), f"none of {keys} named in: {err}"
    return code


def test_every_hostile_value_in_every_place_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "stoker.toml"
    refused = 0
    for place in PLACES:
        for value in HOSTILE_VALUES:
            path.write_text(mutated([(place, value)]))
            refused += assert_refused_by_name(path, {place[2]}) == 2
    assert refused > 0.8 * len(PLACES) * len(HOSTILE_VALUES)  # most of them are wrong, and said so


JUNK = st.recursive(
    st.sampled_from(HOSTILE_VALUES)
    | st.text(st.characters(codec="utf-8"), max_size=10)  # no lone surrogates: TOML has none
    | st.integers()
    | st.floats(allow_nan=False)
    | st.booleans(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["min", "max", "x", ""]), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(st.tuples(st.sampled_from(PLACES), JUNK), min_size=1, max_size=3))
def test_hypothesis_configs_are_exit_2_naming_a_key_never_a_traceback(
    tmp_path_factory: pytest.TempPathFactory, mutations: list[tuple[tuple[str, str | None, str], Any]]
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "stoker.toml"
    path.write_text(mutated(mutations))
    assert_refused_by_name(path, {key for (_, _, key), _ in mutations})


def test_the_base_config_of_the_fuzz_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "stoker.toml"
    path.write_text(toml_text(BASE))
    assert check_in_process(path) == (0, "")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
        ("a = " + "{b = " * 3000 + "1" + "}" * 3000, "nested too deeply"),
        ("[programs.a]\ncommand = 'true'\ndepends_on = ['b']\n[programs.b]\ncommand = 'true'\ndepends_on = ['a']\n",
         "[programs.a] depends_on: the programs depend on each other in a circle: a → b → a"),
        ("[schedules.s]\ncron = '61 * * * *'\ncommand = 'true'\n", "[schedules.s] cron:"),
        ("[schedules.s]\nevery = '1m'\ntimezone = 'Mars/Olympus'\ncommand = 'true'\n", "[schedules.s] timezone:"),
        ("[programs.a]\ncommand = 'true'\nstop_timeout = 'forever'\n", "[programs.a] stop_timeout:"),
        ("[programs.a]\ncommand = 'true'\nrestrat = 'always'\n", 'unknown key "restrat"'),
        ("[programs.a]\ncommand = 'true'\ninstances = '3'\n", "[programs.a] instances:"),
    ],
)  # fmt: skip
def test_hostile_configs_through_the_real_cli_are_exit_2_without_a_traceback(
    stoker: Stoker, text: str, says: str
) -> None:
    stoker.config.write_text(text)
    for command in ("check", "up"):
        result = stoker.cli(command)
        assert result.returncode == 2, result.stderr
        assert says in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_config_that_never_ends_is_refused_not_read_to_the_end() -> None:
    result = subprocess.run(
        [PY, "-m", "stoker", "-c", "/dev/zero", "check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "larger than 10 MB" in result.stderr, result.stderr


# --------------------------------------------------------------------------------------------
# Hostile HTTP: garbage, huge bodies, slow clients, a flood
# --------------------------------------------------------------------------------------------


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length (every answer of the daemon but streams)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return int(status_line.split()[1]), headers, body


def request(port: int, method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def exchange(port: int, raw: bytes, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_response(sock)


@pytest.fixture
def api(stoker: Stoker) -> Iterator[int]:
    """A daemon listening on loopback TCP (no token), with programs, tasks and a call task."""
    port = free_port()
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{port}"

        [programs.web]
        command = ["sleep", "1000"]
        instances = 3
        start_seconds = 0

        [tasks.echo]
        command = ["echo", "{{text}}"]
        [tasks.noop]
        command = ["true"]
        queue = "noop"
        [tasks.dump]
        call = "json:dumps"
        params = ["obj"]

        [queues.noop]
        concurrency = 2
        """
    )
    stoker.up()
    wait_for(lambda: all(r["state"] == "running" for r in stoker.client.programs()), what="the programs")
    yield port
    assert "Traceback" not in stoker.log_text(), stoker.log_text()[-4000:]


DEEP = b'{"task": "dump", "params": {"obj": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
GARBAGE_BODIES = [
    b"", b"{", b"}", b"\xff\xfe\x00", b"[]", b"null", b"42", b'"task"', b'{"task": 5}',
    b'{"task": "echo", "params": {"text": "x"}, "priority": 99999999999999999999999}',
    b'{"task": "echo", "params": {"text": "x"}, "priority": -99999999999999999999999}',
    b'{"task": "echo", "params": {"text": "x"}, "delay": 1e999}',
    b'{"task": "echo", "params": {"text": "x"}, "run_at": "0000-00-00"}',
    b'{"task": "echo", "params": {"text": "\\ud800"}}', b'{"task": "echo", "params": {"text": null}}',
    b'{"task": "' + b"x" * 1_000_000 + b'"}', b'{"task": "echo", "extra": 1}', DEEP,
]  # fmt: skip


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/jobs/batch", "/api/v1/programs/web/signal"])
def test_malformed_json_is_a_4xx_with_a_reason_never_a_5xx(stoker: Stoker, api: int, path: str) -> None:
    for body in GARBAGE_BODIES:
        status, _, answer = exchange(api, request(api, "POST", path, body))
        assert 400 <= status < 500, (body[:80], status, answer[:300])
        assert json.loads(answer)["error"]["message"], answer
    # Not HTTP at all: uvicorn answers 400 and closes; the daemon goes on.
    for junk in (
        b"\x00" * 100 + b"\r\n\r\n",
        b"GET / HTTP/9\r\n\r\n",
        b"POST /api/v1/jobs HTTP/1.1\r\n" * 50 + b"\r\n",
    ):
        with contextlib.suppress(ConnectionError):
            assert exchange(api, junk)[0] == 400
    assert stoker.daemon is not None and stoker.client.status()["pid"] == stoker.daemon.pid
    assert stoker.client.jobs() == []  # nothing was stored


def test_a_huge_body_is_refused_without_being_read(stoker: Stoker, api: int) -> None:
    assert stoker.daemon is not None
    pid = stoker.daemon.pid
    before = peak_rss(pid)
    # A Content-Length over the limit: refused at once, before a byte of the body is sent.
    head = request(api, "POST", "/api/v1/jobs").replace(b"Content-Length: 0", b"Content-Length: 1000000000")
    status, headers, body = exchange(api, head)
    assert status == 413 and json.loads(body)["error"]["code"] == "too_large"
    assert headers.get("connection") == "close"
    # Chunked, with no length: refused once what came passes the limit; 64 MB are offered.
    head = (
        b"POST /api/v1/jobs/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
    answer: tuple[int, dict[str, str], bytes] | None = None
    sent = 0
    with socket.create_connection(("127.0.0.1", api), timeout=30) as sock:
        sock.sendall(head)
        try:
            while sent < 64 << 20:
                sock.sendall(chunk)
                sent += 1 << 20
                sock.setblocking(False)
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            sock.settimeout(30)
            answer = read_response(sock)
        except (ConnectionResetError, BrokenPipeError, ConnectionError):
            pass  # closed while we were still sending: refused just the same
    assert sent < 64 << 20, "the daemon read 64 MB of body"
    if answer is not None:
        assert answer[0] == 413, answer
    grown = peak_rss(pid) - before
    assert grown < 2 * MAX_BODY + (16 << 20), f"the daemon's peak RSS grew by {grown >> 20} MB"
    assert stoker.client.status()["pid"] == pid
