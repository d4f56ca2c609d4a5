"""Real daemons on a real PostgreSQL, one with its wall clock wrong (libfaketime preloaded, as
the `skew` fault of tests/netbench.py runs them): each node times what it writes to the shared
store, and its schedules' slots, by the database server's clock (stoker/skew.py; issue 21).

What proves it is the times the store holds, compared with the server's clock read by the test
(the test, the server and the machine share one clock): a node 120 s ahead would write times
120 s in the future (and so hold its jobs back from every other node for 120 s), and fire its
slots 120 s early. Each bound allows the threshold (0.5 s) and a little more."""

from __future__ import annotations

import os
import re
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, wait_for
from netbench import SLEEP, faketime_library
from test_postgres_daemon import all_finished, rows

AHEAD = 120  # seconds the skewed node's clock is ahead of the machine's
SLACK = 1.0  # the threshold (0.5 s), half a round trip, and room to spare

pytestmark = pytest.mark.skipif(faketime_library() is None, reason="libfaketime is not installed")


def ahead(root: Path, seconds: int = AHEAD) -> dict[str, str]:
    """The environment of a daemon whose wall clock is `seconds` ahead; its monotonic clock is
    the machine's. The sitecustomize works around libfaketime 0.9.10's EINVAL from Python's
    time.sleep (tests/netbench.py)."""
    site = root / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SLEEP)
    library = faketime_library()
    assert library is not None
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {
        "LD_PRELOAD": library,
        "FAKETIME": f"+{seconds}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": path,
    }


def server_now(url: str) -> float:
    [(now,)] = rows(url, "SELECT extract(epoch FROM clock_timestamp())::float8")
    return float(now)


def said_ahead(daemon: Stoker, node: str) -> bool:
    pattern = rf"node {node}: clock 1(19\.\d|20\.\d) s ahead of the database server; using the server's time"
    return re.search(pattern, daemon.log_text()) is not None


def config(url: str, node: str, shared: Path, more: str = "") -> str:
    return textwrap.dedent(
        f"""
        [daemon]
        store = "{url}"
        node = "{node}"
        node_timeout = "3s"
        [tasks.work]
        command = ["true"]
        [tasks.flaky]
        command = ["sh", "-c", "test -e flaked && exit 0; touch flaked; exit 1"]
        directory = "{shared}"
        max_attempts = 2
        backoff = {{ min = "1s", max = "1s" }}
        [tasks.once]
        command = ["sh", "-c", "test -e began && exit 0; touch began; exec sleep 600"]
        directory = "{shared}"
        """
    ) + textwrap.dedent(more)


def times_of(url: str, ids: list[int]) -> list[float]:
    """Every time the store holds of these jobs and their attempts."""
    listed = ",".join(map(str, ids))
    found = rows(
        url, f"SELECT run_at, created_at, started_at, finished_at FROM stoker.jobs WHERE id IN ({listed})"
    )
    found += rows(
        url, f"SELECT started_at, finished_at, 0, 0 FROM stoker.attempts WHERE job_id IN ({listed})"
    )
    return [float(t) for row in found for t in row if t is not None]


def test_jobs_a_node_ahead_queues_are_timed_by_the_servers_clock(
    stoker: Stoker, postgres_url: str, tmp_path: Path
) -> None:
    """Node a, 120 s ahead, enqueues jobs (now, and with a delay) and queues one again after a
    failed attempt: none is timed in the future, so node b (its clock right) may take them now."""
    shared = tmp_path / "shared"
    shared.mkdir()
    a, b = stoker, Stoker(tmp_path / "b")
    b.root.mkdir()
    a.write(config(postgres_url, "a", shared))
    b.write(config(postgres_url, "b", shared))
    try:
        a.up(env=ahead(a.root))
        b.up()
        assert said_ahead(a, "a"), a.log_text()
        assert "clock" not in b.log_text()  # on time: nothing corrected, nothing said
        ids = a.client.enqueue_many("work", [{} for _ in range(6)])
        ids.append(a.client.enqueue("work", delay="2s")["id"])
        ids.append(a.client.enqueue("flaky")["id"])
        queued_by = server_now(postgres_url)
        [(run_at, created_at)] = rows(
            postgres_url, f"SELECT run_at, created_at FROM stoker.jobs WHERE id = {ids[0]}"
        )
        assert created_at <= queued_by + SLACK and run_at <= queued_by + SLACK
        [(delayed,)] = rows(postgres_url, f"SELECT run_at FROM stoker.jobs WHERE id = {ids[6]}")
        assert delayed <= queued_by + 2 + SLACK
        done = wait_for(
            lambda: all_finished(b, ids), 60, f"the jobs to run; logs:\n{a.log_text()}\n{b.log_text()}"
        )
        assert all(job["state"] == "succeeded" for job in done), done
        assert done[-1]["attempt"] == 2  # queued again by a, after its failed attempt
        finished_by = server_now(postgres_url)
        assert max(times_of(postgres_url, ids)) <= finished_by + SLACK
    finally:
        assert not b.cleanup()


def test_a_job_a_node_ahead_queues_again_for_a_lapsed_node_is_not_held_back(
    stoker: Stoker, postgres_url: str, tmp_path: Path
) -> None:
    """Node b (its clock right) dies running a job; node a, 120 s ahead, takes b for dead and
    queues the job again: timed by the server's clock, not 120 s in the future."""
    shared = tmp_path / "shared"
    shared.mkdir()
    a, b = stoker, Stoker(tmp_path / "b")
    b.root.mkdir()
    a.write(config(postgres_url, "a", shared))
    b.write(config(postgres_url, "b", shared))
    try:
        b.up()
        job_id = b.client.enqueue("once")["id"]
        wait_for(
            lambda: b.client.job(job_id)["state"] == "running", 30, f"b to run the job; log:\n{b.log_text()}"
        )
        a.up(env=ahead(a.root))
        assert said_ahead(a, "a"), a.log_text()
        b.kill()  # SIGKILL: its heartbeat stops; a queues its job again after node_timeout
        everything = f"logs:\n{a.log_text()}\n{b.log_text()}"

        def ended() -> dict[str, Any] | None:
            job = dict(a.client.job(job_id))
            return job if job["state"] == "succeeded" else None

        job = wait_for(ended, 60, f"the job to run again; {everything}")
        assert [x["outcome"] for x in job["attempts"]] == ["interrupted", "succeeded"], job
        assert job["attempts"][0]["node"] == "b" and job["node"] == "a"
        assert max(times_of(postgres_url, [job_id])) <= server_now(postgres_url) + SLACK
    finally:
        if b.daemon is not None and b.daemon.poll() is None:
            b.daemon.send_signal(signal.SIGKILL)
        b.cleanup()  # the sleep its killed daemon left


def test_a_node_aheads_schedule_fires_no_slot_early(
    stoker: Stoker, postgres_url: str, tmp_path: Path
) -> None:
    """Node a, 120 s ahead, fires a schedule every 2 s: each slot's job starts no earlier than
    the slot's time by the machine's (the server's) clock, within the threshold."""
    shared = tmp_path / "shared"
    shared.mkdir()
    # the job reads the machine's clock, not its daemon's: started without the preload
    stamp = ["env", "-u", "LD_PRELOAD", "sh", "-c", "echo $STOKER_JOB_ID $(date +%s.%N) >> started.txt"]
    more = f"""
        [tasks.stamp]
        command = {stamp!r}
        directory = "{shared}"
        [schedules.tick]
        every = "2s"
        task = "stamp"
        """.replace("'", '"')
    stoker.write(config(postgres_url, "a", shared, more))
    stoker.up(env=ahead(stoker.root))
    started = shared / "started.txt"

    def three() -> list[tuple[int, float]] | None:
        lines = started.read_text().split("\n") if started.exists() else []
        stamps = [(int(i), float(t)) for i, t in (line.split() for line in lines if line.strip())]
        return stamps if len(stamps) >= 3 else None

    stamps = wait_for(three, 60, f"3 slots to fire; log:\n{stoker.log_text()}")
    assert said_ahead(stoker, "a"), stoker.log_text()
    for job_id, at in stamps:
        [(slot,)] = rows(postgres_url, f"SELECT slot FROM stoker.jobs WHERE id = {job_id}")
        assert slot is not None and at >= slot - SLACK, (job_id, at, slot)
