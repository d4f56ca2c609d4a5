"""Schedules with a real daemon: slots fire once, on time, with their policies."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from conftest import Stoker, wait_for

from stoker.client import ClientError


def rows(stoker: Stoker, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(stoker.state_dir / "stoker.db")
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def schedule_jobs(stoker: Stoker, name: str) -> list[dict[str, Any]]:
    return [dict(j) for j in stoker.client.jobs(limit=1000) if j["schedule"] == name]


def test_every_fires_on_its_slots_and_shows_next_and_last(stoker: Stoker) -> None:
    stoker.write(
        """
        [tasks.notify]
        command = ["echo", "notify {channel}"]
        [schedules.tick]
        every = "1s"
        task = "notify"
        params = { channel = "android" }
        """
    )
    stoker.up()
    wait_for(lambda: len(schedule_jobs(stoker, "tick")) >= 3, 20, "3 firings")
    jobs = schedule_jobs(stoker, "tick")
    assert all(j["params"] == {"channel": "android"} and j["task"] == "notify" for j in jobs)
    fired = {
        job_id: slot
        for slot, job_id in rows(stoker, "SELECT slot, job_id FROM schedule_slots WHERE schedule = 'tick'")
    }
    for j in jobs:  # each job carries the slot it fired for
        assert dt.datetime.fromisoformat(j["slot"]).timestamp() == fired[j["id"]]
    slots = [
        s for (s,) in rows(stoker, "SELECT slot FROM schedule_slots WHERE schedule = 'tick' ORDER BY slot")
    ]
    assert all(s == int(s) for s in slots)  # on the epoch's second boundaries
    assert all(b - a >= 1 for a, b in itertools.pairwise(slots))
    [listing] = stoker.json("schedules")
    assert listing["name"] == "tick" and listing["trigger"] == "every 1s" and not listing["paused"]
    assert listing["next_run"] and listing["last_run"] and listing["last_job"]
    text = stoker.cli("schedules").stdout
    assert "tick" in text and "every 1s" in text


def test_a_slot_fires_once_even_across_a_crash(stoker: Stoker) -> None:
    stoker.write(
        """
        [schedules.tick]
        every = "1s"
        command = ["true"]
        catch_up = "latest"
        """
    )
    stoker.up()
    wait_for(lambda: len(schedule_jobs(stoker, "tick")) >= 2, 20, "2 firings")
    stoker.kill()  # SIGKILL, perhaps in the middle of a firing
    stoker.up()
    wait_for(lambda: len(schedule_jobs(stoker, "tick")) >= 5, 20, "more firings")
    stoker.kill()
    stoker.up()
    wait_for(lambda: len(schedule_jobs(stoker, "tick")) >= 7, 20, "more firings")
    per_slot = rows(stoker, "SELECT run_at, COUNT(*) FROM jobs WHERE schedule = 'tick' GROUP BY run_at")
    assert all(count == 1 for _, count in per_slot), per_slot
    fired = rows(stoker, "SELECT COUNT(*) FROM schedule_slots WHERE schedule = 'tick' AND outcome = 'fired'")
    assert fired[0][0] == len(rows(stoker, "SELECT id FROM jobs WHERE schedule = 'tick'"))


def test_overlap_skip_never_runs_two_at_once(stoker: Stoker, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    stoker.write(
        f"""
        [schedules.slow]
        every = "1s"
        command = ["sh", "-c", "echo start >> {trace}; sleep 2.2; echo end >> {trace}"]
        """
    )
    stoker.up()
    wait_for(lambda: rows(stoker, "SELECT COUNT(*) FROM schedule_slots WHERE outcome = 'skipped'")[0][0] >= 2,
             20, "skipped slots")  # fmt: skip
    running = peak = 0
    for line in trace.read_text().splitlines():
        running += 1 if line == "start" else -1
        peak = max(peak, running)
    assert peak == 1
    assert "skipped: job" in stoker.log_text()
    reasons = rows(stoker, "SELECT reason, job_id FROM schedule_slots WHERE outcome = 'skipped'")
    ran = {j["id"] for j in schedule_jobs(stoker, "slow")}
    for reason, job_id in reasons:  # the run that was still going, named
        assert job_id is None and reason.startswith("overlap: job ")
        assert reason.endswith((" was still running", " was still queued"))
        assert int(reason.split()[2]) in ran


def test_overlap_allow_and_replace(stoker: Stoker, tmp_path: Path) -> None:
    allow, replace = tmp_path / "allow", tmp_path / "replace"
    stoker.write(
        f"""
        [daemon]
        shutdown_timeout = "1s"  # (the runs sleep 30 s: the test's end need not wait for them)
        [schedules.pile]
        every = "1s"
        overlap = "allow"
        command = ["sh", "-c", "echo $$ >> {allow}; sleep 30"]
        [schedules.fresh]
        every = "1s"
        overlap = "replace"
        command = ["sh", "-c", "echo $$ >> {replace}; sleep 30"]
        """
    )
    stoker.up()
    wait_for(lambda: len([j for j in schedule_jobs(stoker, "pile") if j["state"] == "running"]) >= 2, 20,
             "two runs side by side")  # fmt: skip
    wait_for(lambda: any(j["state"] == "cancelled" for j in schedule_jobs(stoker, "fresh")), 20,
             "the previous run to be replaced")  # fmt: skip
    assert len([j for j in schedule_jobs(stoker, "fresh") if j["state"] == "running"]) <= 1


def test_catch_up_latest_fires_the_missed_slot_once(stoker: Stoker) -> None:
    stoker.write(
        """
        [schedules.caught]
        every = "1s"
        command = ["true"]
        catch_up = "latest"
        [schedules.missed]
        every = "1s"
        command = ["true"]
        """
    )
    stoker.up()
    wait_for(lambda: schedule_jobs(stoker, "caught") and schedule_jobs(stoker, "missed"), 20, "firings")
    assert stoker.terminate() == 0
    before = {n: len(rows(stoker, "SELECT 1 FROM jobs WHERE schedule = ?", n)) for n in ("caught", "missed")}
    down_since = rows(stoker, "SELECT MAX(slot) FROM schedule_slots")[0][0]
    wait_for(lambda: time.time() > down_since + 2.5, 10, "slots to be missed")
    stoker.up()
    caught = rows(stoker, "SELECT slot, fired_at FROM schedule_slots WHERE schedule = 'caught' ORDER BY slot")
    missed_slots = [s for s, _ in caught if s > down_since]
    assert missed_slots, "the latest missed slot was caught up"
    first = missed_slots[0]
    # one catch-up for the latest missed slot, not one per missed slot
    assert not any(down_since < s < first for s, _ in caught)
    missed = rows(stoker, "SELECT slot FROM schedule_slots WHERE schedule = 'missed' ORDER BY slot")
    assert [s for (s,) in missed if down_since < s < first] == []
    assert before["caught"] >= 1


def test_pause_resume_and_run_now(stoker: Stoker) -> None:
    stoker.write(
        """
        [schedules.nightly]
        cron = "0 3 * * *"
        timezone = "Asia/Shanghai"
        command = ["echo", "cleaning"]
        """
    )
    stoker.up()
    [listing] = stoker.json("schedules")
    assert listing["next_run"].endswith("T03:00:00+08:00")  # shown in the schedule's own zone
    assert listing["timezone"] == "Asia/Shanghai" and listing["last_run"] is None
    ran = stoker.json("schedule", "run", "nightly")
    assert ran["schedule"] == "nightly"
    done = stoker.client.wait(ran["id"], timeout=20)
    assert done.state == "succeeded" and done.output == "cleaning\n"
    paused = stoker.json("schedule", "pause", "nightly")
    assert paused["paused"] is True and paused["next_run"] is None
    assert stoker.terminate() == 0
    stoker.up()
    assert stoker.json("schedules")[0]["paused"] is True
    resumed = stoker.json("schedule", "resume", "nightly")
    assert resumed["paused"] is False and resumed["next_run"]
    assert stoker.cli("schedule", "run", "nope").returncode == 2


def test_reboot_fires_once_per_boot(stoker: Stoker) -> None:
    stoker.write(
        """
        [schedules.boot]
        cron = "@reboot"
        command = ["echo", "booted"]
        """
    )
    stoker.up()
    wait_for(lambda: len(schedule_jobs(stoker, "boot")) == 1, 20, "the @reboot job")
    assert stoker.terminate() == 0
    stoker.up()  # the daemon restarted, the machine did not: no second run
    assert len(schedule_jobs(stoker, "boot")) == 1


def test_a_skipped_slot_is_published_as_missed_with_its_streak(stoker: Stoker) -> None:
    stoker.write(
        """
        [daemon]
        shutdown_timeout = "0s"
        [schedules.slow]
        every = "1s"
        command = ["sleep", "60"]
        """
    )
    stoker.up()
    missed: list[dict[str, Any]] = []
    connected = threading.Event()

    def read() -> None:
        for event in stoker.client.events():
            if event.get("type") == "connected":
                connected.set()
            if event.get("type") == "schedule_missed":
                missed.append(event)
                if len(missed) == 2:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert connected.wait(20)
    reader.join(20)
    assert len(missed) == 2, stoker.log_text()[-3000:]
    first, second = missed
    [running] = [j for j in schedule_jobs(stoker, "slow") if j["state"] == "running"]
    assert first["schedule"] == "slow" and first["reason"] == "overlap" and first["missed"] == 1
    assert first["job"]["id"] == running["id"] and first["job"]["state"] == "running"
    assert len(first["slots"]) == 1 and first["error"] is None
    assert first["in_a_row"] == 1 and second["in_a_row"] == 2  # the same run still going: one streak
    assert dt.datetime.fromisoformat(second["slots"][0]) > dt.datetime.fromisoformat(first["slots"][0])


def test_when_file_gates_each_slot_and_records_why_it_was_skipped(stoker: Stoker) -> None:
    flags = stoker.config.parent / "flags"
    flags.mkdir()
    stoker.write(
        """
        [schedules.gated]
        every = "1s"
        command = ["echo", "ran"]
        when_file = "flags/on"
        """
    )
    stoker.up()
    heard: list[dict[str, Any]] = []
    connected = threading.Event()

    def read() -> None:
        for event in stoker.client.events():
            if event.get("type") == "connected":
                connected.set()
            if event.get("type") in ("schedule", "schedule_missed"):
                heard.append(event)

    threading.Thread(target=read, daemon=True).start()
    assert connected.wait(20)
    absent = "when_file flags/on is absent"
    skipped = "SELECT slot, reason, job_id FROM schedule_slots WHERE outcome = 'skipped' ORDER BY slot"
    wait_for(lambda: len(rows(stoker, skipped)) >= 2, 20, "two skipped slots")
    assert all(reason == absent and job is None for _, reason, job in rows(stoker, skipped))
    assert schedule_jobs(stoker, "gated") == []  # nothing ran
    [listing] = stoker.json("schedules")
    assert listing["last_state"] == "skipped" and listing["last_reason"] == absent
    assert listing["last_job"] is None and listing["when_file"] == "flags/on"
    text = stoker.cli("schedules").stdout
    assert "every 1s while flags/on exists" in text and f"skipped: {absent}" in text
    # a live event for each skipped slot (the dashboard's cue), never a schedule_missed: the
    # schedule did what it was told
    wait_for(lambda: [e for e in heard if e.get("skipped")], 20, "a skipped event")
    event = next(e for e in heard if e.get("skipped"))
    assert event["type"] == "schedule" and event["schedule"] == "gated" and event["reason"] == absent
    assert dt.datetime.fromisoformat(event["skipped"]).timestamp() in {s for s, _, _ in rows(stoker, skipped)}

    (flags / "on").touch()
    job = wait_for(lambda: schedule_jobs(stoker, "gated"), 20, "a slot that ran")[-1]
    assert stoker.client.wait(job["id"], timeout=30).output == "ran\n"
    (flags / "on").unlink()
    ran = len(schedule_jobs(stoker, "gated"))
    wait_for(lambda: stoker.json("schedules")[0]["last_state"] == "skipped", 20, "skipped again")
    assert len(schedule_jobs(stoker, "gated")) <= ran + 1  # (a slot may have fired as it was removed)

    history = stoker.json("schedule", "history", "gated", "-n", "1000")
    assert [h["slot"] for h in history] == sorted((h["slot"] for h in history), reverse=True)
    assert {h["state"] for h in history} == {"skipped", "succeeded"}
    assert all((h["reason"], h["job"]) == (absent, None) for h in history if h["state"] == "skipped")
    assert {h["job"] for h in history if h["state"] == "succeeded"} == {
        j["id"] for j in schedule_jobs(stoker, "gated")
    }
    assert len(stoker.json("schedule", "history", "gated", "-n", "2")) == 2
    table = stoker.cli("schedule", "history", "gated").stdout
    assert table.startswith("SLOT") and absent in table and "succeeded" in table
    assert not [e for e in heard if e["type"] == "schedule_missed"]
    # `run` is a person asking: it runs at once, file or not
    now = stoker.json("schedule", "run", "gated")
    assert stoker.client.wait(now["id"], timeout=30).output == "ran\n"


def test_a_schedules_history_is_asked_for_by_name(stoker: Stoker) -> None:
    stoker.write(
        """
        [schedules.tick]
        every = "1h"
        command = ["true"]
        """
    )
    stoker.up()
    assert stoker.json("schedule", "history", "tick") == []
    assert "no slot recorded yet" in stoker.cli("schedule", "history", "tick").stdout
    missing = stoker.cli("schedule", "history", "nosuch")
    assert missing.returncode == 2 and "no schedule 'nosuch' (schedules: tick)" in missing.stderr
    for limit in ("0", "1001"):
        bad = stoker.cli("schedule", "history", "tick", "-n", limit)
        assert bad.returncode == 2 and "limit: expected a whole number from 1 to 1000" in bad.stderr


def test_an_inline_commands_task_and_queue_are_the_schedules_own(stoker: Stoker) -> None:
    """schedule.NAME is an internal name: the listings, the refusals and their messages speak of
    the config's own tasks and queues; the schedule still runs it, on its slots or on demand."""
    stoker.write(
        """
        [tasks.notify]
        command = ["echo", "notify"]
        [schedules.gray_notify]
        every = "1h"
        command = ["echo", "gray"]
        [schedules.shared]
        every = "1h"
        command = ["echo", "shared"]
        queue = "default"
        [schedules.flaky]
        every = "1h"
        command = ["false"]
        """
    )
    stoker.up()
    assert [t["name"] for t in stoker.client.request("GET", "/api/v1/tasks")] == ["notify"]
    assert [q["name"] for q in stoker.json("queues")] == ["default"]  # not schedule.gray_notify
    assert "schedule." not in stoker.cli("queues").stdout

    nosuch = stoker.cli("enqueue", "nosuch")
    assert nosuch.returncode == 2 and "no task 'nosuch' in the config (tasks: notify)" in nosuch.stderr
    for task in ("schedule.gray_notify", "schedule.shared"):
        try:
            stoker.client.request("POST", "/api/v1/jobs", {"task": task, "params": {}})
        except ClientError as e:
            assert e.status == 404 and e.code == "unknown_task", e
            owner = task.removeprefix("schedule.")
            assert f"task '{task}' is the inline command of schedule '{owner}'" in str(e)
            assert f"stoker schedule run {owner}" in str(e)
        else:
            raise AssertionError(f"{task} was enqueued")
    batch = stoker.cli("enqueue", "schedule.gray_notify")
    assert batch.returncode == 2 and "stoker schedule run gray_notify" in batch.stderr
    for action in ("pause", "resume"):
        own = stoker.cli("queue", action, "schedule.gray_notify")
        assert (
            own.returncode == 2
            and "queue 'schedule.gray_notify' belongs to schedule 'gray_notify'" in own.stderr
        )
        assert "stoker schedule pause gray_notify" in own.stderr
    other = stoker.cli("queue", "pause", "nosuch")
    assert other.returncode == 2 and "no queue 'nosuch' (queues: default)" in other.stderr
    assert stoker.client.jobs() == []  # nothing was stored

    # its schedule runs it as before, in its own queue
    job = stoker.json("schedule", "run", "gray_notify")
    assert (job["task"], job["queue"], job["schedule"]) == (
        "schedule.gray_notify",
        "schedule.gray_notify",
        "gray_notify",
    )
    assert stoker.client.wait(job["id"], timeout=30).output == "gray\n"
    shared = stoker.client.wait(stoker.json("schedule", "run", "shared")["id"], timeout=30)
    assert (shared.queue, shared.output) == ("default", "shared\n")
    # a job of it is an ordinary job: a failed one is retried by id like any other
    failed = stoker.client.wait(stoker.json("schedule", "run", "flaky")["id"], timeout=30)
    assert failed.state == "failed"
    assert stoker.json("retry", str(failed.id))[0]["attempt"] == 0
    assert stoker.client.wait(failed.id, timeout=30).attempt == 1


def test_a_pause_longer_than_keep_jobs_does_not_fire_its_stale_slot(stoker: Stoker) -> None:
    # A daemon frozen (SIGSTOP, a paused VM) for longer than slot records are kept wakes with a
    # due slot that, on a shared store, another node fired and whose record may be pruned: it
    # is published as missed ("late"), not fired a second time.
    import os
    import signal

    stoker.write(
        """
        [daemon]
        keep_jobs = "2s"
        [schedules.tick]
        every = "1s"
        command = ["true"]
        """
    )
    daemon = stoker.up()
    wait_for(lambda: schedule_jobs(stoker, "tick"), what="a first slot to fire")
    late: list[dict[str, Any]] = []
    connected = threading.Event()

    def read() -> None:
        for event in stoker.client.events():
            if event.get("type") == "connected":
                connected.set()
            if event.get("type") == "schedule_missed" and event.get("reason") == "late":
                late.append(event)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert connected.wait(20)
    os.kill(daemon.pid, signal.SIGSTOP)
    frozen = time.time()
    try:
        time.sleep(5)  # the fault itself: frozen for longer than keep_jobs
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    woken = time.time()
    reader.join(20)
    assert late, stoker.log_text()[-3000:]
    stale = [dt.datetime.fromisoformat(s).timestamp() for s in late[0]["slots"]]
    assert stale[0] < frozen + 1  # the slot that was due when it froze
    fired = [
        dt.datetime.fromisoformat(j["slot"]).timestamp() for j in schedule_jobs(stoker, "tick") if j["slot"]
    ]
    assert not [s for s in fired if frozen + 0.5 < s < woken - 2.5], "a slot older than keep_jobs fired"

    def ticking_again() -> bool:
        return any(
            dt.datetime.fromisoformat(j["created_at"]).timestamp() > woken
            for j in schedule_jobs(stoker, "tick")
        )

    wait_for(ticking_again, what="the schedule to fire again after the pause")
