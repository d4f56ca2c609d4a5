"""The examples in examples/ run as documented (each copied to a temp dir, on a free port)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, free_port, marked_pids, need, wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _copy(stoker: Stoker, name: str, replace: dict[str, str] | None = None) -> None:
    shutil.copytree(EXAMPLES, stoker.root / "examples")
    config = stoker.root / "examples" / name / "stoker.toml"
    text = config.read_text()
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    stoker.config = config
    stoker.state_dir = config.parent / ".stoker"
    config.write_text(text)


@pytest.mark.parametrize(
    "name", ["guard", "line-server", "crawlers", "demo", "schedules", "mail-spool", "apk-builds"]
)
def test_example_configs_are_valid(stoker: Stoker, name: str) -> None:
    _copy(stoker, name)
    result = stoker.cli("check")
    assert result.returncode == 0, result.stderr


def test_guard_keeps_php_scripts_running(stoker: Stoker) -> None:
    need("php")
    _copy(stoker, "guard")
    stoker.up()
    names = ["send_spool:0", "consume_orders:0", "sync_inventory:0"]
    rows = {name: stoker.wait_state(name, "running") for name in names}
    spool = stoker.config.parent / "spool"
    wait_for(spool.exists, what="the spool dir")
    (spool / "welcome-42.mail").write_text("hello")
    wait_for(lambda: "sent welcome-42.mail" in stoker.cli("logs", "send_spool").stdout, what="the mail")
    # A crash (here: SIGKILL) after start_seconds: back at once, with a new pid.
    os.kill(rows["send_spool:0"]["pid"], signal.SIGKILL)
    again = stoker.wait_state("send_spool:0", "running", restarts=1)
    assert again["pid"] != rows["send_spool:0"]["pid"]
    # Stop is graceful: the script's TERM handler finishes its loop.
    stoker.json("stop", "send_spool")
    assert "send_spool: stopped cleanly" in stoker.cli("logs", "send_spool").stdout
    # timestamps = true prefixes every line with an ISO time.
    line = wait_for(lambda: stoker.cli("logs", "sync_inventory", "-n", "1").stdout, what="a sync line")
    assert line[:4].isdigit() and "sync_inventory: synced" in line


def test_line_server_is_kept_alive(stoker: Stoker, unused_tcp_port: int) -> None:
    _copy(
        stoker,
        "line-server",
        {'PORT = "7070"': f'PORT = "{unused_tcp_port}"', "tcp:7070": f"tcp:{unused_tcp_port}"},
    )
    stoker.up()
    first = stoker.wait_state("line_server:0", "running")
    assert _talk(unused_tcp_port, ["help", "echo hi", "quit"]) == [
        "hello from line-server; type help",
        "commands: help, time, echo TEXT, count, quit",
        "hi",
        "bye",
    ]
    os.kill(first["pid"], signal.SIGKILL)
    stoker.wait_state("line_server:0", "running", restarts=1)
    assert _try_talk(unused_tcp_port)  # running means ready: it answers already


def _talk(port: int, lines: list[str]) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        f = conn.makefile("rw")
        replies = [f.readline().rstrip("\n")]
        for line in lines:
            f.write(line + "\n")
            f.flush()
            replies.append(f.readline().rstrip("\n"))
        return replies


def _try_talk(port: int) -> bool:
    try:
        return _talk(port, ["echo back"])[-1] == "back"
    except OSError:
        return False


def test_crawlers_hundred_instances(stoker: Stoker) -> None:
    _copy(stoker, "crawlers")
    stoker.up()
    wait_for(
        lambda: sum(r["state"] == "running" for r in stoker.programs().values()) == 100,
        timeout=60,
        what="100 running crawlers",
    )
    rows = stoker.json("status", "crawler:42")
    assert [r["name"] for r in rows] == ["crawler:42"]
    wait_for(lambda: "merchant-42: started" in stoker.cli("logs", "crawler:42").stdout, what="crawler 42")
    assert stoker.terminate(timeout=60) == 0
    assert marked_pids(str(stoker.state_dir)) == []


def _copy_demo(stoker: Stoker, port: int) -> int:
    """The demo, its line server on `port` and its dashboard on another free port (returned)."""
    web = free_port()
    _copy(
        stoker,
        "demo",
        {
            'PORT = "7070"': f'PORT = "{port}"',
            "tcp:7070": f"tcp:{port}",
            'listen = "127.0.0.1:7080"': f'listen = "127.0.0.1:{web}"',
        },
    )
    return web


def test_demo_runs(stoker: Stoker, unused_tcp_port: int) -> None:
    _copy_demo(stoker, unused_tcp_port)
    stoker.up()
    for name in ["line_server:0", "crawler:0", "crawler:9", "flaky:0"]:
        stoker.wait_state(name, "running")
    wait_for(lambda: _try_talk(unused_tcp_port), what="the demo's line server")
    job = stoker.client.enqueue("report", day="monday")
    done = stoker.client.wait(job.id, timeout=60)
    # it fails now and then on purpose; 3 attempts make a success likely, not certain
    assert done.state in ("succeeded", "failed") and 1 <= done.attempt <= 3
    assert "monday: collecting orders" in done.output


def test_schedules_example(stoker: Stoker) -> None:
    need("php")
    _copy(stoker, "schedules", {'every = "30s"': 'every = "1s"', 'every = "30m"': 'every = "1s"'})
    folder = stoker.config.parent
    flag, sent = folder / "flags" / "gray_release", folder / "sent" / "android.log"
    stoker.up()
    status = folder / "status.json"
    wait_for(status.exists, 20, "the status file")
    first = status.read_text()
    wait_for(lambda: status.read_text() != first, 20, "the status file to be rewritten")
    listing = {s["name"]: s for s in stoker.json("schedules")}
    assert set(listing) == {"status_file", "gray_notify", "nightly_cleanup"}
    assert listing["nightly_cleanup"]["next_run"].endswith("T03:00:00+08:00")

    # The gray release is off: its slots are recorded skipped, with the reason; nothing runs.
    absent = "when_file flags/gray_release is absent"

    def gray() -> dict[str, Any]:
        return {s["name"]: s for s in stoker.json("schedules")}["gray_notify"]

    off = wait_for(lambda: (g := gray())["last_state"] == "skipped" and g, 20, "a skipped slot")
    assert off["last_reason"] == absent and off["when_file"] == "flags/gray_release"
    assert "skipped (job" not in stoker.cli("schedules").stdout
    assert f"skipped: {absent}" in stoker.cli("schedules").stdout
    assert not [j for j in stoker.client.jobs(limit=1000) if j["schedule"] == "gray_notify"]
    # On: the next slots notify.
    flag.touch()
    on = wait_for(lambda: (g := gray())["last_job"] and g, 20, "a slot that ran")
    done = stoker.client.wait(on["last_job"], timeout=30)
    assert done.state == "succeeded" and done.output == "notified android\n" and sent.exists()
    # Off again: skipped again, and the history tells the slots apart.
    flag.unlink()
    since = gray()["last_run"]
    wait_for(
        lambda: (g := gray())["last_run"] > since and g["last_state"] == "skipped", 20, "a skipped slot again"
    )
    history = stoker.json("schedule", "history", "gray_notify", "-n", "100")
    states = [h["state"] for h in history]
    assert "skipped" in states and "succeeded" in states
    assert all(h["reason"] == absent and h["job"] is None for h in history if h["state"] == "skipped")
    ran = [h["job"] for h in history if h["state"] != "skipped"]
    assert ran and all(stoker.client.wait(job, timeout=30).output == "notified android\n" for job in ran)
    assert len(sent.read_text().splitlines()) == len(ran)  # every job of it sent a notice
    # `schedule run` is a person asking: it runs now, flag or not.
    now = stoker.client.wait(stoker.json("schedule", "run", "gray_notify")["id"], timeout=30)
    assert now.output == "notified android\n"

    old, new = folder / "exports" / "old.csv", folder / "exports" / "new.csv"
    old.write_text("x")
    new.write_text("y")
    os.utime(old, (0, 0))
    cleanup = stoker.client.wait(stoker.json("schedule", "run", "nightly_cleanup")["id"], timeout=30)
    assert cleanup.state == "succeeded" and "deleted 1 file(s)" in cleanup.output
    assert not old.exists() and new.exists()


def test_demo_shows_the_dashboard_and_stops_promptly(stoker: Stoker, unused_tcp_port: int) -> None:
    """`make demo`: its banner names the dashboard's URL and token, the daemon serves the
    dashboard there, a schedule keeps jobs flowing, and Ctrl-C (SIGINT) stops every program
    within its stop_timeout: no SIGKILL (the crawlers used to nap through their SIGTERM)."""
    web = _copy_demo(stoker, unused_tcp_port)
    banner = subprocess.run(
        [sys.executable, str(stoker.config.parent / "banner.py")], capture_output=True, text=True, timeout=60
    )
    assert banner.returncode == 0, banner.stderr
    token = (stoker.state_dir / "token").read_text().strip()
    assert f"Dashboard:  http://127.0.0.1:{web}/" in banner.stdout and token in banner.stdout
    daemon = stoker.up()
    for name in ["line_server:0", *(f"crawler:{i}" for i in range(10)), "flaky:0"]:
        stoker.wait_state(name, "running", timeout=30)
    page = urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=30)
    assert page.status == 200 and "<title>stoker</title>" in page.read().decode()
    asked = urllib.request.Request(
        f"http://127.0.0.1:{web}/api/v1/schedules", headers={"Authorization": f"Bearer {token}"}
    )  # the token the banner printed is the one the daemon takes
    schedules = {s["name"]: s for s in json.loads(urllib.request.urlopen(asked, timeout=30).read())}
    assert set(schedules) == {"live_report", "nightly_report"}
    wait_for(lambda: stoker.client.jobs(), timeout=40, what="a job from the demo's schedule")

    daemon.send_signal(signal.SIGINT)  # as Ctrl-C on `make demo`
    assert daemon.wait(60) == 0
    log = stoker.log_text()
    assert "SIGKILL" not in log, log
    assert "crawler:0: pid" in log and "exited with code 0" in log  # stopped by itself
    assert marked_pids(str(stoker.state_dir)) == []
