"""Fault injection, hostile input and load, against a real daemon with real processes.

What happens when the daemon is SIGKILLed amid thousands of jobs, when a program crash-loops,
when the disk fills, when the config is wrong, and when the API is fed garbage, huge bodies,
slow clients or a flood. Every assertion is about correctness (nothing lost, nothing run
twice that should not be, bounded spawns and CPU, an answer at all): no timing assertions.
The figures (rates, latencies, RSS at scale) are in bench/scale.py; docs/reliability.md
lists both.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, wait_for

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
