"""Python `call` tasks in the warm worker pool, with a real daemon and real worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
from conftest import Stoker, pid_alive, wait_for, wait_for_async
from hypothesis import given
from hypothesis import strategies as st

from stoker.client import ClientError
from stoker.jobs.dispatch_core import ANSWER_HOLD, PREFETCH, QUICK, ahead_for
from stoker.jobs.pool import Worker
from stoker.jobs.wire import Answer, Call, Command, Done, Revoked

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

def hold(flag, began):  # note that it began, then run until the test creates `flag`
    with open(began, "a") as f:
        f.write(f"{os.getpid()}\\n")
    deadline = time.monotonic() + 60
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError(flag)
        time.sleep(0.005)

def hold_then_die(flag, began):
    hold(flag, began)
    os._exit(3)

def note(path):
    with open(path, "a") as f:
        f.write(f"{os.environ['STOKER_JOB_ID']} {os.getpid()}\\n")
    return os.getpid()
"""

# A queue that runs one job at a time: while `hold` runs, the job after it is sent ahead to
# its worker (prefetch), which is what the tests below take back in each way there is.
ONE_AT_A_TIME = """
[tasks.hold]
call = "mytasks:hold"
queue = "one"
[tasks.hold_then_die]
call = "mytasks:hold_then_die"
queue = "one"
[tasks.note]
call = "mytasks:note"
queue = "one"
[queues.one]
concurrency = 1
"""


def setup(stoker: Stoker, extra: str = "", daemon: str = "", max_jobs: int = 3) -> None:
    (stoker.root / "mytasks.py").write_text(TASKS)
    (stoker.root / "sub").mkdir(exist_ok=True)
    stoker.write(
        """
        [daemon]
        DAEMON
        worker_max_jobs = MAX_JOBS
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
        """.replace("DAEMON", daemon).replace("MAX_JOBS", str(max_jobs))
        + textwrap.dedent(extra)
    )


def run(stoker: Stoker, task: str, **params: Any) -> dict[str, Any]:
    job = stoker.client.enqueue(task, params)
    return dict(stoker.client.wait(job.id, timeout=30))


def workers(stoker: Stoker) -> list[int]:
    daemon = psutil.Process(stoker.client.status()["pid"])
    found = []
    for p in daemon.children():
        # A worker may end between the listing and the reading of its command line: a zombie
        # (or one gone) is not a worker any more, whichever call notices first.
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "stoker.jobs.worker" in " ".join(p.cmdline()):
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return sorted(found)


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


def test_a_worker_sent_its_last_call_has_its_successor_started_beside_it(stoker: Stoker) -> None:
    """Recycling never leaves a slot waiting for an interpreter: while a worker runs the last
    call it may (worker_max_jobs = 1 here), a fresh one is already up; once it has answered it
    leaves, and the pool is as warm as before (3 workers: the queues' slots)."""
    setup(stoker, ONE_AT_A_TIME, max_jobs=1)
    stoker.up()

    def just(count: int) -> list[int] | None:
        found = workers(stoker)
        return found if len(found) == count else None

    before = wait_for(lambda: just(3), what="3 warm workers")
    flag, began = stoker.root / "flag", stoker.root / "began"
    job = stoker.client.enqueue("hold", {"flag": str(flag), "began": str(began)})
    wait_for(began.exists, what="the call to begin")
    running = int(began.read_text())
    during = wait_for(lambda: just(4), what="a fourth worker")
    assert running in before and running in during
    flag.touch()
    assert stoker.client.wait(job.id, timeout=30).state == "succeeded"
    after = wait_for(lambda: just(3), what="the old one to leave")
    assert running not in after and set(after) <= set(during)


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


class Held:
    """A `hold` job at the head of queue `one` with a `note` job queued right behind it, both
    enqueued while the queue was paused, so that one fill begins the first and sends the
    second ahead to its worker. `release()` lets the first one end."""

    def __init__(self, stoker: Stoker, tmp_path: Path, first: str = "hold") -> None:
        self.stoker = stoker
        self.flag, self.began, self.notes = tmp_path / "go", tmp_path / "began", tmp_path / "notes"
        client = stoker.client
        client.pause("one")
        self.first = client.enqueue(first, flag=str(self.flag), began=str(self.began)).id
        self.second = client.enqueue("note", path=str(self.notes)).id
        client.resume("one")
        wait_for(self.began.exists, what="the first job to begin")

    def release(self) -> dict[str, Any]:
        self.flag.touch()
        return dict(self.stoker.client.wait(self.first, timeout=30))

    def noted(self) -> list[str]:
        return self.notes.read_text().splitlines() if self.notes.exists() else []


def test_a_job_sent_ahead_and_cancelled_never_runs(stoker: Stoker, tmp_path: Path) -> None:
    setup(stoker, ONE_AT_A_TIME)
    stoker.up()
    held = Held(stoker, tmp_path)
    cancelled = stoker.client.cancel(held.second)
    assert cancelled.state == "cancelled"
    assert held.release()["state"] == "succeeded"
    after = run(stoker, "note", path=str(tmp_path / "after"))  # the queue goes on
    assert after["state"] == "succeeded"
    second = stoker.client.job(held.second)
    assert second.state == "cancelled" and second.attempt == 0 and second.attempts == []
    assert held.noted() == []  # it never ran, then or later


def test_a_worker_that_dies_with_a_job_sent_ahead_loses_no_job(stoker: Stoker, tmp_path: Path) -> None:
    setup(stoker, ONE_AT_A_TIME)
    stoker.up()
    held = Held(stoker, tmp_path, first="hold_then_die")
    died = held.release()
    assert died["state"] == "failed" and died["error"] == "the worker exited with code 3"
    second = stoker.client.wait(held.second, timeout=30)
    assert second.state == "succeeded" and second.attempt == 1
    assert [a["outcome"] for a in stoker.client.job(held.second).attempts] == ["succeeded"]
    [line] = held.noted()
    assert int(line.split()[1]) != int(held.began.read_text()), "it ran on a fresh worker"


def test_a_paused_queue_does_not_begin_the_job_sent_ahead(stoker: Stoker, tmp_path: Path) -> None:
    """The pause reaches the worker while the job before still runs: the job sent ahead goes
    back to the queue (had the worker begun it already, it would run like any running job)."""
    setup(stoker, ONE_AT_A_TIME)
    stoker.up()
    held = Held(stoker, tmp_path)
    stoker.client.pause("one")
    assert held.release()["state"] == "succeeded"
    second = stoker.client.job(held.second)  # decided before the first one's end was recorded
    assert second.state == "queued" and second.attempt == 0 and held.noted() == []
    [queue] = [q for q in stoker.client.queues() if q.name == "one"]
    assert queue.queued == 1 and queue.running == 0
    stoker.client.resume("one")
    assert stoker.client.wait(held.second, timeout=30).state == "succeeded"
    assert len(held.noted()) == 1


def test_cancelling_the_running_job_spares_the_one_sent_ahead(stoker: Stoker, tmp_path: Path) -> None:
    setup(stoker, ONE_AT_A_TIME)
    stoker.up()
    held = Held(stoker, tmp_path)
    stoker.client.cancel(held.first)
    assert stoker.client.wait(held.first, timeout=30).state == "cancelled"
    second = stoker.client.wait(held.second, timeout=30)
    assert second.state == "succeeded" and second.attempt == 1
    assert [a["outcome"] for a in stoker.client.job(held.second).attempts] == ["succeeded"]
    assert len(held.noted()) == 1


def test_a_job_sent_ahead_waits_through_a_shutdown(stoker: Stoker, tmp_path: Path) -> None:
    setup(stoker, ONE_AT_A_TIME, daemon='shutdown_timeout = "200ms"')
    stoker.up()
    held = Held(stoker, tmp_path)
    assert stoker.terminate() == 0  # the first is interrupted, the second was never begun
    assert held.noted() == []
    held.flag.touch()  # the first may finish when it runs again
    stoker.up()
    assert stoker.client.wait(held.first, timeout=30).state == "succeeded"
    second = stoker.client.wait(held.second, timeout=30)
    assert second.state == "succeeded" and second.attempt == 1 and len(held.noted()) == 1


# The worker's side of prefetch, on a real worker process driven through the daemon's `Worker`.


@asynccontextmanager
async def bare_worker(tmp_path: Path, **environment: str) -> AsyncIterator[Worker]:
    (tmp_path / "mytasks.py").write_text(TASKS)
    ours, theirs = socket.socketpair()
    our_stops, their_stops = socket.socketpair()
    output_dir = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)  # where request() puts outputs
    env = dict(os.environ, STOKER_WORKER_FD=str(theirs.fileno()), STOKER_IMPORT_PATH=str(tmp_path),
               STOKER_WORKER_STOP_FD=str(their_stops.fileno()),
               STOKER_WORKER_OUTPUT_DIR_FD=str(output_dir), **environment)  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "stoker.jobs.worker"], env=env, cwd=tmp_path,
        pass_fds=(theirs.fileno(), their_stops.fileno(), output_dir), start_new_session=True,
    )  # fmt: skip
    theirs.close()
    their_stops.close()
    os.close(output_dir)
    ours.setblocking(False)
    our_stops.setblocking(False)
    worker = Worker(process.pid, ours, our_stops, (None, None, None, True))
    try:
        yield worker
    finally:
        worker.close()  # a worker leaves on EOF
        try:
            process.wait(10)
        finally:
            process.kill()
            process.wait()


def request(tmp_path: Path, job_id: int, call: str, **params: Any) -> Call:
    return Call(id=job_id, call=f"mytasks:{call}", params=params, output=str(tmp_path / f"{job_id}.log"),
                attempt=1, rerun=False, directory=str(tmp_path),
                environment={"STOKER_JOB_ID": str(job_id)})  # fmt: skip


def command(tmp_path: Path, job_id: int, *argv: str) -> Command:
    return Command(id=job_id, argv=list(argv), output=str(tmp_path / f"{job_id}.log"), attempt=1,
                   rerun=False, directory=str(tmp_path), environment={"STOKER_JOB_ID": str(job_id)})  # fmt: skip


def done(answer: Answer) -> Done:
    """The answer of a request the worker ran (not one it answered `Revoked`)."""
    assert isinstance(answer, Done), answer
    return answer


def wait_until_file(flag: str) -> list[str]:
    """A shell command that runs until the test creates `flag`."""
    return ["sh", "-c", f"until [ -e {flag} ]; do sleep 0.01; done"]


def answered_in_order(*answers: asyncio.Future[Answer]) -> list[int]:
    order: list[int] = []
    for answer in answers:
        answer.add_done_callback(lambda f: order.append(f.result().id))
    return order


def test_worker_a_request_revoked_before_it_began_is_answered_revoked_first(tmp_path: Path) -> None:
    async def main() -> None:
        async with bare_worker(tmp_path) as worker:
            flag, began, notes = tmp_path / "go", tmp_path / "began", tmp_path / "notes"
            first = worker.send(request(tmp_path, 1, "hold", flag=str(flag), began=str(began)))
            second = worker.send(request(tmp_path, 2, "note", path=str(notes)))
            order = answered_in_order(first, second)
            worker.revoke(2)
            await wait_for_async(began.exists, what="the first job to begin")
            flag.touch()
            assert isinstance(await second, Revoked) and done(await first).ok
            await asyncio.sleep(0)  # the callbacks of the second future to be settled
            assert order == [2, 1]  # the daemon learns of the revoke before the answer it follows
            assert not notes.exists() and worker.jobs == 1 and worker.pending == []

    asyncio.run(main())


def test_worker_a_revoke_after_the_request_began_is_too_late(tmp_path: Path) -> None:
    async def main() -> None:
        async with bare_worker(tmp_path) as worker:
            go1, go2, began1, began2 = (tmp_path / name for name in ("go1", "go2", "began1", "began2"))
            first = worker.send(request(tmp_path, 1, "hold", flag=str(go1), began=str(began1)))
            second = worker.send(request(tmp_path, 2, "hold", flag=str(go2), began=str(began2)))
            go1.touch()
            assert done(await first).ok
            await wait_for_async(began2.exists, what="the second job to begin")
            worker.revoke(2)
            go2.touch()
            assert done(await second).ok and worker.jobs == 2

    asyncio.run(main())


def test_worker_an_idle_worker_begins_what_it_is_sent_whatever_follows(tmp_path: Path) -> None:
    """Once a worker has answered everything, the daemon counts the next request it sends as
    begun; a revoke right behind it must not change that."""

    async def main() -> None:
        async with bare_worker(tmp_path) as worker:
            notes, go, began = tmp_path / "notes", tmp_path / "go", tmp_path / "began"
            assert done(await worker.send(request(tmp_path, 1, "note", path=str(notes)))).ok
            second = worker.send(request(tmp_path, 2, "hold", flag=str(go), began=str(began)))
            worker.revoke(2)  # written together with the request: the worker reads both at once
            go.touch()
            assert done(await second).ok and began.exists()

    asyncio.run(main())


def test_worker_several_requests_ahead_the_revoked_ones_are_answered_first(tmp_path: Path) -> None:
    """Jobs sent ahead several deep: those taken back before the worker began them are
    answered `revoked` ahead of the answer they follow; the others run in the order sent."""

    async def main() -> None:
        async with bare_worker(tmp_path) as worker:
            flag, began, notes = tmp_path / "go", tmp_path / "began", tmp_path / "notes"
            first = worker.send(request(tmp_path, 1, "hold", flag=str(flag), began=str(began)))
            ahead = [worker.send(request(tmp_path, i, "note", path=str(notes))) for i in (2, 3, 4)]
            order = answered_in_order(first, *ahead)
            worker.revoke(3)
            await wait_for_async(began.exists, what="the first job to begin")
            flag.touch()
            answers = [await first] + [await answer for answer in ahead]
            await asyncio.sleep(0)
            assert order == [3, 1, 2, 4]
            assert [isinstance(a, Revoked) for a in answers] == [False, False, True, False]
            assert [line.split()[0] for line in notes.read_text().splitlines()] == ["2", "4"]
            assert worker.jobs == 3 and worker.pending == []

    asyncio.run(main())


def test_many_quick_jobs_with_cancels_and_a_pause_each_run_at_most_once(
    stoker: Stoker, tmp_path: Path
) -> None:
    """Quick jobs on one worker, sent ahead of it several at a time, taken back by cancels
    and a pause while they flow: every job that succeeds ran once, a job cancelled before its
    attempt never ran, and nothing is lost."""
    setup(stoker, ONE_AT_A_TIME, max_jobs=1000)
    stoker.up()
    notes = tmp_path / "notes"
    client = stoker.client
    client.pause("one")
    ids = client.enqueue_many("note", [{"path": str(notes)} for _ in range(300)])
    client.resume("one")
    for i, job_id in enumerate(ids[10:150:7]):
        with contextlib.suppress(ClientError):  # it finished first
            client.cancel(job_id)
        if i == 10:
            client.pause("one")
            client.resume("one")
    for job_id in ids:
        client.wait(job_id, timeout=60)
    ran = [int(line.split()[0]) for line in notes.read_text().splitlines()]
    assert len(ran) == len(set(ran)), "a job ran twice"
    for job in (client.job(job_id) for job_id in ids):
        assert job.state in ("succeeded", "cancelled"), (job.id, job.state, job.error)
        if job.state == "succeeded":
            assert job.attempt == 1 and job.id in ran
        elif job.attempt == 0:
            assert job.id not in ran


def test_worker_a_commands_held_answer_goes_while_the_next_one_runs(tmp_path: Path) -> None:
    """A command's answer may wait a moment for the next job's (one write for both), but not
    for as long as the next one runs: it goes while that one still runs."""

    async def main() -> None:
        async with bare_worker(tmp_path) as worker:
            go = tmp_path / "go"
            first = worker.send(command(tmp_path, 1, "sh", "-c", "echo one"))
            second = worker.send(command(tmp_path, 2, *wait_until_file(str(go))))
            answer = done(await asyncio.wait_for(first, 15))
            assert answer.ok and answer.status == 0 and answer.output == "one\n"
            assert not second.done()
            go.touch()
            assert done(await asyncio.wait_for(second, 15)).ok and worker.jobs == 0  # (calls count)

    asyncio.run(main())


def test_worker_a_stop_reaches_the_commands_whole_group(tmp_path: Path) -> None:
    async def main() -> None:
        async with bare_worker(tmp_path) as worker:
            pids = tmp_path / "pids"
            script = f"sleep 300 & echo $! > {pids}.tmp && mv {pids}.tmp {pids}; wait"
            answer = worker.send(command(tmp_path, 1, "sh", "-c", script))
            await wait_for_async(pids.exists, what="the command to start")
            worker.signal_job(1, signal.SIGTERM)
            got = done(await asyncio.wait_for(answer, 15))
            assert got.status is not None and os.waitstatus_to_exitcode(got.status) == -signal.SIGTERM
            assert not got.ok
            sleeper = int(pids.read_text())
            await wait_for_async(lambda: not pid_alive(sleeper), what="the command's child to die with it")
            # the worker lives on: the next command runs on it
            assert done(await worker.send(command(tmp_path, 2, "true"))).status == 0

    asyncio.run(main())


def test_worker_a_stop_that_comes_with_its_command_runs_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with bare_worker(tmp_path) as worker:
            marker = tmp_path / "ran"
            answer = worker.send(command(tmp_path, 1, "touch", str(marker)))
            worker.signal_job(1, signal.SIGTERM)  # written with the request: read at once
            got = done(await asyncio.wait_for(answer, 15))
            assert got.status is None and not marker.exists()

    asyncio.run(main())


def test_worker_a_command_that_cannot_start_is_a_spawn_error(tmp_path: Path) -> None:
    async def main() -> None:
        async with bare_worker(tmp_path) as worker:
            missing = done(await worker.send(command(tmp_path, 1, "no-such-program-here")))
            assert missing.spawn_error is not None and missing.spawn_error[0] == errno.ENOENT
            request = command(tmp_path, 2, "true")
            request.directory = str(tmp_path / "gone")
            gone = done(await worker.send(request))
            assert gone.spawn_error == (errno.ENOENT, os.strerror(errno.ENOENT), str(tmp_path / "gone"))

    asyncio.run(main())


def test_worker_a_command_gets_the_workers_environment_byte_for_byte_and_the_jobs_over_it(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        raw = os.fsdecode(b"caf\xe9")  # not UTF-8: the daemon's environment may hold such bytes
        async with bare_worker(tmp_path, STOKER_TEST_RAW=raw, STOKER_TEST_OVER="worker") as worker:
            out = tmp_path / "env"
            script = f'printf "%s|%s|%s" "$STOKER_TEST_RAW" "$STOKER_TEST_OVER" "$STOKER_JOB_ID" > {out}'
            for job_id, over in ((1, "job"), (2, None)):  # the second: nothing left from the first
                request = command(tmp_path, job_id, "sh", "-c", script)
                if over is not None:
                    request.environment["STOKER_TEST_OVER"] = over
                assert done(await asyncio.wait_for(worker.send(request), 15)).status == 0
                assert out.read_bytes() == b"caf\xe9|%s|%d" % ((over or "worker").encode(), job_id)

    asyncio.run(main())


def test_a_worker_that_ran_nothing_yet_or_slow_jobs_is_sent_one_ahead() -> None:
    assert ahead_for(None) == 1
    assert ahead_for(QUICK) == ahead_for(QUICK * 2) == ahead_for(3600.0) == 1
    assert ahead_for(0.0) == ahead_for(1e-9) == PREFETCH  # (a clock that saw no time pass)


@given(st.floats(min_value=0.0, max_value=QUICK, exclude_max=True))
def test_quick_jobs_are_sent_ahead_to_fill_the_answers_hold_and_no_more(took: float) -> None:
    ahead = ahead_for(took)
    assert 2 <= ahead <= PREFETCH
    # enough to run on through the hold with two left over (unless capped) ...
    assert ahead == PREFETCH or (ahead - 2) * took >= ANSWER_HOLD
    # ... and not much more: what waits on the worker is about the hold's worth
    assert (ahead - 3) * took < ANSWER_HOLD
    assert ahead >= ahead_for(min(QUICK * 0.999, took * 1.5))  # quicker jobs, no fewer ahead
