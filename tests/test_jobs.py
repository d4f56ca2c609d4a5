"""Queued jobs with a real daemon, real processes and a real SQLite file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import Stoker, marked_pids, pid_alive, wait_for

from stoker.client import ClientError

PY = sys.executable
FINISHED = ("succeeded", "failed", "cancelled")


def finished(stoker: Stoker, job_id: int, timeout: float = 20) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job = stoker.client.job(job_id)
        return job if job["state"] in FINISHED else None

    result: dict[str, Any] = wait_for(
        check, timeout, f"job {job_id} to finish; log:\n{stoker.log_text()[-3000:]}"
    )
    return result


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_retries_then_final_failure_keeps_output(stoker: Stoker) -> None:
    stoker.write(
        """
        [tasks.flaky]
        command = ["sh", "-c", "echo try $STOKER_JOB_ATTEMPT of job $STOKER_JOB_ID; echo oops >&2; exit 7"]
        max_attempts = 3
        backoff = { min = "50ms", max = "100ms" }
        """
    )
    stoker.up()
    job = stoker.client.enqueue("flaky")
    assert job.state == "queued" and job.max_attempts == 3
    done = finished(stoker, job.id)
    assert done["state"] == "failed" and done["attempt"] == 3 and done["exit_code"] == 7
    assert done["error"] == "exited with code 7: oops"  # the last line of its output says why
    assert done["output"] == f"try 3 of job {job.id}\noops\n"
    assert [(a["number"], a["outcome"], a["exit_code"]) for a in done["attempts"]] == [
        (1, "failed", 7),
        (2, "failed", 7),
        (3, "failed", 7),
    ]
    log = stoker.cli("logs", f"job:{job.id}")
    assert log.returncode == 0
    assert "try 1 of job" in log.stdout and "try 3 of job" in log.stdout and "attempt 3" in log.stdout
    wait = stoker.cli("job", str(job.id), "--wait")
    assert wait.returncode == 1 and "exited with code 7" in wait.stdout


def test_succeeds_after_a_failure(stoker: Stoker, tmp_path: Path) -> None:
    marker = tmp_path / "failed-once"
    stoker.write(
        f"""
        [tasks.second_time_lucky]
        command = ["sh", "-c", "if [ -e {marker} ]; then echo ok; else touch {marker}; exit 1; fi"]
        max_attempts = 3
        backoff = {{ min = "50ms", max = "50ms" }}
        """
    )
    stoker.up()
    result = stoker.cli("enqueue", "second_time_lucky", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["state"] == "succeeded" and job["attempt"] == 2 and job["output"] == "ok\n"
    assert [a["outcome"] for a in job["attempts"]] == ["failed", "succeeded"]


def test_parameters_arrive_as_one_literal_argument(stoker: Stoker, tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    stoker.write(
        f"""
        [tasks.show]
        command = ["{PY}", "-c", "import json, os, sys; json.dump([sys.argv[1:], os.environ['STOKER_JOB_PARAMS']], open('{out}', 'w'))", "--to={{to}}", "{{to}}", "{{{{literal}}}}"]
        params = ["note"]
        """
    )
    stoker.up()
    hostile = "x; touch /tmp/pwned-$$ && echo $(id) `id` | cat > f 'q' \"d\" * ~ \n next"
    done = stoker.client.wait(stoker.client.enqueue("show", to=hostile, note=3).id, timeout=20)
    assert done.state == "succeeded", done
    argv, params = json.loads(out.read_text())
    assert argv == [f"--to={hostile}", hostile, "{literal}"]
    assert json.loads(params) == {"to": hostile, "note": 3}


def test_unknown_task_or_bad_params_are_refused_and_nothing_is_stored(stoker: Stoker) -> None:
    stoker.write(
        """
        [tasks.mail]
        command = ["true", "{to}"]
        """
    )
    stoker.up()
    for args, message in [
        (["nope"], "no task 'nope'"),
        (["mail"], "needs parameter(s) 'to'"),
        (["mail", "to=a", "cc=b"], "has no parameter 'cc'"),
        (["mail", "to:=[1]"], "must be text or a number"),
        (["mail", "to"], "expected NAME=VALUE"),
        (["mail", "to=a", "--in", "soon"], "delay"),
    ]:
        result = stoker.cli("enqueue", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    try:
        stoker.client.request("POST", "/api/v1/jobs", {"task": "mail", "params": {}})
    except ClientError as e:
        assert e.status == 422 and e.code == "invalid_params"
    else:
        raise AssertionError("accepted")
    assert stoker.client.jobs() == []


def test_concurrency_is_never_exceeded(stoker: Stoker, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    stoker.write(
        f"""
        [tasks.build]
        command = ["sh", "-c", "echo start >> {trace}; sleep 0.2; echo end >> {trace}"]
        queue = "build"
        [queues.build]
        concurrency = 2
        """
    )
    stoker.up()
    ids = stoker.client.enqueue_many("build", [{} for _ in range(8)])
    for job_id in ids:
        assert finished(stoker, job_id)["state"] == "succeeded"
    running = peak = 0
    for line in lines(trace):
        running += 1 if line == "start" else -1
        peak = max(peak, running)
    assert peak == 2 and lines(trace).count("end") == 8


def test_priority_then_age_decides_the_order(stoker: Stoker, tmp_path: Path) -> None:
    order = tmp_path / "order"
    stoker.write(
        f"""
        [tasks.note]
        command = ["sh", "-c", "echo {{n}} >> {order}"]
        """
    )
    stoker.up()
    assert stoker.cli("queue", "pause", "default").returncode == 0
    for n, priority in [(1, 0), (2, 5), (3, 0), (4, 9), (5, 5)]:
        stoker.client.enqueue("note", n=n, priority=priority)
    assert [q.queued for q in stoker.client.queues()] == [5]
    assert stoker.cli("queue", "resume", "default").returncode == 0
    wait_for(lambda: len(lines(order)) == 5, what="5 jobs")
    assert lines(order) == ["4", "2", "5", "1", "3"]


def test_delay_and_run_at(stoker: Stoker, tmp_path: Path) -> None:
    stoker.write(
        """
        [tasks.noop]
        command = ["true"]
        """
    )
    stoker.up()
    later = stoker.client.enqueue("noop", delay="1s")
    soon = stoker.client.enqueue("noop")
    assert finished(stoker, soon.id)["state"] == "succeeded"
    assert stoker.client.job(later.id).state == "queued"
    done = finished(stoker, later.id)
    assert done["started_at"] >= later.run_at
    at = stoker.cli("enqueue", "noop", "--at", "2999-01-01T00:00:00+00:00", "--json")
    assert json.loads(at.stdout)["run_at"].startswith("2999-01-01")


def test_dedup_key(stoker: Stoker) -> None:
    stoker.write(
        """
        [tasks.apk]
        command = ["sleep", "{secs}"]
        """
    )
    stoker.up()
    first = stoker.client.enqueue("apk", secs=30, key="com.example.app")
    second = stoker.client.enqueue("apk", secs=1, key="com.example.app")
    assert second.id == first.id and second.params == {"secs": 30}
    other = stoker.client.enqueue("apk", secs=0, key="com.example.other")
    assert other.id != first.id
    stoker.client.cancel(first.id)
    assert finished(stoker, first.id)["state"] == "cancelled"
    third = stoker.client.enqueue("apk", secs=0, key="com.example.app")
    assert third.id not in (first.id, other.id)


def test_timeout_kills_the_whole_tree(stoker: Stoker, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    stoker.write(
        f"""
        [tasks.stuck]
        command = ["sh", "-c", "sleep 300 & echo $! >> {pids}; trap '' TERM; echo $$ >> {pids}; wait"]
        timeout = "500ms"
        stop_timeout = "300ms"
        """
    )
    stoker.up()
    job = stoker.client.enqueue("stuck")
    done = finished(stoker, job.id)
    assert done["state"] == "failed" and done["error"] == "timed out after 500ms"
    assert done["attempts"][0]["outcome"] == "timed out"
    for pid in map(int, lines(pids)):
        wait_for(lambda pid=pid: not pid_alive(pid), 5, f"pid {pid} to die")


def test_cancel_running_stops_its_process_group(stoker: Stoker, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    stoker.write(
        f"""
        [tasks.long]
        command = ["sh", "-c", "sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait"]
        """
    )
    stoker.up()
    job = stoker.client.enqueue("long")
    wait_for(lambda: len(lines(pids)) == 2, what="the job to start")
    cancelled = stoker.cli("cancel", str(job.id), "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    done = finished(stoker, job.id)
    assert done["state"] == "cancelled" and done["attempts"][0]["outcome"] == "cancelled"
    for pid in map(int, lines(pids)):
        wait_for(lambda pid=pid: not pid_alive(pid), 5, f"pid {pid} to die")
    again = stoker.cli("cancel", str(job.id))
    assert again.returncode == 0
    retried = stoker.client.retry(job.id)
    assert retried.state == "queued" and retried.attempt == 0
    # The retry runs on the worker that ran the first attempt, as a rule: its cancel stops it
    # too (the worker took every stop of job 1 for the first attempt's, moot, and the job ran
    # on until the daemon killed the worker, 15 s later).
    wait_for(lambda: len(lines(pids)) == 4, what="the retried job to start")
    stoker.client.cancel(job.id)
    again_done = finished(stoker, job.id, timeout=5)
    assert again_done["state"] == "cancelled"
    assert [a["outcome"] for a in again_done["attempts"]] == ["cancelled", "cancelled"]
    for pid in map(int, lines(pids)[2:]):
        wait_for(lambda pid=pid: not pid_alive(pid), 5, f"pid {pid} of the retried run to die")
    refused = stoker.cli("retry", "999")
    assert refused.returncode == 2 and "no job 999" in refused.stderr


def test_sigkill_of_the_daemon_loses_no_job(stoker: Stoker, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    stoker.write(
        f"""
        [tasks.work]
        command = ["sh", "-c", "sleep 0.1; echo {{n}} >> {ran}"]
        queue = "work"
        [queues.work]
        concurrency = 4
        """
    )
    stoker.up()
    ids = stoker.client.enqueue_many("work", [{"n": n} for n in range(40)])
    wait_for(lambda: len(lines(ran)) >= 4, what="some jobs to run")
    stoker.kill()  # SIGKILL: jobs running and queued
    # what was on disk when it died (the jobs it had begun finish on their own: wait for them)
    wait_for(lambda: not marked_pids(str(stoker.state_dir)), 30, "the dead daemon's jobs to end")
    ran_before = {int(n) for n in lines(ran)}
    db = sqlite3.connect(f"file:{stoker.state_dir / 'stoker.db'}?mode=ro", uri=True)
    with contextlib.closing(db):
        at_kill = dict(db.execute("SELECT id, state FROM jobs").fetchall())
    in_flight = {n for n in ran_before if at_kill[ids[n]] != "succeeded"}  # ran, end not on disk
    stoker.up()
    for job_id in ids:
        assert finished(stoker, job_id, timeout=60)["state"] == "succeeded"
    done = Counter(int(n) for n in lines(ran))
    assert set(done) == set(range(40))  # every accepted job ran…
    # …and a job ran twice only if it was in flight at the kill (its end not on disk yet)
    assert {n for n, times in done.items() if times > 1} <= in_flight
    interrupted = [
        j
        for j in (stoker.client.job(i) for i in ids)
        if any(a["outcome"] == "interrupted" for a in j.attempts)
    ]
    assert 1 <= len(interrupted) <= 4
    assert all(j.attempt == 1 for j in interrupted)  # the interruption did not use up an attempt


def test_graceful_shutdown_waits_then_requeues(stoker: Stoker, tmp_path: Path) -> None:
    started = tmp_path / "started"
    stoker.write(
        f"""
        [daemon]
        shutdown_timeout = "300ms"
        [tasks.long]
        command = ["sh", "-c", "echo $STOKER_JOB_ATTEMPT >> {started}; sleep 300"]
        [tasks.quick]
        command = ["sh", "-c", "sleep 0.2"]
        queue = "q"
        """
    )
    stoker.up()
    long = stoker.client.enqueue("long")
    wait_for(lambda: lines(started) == ["1"], what="the long job to start")
    assert stoker.terminate() == 0
    job = _job_from_db(stoker, long.id)
    assert job["state"] == "queued"
    stoker.up()
    wait_for(lambda: lines(started) == ["1", "1"], what="the job to run again after the restart")
    detail = stoker.client.job(long.id)
    assert detail.state == "running" and detail.attempts[0]["outcome"] == "interrupted"
    stoker.client.cancel(long.id)
    assert finished(stoker, long.id)["state"] == "cancelled"


def test_paused_queue_stays_paused_across_restarts(stoker: Stoker) -> None:
    stoker.write(
        """
        [tasks.noop]
        command = ["true"]
        """
    )
    stoker.up()
    paused = stoker.json("queue", "pause", "default")
    assert paused == [
        {
            "name": "default",
            "concurrency": 1,
            "paused": True,
            "queued": 0,
            "running": 0,
            "done_per_minute": 0,
            "failed_per_minute": 0,
            "durability": "durable",
        }
    ]
    job = stoker.client.enqueue("noop")
    assert stoker.terminate() == 0
    stoker.up()
    assert stoker.client.job(job.id).state == "queued"
    assert stoker.json("queues")[0]["paused"] is True
    stoker.cli("queue", "resume", "default")
    assert finished(stoker, job.id)["state"] == "succeeded"


def test_listing_and_filters(stoker: Stoker) -> None:
    stoker.write(
        """
        [tasks.ok]
        command = ["true"]
        [tasks.bad]
        command = ["false"]
        queue = "other"
        """
    )
    stoker.up()
    a = stoker.client.enqueue("ok")
    b = stoker.client.enqueue("bad")
    finished(stoker, a.id)
    finished(stoker, b.id)
    assert [j["id"] for j in stoker.json("jobs")] == [b.id, a.id]
    assert [j["id"] for j in stoker.json("jobs", "--state", "failed")] == [b.id]
    assert [j["id"] for j in stoker.json("jobs", "--queue", "default")] == [a.id]
    assert [j["id"] for j in stoker.json("jobs", "--task", "bad")] == [b.id]
    table = stoker.cli("jobs")
    assert "failed" in table.stdout and "exited with code 1" in table.stdout
    assert stoker.cli("job", "12345").returncode == 2


def test_events_stream_job_changes(stoker: Stoker) -> None:
    stoker.write(
        """
        [tasks.noop]
        command = ["true"]
        """
    )
    stoker.up()
    seen: list[tuple[int, str]] = []
    connected = threading.Event()

    def read() -> None:
        for event in stoker.client.events():
            if event.get("type") == "connected":
                connected.set()
            if event.get("type") == "job":
                seen.append((event["job"]["id"], event["job"]["state"]))
                if event["job"]["state"] == "succeeded":
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert connected.wait(20)
    job = stoker.client.enqueue("noop")
    reader.join(20)
    assert (job.id, "queued") in seen and (job.id, "running") in seen and (job.id, "succeeded") in seen


def _job_from_db(stoker: Stoker, job_id: int) -> dict[str, Any]:
    import sqlite3

    db = sqlite3.connect(stoker.state_dir / "stoker.db")
    db.row_factory = sqlite3.Row
    try:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return dict(row)
    finally:
        db.close()


def test_spawn_error_fails_the_attempt(stoker: Stoker) -> None:
    stoker.write(
        """
        [tasks.missing]
        command = ["/no/such/program"]
        """
    )
    stoker.up()
    done = finished(stoker, stoker.client.enqueue("missing").id)
    assert done["state"] == "failed" and done["error"] == "command not found: /no/such/program"


def test_job_environment(stoker: Stoker, tmp_path: Path) -> None:
    out = tmp_path / "env"
    stoker.write(
        f"""
        [tasks.env]
        command = ["sh", "-c", "env > {out}"]
        environment = {{ APP_ENV = "prod" }}
        """
    )
    stoker.up()
    job = stoker.client.enqueue("env")
    finished(stoker, job.id)
    env = dict(line.split("=", 1) for line in lines(out) if "=" in line)
    assert env["APP_ENV"] == "prod" and env["STOKER_TASK"] == "env"
    assert env["STOKER_JOB_ID"] == str(job.id) and env["STOKER_JOB_ATTEMPT"] == "1"
    assert json.loads(env["STOKER_JOB_PARAMS"]) == {}
    assert env["STOKER_NODE"] == stoker.client.status()["node"]
    assert os.path.samefile(env["PWD"], stoker.root)


def test_a_command_is_found_on_the_jobs_path_and_again_when_it_moves(stoker: Stoker) -> None:
    """The daemon looks a bare command name up itself, on the job's PATH (relative entries
    from the task's directory), and trusts the place for a moment: a program that moved
    meanwhile is looked up again, not reported missing."""
    for name in ("first", "second"):
        (stoker.root / name).mkdir()
    program = stoker.root / "second" / "hello"
    program.write_text("#!/bin/sh\necho hello from $0\n")
    program.chmod(0o755)
    stoker.write(
        f"""
        [tasks.hello]
        command = ["hello"]
        environment = {{ PATH = "first:second:{os.environ.get("PATH", "")}" }}
        """
    )
    stoker.up()
    done = finished(stoker, stoker.client.enqueue("hello").id)
    assert done["state"] == "succeeded" and done["output"].strip() == "hello from second/hello"
    program.rename(stoker.root / "first" / "hello")
    done = finished(stoker, stoker.client.enqueue("hello").id)
    assert done["state"] == "succeeded" and done["output"].strip() == "hello from first/hello"


def test_follow_a_jobs_output_until_it_ends(stoker: Stoker, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    stoker.write(
        f"""
        [tasks.talk]
        command = ["sh", "-c", "echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second"]
        """
    )
    stoker.up()
    job = stoker.client.enqueue("talk")
    wait_for(lambda: stoker.client.job(job.id).output == "first\n", what="the first line")
    import subprocess

    follower = subprocess.Popen(
        [sys.executable, "-m", "stoker", "-c", str(stoker.config), "logs", f"job:{job.id}", "-f"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "first\n"
        gate.touch()
        assert follower.stdout.readline() == "second\n"
        assert follower.wait(20) == 0  # the stream ends with the job
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_an_unwritable_database_is_a_clear_refusal(stoker: Stoker) -> None:
    stoker.write(
        """
        [tasks.noop]
        command = ["true"]
        """
    )
    stoker.up()
    import sqlite3

    # Another writer holding the database's write lock longer than the busy timeout makes
    # every write fail the way a full disk does: the API must say so, and lose nothing else.
    db = sqlite3.connect(stoker.state_dir / "stoker.db", isolation_level=None, timeout=60)
    db.execute("PRAGMA busy_timeout = 60000")
    job = stoker.client.enqueue("noop")
    stoker.client.wait(job.id, timeout=20)
    db.execute("BEGIN IMMEDIATE")
    try:
        try:
            stoker.client.enqueue("noop")
        except ClientError as e:
            assert e.status == 503 and e.code == "store_unavailable" and "locked" in str(e)
        else:
            raise AssertionError("accepted while the database could not be written")
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert stoker.client.wait(stoker.client.enqueue("noop").id, timeout=20).state == "succeeded"


def test_a_running_jobs_output_is_its_current_attempt(stoker: Stoker, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    stoker.write(
        f"""
        [tasks.again]
        command = ["sh", "-c", "echo attempt $STOKER_JOB_ATTEMPT; [ $STOKER_JOB_ATTEMPT = 2 ] || exit 1; while [ ! -e {gate} ]; do sleep 0.05; done"]
        max_attempts = 2
        backoff = {{ min = "50ms", max = "50ms" }}
        """
    )
    stoker.up()
    job = stoker.client.enqueue("again")
    wait_for(lambda: stoker.client.job(job.id).output == "attempt 2\n", what="attempt 2 to print")
    gate.touch()
    done = finished(stoker, job.id)
    assert done["state"] == "succeeded" and done["output"] == "attempt 2\n"
    assert done["attempts"][0]["error"] == "exited with code 1: attempt 1"


def test_a_job_left_running_by_a_killed_daemon_is_stopped_before_it_runs_again(
    stoker: Stoker, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    stoker.write(
        f"""
        [tasks.long]
        command = ["sh", "-c", "echo $$ >> {runs}; exec sleep 300"]
        """
    )
    stoker.up()
    job = stoker.client.enqueue("long")
    wait_for(lambda: len(lines(runs)) == 1, what="the job to start")
    # (its start is recorded a moment after it begins: a daemon killed before then leaves it
    # queued, to run again with no interrupted attempt on record)
    wait_for(lambda: stoker.client.job(job.id).state == "running", what="its start to be recorded")
    orphan = int(lines(runs)[0])
    stoker.kill()
    assert pid_alive(orphan)  # a job is not tied to the daemon's life…
    stoker.up()
    wait_for(lambda: not pid_alive(orphan), 10, "the next daemon to stop the leftover")
    wait_for(lambda: len(lines(runs)) == 2, what="the job to run again")  # …but never runs twice at once
    detail = stoker.client.job(job.id)
    assert detail.state == "running" and [a["outcome"] for a in detail.attempts] == ["interrupted"]
    stoker.client.cancel(job.id)
    assert finished(stoker, job.id)["state"] == "cancelled"


def test_finished_jobs_are_pruned_with_their_output(stoker: Stoker) -> None:
    stoker.write(
        """
        [daemon]
        keep_jobs = "1s"
        [tasks.say]
        command = ["echo", "{text}"]
        """
    )
    stoker.up()
    old = stoker.client.enqueue("say", text="old")
    assert finished(stoker, old.id)["output"] == "old\n"
    output = stoker.state_dir / "logs" / "jobs" / f"{old.id}.log"
    assert output.exists()
    assert stoker.terminate() == 0
    stoker.up()  # pruning runs at start, then hourly
    wait_for(lambda: stoker.client.jobs() == [] or _restart(stoker), 20, "the old job to be pruned")
    assert not output.exists()
    assert "pruned 1 finished job(s)" in stoker.log_text()
    fresh = stoker.client.enqueue("say", text="new")
    assert fresh.id > old.id and finished(stoker, fresh.id)["state"] == "succeeded"


def _restart(stoker: Stoker) -> bool:
    """Pruning runs at start (then hourly): restart until the job is old enough to go."""
    assert stoker.terminate() == 0
    stoker.up()
    return False


def test_a_command_is_spawned_as_popen_would(stoker: Stoker, tmp_path: Path) -> None:
    """A command job, spawned by a pool worker: it leads its own process group in the task's
    directory, with the job's environment, stdin from /dev/null, output to the job's file, no
    descriptor of the worker's (not even one a Python call on the same worker left
    inheritable), SIGPIPE at its default, and its parent is a worker, not the daemon."""
    report = tmp_path / "report.py"
    report.write_text(
        "import os, json\n"
        "print(json.dumps({'cwd': os.getcwd(), 'pgid': os.getpgid(0), 'pid': os.getpid(),\n"
        "  'ppid': os.getppid(), 'env': os.environ.get('STOKER_JOB_ID'),\n"
        "  'stdin': os.path.realpath('/proc/self/fd/0'),\n"
        "  'out': os.path.realpath('/proc/self/fd/1'), 'err': os.path.realpath('/proc/self/fd/2'),\n"
        "  'fds': sorted(int(fd) for fd in os.listdir('/proc/self/fd'))}))\n"
    )
    (stoker.root / "leaky.py").write_text(
        "import os\n\ndef leak():\n    r, w = os.pipe()\n    os.set_inheritable(w, True)\n    return w\n"
    )
    (stoker.root / "work").mkdir()
    stoker.write(
        f"""
        [tasks.leak]
        call = "leaky:leak"
        [tasks.report]
        # (sh reports the signals it was given as it found them; Python would ignore SIGPIPE)
        command = ["sh", "-c", "grep SigIgn: /proc/$$/status; exec {PY} -S {report}"]
        directory = "work"
        [queues.default]
        concurrency = 1
        """
    )
    stoker.up()
    client = stoker.client
    leaked = finished(stoker, client.enqueue("leak").id)
    assert leaked["state"] == "succeeded"
    job = finished(stoker, client.enqueue("report").id)
    assert job["state"] == "succeeded", job
    sigign, report_line = job["output"].splitlines()
    got = json.loads(report_line)
    assert got["cwd"] == str(stoker.root / "work") and got["pgid"] == got["pid"]
    assert got["env"] == str(job["id"]) and got["stdin"] == os.devnull
    log = str(stoker.root / ".stoker" / "logs" / "jobs" / f"{job['id']}.log")
    assert got["out"] == got["err"] == log
    assert not int(sigign.split()[1], 16) & (1 << (signal.SIGPIPE - 1))  # the worker ignores it
    assert [fd for fd in got["fds"] if fd > 2] == [3]  # (3: listdir's own): not the leaked pipe
    assert got["ppid"] != stoker.client.status()["pid"]  # a worker's child


def _hanging_command(stoker: Stoker, pids: Path, stop_timeout: str = "10s") -> None:
    """A task whose shell records its pid, its parent's (the worker) and its child's, then waits."""
    script = f"sleep 300 & echo $$ $PPID $! > {pids}.tmp && mv {pids}.tmp {pids}; wait"
    stoker.write(
        f"""
        [tasks.hang]
        command = ["sh", "-c", "{script}"]
        stop_timeout = "{stop_timeout}"
        [tasks.ok]
        command = ["true"]
        """
    )


def test_a_command_whose_worker_dies_is_stopped_with_all_it_started(stoker: Stoker, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    _hanging_command(stoker, pids)
    stoker.up()
    job = stoker.client.enqueue("hang")
    wait_for(pids.exists, what="the command to start")
    shell, worker, sleeper = map(int, pids.read_text().split())
    os.kill(worker, signal.SIGKILL)
    done = finished(stoker, job.id)
    assert done["state"] == "failed" and done["error"] == "the worker was killed by SIGKILL"
    for pid in (shell, sleeper):
        wait_for(lambda pid=pid: not pid_alive(pid), 5, f"pid {pid} to die")
    assert finished(stoker, stoker.client.enqueue("ok").id)["state"] == "succeeded"


def test_a_worker_that_does_not_stop_its_command_is_killed_and_so_is_the_command(
    stoker: Stoker, tmp_path: Path
) -> None:
    """A stopped (frozen) worker cannot pass a cancel on: after the SIGKILL it was asked to
    send and a grace, the daemon kills the worker and the command itself."""
    pids = tmp_path / "pids"
    _hanging_command(stoker, pids, stop_timeout="200ms")
    stoker.up()
    job = stoker.client.enqueue("hang")
    wait_for(pids.exists, what="the command to start")
    shell, worker, sleeper = map(int, pids.read_text().split())
    os.kill(worker, signal.SIGSTOP)
    try:
        stoker.client.cancel(job.id)
        done = finished(stoker, job.id, timeout=30)
    finally:
        if pid_alive(worker):  # (undo what the test did, should the daemon not have killed it)
            os.kill(worker, signal.SIGCONT)
    assert done["state"] == "cancelled"
    for pid in (shell, sleeper, worker):
        wait_for(lambda pid=pid: not pid_alive(pid), 5, f"pid {pid} to die")
    assert finished(stoker, stoker.client.enqueue("ok").id)["state"] == "succeeded"
