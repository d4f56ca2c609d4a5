"""Reload by diff (`stoker reload`, SIGHUP, POST /api/v1/reload), with a real daemon and real
processes: what did not change keeps its processes; a config that is not valid changes nothing."""

from __future__ import annotations

import json
import signal

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
    assert result.stdout.strip() == "reloaded: 5 program(s) left as they were"


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
