"""Fault injection, hostile input and load, against a real daemon with real processes.

What happens when the daemon is SIGKILLed amid thousands of jobs, when a program crash-loops,
when the disk fills, when the config is wrong, and when the API is fed garbage, huge bodies,
slow clients or a flood. Every assertion is about correctness (nothing lost, nothing run
twice that should not be, bounded spawns and CPU, an answer at all): no timing assertions.
The figures (rates, latencies, RSS at scale) are in bench/scale.py; docs/reliability.md
lists both.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import math
import os
import re
import resource
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, free_port, marked_pids, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stoker.api.body_limit import MAX_BODY
from stoker.client import Client, ClientError

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
# SIGKILL amid 2,000 jobs
# --------------------------------------------------------------------------------------------

N_JOBS = 2000


def test_sigkill_amid_2000_jobs_loses_none_and_repeats_only_those_in_flight(
    stoker: Stoker, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"  # one line per execution: the job's id
    stoker.write(
        f"""
        [tasks.work]
        command = ["sh", "-c", "echo $STOKER_JOB_ID >> {runs}; sleep 0.02"]
        queue = "work"
        [queues.work]
        concurrency = 8
        """
    )
    stoker.up()
    accepted = [i for _ in range(N_JOBS // 500) for i in stoker.client.enqueue_many("work", [{}] * 500)]
    # While jobs run, a client keeps enqueueing one at a time: it is enqueueing as the daemon dies.
    single: list[int] = []
    refused: list[BaseException] = []

    def enqueue_one_by_one() -> None:
        client = Client(socket_path=stoker.state_dir / "stoker.sock", timeout=10)
        while True:
            try:
                single.append(client.enqueue("work").id)
            except (ClientError, OSError) as e:  # the daemon is gone
                refused.append(e)
                return

    enqueuer = threading.Thread(target=enqueue_one_by_one)
    enqueuer.start()
    wait_for(lambda: len(lines(runs)) >= N_JOBS // 3 and len(single) >= 20, 60, "a third of the jobs to run")
    stoker.kill()
    enqueuer.join(30)
    assert refused, "the enqueuer saw the daemon die"
    accepted += single

    # The jobs the dead daemon started finish on their own (they carry no death signal); once
    # they have, what they wrote is everything the first daemon ran.
    wait_for(lambda: not marked_pids(str(stoker.state_dir)), 30, "the dead daemon's jobs to end")
    ran_before = Counter(int(n) for n in lines(runs))
    db = sqlite3.connect(f"file:{stoker.state_dir / 'stoker.db'}?mode=ro", uri=True)
    with contextlib.closing(db):
        at_kill = dict(db.execute("SELECT id, state FROM jobs").fetchall())
    assert set(accepted) <= set(at_kill), "every job answered 201 was on disk"
    in_flight = {i for i in ran_before if at_kill[i] != "succeeded"}  # ran, end not recorded
    assert 0 < len(ran_before) < len(accepted), "the kill came amid the jobs"

    stoker.up()
    last = max(accepted)
    wait_for(
        lambda: (
            stoker.client.job(last)["state"] in FINISHED
            and all(q["queued"] == q["running"] == 0 for q in stoker.client.queues())
        ),
        120,
        "every job to finish after the restart",
    )
    jobs = all_jobs(stoker.client)
    ran = Counter(int(n) for n in lines(runs))

    # Nothing accepted is lost: every accepted job is there, succeeded, and really ran.
    assert all(jobs[i]["state"] == "succeeded" for i in accepted)
    assert set(accepted) <= set(ran)
    # At most one more job than was answered: the enqueue in flight at the kill may have been
    # committed without its answer reaching the client.
    assert len(set(jobs) - set(accepted)) <= 1
    # Each daemon ran each job at most once; a job ran twice only if it was in flight at the
    # kill (ran, its end not on disk); one whose success was recorded never ran again.
    assert max(ran_before.values()) == 1 and max((ran - ran_before).values()) == 1
    repeated = {i for i, n in ran.items() if n > 1}
    assert repeated <= in_flight, (repeated - in_flight, in_flight)
    for job_id in repeated:
        if at_kill[job_id] == "running":  # the next daemon found it running: it says so
            outcomes = [a["outcome"] for a in stoker.client.job(job_id).attempts]
            assert outcomes[0] == "interrupted", outcomes
    print(f"accepted {len(accepted)}, ran before the kill {len(ran_before)}, in flight {len(in_flight)},"
          f" ran twice {len(repeated)}")  # fmt: skip


# --------------------------------------------------------------------------------------------
# Crash loops
# --------------------------------------------------------------------------------------------


def most_failed_starts(window: float, low: float = 1.0, high: float = 60.0) -> int:
    """The most spawns a program that dies at once can get within `window` seconds: every
    backoff delay is at least half its step (stoker.backoff: equal jitter)."""
    spawns, t, failures = 1, 0.0, 0
    while True:
        failures += 1
        t += min(high, low * 2 ** (failures - 1)) / 2 * 0.99  # 1% for timer rounding
        if t > window:
            return spawns
        spawns += 1


def test_crash_loops_are_bounded_and_cost_the_daemon_little(stoker: Stoker, tmp_path: Path) -> None:
    """For about a minute: a program that exits at once (defaults: start_seconds 1 s, backoff
    1 s … 60 s) and one that lives just past start_seconds and then crashes, the case pm2's
    min_uptime counts as a good run and restarts without end. Since issue 22 the second backs
    off too (its first crash is restarted at once, every later one of the loop waits), and
    both are shown as crash loops."""
    stoker.write(
        f"""
        [programs.instant]
        command = ["sh", "-c", "echo x >> {tmp_path}/instant; exit 1"]

        [programs.late]
        command = ["sh", "-c", "echo x >> {tmp_path}/late; sleep 1.2; exit 1"]
        start_seconds = "1s"
        """
    )
    daemon = stoker.up()
    wait_for(lambda: lines(tmp_path / "instant") and lines(tmp_path / "late"), what="both to start")
    t0, cpu0 = time.monotonic(), cpu_seconds(daemon.pid)
    # The window ends when the late one has been spawned 8 times: 40 to 72 s, by the jitter.
    wait_for(lambda: len(lines(tmp_path / "late")) >= 8, 150, "7 crashes of the late program")
    elapsed, cpu = time.monotonic() - t0, cpu_seconds(daemon.pid) - cpu0
    rows = stoker.programs()
    instant, late = len(lines(tmp_path / "instant")), len(lines(tmp_path / "late"))
    print(f"{elapsed:.1f} s: instant spawned {instant}×, late {late}×, daemon CPU {cpu:.2f} s")

    assert instant <= most_failed_starts(elapsed + 1.0)  # +1: it was spawned before t0
    # each crash of the late one waits what the failed start before it would have: one more
    assert late <= most_failed_starts(elapsed + 1.0) + 1
    assert cpu < 1.0, f"the daemon used {cpu:.2f} s of CPU in {elapsed:.0f} s of crash loops"
    assert rows["instant:0"]["state"] in ("backoff", "starting")
    assert rows["instant:0"]["error"].startswith("exited with code 1 after")
    assert rows["late:0"]["restarts"] >= 7
    for name in ("instant:0", "late:0"):  # both shown as what they are
        assert rows[name]["crash_loop"]["exits"] >= 5, rows[name]
    assert "crash loop: " in stoker.cli("status", "late").stdout


# --------------------------------------------------------------------------------------------
# Disk full
# --------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs as the state dir (<tmp>/.stoker), mounted by the test; skipped where it
    cannot mount (not root, a container without CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    disk = tmp_path / ".stoker"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


def fill(path: Path) -> None:
    """Write zeros to `path` until the disk says ENOSPC."""
    with open(path, "wb", buffering=0) as f:
        block = b"\0" * 65536
        try:
            while True:
                f.write(block)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        with contextlib.suppress(OSError):  # the last partial block
            while True:
                f.write(b"\0" * 512)


def test_disk_full_programs_keep_running_daemon_answers_logging_resumes(
    small_disk: Path, stoker: Stoker, tmp_path: Path
) -> None:
    progress = tmp_path / "progress"  # outside the small disk: how far the writer got
    (tmp_path / "writer.py").write_text(
        "import itertools, os, time\n"
        f"progress = {str(progress)!r}\n"
        "for i in itertools.count():\n"
        "    print(f'line {i:07d} ' + 'x' * 100, flush=True)\n"
        "    if i % 50 == 0:\n"
        "        with open(progress + '.new', 'w') as f: f.write(str(i))\n"
        "        os.replace(progress + '.new', progress)\n"
        "    time.sleep(0.002)\n"
    )
    stoker.write(
        f"""
        [programs.writer]
        command = ["{PY}", "writer.py"]
        start_seconds = 0
        log = {{ max_size = "256KB", keep = 2 }}

        [tasks.echo]
        command = ["echo", "{{text}}"]
        """
    )
    stoker.up()
    assert stoker.state_dir == small_disk
    writer = stoker.wait_state("writer:0", "running")

    def written() -> int:
        return int(progress.read_text()) if progress.exists() else -1

    wait_for(lambda: written() > 200, what="the writer to write")
    fill(small_disk / "filler")
    full_at = written()
    wait_for(lambda: written() > full_at + 2000, 60, "the writer to go on writing on a full disk")

    # The daemon answers; the program was not stopped or slowed to a halt by the full disk.
    row = stoker.programs()["writer:0"]
    assert row["state"] == "running" and row["pid"] == writer["pid"] and row["restarts"] == 0
    assert stoker.cli("status").returncode == 0
    # Jobs on a full disk: a batch that needs new pages of the database is refused with the
    # reason (503), as one transaction: none of it is kept. Never a 500.
    with pytest.raises(ClientError) as refused:
        stoker.client.enqueue_many("echo", [{"text": "x" * 1000}] * 1000)
    assert refused.value.status == 503 and refused.value.code == "store_unavailable", refused.value
    assert "full" in str(refused.value), refused.value

    (small_disk / "filler").unlink()
    free_at = written()
    log = small_disk / "logs" / "writer.0.log"

    def resumed() -> bool:
        files = [p for p in (log.with_name(f"writer.0.log.{n}") for n in (2, 1)) if p.exists()] + [log]
        text = "".join(p.read_text(errors="replace") for p in files if p.exists())
        lost = re.search(r"\[stoker\] (\d+) bytes of output were lost \(No space left on device\)\n", text)
        return bool(lost and re.search(rf"line {free_at + 100:07d} ", text[lost.end() :]))

    wait_for(resumed, 60, "logging to resume, with the lost bytes counted")
    assert stoker.programs()["writer:0"]["pid"] == writer["pid"]
    assert stoker.client.jobs() == []  # the refused batch left nothing behind
    job = stoker.client.enqueue("echo", text="space again")
    done = stoker.client.wait(job.id, timeout=30)
    assert done.state == "succeeded" and done.output == "space again\n"
    assert len(stoker.client.enqueue_many("echo", [{"text": "x" * 1000}] * 1000)) == 1000
    assert "Traceback" not in stoker.log_text(), stoker.log_text()[-3000:]


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
] + [("schedules", "often", k) for k in ("every", "overlap", "command", "when_file")] + [
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
    ids=["nested arrays", "nested tables", "cycle", "cron", "zone", "duration", "unknown key", "type"],
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


API_TOKEN = "fault-finding-token"


def request(port: int, method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {API_TOKEN}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def exchange(port: int, raw: bytes, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_response(sock)


@pytest.fixture
def api(stoker: Stoker) -> Iterator[int]:
    """A daemon listening on loopback TCP, with programs, tasks and a call task."""
    port = free_port()
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{port}"
        token = "{API_TOKEN}"

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
        b"Authorization: Bearer " + API_TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
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


def test_slow_clients_do_not_hold_up_others(stoker: Stoker, api: int) -> None:
    """Twenty clients each send a header a byte at a time (a byte a second: slowloris); the
    others are answered meanwhile, and the slow ones too once they finish."""
    assert stoker.daemon is not None
    slow = [socket.create_connection(("127.0.0.1", api), timeout=30) for _ in range(20)]
    try:
        partial = request(api, "GET", "/api/v1/status")
        for sock in slow:
            sock.sendall(partial[:10])
        for sent in range(10, 14):  # four rounds of one more byte each, a second apart
            for sock in slow:
                sock.sendall(partial[sent : sent + 1])
            for _ in range(5):
                status, _, body = exchange(api, request(api, "GET", "/api/v1/programs"))
                assert status == 200 and len(json.loads(body)) == 3
            time.sleep(1)  # the slow client's pace (not a wait for some state)
        for sock in slow:
            sock.sendall(partial[14:])
        for sock in slow:
            status, _, body = read_response(sock)
            assert status == 200 and json.loads(body)["pid"] == stoker.daemon.pid
    finally:
        for sock in slow:
            sock.close()


FLOOD = 10_000
CONNECTIONS = 50


async def _flood(port: int) -> Counter[int]:
    """FLOOD requests over CONNECTIONS keep-alive connections: reads, 404s, garbage, enqueues."""
    mix = [
        request(port, "GET", "/api/v1/status"),
        request(port, "GET", "/api/v1/programs"),
        request(port, "GET", "/api/v1/jobs?limit=20"),
        request(port, "GET", "/api/v1/queues"),
        request(port, "GET", "/api/v1/nothing"),
        request(port, "POST", "/api/v1/jobs", b"{garbage"),
        request(port, "GET", "/metrics"),
        request(port, "POST", "/api/v1/jobs", b'{"task": "noop"}'),
    ]
    statuses: Counter[int] = Counter()

    async def one_connection(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in range(FLOOD // CONNECTIONS):
                writer.write(mix[(n + i) % len(mix)])
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                found = re.search(rb"content-length: (\d+)", head, re.I)
                assert found, head
                await reader.readexactly(int(found.group(1)))
                statuses[int(head.split(b" ", 2)[1])] += 1
        finally:
            writer.close()

    await asyncio.gather(*(one_connection(n) for n in range(CONNECTIONS)))
    return statuses


def test_a_flood_of_10000_requests_over_50_connections_while_programs_run(stoker: Stoker, api: int) -> None:
    before = stoker.programs()
    flooding = threading.Event()
    flooding.set()
    status_runs: list[subprocess.CompletedProcess[str]] = []

    def status_meanwhile() -> None:
        while flooding.is_set():
            # the CLI over the unix socket, as an operator would run it; 60 s is the "answers at
            # all" deadline, not a performance figure
            status_runs.append(stoker.cli("status", timeout=60))

    watcher = threading.Thread(target=status_meanwhile)
    watcher.start()
    try:
        statuses = asyncio.run(_flood(api))
    finally:
        flooding.clear()
        watcher.join(120)
    assert sum(statuses.values()) == FLOOD
    assert set(statuses) <= {200, 201, 400, 404}, statuses
    assert statuses[201] == FLOOD // 8
    assert status_runs, "`stoker status` answered during the flood"
    assert all(r.returncode == 0 and "web:2" in r.stdout for r in status_runs), status_runs[-1]
    after = stoker.programs()
    assert {n: (r["pid"], r["restarts"]) for n, r in after.items()} == {
        n: (r["pid"], r["restarts"]) for n, r in before.items()
    }
    # the enqueued jobs all run
    wait_for(
        lambda: all(q["queued"] == 0 and q["running"] == 0 for q in stoker.client.queues()),
        60,
        "the noop jobs",
    )
    print(f"{statuses}, {len(status_runs)} `stoker status` runs answered during the flood")
