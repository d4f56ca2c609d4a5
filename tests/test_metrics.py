"""`GET /metrics` on a real daemon, read with Prometheus' own text parser."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from conftest import Stoker, wait_for
from prometheus_client.parser import text_string_to_metric_families

PY = sys.executable


def scrape(port: int, token: str | None = "t0ken") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by (name, sorted labels)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics(stoker: Stoker, unused_tcp_port: int) -> None:
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{unused_tcp_port}"
        token = "t0ken"

        [programs.web]
        command = ["sleep", "300"]
        instances = 2
        start_seconds = 0

        [programs.parked]
        command = ["sleep", "300"]
        autostart = false

        [tasks.ok]
        command = ["true"]
        queue = "work"

        [tasks.bad]
        command = ["{PY}", "-c", "raise SystemExit(3)"]
        queue = "work"
        max_attempts = 2
        backoff = {{ min = "10ms", max = "10ms" }}

        [queues.work]
        concurrency = 3

        [queues.idle]
        concurrency = 1

        [schedules.tick]
        every = "1s"
        command = ["true"]
        """
    )
    stoker.up()
    stoker.wait_state("web:1", "running")
    for _ in range(3):
        stoker.client.enqueue("ok")
    bad = stoker.client.enqueue("bad")
    assert stoker.client.wait(bad.id, timeout=30).state == "failed"
    assert stoker.cli("queue", "pause", "idle").returncode == 0

    def scraped_enough() -> dict | None:
        m = scrape(unused_tcp_port)
        done = m.get(
            ("stoker_job_attempts_total", (("outcome", "succeeded"), ("queue", "work"), ("task", "ok")))
        )
        fired = m.get(("stoker_schedule_lateness_seconds_count", (("schedule", "tick"),)), 0)
        return m if done == 3 and fired >= 1 else None

    m = wait_for(scraped_enough, timeout=30, what="three jobs done and a schedule fired")
    web0 = (("instance", "0"), ("program", "web"))
    assert m[("stoker_program_up", web0)] == 1
    assert m[("stoker_program_up", (("instance", "0"), ("program", "parked")))] == 0
    assert m[("stoker_program_state", (*web0[:1], ("program", "web"), ("state", "running")))] == 1
    assert m[("stoker_program_state", (*web0[:1], ("program", "web"), ("state", "stopped")))] == 0
    assert m[("stoker_program_restarts_total", web0)] == 0
    assert m[("stoker_program_memory_bytes", web0)] > 0
    bad_labels = (("queue", "work"), ("task", "bad"))
    assert m[("stoker_job_attempts_total", (("outcome", "failed"), *bad_labels))] == 2
    assert m[("stoker_jobs_finished_total", (*bad_labels[:1], ("state", "failed"), bad_labels[1]))] == 1
    ok_labels = (("queue", "work"), ("state", "succeeded"), ("task", "ok"))
    assert m[("stoker_jobs_finished_total", ok_labels)] == 3
    assert m[("stoker_job_attempt_duration_seconds_count", bad_labels)] == 2
    assert m[("stoker_job_attempt_duration_seconds_bucket", (("le", "+Inf"), *bad_labels))] == 2
    assert m[("stoker_queue_concurrency", (("queue", "work"),))] == 3
    assert m[("stoker_queue_paused", (("queue", "idle"),))] == 1
    assert m[("stoker_queue_paused", (("queue", "work"),))] == 0
    assert m[("stoker_queue_depth", (("queue", "work"),))] == 0


def test_metrics_need_the_token_on_tcp(stoker: Stoker, unused_tcp_port: int) -> None:
    stoker.write(f'[daemon]\nlisten = "127.0.0.1:{unused_tcp_port}"\ntoken = "t0ken"\n')
    stoker.up()
    try:
        scrape(unused_tcp_port, token=None)
    except urllib.error.HTTPError as e:
        assert e.code == 401
    else:
        raise AssertionError("/metrics answered without the token")
