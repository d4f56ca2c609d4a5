"""GET /api/v1/history from a real daemon: real jobs, a program that restarts, the daemon's
own figures; `[daemon] history = false`."""

from __future__ import annotations

import sys
from typing import Any

from conftest import Stoker, wait_for

from stoker.client import ClientError

PY = sys.executable


def total(points: list[float | None]) -> float:
    return sum(p for p in points if p is not None)


def test_history_counts_jobs_and_samples_programs(stoker: Stoker) -> None:
    stoker.write(
        f"""
        [programs.web]
        command = ["sleep", "300"]

        [programs.flaky]
        command = ["{PY}", "-c", "import time; time.sleep(0.5); raise SystemExit(1)"]
        start_seconds = 0

        [tasks.ok]
        command = ["true"]
        queue = "work"

        [tasks.bad]
        command = ["{PY}", "-c", "raise SystemExit(3)"]
        queue = "work"

        [queues.work]
        concurrency = 2

        [queues.idle]
        concurrency = 1

        [schedules.tick]
        every = "1s"
        command = ["true"]
        """
    )
    stoker.up()
    for _ in range(3):
        stoker.client.enqueue("ok")
    bad = stoker.client.enqueue("bad")
    assert stoker.client.wait(bad.id, timeout=30).state == "failed"

    def counted() -> dict[str, Any] | None:
        h = stoker.client.request("GET", "/api/v1/history?range=1h")
        work = h["queues"].get("work", {})
        return h if total(work.get("succeeded", [])) == 3 and total(work.get("failed", [])) == 1 else None

    h = wait_for(counted, timeout=30, what="three jobs succeeded and one failed in the history")
    assert h["range"] == "1h" and h["step"] == 10 and len(h["times"]) == 360
    work = h["queues"]["work"]
    assert total(work["enqueued"]) == 4 and total(work["started"]) == 4
    assert any(p is not None for p in work["run_p50"]) and any(p is not None for p in work["wait_p95"])
    assert set(work) == {
        "enqueued", "started", "succeeded", "failed", "depth",
        "wait_p50", "wait_p95", "run_p50", "run_p95",
    }  # fmt: skip

    def sampled() -> dict[str, Any] | None:
        h = stoker.client.request("GET", "/api/v1/history?range=1h")
        flaky, web = h["programs"].get("flaky", {}), h["programs"].get("web", {})
        memory = [p for p in web.get("memory", []) if p]
        ok = (
            memory
            and total(flaky.get("restarts", [])) >= 1
            and h["daemon"].get("rss")
            and "idle" in h["queues"]
        )
        return h if ok else None

    h = wait_for(sampled, timeout=60, what="programs, the daemon and the queues sampled")
    assert total(h["programs"]["flaky"]["changes"]) >= 2
    assert max(p for p in h["programs"]["web"]["running"] if p is not None) == 1
    assert max(p for p in h["daemon"]["rss"] if p is not None) > 10_000_000
    assert [p for p in h["queues"]["idle"]["depth"] if p is not None][-1] == 0
    lateness = [p for p in h["schedules"]["tick"]["lateness"] if p is not None]
    assert lateness and all(0 <= p < 5 for p in lateness)
    assert total(h["schedules"]["tick"]["failed"]) == 0
    assert set(h["queues"]) == {"work", "idle"}  # the schedule's own queue: the schedule stands for it

    # the coarse ranges, and the filters
    day = stoker.client.request("GET", "/api/v1/history?range=24h&queue=idle&program=web")
    assert day["step"] == 120 and len(day["times"]) == 720
    assert list(day["queues"]) == ["idle"] and list(day["programs"]) == ["web"]
    assert total(stoker.client.request("GET", "/api/v1/history?range=6h")["queues"]["work"]["succeeded"]) == 3
    try:
        stoker.client.request("GET", "/api/v1/history?range=2h")
    except ClientError as e:
        assert "range: expected one of 1h, 6h, 24h" in str(e)
    else:
        raise AssertionError("range=2h was accepted")


def test_history_off(stoker: Stoker) -> None:
    stoker.write(
        """
        [daemon]
        history = false
        [programs.web]
        command = ["sleep", "300"]
        """
    )
    stoker.up()
    try:
        stoker.client.request("GET", "/api/v1/history")
    except ClientError as e:
        assert "history = false" in str(e)
    else:
        raise AssertionError("a history with history = false")


def test_history_must_be_a_boolean(stoker: Stoker) -> None:
    stoker.write(
        """
        [daemon]
        history = "yes"
        """
    )
    result = stoker.cli("check")
    assert result.returncode == 2
    assert "history" in result.stderr and "true or false" in result.stderr


def test_history_is_read_at_start(stoker: Stoker) -> None:
    from stoker.config import load_config
    from stoker.reload import diff

    stoker.write("[programs.web]\ncommand = 'sleep 1'\n")
    old = load_config(stoker.config)
    assert old.daemon.history is True
    stoker.write("[daemon]\nhistory = false\n[programs.web]\ncommand = 'sleep 1'\n")
    assert diff(old, load_config(stoker.config)).needs_restart == ["[daemon] history"]
