"""`stoker restart` says each instance as it comes back (on a terminal with a line counting
what it still waits for; plain into a pipe; nothing with --json), and `stoker status` sums up
a program of many instances (issue 19). A real daemon, real processes, the real CLI; the
terminal is a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

from conftest import Stoker

PY = sys.executable


def config(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.worker]
        command = "sleep 1000"
        instances = 12
        start_seconds = "0.3s"
        [programs.pair]
        command = "sleep 1000"
        instances = 2
        start_seconds = "0.1s"
        [programs.bad]
        command = ["sh", "-c", "echo 'db: Connection refused' >&2; exit 2"]
        instances = 2
        backoff = { min = "30s", max = "60s" }
        """
    )


def test_restart_says_each_instance_as_it_comes_back(stoker: Stoker) -> None:
    config(stoker)
    stoker.up()
    for i in range(12):
        stoker.wait_state(f"worker:{i}", "running")
    before = {r["name"]: r["pid"] for r in stoker.client.programs("worker")}

    piped = stoker.cli("restart", "worker")  # stderr into a pipe: plain lines
    assert piped.returncode == 0, piped.stderr
    lines = piped.stderr.splitlines()
    assert lines[0] == "restarting 12 instances…"
    came = [re.fullmatch(r"(worker:\d+) running, pid (\d+) \((\d+) of 12\)", line) for line in lines[1:]]
    assert all(came) and len(came) == 12, piped.stderr
    assert sorted(m.group(1) for m in came if m) == sorted(before)
    assert [int(m.group(3)) for m in came if m] == list(range(1, 13))
    assert not {int(m.group(2)) for m in came if m} & set(before.values())  # new processes
    assert "\r" not in piped.stderr and "\x1b" not in piped.stderr
    assert "12 instances: 12 running" in piped.stdout  # the table, as before, on stdout

    as_json = stoker.cli("restart", "worker", "--json")
    assert as_json.returncode == 0 and as_json.stderr == ""  # one document, no progress
    assert len(json.loads(as_json.stdout)) == 12

    # on a terminal: the same lines, and a status line rewritten in place
    main, child = pty.openpty()
    try:
        proc = subprocess.Popen(
            [PY, "-m", "stoker", "-c", str(stoker.config), "restart", "worker"],
            stdout=subprocess.PIPE,
            stderr=child,
            cwd=stoker.root,
        )
        os.close(child)
        child = -1
        seen = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the command closed the terminal (it exited)
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(60) == 0
        assert proc.stdout is not None
        proc.stdout.close()
    finally:
        os.close(main)
        if child >= 0:
            os.close(child)
    text = seen.decode()
    assert "… waiting for 11 of 12 (" in text, text  # the status line after the first
    assert text.count("\r\x1b[K") >= 12  # rewritten before each line and at the end
    assert text.count(" running, pid ") == 12
    assert "waiting for 0 " not in text and text.rstrip().endswith("(12 of 12)")  # nothing left over

    # start of a program that fails: each says why
    failed = stoker.cli("restart", "bad")
    assert failed.returncode == 1
    assert re.search(r"^bad:0 backoff: exited with code 2 after \d\.\d\ds: db: Connection refused \(\d of 2\)$",
                     failed.stderr, re.MULTILINE), failed.stderr  # fmt: skip


def test_status_sums_up_a_program_of_many_instances(stoker: Stoker) -> None:
    config(stoker)
    stoker.up()
    for i in range(12):
        stoker.wait_state(f"worker:{i}", "running")
    stoker.wait_state("pair:1", "running")
    stoker.wait_state("bad:1", "backoff")
    lines = stoker.cli("status").stdout.splitlines()
    # 12 alike: the summary line alone; 2 alike: the summary, then each; unalike: each
    worker = [line for line in lines if line.startswith("worker")]
    assert len(worker) == 1 and worker[0].split()[:2] == ["worker", "running"], lines
    assert worker[0].endswith("12 instances: 12 running (stoker status worker lists them)")
    pair = [line for line in lines if line.startswith("pair")]
    assert [line.split()[0] for line in pair] == ["pair", "pair:0", "pair:1"]
    assert pair[0].endswith("2 instances: 2 running")
    bad = [line for line in lines if line.startswith("bad")]
    assert [line.split()[0] for line in bad] == ["bad", "bad:0", "bad:1"]
    assert bad[0].endswith("2 instances: 2 backoff")
    # named: every instance listed, under its summary
    named = stoker.cli("status", "worker").stdout.splitlines()
    assert [line.split()[0] for line in named[1:]] == ["worker", *[f"worker:{i}" for i in range(12)]]
    # one down: the summary counts it and the instances are listed again
    assert stoker.cli("stop", "worker:3").returncode == 0
    lines = stoker.cli("status").stdout.splitlines()
    worker = [line for line in lines if line.startswith("worker")]
    assert worker[0].endswith("12 instances: 11 running, 1 stopped"), worker[0]
    assert len(worker) == 13
    assert len(json.loads(stoker.cli("status", "--json").stdout)) == 16  # --json: the instances, as ever
