"""Python `call` tasks in the warm worker pool, with a real daemon and real worker processes."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import psutil
from conftest import Stoker, pid_alive, wait_for

FINISHED = ("succeeded", "failed", "cancelled")

TASKS = """
import asyncio, os, subprocess, sys, time

import stoker

def add(a, b):
    print("adding", a, b)
    return {"sum": a + b, "job": int(os.environ["STOKER_JOB_ID"]), "pid": os.getpid()}

def boom(reason="no reason"):
    raise ValueError(f"bad input: {reason}")

async def later(secs=0.0):
    await asyncio.sleep(secs)
    return "awaited"

def die():
    os._exit(9)

def hang(pidfile):
    child = subprocess.Popen(["sleep", "300"])
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(300)

def not_json():
    return {1, 2}

def leave(code=0):
    sys.exit(code)

def where():
    return {"cwd": os.getcwd(), "env": os.environ.get("APP_ENV"), "pid": os.getpid(),
            "leftover": os.environ.get("LEFTOVER"), "job": os.environ["STOKER_JOB_ID"]}

def meddle():
    os.environ["LEFTOVER"] = "from the job before"
    os.environ.pop("APP_ENV", None)
    os.chdir("/")
    return os.getpid()

@stoker.task(name="greet")
def greet_someone(who):
    return f"hello {who}"
"""


def setup(stoker: Stoker, extra: str = "") -> None:
    (stoker.root / "mytasks.py").write_text(TASKS)
    (stoker.root / "sub").mkdir(exist_ok=True)
    stoker.write(
        """
        [daemon]
        worker_max_jobs = 3
        [tasks.add]
        call = "mytasks:add"
        [tasks.boom]
        call = "mytasks:boom"
        [tasks.later]
        call = "mytasks:later"
        [tasks.die]
        call = "mytasks:die"
        [tasks.hang]
        call = "mytasks:hang"
        timeout = "1s"
        stop_timeout = "500ms"
        [tasks.not_json]
        call = "mytasks:not_json"
        [tasks.leave]
        call = "mytasks:leave"
        [tasks.where]
        call = "mytasks:where"
        directory = "sub"
        environment = { APP_ENV = "prod" }
        [tasks.meddle]
        call = "mytasks:meddle"
        environment = { APP_ENV = "test" }
        [tasks.greet]
        call = "mytasks:greet_someone"
        params = ["who"]
        [queues.default]
        concurrency = 2
        """
        + textwrap.dedent(extra)
    )


def run(stoker: Stoker, task: str, **params: Any) -> dict[str, Any]:
    job = stoker.client.enqueue(task, params)
    return dict(stoker.client.wait(job.id, timeout=30))


def workers(stoker: Stoker) -> list[int]:
    daemon = psutil.Process(stoker.client.status()["pid"])
    return sorted(
        p.pid
        for p in daemon.children()
        if "stoker.jobs.worker" in " ".join(p.cmdline()) and p.status() != "zombie"
    )


def test_result_output_and_warm_workers(stoker: Stoker) -> None:
    setup(stoker)
    stoker.up()
    warm = wait_for(lambda: len(workers(stoker)) == 2 and workers(stoker), what="2 warm workers")
    job = run(stoker, "add", a=1, b=2)
    assert job["state"] == "succeeded" and job["exit_code"] is None
    assert job["result"]["sum"] == 3 and job["result"]["job"] == job["id"]
    assert job["result"]["pid"] in warm
    assert job["output"] == "adding 1 2\n"
    assert stoker.cli("logs", f"job:{job['id']}").stdout == "adding 1 2\n"
    assert run(stoker, "later", secs=0.05)["result"] == "awaited"


def test_exception_is_the_error_with_its_traceback(stoker: Stoker) -> None:
    setup(stoker)
    stoker.up()
    job = run(stoker, "boom", reason="no @ in address")
    assert job["state"] == "failed"
    assert job["error"].startswith("ValueError: bad input: no @ in address\n")
    assert 'mytasks.py", line' in job["error"] and "in boom" in job["error"]
    assert "worker.py" not in job["error"]
    assert "Traceback" in job["output"] and "ValueError: bad input" in job["output"]
    text = stoker.cli("job", str(job["id"])).stdout
    assert "error      ValueError: bad input: no @ in address" in text


def test_a_dead_worker_fails_the_attempt_and_is_replaced(stoker: Stoker) -> None:
    setup(stoker)
    stoker.up()
    job = run(stoker, "die")
    assert job["state"] == "failed" and job["error"] == "the worker exited with code 9"
    assert run(stoker, "add", a=2, b=2)["result"]["sum"] == 4


def test_timeout_kills_the_worker_and_what_it_started(stoker: Stoker, tmp_path: Path) -> None:
    setup(stoker)
    stoker.up()
    pidfile = tmp_path / "pids"
    job = run(stoker, "hang", pidfile=str(pidfile))
    assert job["state"] == "failed" and job["error"] == "timed out after 1s"
    for pid in map(int, pidfile.read_text().split()):
        wait_for(lambda pid=pid: not pid_alive(pid), 5, f"pid {pid} to die")
    assert run(stoker, "add", a=1, b=1)["state"] == "succeeded"


def test_cancel_a_running_call(stoker: Stoker, tmp_path: Path) -> None:
    setup(stoker)
    stoker.up()
    pidfile = tmp_path / "pids"
    job = stoker.client.enqueue("hang", pidfile=str(pidfile))
    wait_for(pidfile.exists, what="the task to start")
    stoker.client.cancel(job.id)
    done = stoker.client.wait(job.id, timeout=20)
    assert done.state == "cancelled"
    for pid in map(int, pidfile.read_text().split()):
        wait_for(lambda pid=pid: not pid_alive(pid), 5, f"pid {pid} to die")


def test_results_that_cannot_be_stored_and_sys_exit(stoker: Stoker) -> None:
    setup(stoker)
    stoker.up()
    bad = run(stoker, "not_json")
    assert bad["state"] == "failed" and "not JSON" in bad["error"]
    assert run(stoker, "leave", code=0)["state"] == "succeeded"
    failed = run(stoker, "leave", code=3)
    assert failed["state"] == "failed" and failed["error"].startswith("SystemExit: 3")


def test_directory_environment_and_recycling(stoker: Stoker) -> None:
    setup(stoker)
    stoker.up()
    first = run(stoker, "where")["result"]
    assert Path(first["cwd"]) == stoker.root / "sub" and first["env"] == "prod"
    # after worker_max_jobs = 3 jobs a worker is replaced by a fresh process
    pids = {run(stoker, "where")["result"]["pid"] for _ in range(8)}
    assert len(pids) >= 3
    assert len(workers(stoker)) <= 2


def test_a_job_does_not_leave_its_environment_or_directory_to_the_next(stoker: Stoker) -> None:
    setup(stoker)
    stoker.up()
    meddled = run(stoker, "meddle")
    after = run(stoker, "where")
    assert after["result"]["pid"] == meddled["result"]  # the same warm worker
    assert after["result"]["leftover"] is None and after["result"]["env"] == "prod"
    assert Path(after["result"]["cwd"]) == stoker.root / "sub"
    assert after["result"]["job"] == str(after["id"])


def test_decorated_function_runs_and_enqueues(stoker: Stoker) -> None:
    setup(stoker)
    stoker.up()
    assert run(stoker, "greet", who="ann")["result"] == "hello ann"
    import importlib
    import sys

    sys.path.insert(0, str(stoker.root))
    try:
        mytasks = importlib.import_module("mytasks")
        mytasks.greet_someone.client = stoker.client
        assert mytasks.greet_someone("bob") == "hello bob"  # still a plain function
        job = mytasks.greet_someone.enqueue(who="cy")
        assert job.task == "greet" and stoker.client.wait(job.id, timeout=30).result == "hello cy"
    finally:
        sys.path.remove(str(stoker.root))
        sys.modules.pop("mytasks", None)


def test_unknown_module_fails_the_job_clearly(stoker: Stoker) -> None:
    setup(stoker, '[tasks.ghost]\ncall = "nosuchmodule:run"\n')
    stoker.up()
    job = run(stoker, "ghost")
    assert job["state"] == "failed"
    assert job["error"].startswith("ModuleNotFoundError: No module named 'nosuchmodule'")


def test_no_worker_outlives_the_daemon(stoker: Stoker) -> None:
    setup(stoker)
    stoker.up()
    assert run(stoker, "add", a=1, b=2)["state"] == "succeeded"
    pids = workers(stoker)
    assert pids
    assert stoker.terminate() == 0
    for pid in pids:
        wait_for(lambda pid=pid: not pid_alive(pid), 5, f"worker {pid} to exit")
