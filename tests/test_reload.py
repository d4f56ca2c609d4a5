"""Reload by diff (`stoker reload`, SIGHUP, POST /api/v1/reload), with a real daemon and real
processes: what did not change keeps its processes; a config that is not valid changes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import Stoker, pid_alive, wait_for

from stoker.config import load_config
from stoker.reload import describe, diff

BASE = """
[programs.steady]
command = ["sleep", "300"]
start_seconds = 0

[programs.edited]
command = ["sleep", "301"]
start_seconds = 0

[programs.doomed]
command = ["sleep", "302"]
start_seconds = 0

[programs.many]
command = ["sleep", "303"]
instances = 3
start_seconds = 0

[programs.parked]
command = ["sleep", "304"]
start_seconds = 0
"""

EDITED = """
[programs.steady]
command = ["sleep", "300"]
start_seconds = 0

[programs.edited]
command = ["sleep", "311"]
start_seconds = 0

[programs.many]
command = ["sleep", "303"]
instances = 2
start_seconds = 0

[programs.parked]
command = ["sleep", "314"]
start_seconds = 0

[programs.newcomer]
command = ["sleep", "305"]
instances = 2
start_seconds = 0
"""


def pids(stoker: Stoker) -> dict[str, int | None]:
    return {name: row["pid"] for name, row in stoker.programs().items()}


def test_reload_applies_only_the_difference(stoker: Stoker) -> None:
    stoker.write(BASE)
    stoker.up()
    for name in ("steady:0", "edited:0", "doomed:0", "many:0", "many:1", "many:2", "parked:0"):
        stoker.wait_state(name, "running")
    stoker.cli("stop", "parked")
    before = pids(stoker)

    stoker.write(EDITED)
    result = stoker.cli("reload", "--json")
    assert result.returncode == 0, result.stderr
    changes = json.loads(result.stdout)
    assert changes["added"] == ["newcomer"] and changes["removed"] == ["doomed"]
    assert changes["changed"] == ["edited", "parked"] and changes["unchanged"] == ["steady"]
    assert changes["resized"] == {"many": {"from": 3, "to": 2}}
    said = result.stderr.splitlines()  # the progress, in the order it happened per instance
    for name in ("doomed:0", "many:2"):
        assert said.index(f"stopping {name} (up to 10s)…") < said.index(f"stopped {name}")
    assert (
        said.index("stopping edited:0 (up to 10s)…")
        < said.index("stopped edited:0")
        < said.index("started edited:0")
    )
    assert "stopping parked:0 (up to 10s)…" not in said  # stopped by hand: nothing to stop
    assert not any("steady" in line or "newcomer" in line for line in said)

    stoker.wait_state("newcomer:1", "running")
    after = pids(stoker)
    assert after["steady:0"] == before["steady:0"]  # untouched
    assert after["many:0"] == before["many:0"] and after["many:1"] == before["many:1"]  # survivors
    assert "many:2" not in after and "doomed:0" not in after
    assert before["many:2"] is not None and before["doomed:0"] is not None
    wait_for(lambda: not pid_alive(before["many:2"]) and not pid_alive(before["doomed:0"]))
    edited = stoker.wait_state("edited:0", "running")
    assert edited["pid"] != before["edited:0"] and "311" in " ".join(_cmdline(edited["pid"]))
    assert stoker.programs()["parked:0"]["state"] == "stopped"  # stopped by hand: stays stopped
    assert stoker.programs()["newcomer:0"]["state"] == "running"


def test_a_config_that_is_not_valid_changes_nothing(stoker: Stoker) -> None:
    stoker.write(BASE)
    stoker.up()
    stoker.wait_state("edited:0", "running")
    before = pids(stoker)
    stoker.write(EDITED + '\n[programs.broken]\ncommand = ["x"]\nrestart = "sometimes"\n')
    result = stoker.cli("reload")
    assert result.returncode == 2
    assert "stoker.toml" in result.stderr and "programs.broken" in result.stderr
    assert "restart" in result.stderr and "nothing was changed" in result.stderr
    assert pids(stoker) == before
    assert "reloaded" not in stoker.log_text()


def test_sighup_reloads_and_a_bad_file_is_logged(stoker: Stoker) -> None:
    stoker.write(BASE)
    daemon = stoker.up()
    stoker.wait_state("steady:0", "running")
    stoker.write(BASE + '\n[programs.late]\ncommand = ["sleep", "306"]\nstart_seconds = 0\n')
    daemon.send_signal(signal.SIGHUP)
    stoker.wait_state("late:0", "running")
    stoker.write("[programs.oops\n")
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused, nothing changed" in stoker.log_text(), what="the refusal in the log")
    assert stoker.programs()["late:0"]["state"] == "running"


def test_nothing_changed_says_so(stoker: Stoker) -> None:
    stoker.write(BASE)
    stoker.up()
    result = stoker.cli("reload")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"reloaded {stoker.config}: 5 program(s) left as they were"


def test_daemon_settings_bound_at_start_are_reported_not_applied(stoker: Stoker) -> None:
    stoker.write(BASE)
    old = load_config(stoker.config)
    stoker.write('[daemon]\nlisten = "127.0.0.1:1"\n' + BASE)
    changes = diff(old, load_config(stoker.config))
    assert changes.needs_restart == ["[daemon] listen"]
    assert describe(changes.as_json()).endswith("not applied until the daemon restarts: [daemon] listen")


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [part.decode() for part in f.read().split(b"\0") if part]


# --------------------------------------------------------------------------------------------
# jobs and schedules come and go by reload, the first ones included
# --------------------------------------------------------------------------------------------

PROGRAMS_ONLY = """
[programs.steady]
command = ["sleep", "300"]
start_seconds = 0
"""

WITH_JOBS = (
    PROGRAMS_ONLY
    + """
[tasks.hello]
command = ["echo", "hello {who}"]
queue = "mail"

[queues.mail]
concurrency = 2

[schedules.tick]
every = "1s"
task = "hello"
params = { who = "tick" }
"""
)


def test_a_daemon_started_without_jobs_gains_its_first_task_queue_and_schedule(stoker: Stoker) -> None:
    stoker.write(PROGRAMS_ONLY)
    stoker.up()
    steady = stoker.wait_state("steady:0", "running")
    assert not (stoker.state_dir / "stoker.db").exists()  # a programs-only daemon opens no store

    stoker.write(WITH_JOBS)
    changes = stoker.json("reload")
    assert changes["needs_restart"] == []
    assert changes["tasks"] == {"added": ["hello"], "updated": [], "removed": []}
    assert changes["queues"] == {"added": ["mail"], "updated": [], "removed": []}
    assert changes["schedules"] == {"added": ["tick"], "updated": [], "removed": []}
    assert changes["jobs"] == ["task hello", "queue mail", "schedule tick"]  # as before, for old clients

    job = stoker.json("enqueue", "hello", "who=world", "--wait")
    assert job["state"] == "succeeded" and job["output"] == "hello world\n"
    wait_for(lambda: any(j["schedule"] == "tick" for j in stoker.client.jobs()), 20, "the schedule to fire")
    [listing] = stoker.json("schedules")
    assert listing["name"] == "tick" and listing["next_run"] is not None
    assert [q["name"] for q in stoker.json("queues")] == ["mail"]
    assert stoker.programs()["steady:0"]["pid"] == steady["pid"]  # programs untouched

    stoker.write(PROGRAMS_ONLY)
    changes = stoker.json("reload")
    assert changes["tasks"] == {"added": [], "updated": [], "removed": ["hello"]}
    assert changes["schedules"] == {"added": [], "updated": [], "removed": ["tick"]}
    assert stoker.json("schedules") == []
    refused = stoker.cli("enqueue", "hello", "who=again")
    assert refused.returncode == 2 and "hello" in refused.stderr

    stoker.write(WITH_JOBS)  # and back: the store and dispatcher it opened are still there
    assert stoker.json("reload")["tasks"]["added"] == ["hello"]
    assert stoker.json("enqueue", "hello", "who=again", "--wait")["state"] == "succeeded"


def test_a_daemon_with_tasks_but_no_schedule_gains_its_first_schedule(stoker: Stoker) -> None:
    tasks = WITH_JOBS.split("[schedules.tick]")[0]
    stoker.write(tasks)
    stoker.up()
    assert stoker.json("schedules") == []
    stoker.write(WITH_JOBS)
    changes = stoker.json("reload")
    assert changes["needs_restart"] == [] and changes["schedules"]["added"] == ["tick"]
    wait_for(lambda: any(j["schedule"] == "tick" for j in stoker.client.jobs()), 20, "the schedule to fire")
    assert stoker.cli("schedule", "pause", "tick").returncode == 0
    assert stoker.json("schedules")[0]["paused"] is True


def test_reload_tells_added_updated_and_removed_jobs_apart(tmp_path: Path) -> None:
    path = tmp_path / "stoker.toml"
    path.write_text(
        '[tasks.kept]\ncommand = ["true"]\n[tasks.edited]\ncommand = ["true"]\n[tasks.gone]\ncommand = ["true"]\n'
        '[schedules.old]\nevery = "1h"\ntask = "kept"\n[notify.ops]\nurl = "http://x"\n'
    )
    old = load_config(path)
    path.write_text(
        '[tasks.kept]\ncommand = ["true"]\n[tasks.edited]\ncommand = ["false"]\n[tasks.fresh]\ncommand = ["true"]\n'
        '[queues.default]\nconcurrency = 3\n[schedules.new]\nevery = "1h"\ntask = "kept"\n'
        '[notify.dev]\nurl = "http://x"\n'
    )
    changes = diff(old, load_config(path)).as_json()
    assert changes["tasks"] == {"added": ["fresh"], "updated": ["edited"], "removed": ["gone"]}
    assert changes["queues"] == {"added": [], "updated": ["default"], "removed": []}
    assert changes["schedules"] == {"added": ["new"], "updated": [], "removed": ["old"]}
    assert changes["webhooks"] == {"added": ["dev"], "updated": [], "removed": ["ops"]}
    assert changes["jobs"] == [
        "task edited",
        "task fresh",
        "task gone",
        "queue default",
        "schedule new",
        "schedule old",
    ]
    assert changes["notify"] == ["dev", "ops"]
    assert describe(changes) == (
        "added task fresh, schedule new; updated task edited, queue default;"
        " removed task gone, schedule old; added webhook dev; removed webhook ops"
    )


def test_describe_reads_an_answer_from_an_older_daemon() -> None:
    # a daemon from before the split into added/updated/removed: jobs and notify only
    old = {"added": [], "removed": [], "changed": [], "resized": {}, "unchanged": [], "jobs": ["task mail"],
           "needs_restart": [], "notify": ["ops"]}  # fmt: skip
    assert describe(old) == "updated task mail; updated notify ops"


# --------------------------------------------------------------------------------------------
# which file, and what happens while it applies
# --------------------------------------------------------------------------------------------


def test_reload_names_the_file_it_read_and_refuses_another(stoker: Stoker) -> None:
    stoker.write(BASE)
    stoker.up()
    stoker.wait_state("steady:0", "running")
    result = stoker.cli("reload")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"reloaded {stoker.config}: 5 program(s) left as they were"
    assert stoker.json("reload")["config"] == str(stoker.config)

    other = stoker.root / "other.toml"  # same folder, same state dir: the same daemon answers
    other.write_text(BASE + '\n[programs.late]\ncommand = ["sleep", "306"]\n')
    before = pids(stoker)
    refused = subprocess.run(
        [sys.executable, "-m", "stoker", "-c", str(other), "reload"],
        capture_output=True, text=True, timeout=60, cwd=stoker.root,
    )  # fmt: skip
    assert refused.returncode == 2, refused
    assert refused.stderr.strip() == (
        f"stoker: the daemon runs {stoker.config}; reload re-reads that file, not {other}"
        f" (edit {stoker.config}, or restart the daemon with -c {other})"
    )
    assert pids(stoker) == before and "late:0" not in before

    link = stoker.root / "link.toml"  # the same file by another name is the same file
    link.symlink_to(stoker.config)
    same = subprocess.run(
        [sys.executable, "-m", "stoker", "-c", str(link), "reload"],
        capture_output=True, text=True, timeout=60, cwd=stoker.root,
    )  # fmt: skip
    assert same.returncode == 0, same.stderr


STUBBORN = """
[programs.steady]
command = ["sleep", "300"]
start_seconds = 0

[programs.stubborn]
command = ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 1; done"]
start_seconds = 0
stop_timeout = "10m"
"""


def test_reload_shows_each_instance_it_stops_while_it_stops(stoker: Stoker) -> None:
    stoker.write(STUBBORN)
    stoker.up()
    stubborn = stoker.wait_state("stubborn:0", "running")
    wait_for(lambda: "up" in stoker.cli("logs", "stubborn").stdout, what="the TERM trap to be set")
    stoker.write(BASE)
    reload = subprocess.Popen(
        [sys.executable, "-m", "stoker", "-c", str(stoker.config), "reload", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=stoker.root,
    )  # fmt: skip
    try:
        assert reload.stderr is not None and reload.stdout is not None
        # said while it stops (it ignores TERM for 10 minutes: only our SIGKILL below ends it)
        assert reload.stderr.readline() == "stopping stubborn:0 (up to 10m)…\n"
        assert stoker.programs()["stubborn:0"]["state"] == "stopping" and reload.poll() is None
        os.kill(stubborn["pid"], signal.SIGKILL)
        assert reload.stderr.readline() == "stopped stubborn:0\n"
        out, err = reload.communicate(timeout=60)
    finally:
        if reload.poll() is None:
            reload.kill()
            reload.wait()
    assert reload.returncode == 0, err
    changes = json.loads(out)  # --json: one document on stdout, the progress on stderr
    assert changes["removed"] == ["stubborn"] and "edited" in changes["added"]


def test_a_schedule_added_by_reload_hears_pauses_from_other_nodes(
    stoker: Stoker, postgres_url: str, tmp_path: Path
) -> None:
    # node b starts without schedules; the one a reload gives it must follow a pause made on a
    other = Stoker(tmp_path / "b")
    other.root.mkdir()
    tasks = '[tasks.tick]\ncommand = ["echo", "tick"]\n'
    schedule = '[schedules.nightly]\ncron = "0 3 * * *"\ntask = "tick"\n'
    stoker.write(f'[daemon]\nstore = "{postgres_url}"\nnode = "a"\n{tasks}{schedule}')
    other.write(f'[daemon]\nstore = "{postgres_url}"\nnode = "b"\n{tasks}')
    try:
        stoker.up()
        other.up()
        other.write(f'[daemon]\nstore = "{postgres_url}"\nnode = "b"\n{tasks}{schedule}')
        assert other.json("reload")["schedules"]["added"] == ["nightly"]
        assert other.client.schedules()[0]["paused"] is False
        assert stoker.cli("schedule", "pause", "nightly").returncode == 0
        wait_for(
            lambda: other.client.schedules()[0]["paused"],
            15,
            f"b to apply the pause; log:\n{other.log_text()}",
        )
    finally:
        assert not other.cleanup()
