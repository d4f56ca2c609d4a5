"""Real daemons on a real PostgreSQL server: `[daemon] store = "postgresql://…"`."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path
from typing import Any

import psycopg
from conftest import Stoker, free_port, wait_for

FINISHED = ("succeeded", "failed", "cancelled")


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[call-overload,no-any-return]


def all_finished(stoker: Stoker, ids: list[int]) -> list[dict[str, Any]] | None:
    jobs = [dict(stoker.client.job(job_id)) for job_id in ids]
    return jobs if all(job["state"] in FINISHED for job in jobs) else None


def test_a_daemon_on_postgresql_runs_jobs_and_a_schedule(stoker: Stoker, postgres_url: str) -> None:
    stoker.write(
        f"""
        [daemon]
        store = "{postgres_url}"
        node = "pg-1"
        [tasks.hello]
        command = ["echo", "hello {{who}}"]
        [tasks.tick]
        command = ["echo", "tick"]
        [schedules.every_second]
        every = "1s"
        task = "tick"
        """
    )
    stoker.up()
    assert stoker.client.status()["store"] == postgres_url
    by_cli = stoker.cli("enqueue", "hello", "who=cli", "--wait", "--json")
    assert by_cli.returncode == 0, by_cli.stderr + stoker.log_text()
    job = json.loads(by_cli.stdout)
    assert job["state"] == "succeeded" and job["output"] == "hello cli\n" and job["node"] == "pg-1"
    ids = stoker.client.enqueue_many("hello", [{"who": f"api-{n}"} for n in range(20)])
    done = wait_for(lambda: all_finished(stoker, ids), 30, f"20 jobs to finish; log:\n{stoker.log_text()}")
    assert [j["output"] for j in done] == [f"hello api-{n}\n" for n in range(20)]
    assert all(j["state"] == "succeeded" and j["attempt"] == 1 for j in done)

    def fired() -> list[dict[str, Any]] | None:
        jobs = [dict(j) for j in stoker.client.jobs(limit=1000) if j["schedule"] == "every_second"]
        succeeded = [j for j in jobs if j["state"] == "succeeded"]
        return jobs if len(succeeded) >= 3 else None

    wait_for(fired, 20, f"3 firings of the schedule; log:\n{stoker.log_text()}")
    # what the daemon answered is what PostgreSQL holds; nothing went to a SQLite file
    [(succeeded,)] = rows(
        postgres_url, "SELECT count(*) FROM stoker.jobs WHERE task = 'hello' AND state = 'succeeded'"
    )
    assert succeeded == 21
    assert (
        rows(
            postgres_url,
            "SELECT slot FROM stoker.jobs WHERE schedule IS NOT NULL GROUP BY slot HAVING count(*) > 1",
        )
        == []
    )
    assert not (stoker.state_dir / "stoker.db").exists()

    assert stoker.terminate() == 0
    stoker.up()  # the jobs outlive the daemon
    assert stoker.client.job(job["id"])["output"] == "hello cli\n"


def test_a_when_file_schedule_on_postgresql_records_its_skipped_slots(
    stoker: Stoker, postgres_url: str
) -> None:
    flag = stoker.config.parent / "on"
    stoker.write(
        f"""
        [daemon]
        store = "{postgres_url}"
        [schedules.gated]
        every = "1s"
        command = ["echo", "ran"]
        when_file = "on"
        """
    )
    stoker.up()
    wait_for(lambda: stoker.client.schedules()[0]["last_state"] == "skipped", 20, "a skipped slot")
    flag.touch()
    wait_for(lambda: stoker.client.schedules()[0]["last_job"], 20, "a slot that ran")
    history = stoker.json("schedule", "history", "gated", "-n", "1000")
    assert {h["reason"] for h in history if h["state"] == "skipped"} == {"when_file on is absent"}
    assert [h["job"] for h in history if h["state"] != "skipped"] != []
    skipped = rows(
        postgres_url, "SELECT count(*) FROM stoker.schedule_slots WHERE reason = 'when_file on is absent'"
    )
    assert skipped[0][0] == len([h for h in history if h["state"] == "skipped"])


def test_an_unreachable_server_stops_the_start_with_where_and_without_the_password(stoker: Stoker) -> None:
    stoker.write(
        f"""
        [daemon]
        store = "postgresql://app:s3cret-pw@127.0.0.1:{free_port()}/orders"
        [tasks.hello]
        command = ["echo", "hello"]
        """
    )
    for args in (("up",), ("up", "-d")):
        result = stoker.cli(*args)
        said = result.stdout + result.stderr
        assert result.returncode == 1, said
        assert "cannot connect to PostgreSQL (database orders on 127.0.0.1" in said, said
        assert "s3cret-pw" not in said + stoker.log_text()


def test_two_daemons_share_a_queue_and_run_each_job_once(
    stoker: Stoker, postgres_url: str, tmp_path: Path
) -> None:
    """Jobs enqueued through one daemon are heard of (LISTEN/NOTIFY) and run by the other too;
    both read the same due jobs, and none runs twice."""
    shared = tmp_path / "shared"
    shared.mkdir()
    other = Stoker(tmp_path / "b")
    other.root.mkdir()
    config = f"""
        [tasks.work]
        command = ["sh", "-c", "echo $STOKER_JOB_ID >> ran.txt; sleep 0.2"]
        directory = "{shared}"
        [queues.default]
        concurrency = 1
        """
    stoker.write(f'[daemon]\nstore = "{postgres_url}"\nnode = "a"\n{textwrap.dedent(config)}')
    other.write(f'[daemon]\nstore = "{postgres_url}"\nnode = "b"\n{textwrap.dedent(config)}')
    try:
        stoker.up()
        other.up()
        ids = stoker.client.enqueue_many("work", [{} for _ in range(30)])
        done = wait_for(
            lambda: all_finished(other, ids),
            60,
            f"30 jobs to finish; logs:\n{stoker.log_text()}\n{other.log_text()}",
        )
        assert all(job["state"] == "succeeded" and job["attempt"] == 1 for job in done)
        assert {job["node"] for job in done} == {"a", "b"}  # b heard of them (a has room for one at a time)
        ran = (shared / "ran.txt").read_text().split()
        assert sorted(map(int, ran)) == sorted(ids)  # each once: a race lost is never run
    finally:
        leftovers = other.cleanup()
        assert not leftovers


def node_config(url: str, node: str, shared: Path) -> str:
    return textwrap.dedent(
        f"""
        [daemon]
        store = "{url}"
        node = "{node}"
        node_timeout = "3s"
        [tasks.work]
        command = ["sh", "-c", "echo $STOKER_JOB_ID >> ran.txt; sleep 0.1"]
        directory = "{shared}"
        [queues.default]
        concurrency = 2
        """
    )


def test_three_daemons_lose_none_of_300_jobs_when_one_is_killed(
    stoker: Stoker, postgres_url: str, tmp_path: Path
) -> None:
    """SIGKILL one of three nodes in the middle of 300 jobs: the others take it for dead once
    its heartbeat lapses and queue its running jobs again; every job runs, and only those ran twice."""
    shared = tmp_path / "shared"
    shared.mkdir()
    a, b, c = stoker, Stoker(tmp_path / "b"), Stoker(tmp_path / "c")
    for daemon, node in ((a, "a"), (b, "b"), (c, "c")):
        daemon.root.mkdir(exist_ok=True)
        daemon.write(node_config(postgres_url, node, shared))
    try:
        for daemon in (a, b, c):
            daemon.up()
        ids = a.client.enqueue_many("work", [{} for _ in range(300)])
        assert c.daemon is not None

        def c_frozen_while_running_jobs() -> list[int]:
            """Freeze c (it can record nothing more), then see what it was running."""
            [(done,)] = rows(postgres_url, "SELECT count(*) FROM stoker.jobs WHERE state = 'succeeded'")
            if done < 60:
                return []
            c.daemon.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
            running = [
                i
                for (i,) in rows(
                    postgres_url, "SELECT id FROM stoker.jobs WHERE state = 'running' AND node = 'c'"
                )
            ]
            if not running:
                c.daemon.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
            return running

        lost = wait_for(c_frozen_while_running_jobs, 30, f"c to run jobs; log:\n{c.log_text()}")
        c.kill()  # SIGKILL
        everything = f"logs:\n{a.log_text()}\n{b.log_text()}"
        done = wait_for(lambda: all_finished(a, ids), 90, f"300 jobs to finish; {everything}")
        assert all(job["state"] == "succeeded" for job in done), everything
        ran = [int(i) for i in (shared / "ran.txt").read_text().split()]
        assert set(ran) == set(ids)  # none lost
        twice = {i for i in ran if ran.count(i) > 1}
        assert twice <= set(lost)  # only what c was running when it died ran again
        for job_id in lost:
            job = a.client.job(job_id)
            assert job["node"] in ("a", "b"), job
            assert [x["outcome"] for x in job["attempts"]] == ["interrupted", "succeeded"], job
            assert job["attempts"][0]["node"] == "c"
        assert "cluster: node c has not answered for 3.0s" in a.log_text() + b.log_text()
    finally:
        b.cleanup()
        c.cleanup()  # a killed daemon's running jobs may outlive it (jobs carry no death signal)


def test_a_second_daemon_under_a_node_name_in_use_is_refused(
    stoker: Stoker, postgres_url: str, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    other = Stoker(tmp_path / "b")
    other.root.mkdir()
    stoker.write(node_config(postgres_url, "web-1", shared))
    other.write(node_config(postgres_url, "web-1", shared))
    stoker.up()
    result = other.cli("up")
    assert result.returncode == 1
    assert (
        "node 'web-1' is already running on" in result.stderr and "[daemon] node of its own" in result.stderr
    )
    assert stoker.terminate() == 0  # a daemon that stops gives its name up
    other.up()
    other.cleanup()


def test_three_daemons_fire_each_slot_of_a_schedule_once(
    stoker: Stoker, postgres_url: str, tmp_path: Path
) -> None:
    """Every node's scheduler fires every slot; the store's unique (schedule, slot) lets one job
    through per slot, whichever node gets there first."""
    a, b, c = stoker, Stoker(tmp_path / "b"), Stoker(tmp_path / "c")
    for daemon, node in ((a, "a"), (b, "b"), (c, "c")):
        daemon.root.mkdir(exist_ok=True)
        daemon.write(
            f"""
            [daemon]
            store = "{postgres_url}"
            node = "{node}"
            [tasks.tick]
            command = ["echo", "tick"]
            [schedules.every_second]
            every = "1s"
            task = "tick"
            """
        )
    try:
        for daemon in (a, b, c):
            daemon.up()

        def slots() -> list[tuple[Any, ...]] | None:
            fired = rows(postgres_url, "SELECT slot, job_id FROM stoker.schedule_slots ORDER BY slot")
            return fired if len(fired) >= 8 else None

        fired = wait_for(slots, 30, f"8 slots; log:\n{a.log_text()}")
        jobs = rows(postgres_url, "SELECT slot, id, node FROM stoker.jobs WHERE schedule = 'every_second'")
        per_slot = [slot for slot, _, _ in jobs]
        assert len(per_slot) == len(set(per_slot))  # no slot fired twice
        assert {job_id for _, job_id in fired if job_id is not None} <= {job_id for _, job_id, _ in jobs}
    finally:
        b.cleanup()
        c.cleanup()


def test_a_cancel_asked_of_one_daemon_stops_the_job_where_it_runs(
    stoker: Stoker, postgres_url: str, tmp_path: Path
) -> None:
    other = Stoker(tmp_path / "b")
    other.root.mkdir()
    config = """
        [tasks.long]
        command = ["sleep", "120"]
        """
    stoker.write(f'[daemon]\nstore = "{postgres_url}"\nnode = "a"\n{textwrap.dedent(config)}')
    other.write(f'[daemon]\nstore = "{postgres_url}"\nnode = "b"\n{textwrap.dedent(config)}')
    try:
        stoker.up()
        other.up()
        job = stoker.client.enqueue("long")
        running = wait_for(
            lambda: (j := stoker.client.job(job.id))["state"] == "running" and j, 20, "the job to run"
        )
        elsewhere = other if running["node"] == "a" else stoker  # the daemon that does not run it
        assert elsewhere.client.cancel(job.id)["state"] == "running"  # asked for; the run stops
        done = wait_for(
            lambda: all_finished(stoker, [job.id]),
            20,
            f"the cancel; logs:\n{stoker.log_text()}\n{other.log_text()}",
        )
        assert done[0]["state"] == "cancelled" and done[0]["node"] == running["node"]
    finally:
        leftovers = other.cleanup()
        assert not leftovers


def test_a_pause_through_one_daemon_holds_on_the_others(
    stoker: Stoker, postgres_url: str, tmp_path: Path
) -> None:
    other = Stoker(tmp_path / "b")
    other.root.mkdir()
    config = """
        [tasks.hello]
        command = ["echo", "hello"]
        [tasks.tick]
        command = ["echo", "tick"]
        [schedules.nightly]
        cron = "0 3 * * *"
        task = "tick"
        """
    stoker.write(f'[daemon]\nstore = "{postgres_url}"\nnode = "a"\n{textwrap.dedent(config)}')
    other.write(f'[daemon]\nstore = "{postgres_url}"\nnode = "b"\n{textwrap.dedent(config)}')

    def paused_on_b() -> tuple[bool, bool]:
        [queue] = [q for q in other.client.queues() if q["name"] == "default"]
        [schedule] = other.client.schedules()
        return queue["paused"], schedule["paused"]

    try:
        stoker.up()
        other.up()
        assert paused_on_b() == (False, False)
        assert stoker.cli("queue", "pause", "default").returncode == 0
        assert stoker.cli("schedule", "pause", "nightly").returncode == 0
        wait_for(
            lambda: paused_on_b() == (True, True), 15, f"b to apply the pauses; log:\n{other.log_text()}"
        )
        assert other.cli("queue", "resume", "default").returncode == 0
        assert other.cli("schedule", "resume", "nightly").returncode == 0
        wait_for(lambda: not any(q["paused"] for q in stoker.client.queues()) and not stoker.client.schedules()[0]["paused"],
                 15, f"a to apply the resumes; log:\n{stoker.log_text()}")  # fmt: skip
        assert stoker.client.schedules()[0]["next_run"] is not None
        job = other.client.enqueue("hello")
        assert (
            wait_for(lambda: all_finished(stoker, [job.id]), 20, "the job to run")[0]["state"] == "succeeded"
        )
    finally:
        leftovers = other.cleanup()
        assert not leftovers


def test_two_daemons_run_each_python_job_once(stoker: Stoker, postgres_url: str, tmp_path: Path) -> None:
    """As above for Python jobs, which go to warm workers: a worker is handed a job only once the
    store has made it this node's (a job handed over before that could run on both nodes)."""
    ran = tmp_path / "ran.txt"
    other = Stoker(tmp_path / "b")
    other.root.mkdir()
    module = f"import time\n\ndef work(n):\n    with open({str(ran)!r}, 'a') as f:\n        f.write(f'{{n}}\\n')\n    time.sleep(0.1)\n"
    config = """
        [tasks.work]
        call = "sharedwork:work"
        [queues.default]
        concurrency = 1
        """
    for daemon, node in ((stoker, "a"), (other, "b")):
        (daemon.root / "sharedwork.py").write_text(module)
        daemon.write(f'[daemon]\nstore = "{postgres_url}"\nnode = "{node}"\n{textwrap.dedent(config)}')
    try:
        stoker.up()
        other.up()
        ids = stoker.client.enqueue_many("work", [{"n": n} for n in range(30)])
        done = wait_for(
            lambda: all_finished(other, ids),
            60,
            f"30 jobs to finish; logs:\n{stoker.log_text()}\n{other.log_text()}",
        )
        assert all(job["state"] == "succeeded" and job["attempt"] == 1 for job in done)
        assert {job["node"] for job in done} == {"a", "b"}
        assert sorted(map(int, ran.read_text().split())) == list(range(30))  # each once
    finally:
        leftovers = other.cleanup()
        assert not leftovers
