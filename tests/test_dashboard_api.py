"""What the API adds for the dashboard: CPU per program, program events, the tasks a form can
enqueue, jobs done/failed per minute per queue, and the dashboard's files served without the
token (while every API call still needs it)."""

from __future__ import annotations

import http.client
import json
import sys
import threading
from typing import Any

from conftest import Stoker, wait_for

from stoker.api.rates import FinishCounts
from stoker.api.usage import CpuMeter
from stoker.jobs.rules import JobState
from stoker.store import Job

PY = sys.executable


# CPU: pure arithmetic ----------------------------------------------------------------------


def test_cpu_first_look_is_the_average_since_start_or_unknown_while_young() -> None:
    meter = CpuMeter(window=1.0)
    assert meter.look({10: 3.0, 11: 0.1}, {10: 6.0, 11: 0.5}, now=100.0) == {10: 50.0, 11: None}


def test_cpu_is_measured_between_looks_a_window_apart() -> None:
    meter = CpuMeter(window=1.0)
    meter.look({10: 3.0}, {10: 6.0}, now=100.0)
    # Too soon after the previous look: the last whole window's figure, not a noisy one.
    assert meter.look({10: 3.1}, {10: 6.2}, now=100.2) == {10: 50.0}
    # Two seconds later, one CPU second more: 50% of one core over that window.
    assert meter.look({10: 4.0}, {10: 8.0}, now=102.0) == {10: 50.0}
    assert meter.look({10: 6.0}, {10: 9.0}, now=103.0) == {10: 200.0}  # two busy threads
    # A process group whose total falls (an orphan reaped elsewhere) shows 0, not less.
    assert meter.look({10: 5.0}, {10: 10.0}, now=104.0) == {10: 0.0}


def test_cpu_samples_of_gone_processes_are_forgotten() -> None:
    meter = CpuMeter(window=1.0)
    meter.look({10: 3.0, 11: 1.0}, {10: 6.0, 11: 2.0}, now=100.0)
    meter.keep_only([11])
    # 10 is a new process group now (a pid reused): its first look again.
    assert meter.look({10: 0.5}, {10: 1.0}, now=100.5) == {10: 50.0}


def test_cpu_of_real_programs(stoker: Stoker) -> None:
    stoker.write(
        f"""
        [programs.spinner]
        command = ["{PY}", "-c", "while True: pass"]
        [programs.sleeper]
        command = "sleep 1000"
        """
    )
    stoker.up()
    stoker.wait_state("spinner:0", "running")

    def figures() -> dict[str, Any] | None:
        rows = stoker.programs()
        spinning, sleeping = rows["spinner:0"]["cpu"], rows["sleeper:0"]["cpu"]
        # A busy loop on a shared 2-core machine: well above idle, whatever else runs.
        if spinning is not None and spinning > 20 and sleeping is not None and sleeping < 5:
            return rows
        return None

    wait_for(figures, what="a busy program's CPU to show as busy and a sleeping one's as idle")
    row = stoker.client.programs("spinner")[0]
    assert row["memory"] > 0 and isinstance(row["cpu"], float)


# jobs done and failed per minute: pure -----------------------------------------------------


def _job(state: JobState, queue: str = "mail") -> Job:
    return Job(
        id=1,
        task="send",
        queue=queue,
        state=state,
        params={},
        priority=0,
        attempt=1,
        max_attempts=1,
        run_at=0.0,
        created_at=0.0,
    )


def test_finish_counts_cover_the_last_minute() -> None:
    now = [1000.0]
    counts = FinishCounts(clock=lambda: now[0])
    for state in (JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.FAILED, JobState.QUEUED, JobState.RUNNING):
        counts.observe({"type": "job", "job": _job(state)})
    counts.observe({"type": "job", "job": _job(JobState.SUCCEEDED, queue="build")})
    counts.observe({"type": "queue", "queue": "mail", "paused": True})
    assert counts.last_minute("mail", "succeeded") == 2
    assert counts.last_minute("mail", "failed") == 1
    assert counts.last_minute("build", "succeeded") == 1
    assert counts.last_minute("other", "failed") == 0
    now[0] = 1030.0
    counts.observe({"type": "job", "job": _job(JobState.SUCCEEDED)})
    assert counts.last_minute("mail", "succeeded") == 3
    now[0] = 1060.5  # the first ones are a minute old now
    assert counts.last_minute("mail", "succeeded") == 1
    assert counts.last_minute("mail", "failed") == 0
    now[0] = 1091.0
    assert counts.last_minute("mail", "succeeded") == 0


# over a real daemon -------------------------------------------------------------------------


def test_tasks_queue_rates_and_program_events(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.sleeper]
        command = "sleep 1000"

        [tasks.greet]
        command = ["echo", "hello {name}", "{greeting}"]
        queue = "fast"
        max_attempts = 2
        timeout = "30s"
        [tasks.broken]
        command = ["false"]
        [tasks.pycall]
        call = "json:dumps"

        [queues.fast]
        concurrency = 2
        """
    )
    stoker.up()
    tasks = {t["name"]: t for t in stoker.client.request("GET", "/api/v1/tasks")}
    assert tasks["greet"] == {
        "name": "greet",
        "kind": "command",
        "queue": "fast",
        "required": ["name", "greeting"],
        "optional": [],
        "open_ended": False,
        "params": [
            {
                "name": name,
                "type": "string",
                "required": True,
                "default": None,
                "choices": None,
                "pattern": None,
                "min": None,
                "max": None,
                "max_length": 4096,
                "description": None,
                "allow_option": False,
                "extra": False,
            }
            for name in ("name", "greeting")
        ],
        "max_attempts": 2,
        "timeout": 30.0,
    }
    assert tasks["broken"]["required"] == [] and tasks["broken"]["queue"] == "default"
    assert tasks["pycall"]["kind"] == "call" and tasks["pycall"]["open_ended"] is True

    events: list[dict[str, Any]] = []
    connected = threading.Event()

    def read() -> None:
        for event in stoker.client.events():
            if event.get("type") == "connected":
                connected.set()
            events.append(event)

    threading.Thread(target=read, daemon=True).start()
    assert connected.wait(20)

    client = stoker.client
    client.wait(client.enqueue("greet", name="a", greeting="b").id, timeout=20)
    client.wait(client.enqueue("broken").id, timeout=20)
    queues = {q["name"]: q for q in client.queues()}
    assert queues["fast"]["done_per_minute"] == 1 and queues["fast"]["failed_per_minute"] == 0
    assert queues["default"]["done_per_minute"] == 0 and queues["default"]["failed_per_minute"] == 1

    client.program_action("sleeper", "stop")

    def program_states() -> list[str]:
        return [e["program"]["state"] for e in list(events) if e.get("type") == "program"]

    wait_for(lambda: "stopped" in program_states(), what="a program event saying sleeper stopped")
    stopped = next(
        e["program"] for e in events if e.get("type") == "program" and e["program"]["state"] == "stopped"
    )
    assert stopped["name"] == "sleeper:0" and stopped["pid"] is None
    assert stopped["memory"] is None and stopped["cpu"] is None  # an event costs no /proc scan


def _get(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    response = conn.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def test_dashboard_files_need_no_token_but_the_api_does(stoker: Stoker, unused_tcp_port: int) -> None:
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{unused_tcp_port}"
        token = "s3cret"
        [programs.sleeper]
        command = "sleep 1000"
        """
    )
    stoker.up()
    status, headers, body = _get(unused_tcp_port, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<script type="module" src="dashboard/main.js">' in body
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "set-cookie" not in headers
    status, headers, _ = _get(unused_tcp_port, "/dashboard/main.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    # Only the dashboard's own files: nothing else of the package, no path out of the folder.
    for path in ("/dashboard/__init__.py", "/dashboard/nope.js", "/dashboard/..%2F__init__.py"):
        status, _, body = _get(unused_tcp_port, path)
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found", path
    # Every API call still needs the token, with the JSON error shape.
    for path in ("/api/v1/programs", "/api/v1/events", "/api/v1/tasks", "/api/v1/openapi.json"):
        status, headers, body = _get(unused_tcp_port, path)
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized", path
        assert headers["www-authenticate"] == "Bearer"
    status, _, _ = _get(unused_tcp_port, "/api/v1/tasks", token="s3cret")
    assert status == 200
    # The unix socket serves the dashboard too.
    assert b"<title>stoker</title>" in stoker.client.text("/")
