"""[notify] webhooks: the config, the pure rules, and a real daemon POSTing to a real receiver."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import http.server
import json
import logging
import signal
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, wait_for

from stoker.config import parse_config
from stoker.notify import rules
from stoker.notify.rules import Change, CrashLoops, program_change, starts_streak
from stoker.notify.webhook import (
    QUEUE_LIMIT,
    Answer,
    Notification,
    Webhook,
    parse_retry_after,
    retry_delay,
    verdict,
)
from stoker.reload import describe, diff
from stoker.supervise.state import State, Streak

# --------------------------------------------------------------------------------------------
# config (the rest of [notify.NAME]'s checks are in test_config_notify.py)
# --------------------------------------------------------------------------------------------


def test_reload_lists_the_webhooks_that_changed(tmp_path: Path) -> None:
    old = parse_config(
        '[notify.a]\nurl = "http://x"\n[notify.b]\nurl = "http://x"\n', tmp_path / "stoker.toml"
    )
    new = parse_config(
        '[notify.b]\nurl = "http://y"\n[notify.c]\nurl = "http://x"\n', tmp_path / "stoker.toml"
    )
    changes = diff(old, new)
    assert changes.notify == ["a", "b", "c"]
    assert changes.as_json()["webhooks"] == {"added": ["c"], "updated": ["b"], "removed": ["a"]}
    assert describe(changes.as_json()) == "added webhook c; updated webhook b; removed webhook a"
    assert diff(new, new).notify == []


# --------------------------------------------------------------------------------------------
# the pure rules
# --------------------------------------------------------------------------------------------

S = State
A = Streak(1, 5.0, 5.0)  # a streak's first end
B = Streak(2, 5.0, 7.0)  # its second
C = Streak(1, 90.0, 90.0)  # the first end of a later streak (after a stable run)


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        ((S.STARTING, None), (S.BACKOFF, A), Change.CRASH),  # died before start_seconds
        ((S.RUNNING, A), (S.BACKOFF, B), Change.CRASH),  # crashed again: a loop, backing off
        ((S.RUNNING, None), (S.STARTING, A), Change.CRASH),  # crashed: restarted at once
        ((S.RUNNING, B), (S.STARTING, C), Change.CRASH),  # after a stable run: a new streak
        ((S.RUNNING, None), (S.STOPPING, A), Change.CRASH),  # hung, or not ready in time
        ((S.STARTING, B), (S.FATAL, None), Change.FATAL),
        ((S.RUNNING, A), (S.EXITED, None), Change.REST),  # restart = "never"
        ((S.STOPPING, A), (S.STOPPED, None), Change.REST),
        ((S.BACKOFF, B), (S.STOPPED, None), Change.REST),
        ((S.STOPPING, A), (S.STARTING, A), None),  # after a hang: counted when it was decided
        ((S.STOPPING, A), (S.BACKOFF, A), None),  # after "not ready in time": counted already
        ((S.RUNNING, A), (S.STOPPING, A), None),  # asked for (operator, reload, max_memory)
        ((S.STOPPING, A), (S.STARTING, None), None),  # a restart asked for: a fresh chance
        ((S.BACKOFF, B), (S.STARTING, B), None),  # the backoff is over: a new try
        ((S.STARTING, A), (S.RUNNING, A), None),
        ((S.STOPPED, None), (S.STARTING, None), None),
        ((S.FATAL, None), (S.FATAL, None), None),
    ],
)
def test_program_changes(
    before: tuple[State, Streak | None], after: tuple[State, Streak | None], change: Change | None
) -> None:
    assert program_change(*before, *after) is change


def ends(name: str, loops: CrashLoops, times: list[float], first: float | None = None) -> list[float | None]:
    """Feed `times` as the ends of one streak (begun at `first`, or at the first of them)."""
    start = times[0] if first is None else first
    n0 = 0 if first is None else 1
    return [loops.crashed(name, Streak(n0 + i + 1, start, t)) for i, t in enumerate(times)]


def test_a_crash_loop_is_reported_once_per_loop() -> None:
    loops = CrashLoops(count=3, within=60)
    assert ends("a:0", loops, [0, 1, 2.5]) == [None, None, 2.5]  # the third within a minute
    assert ends("a:0", loops, [3, 4, 30, 60, 89, 200], first=0) == [None] * 6  # the same loop
    assert loops.crashed("b:0", Streak(1, 5, 5)) is None  # every instance on its own
    # a stable run ended that streak: the next one is a new loop, reported again
    assert ends("a:0", loops, [300, 301, 302]) == [None, None, 2]


def test_crashes_spread_wider_than_the_window_are_not_reported() -> None:
    loops = CrashLoops(count=3, within=10)
    assert ends("a:0", loops, [0, 6, 12, 18, 24, 30]) == [None] * 6
    assert loops.crashed("a:0", Streak(7, 0, 31)) == 7  # 24, 30, 31


def test_coming_to_rest_ends_a_loop() -> None:
    loops = CrashLoops(count=2, within=60)
    assert ends("a:0", loops, [0, 1]) == [None, 1]
    loops.rested("a:0")  # stopped by hand (or fatal): a later start begins anew
    assert ends("a:0", loops, [2, 3]) == [None, 1]


def test_count_one_reports_the_first_crash_of_each_loop() -> None:
    loops = CrashLoops(count=1, within=60)
    assert ends("a:0", loops, [0, 30]) == [0, None]
    assert loops.crashed("a:0", Streak(1, 200, 200)) == 0


def test_a_streak_of_missed_slots_is_reported_at_its_start() -> None:
    assert starts_streak(in_a_row=1, missed=1)
    assert not starts_streak(in_a_row=2, missed=1)  # the same run still blocking
    assert starts_streak(in_a_row=7, missed=7)  # down: seven slots at once
    assert not starts_streak(in_a_row=8, missed=7)


def test_the_words() -> None:
    assert rules.fatal_message(
        "mailer:0",
        "gave up after 4 failed starts (the first and max_restarts = 3 restarts): exited with code 1",
    ) == (
        "mailer:0 is fatal: gave up after 4 failed starts (the first and max_restarts = 3 restarts): exited with code 1. "
        "`stoker start mailer:0` gives it a fresh chance"
    )
    assert rules.crash_loop_message("web:1", 5, 72.4, "killed by SIGSEGV") == (
        "web:1 is in a crash loop: 5 unexpected exits in 1m12s; the last: killed by SIGSEGV"
    )
    assert rules.crash_loop_message("web:1", 3, 0.123, "exited with code 1") == (
        "web:1 is in a crash loop: 3 unexpected exits in 0.12s; the last: exited with code 1"
    )
    assert rules.exit_words(3, None) == "exited with code 3"
    assert rules.exit_words(None, 11) == "killed by SIGSEGV"
    assert rules.exit_words(None, None) == "exited"
    assert rules.job_failed_message(42, "build", 3, "exited with code 1: no space left") == (
        "job 42 (build) failed after 3 attempts: exited with code 1: no space left"
    )
    assert (
        rules.job_failed_message(7, "mail", 1, None)
        == "job 7 (mail) failed after 1 attempt: no error recorded"
    )
    zone = dt.timezone(dt.timedelta(hours=8))
    t = [dt.datetime(2026, 11, 23, h, tzinfo=zone) for h in (1, 2, 3)]
    assert rules.schedule_missed_message(
        "nightly", "overlap", t[:1], missed=1, job_id=17, job_state="running"
    ) == (
        "schedule nightly: the slot at 2026-11-23T01:00:00+08:00 was skipped: its previous run, job 17, is still running"
    )
    assert rules.schedule_missed_message("nightly", "down", t, missed=3) == (
        "schedule nightly: 3 slots (2026-11-23T01:00:00+08:00 … 2026-11-23T03:00:00+08:00) were missed while the daemon was not running"
    )
    assert rules.schedule_missed_message("tick", "down", t, missed=1001).startswith(
        "schedule tick: 3 or more slots"
    )
    assert "could not fire in time" in rules.schedule_missed_message("tick", "late", t[:2], missed=2)
    assert rules.schedule_missed_message("tick", "error", t[:1], error="disk I/O error") == (
        "schedule tick: the slot at 2026-11-23T01:00:00+08:00 could not fire: disk I/O error"
    )


def test_the_envelope() -> None:
    at = dt.datetime(2026, 11, 23, 9, 41, tzinfo=dt.UTC)
    head = rules.envelope("job_failed", id="abc", node="web-1", at=at, message="job 1 failed")
    assert head == {
        "event": "job_failed", "id": "abc", "node": "web-1", "at": at, "message": "job 1 failed", "text": "job 1 failed",
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# delivery rules and the queue
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "sent"), (204, "sent"), (None, "retry"), (500, "retry"), (503, "retry"), (429, "retry"),
     (408, "retry"), (400, "refused"), (401, "refused"), (404, "refused"), (301, "refused")],
)  # fmt: skip
def test_what_an_answer_means(status: int | None, expected: str) -> None:
    assert verdict(Answer(status)) == expected


def test_retry_delays() -> None:
    assert [retry_delay(n, None, 1.0) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert [retry_delay(n, None, 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]  # jittered down to half
    assert retry_delay(1, 7.0, 0.5) == 7.0  # Retry-After is honoured
    assert retry_delay(1, 3600.0, 0.5) == 60.0  # up to a minute
    assert retry_delay(1, -5.0, 0.5) == 0.0


def test_retry_after() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120.0
    http_date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(http_date, now) == pytest.approx(30, abs=1)
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None


def test_a_full_queue_drops_its_oldest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config('[notify.ops]\nurl = "http://127.0.0.1:9/"\n', tmp_path / "stoker.toml")

    async def fill() -> list[str]:
        hook = Webhook(config.notify["ops"])
        for n in range(QUEUE_LIMIT + 5):
            hook.offer(Notification("job_failed", f"job {n}", b"{}"))
        assert hook.pending() == QUEUE_LIMIT
        return [hook._queue[0].about, hook._queue[-1].about]

    with caplog.at_level(logging.WARNING, logger="stoker"):
        assert asyncio.run(fill()) == ["job 5", f"job {QUEUE_LIMIT + 4}"]
    drops = [r.getMessage() for r in caplog.records if "dropping the oldest" in r.getMessage()]
    assert len(drops) == 1 and "(job_failed job 0)" in drops[0]  # said once, not once per drop


# --------------------------------------------------------------------------------------------
# a real daemon, a real receiver
# --------------------------------------------------------------------------------------------


class Receiver:
    """An HTTP server on a free port, in a thread, that records every POST. It answers with
    the statuses in `answers`, one per request, then 200."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: deque[int] = deque()
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    status = receiver.answers.popleft() if receiver.answers else 200
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": json.loads(body),
                            "status": status,
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test's output is not the place

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self, event: str | None = None, *, answered: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                r["body"] for r in self.requests
                if (event is None or r["body"]["event"] == event) and (answered is None or r["status"] == answered)
            ]  # fmt: skip

    def wait(self, event: str, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        """The delivered (200) notifications of `event`, once there are `count` of them."""
        wait_for(
            lambda: len(self.bodies(event, answered=200)) >= count,
            timeout,
            f"{count} {event} notification(s)",
        )
        return self.bodies(event, answered=200)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def hook(receiver: Receiver, extra: str = "") -> str:
    return f'[notify.ops]\nurl = "{receiver.url}/hook"\n{extra}\n'


# A program that gives up at once: starting it is a barrier. Notifications go out in order,
# one webhook queue, so once its program_fatal has arrived, everything queued before it has.
BARRIER = """
[programs.barrier]
command = ["sh", "-c", "exit 9"]
autostart = false
max_restarts = 1
backoff = { min = "10ms", max = "10ms" }
"""


def barrier(stoker: Stoker, receiver: Receiver) -> None:
    before = len(receiver.bodies("program_fatal"))
    assert stoker.cli("start", "barrier").returncode in (0, 1)
    wait_for(lambda: any(b["program"]["name"] == "barrier:0" for b in receiver.bodies("program_fatal")[before:]),
             30, "the barrier's program_fatal")  # fmt: skip


def test_program_fatal_is_posted_once_with_the_instance_and_the_headers(
    stoker: Stoker, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STOKER_TEST_HOOK_TOKEN", "Bearer s3cret")  # the daemon inherits it
    (tmp_path / "team.txt").write_text("ops\n")
    stoker.write(
        """
        [daemon]
        node = "test-node"
        [programs.doomed]
        command = ["sh", "-c", "echo cannot start; exit 3"]
        max_restarts = 2
        backoff = { min = "10ms", max = "20ms" }
        """
        + hook(
            receiver, 'headers = { Authorization = "env:STOKER_TEST_HOOK_TOKEN", X-Team = "file:team.txt" }'
        )
    )
    stoker.up()
    stoker.wait_state("doomed:0", "fatal")
    [body] = receiver.wait("program_fatal")
    [request] = [r for r in receiver.requests if r["body"]["event"] == "program_fatal"]
    assert request["path"] == "/hook"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Bearer s3cret" and headers["x-team"] == "ops"
    assert headers["content-type"] == "application/json" and headers["user-agent"].startswith("stoker/")
    assert body["node"] == "test-node" and len(body["id"]) == 32
    assert abs(dt.datetime.fromisoformat(body["at"]).timestamp() - time.time()) < 600
    assert body["message"] == body["text"]
    assert body["message"].startswith(
        "doomed:0 is fatal: gave up after 3 failed starts (the first and max_restarts = 2 restarts): exited with code 3"
    )
    program = body["program"]
    assert program == stoker.programs()["doomed:0"] | {"uptime": None, "memory": None}
    assert program["name"] == "doomed:0" and program["state"] == "fatal" and program["node"] == "test-node"
    assert program["error"].startswith(
        "gave up after 3 failed starts (the first and max_restarts = 2 restarts)"
    )
    # a second fatal is a second notification; the first was sent once
    assert stoker.cli("start", "doomed").returncode in (0, 1)
    stoker.wait_state("doomed:0", "fatal")
    second = receiver.wait("program_fatal", 2)
    assert len(second) == 2 and second[1]["id"] != body["id"]
    assert receiver.bodies("crash_loop") == []  # 3 failed starts: below the default count of 5


def test_a_crash_loop_is_posted_once_per_loop(stoker: Stoker, receiver: Receiver) -> None:
    stoker.write(
        """
        [programs.flappy]                  # fails to start, again and again (never gives up)
        command = ["sh", "-c", "exit 1"]
        backoff = { min = "10ms", max = "20ms" }
        [programs.restless]                # starts fine, then dies: a crash loop, backing off
        command = ["sh", "-c", "sleep 0.2; kill -SEGV $$"]
        start_seconds = "0.1s"
        backoff = { min = "10ms", max = "20ms" }
        """
        + BARRIER
        + hook(receiver, 'crash_loop = { count = 3, within = "1m" }')
    )
    stoker.up()
    wait_for(lambda: stoker.programs()["flappy:0"]["restarts"] >= 10, 30, "flappy to loop")
    wait_for(lambda: stoker.programs()["restless:0"]["restarts"] >= 6, 30, "restless to loop")
    barrier(stoker, receiver)
    loops = {b["program"]["name"]: b for b in receiver.bodies("crash_loop")}
    assert len(receiver.bodies("crash_loop")) == 2, receiver.bodies("crash_loop")  # one per instance
    flappy, restless = loops["flappy:0"], loops["restless:0"]
    assert flappy["message"].startswith("flappy:0 is in a crash loop: 3 unexpected exits in ")
    assert "; the last: exited with code 1 after " in flappy["message"]
    assert flappy["program"]["state"] == "backoff" and flappy["program"]["restarts"] == 2
    assert "; the last: killed by SIGSEGV after " in restless["message"]
    # the first crash was restarted at once, the second and third wait: the loop the status shows
    assert restless["program"]["state"] == "backoff" and restless["program"]["restarts"] == 2
    for body in (flappy, restless):
        assert body["program"]["crash_loop"]["exits"] == 3, body["program"]
    # a stop ends the loop; the next loop after a start is a new one
    assert stoker.cli("stop", "flappy").returncode == 0
    assert stoker.cli("start", "flappy").returncode in (0, 1)
    receiver.wait("crash_loop", 3)
    assert [b["program"]["name"] for b in receiver.bodies("crash_loop")].count("flappy:0") == 2


def test_job_failed_is_posted_after_the_last_attempt_only(stoker: Stoker, receiver: Receiver) -> None:
    stoker.write(
        """
        [tasks.flaky]
        command = ["sh", "-c", "echo boom; exit 7"]
        max_attempts = 2
        backoff = { min = "10ms", max = "20ms" }
        [tasks.fine]
        command = ["true"]
        """
        + hook(receiver)
    )
    stoker.up()
    good = stoker.client.enqueue("fine")
    job = stoker.client.enqueue("flaky")
    assert stoker.client.wait(job.id, timeout=30).state == "failed"
    assert stoker.client.wait(good.id, timeout=30).state == "succeeded"
    [body] = receiver.wait("job_failed")
    # a failed attempt that is retried sends nothing: it would have been queued, and sent, first
    assert [b["event"] for b in receiver.bodies()] == ["job_failed"]
    assert body["message"] == f"job {job.id} (flaky) failed after 2 attempts: exited with code 7: boom"
    sent = body["job"]
    assert sent["id"] == job.id and sent["state"] == "failed" and sent["attempt"] == 2
    assert sent["exit_code"] == 7 and sent["output"] == "boom\n" and sent["task"] == "flaky"
    assert dt.datetime.fromisoformat(body["at"]) == dt.datetime.fromisoformat(sent["finished_at"])


def test_schedule_missed_once_per_run_that_outlasts_the_interval(stoker: Stoker, receiver: Receiver) -> None:
    stoker.write(
        """
        [daemon]
        shutdown_timeout = "0s"
        [schedules.slow]
        every = "1s"
        command = ["sleep", "60"]
        """
        + BARRIER
        + hook(receiver)
    )
    stoker.up()
    [body] = receiver.wait("schedule_missed")
    assert body["reason"] == "overlap" and body["missed"] == 1 and len(body["slots"]) == 1
    running = body["job"]
    assert running["state"] == "running" and running["schedule"] == "slow"
    assert body["message"] == (
        f"schedule slow: the slot at {dt.datetime.fromisoformat(body['slots'][0]).isoformat(timespec='seconds')} "
        f"was skipped: its previous run, job {running['id']}, is still running"
    )
    schedule = body["schedule"]
    assert (
        schedule["name"] == "slow"
        and schedule["trigger"] == "every 1s"
        and schedule["last_state"] == "skipped"
    )
    # more slots skipped behind the same run: no more notifications
    wait_for(lambda: skipped(stoker) >= 3, 30, "more skipped slots")
    barrier(stoker, receiver)
    assert len(receiver.bodies("schedule_missed")) == 1
    # once that run is over and another fired, a skip behind the new one is a new streak
    stoker.client.cancel(running["id"])
    second = receiver.wait("schedule_missed", 2)[1]
    assert second["job"]["id"] != running["id"] and second["reason"] == "overlap"


def skipped(stoker: Stoker) -> int:
    db = sqlite3.connect(stoker.state_dir / "stoker.db")
    try:
        return int(db.execute("SELECT COUNT(*) FROM schedule_slots WHERE outcome = 'skipped'").fetchone()[0])
    finally:
        db.close()


def test_slots_missed_while_the_daemon_was_down(stoker: Stoker, receiver: Receiver) -> None:
    stoker.write(
        """
        [schedules.tick]
        every = "1s"
        command = ["true"]
        catch_up = "latest"
        """
        + hook(receiver, 'events = ["schedule_missed"]')
    )
    stoker.up()
    wait_for(lambda: len([j for j in stoker.client.jobs() if j["schedule"] == "tick"]) >= 1, 20, "a firing")
    assert stoker.terminate() == 0
    stopped = time.time()
    wait_for(lambda: time.time() > stopped + 3.5, 10, "three slots to pass")  # time passing is the state
    stoker.up()
    # (on a loaded machine a slot after the restart may also be reported late: not this test's)
    [body] = [b for b in receiver.wait("schedule_missed") if b["reason"] == "down"]
    assert body["missed"] >= 2 and len(body["slots"]) == body["missed"]
    assert "missed while the daemon was not running" in body["message"]
    caught_up = [j for j in stoker.client.jobs() if j["schedule"] == "tick"]
    latest = max(dt.datetime.fromisoformat(j["slot"]) for j in caught_up)
    assert all(dt.datetime.fromisoformat(s) < latest for s in body["slots"])  # the caught-up one ran


def test_a_failing_receiver_is_retried_and_the_daemon_keeps_working(
    stoker: Stoker, receiver: Receiver
) -> None:
    receiver.answers.extend([500, 503])  # then 200
    stoker.write(
        """
        [tasks.bad]
        command = ["false"]
        [tasks.fine]
        command = ["true"]
        """
        + hook(receiver)
    )
    stoker.up()
    job = stoker.client.enqueue("bad")
    [body] = receiver.wait("job_failed")
    tries = receiver.bodies("job_failed")
    assert len(tries) == 3 and all(t == body for t in tries)  # the same notification, tried again
    assert "answered 500" in stoker.log_text() and "trying again in" in stoker.log_text()
    assert body["job"]["id"] == job.id
    # a refusal (4xx) is not retried
    receiver.answers.append(400)
    other = stoker.client.enqueue("bad")
    wait_for(lambda: "not sent: answered 400" in stoker.log_text(), 30, "the refusal in the log")
    assert stoker.client.wait(stoker.client.enqueue("fine").id, timeout=30).state == "succeeded"
    third = stoker.client.enqueue("bad")
    receiver.wait("job_failed", 2)
    ids = [b["job"]["id"] for b in receiver.bodies("job_failed")]
    assert ids.count(other.id) == 1 and ids[-1] == third.id


def test_a_receiver_that_is_down_gets_it_once_it_is_up(stoker: Stoker, unused_tcp_port: int) -> None:
    stoker.write(
        f"""
        [tasks.bad]
        command = ["false"]
        [notify.ops]
        url = "http://127.0.0.1:{unused_tcp_port}/hook"
        """
    )
    stoker.up()
    job = stoker.client.enqueue("bad")
    wait_for(lambda: "no answer" in stoker.log_text() and "trying again" in stoker.log_text(), 30,
             "a failed try in the log")  # fmt: skip
    assert stoker.client.status()["pid"]  # the daemon answers meanwhile
    late = Receiver(unused_tcp_port)
    try:
        [body] = late.wait("job_failed", timeout=30)
        assert body["job"]["id"] == job.id
    finally:
        late.close()


def test_a_receiver_that_never_answers_is_given_up_on(stoker: Stoker, receiver: Receiver) -> None:
    receiver.answers.extend([500] * 4)  # every try of the first notification
    stoker.write(
        """
        [tasks.bad]
        command = ["false"]
        """
        + hook(receiver)
    )
    stoker.up()
    first = stoker.client.enqueue("bad")
    wait_for(lambda: "gave up on job_failed" in stoker.log_text(), 60, "giving up in the log")
    assert len(receiver.bodies("job_failed")) == 4
    second = stoker.client.enqueue("bad")  # the next one goes out as usual
    [body] = receiver.wait("job_failed")
    assert body["job"]["id"] == second.id != first.id


def test_reload_applies_notify_live(stoker: Stoker, receiver: Receiver) -> None:
    base = """
        [tasks.bad]
        command = ["false"]
        """
    stoker.write(base)
    stoker.up()
    stoker.write(base + hook(receiver))
    result = stoker.cli("reload")
    assert result.returncode == 0 and "added webhook ops" in result.stdout, result
    job = stoker.client.enqueue("bad")
    [body] = receiver.wait("job_failed")
    assert body["job"]["id"] == job.id
    other = Receiver()
    try:
        stoker.write(base + hook(other))  # a changed url
        assert stoker.cli("reload").returncode == 0
        moved = stoker.client.enqueue("bad")
        [body] = other.wait("job_failed")
        assert body["job"]["id"] == moved.id
        assert len(receiver.bodies()) == 1
    finally:
        other.close()
    stoker.write(base + hook(receiver, 'events = ["job_fail"]'))
    refused = stoker.cli("reload")
    assert refused.returncode == 2
    assert (
        f'{stoker.config}: [notify.ops] events: unknown event "job_fail" (did you mean "job_failed"?)'
        in refused.stderr
    )


def test_check_counts_webhooks_and_names_a_bad_one(stoker: Stoker) -> None:
    stoker.write(
        '[notify.ops]\nurl = "https://hooks.example.com/stoker"\n[notify.pager]\nurl = "http://[::1]:8080/"\n'
    )
    good = stoker.cli("check")
    assert good.returncode == 0 and good.stdout.strip().endswith("ok, 0 programs, 2 webhooks")
    assert stoker.json("check")["webhooks"] == 2
    stoker.write('[notify.ops]\nurl = "hooks.example.com/stoker"\n')
    result = stoker.cli("check")
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        f'{stoker.config}: [notify.ops] url: expected an http:// or https:// URL, "env:NAME" or "file:PATH", '
        'got "hooks.example.com/stoker"'
    )


def test_stopping_while_the_receiver_is_down_gives_up_on_what_is_left(
    stoker: Stoker, unused_tcp_port: int
) -> None:
    stoker.write(
        f"""
        [tasks.bad]
        command = ["false"]
        [queues.default]
        concurrency = 3
        [notify.ops]
        url = "http://127.0.0.1:{unused_tcp_port}/hook"
        """
    )
    stoker.up()
    jobs = [stoker.client.enqueue("bad") for _ in range(3)]
    assert all(stoker.client.wait(job.id, timeout=30).state == "failed" for job in jobs)
    wait_for(lambda: "trying again" in stoker.log_text(), 30, "a failed try in the log")
    assert stoker.terminate() == 0
    log = stoker.log_text()
    assert "2 more notification(s) not sent: the daemon is stopping" in log, log[-3000:]
    assert "stopped" in log.splitlines()[-1]


def test_slots_lost_while_the_daemon_was_frozen_are_late(stoker: Stoker, receiver: Receiver) -> None:
    stoker.write(
        """
        [schedules.tick]
        every = "1s"
        command = ["true"]
        overlap = "allow"   # else the slot due on waking may be skipped first, as an overlap: the
                            # frozen daemon has not yet seen the last run end; one notice a streak
        """
        + hook(receiver, 'events = ["schedule_missed"]')
    )
    daemon = stoker.up()
    wait_for(lambda: any(j["schedule"] == "tick" for j in stoker.client.jobs()), 20, "a firing")
    daemon.send_signal(signal.SIGSTOP)  # as a suspended machine would
    try:
        frozen = time.time()
        wait_for(lambda: time.time() > frozen + 3.5, 10, "slots to pass")  # time passing is the state
    finally:
        daemon.send_signal(signal.SIGCONT)
    [body] = receiver.wait("schedule_missed")
    assert body["reason"] == "late" and body["missed"] >= 2, body
    assert "missed: the daemon could not fire in time" in body["message"]


def test_starts_that_are_never_ready_are_a_crash_loop(
    stoker: Stoker, receiver: Receiver, unused_tcp_port: int
) -> None:
    stoker.write(
        f"""
        [programs.deaf]                    # runs, but never listens where its ready check looks
        command = ["sleep", "60"]
        start_seconds = 0
        ready = "tcp:127.0.0.1:{unused_tcp_port}"
        ready_timeout = "200ms"
        backoff = {{ min = "10ms", max = "20ms" }}
        stop_timeout = "1s"
        """
        + hook(receiver, 'crash_loop = { count = 2, within = "1m" }')
    )
    stoker.up()
    [body] = receiver.wait("crash_loop")
    assert body["message"].startswith("deaf:0 is in a crash loop: 2 unexpected exits in ")
    assert body["message"].endswith("; the last: not ready within 0.2s")
    assert body["program"]["state"] == "stopping"  # the machine is stopping the one that was not ready
