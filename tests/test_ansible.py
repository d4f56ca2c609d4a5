"""Ansible's `community.general.supervisorctl` module (ansible from PyPI, a local connection)
against a real stoker daemon over TCP with the token as the password: the module runs the real
supervisorctl, parses its `status` and checks its answers' texts, so this is what a playbook
written for supervisord meets after the one-line `server_url` change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REQUIRE_ALL, Stoker, wait_for

BIN = Path(sys.executable).parent


def ansible_bin() -> str:
    path = shutil.which("ansible", path=str(BIN))
    if path is None:
        if REQUIRE_ALL:
            pytest.fail("ansible is not installed in the test venv (the dev extra installs it)")
        pytest.skip("ansible is not installed in the test venv")
    return path


def module(tmp_path: Path, port: int, **args: str) -> dict[str, Any]:
    """Run the module once as `ansible localhost -m community.general.supervisorctl -a ...`;
    its result as the json callback reports it."""
    given = {"server_url": f"http://127.0.0.1:{port}", "username": "deploy", "password": "s3cret", **args}
    home = tmp_path / "ansible-home"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # supervisorctl, from the same venv
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "PYTHONWARNINGS": "ignore",
    }
    run = subprocess.run(
        [
            ansible_bin(),
            "localhost",
            "-c",
            "local",
            "-m",
            "community.general.supervisorctl",
            "-a",
            json.dumps(given),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    report = json.loads(run.stdout[run.stdout.index("{") :])
    [play] = report["plays"]
    [task] = play["tasks"]
    result: dict[str, Any] = task["hosts"]["localhost"]
    return result


@pytest.fixture
def daemon(stoker: Stoker, unused_tcp_port: int) -> tuple[Stoker, int]:
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{unused_tcp_port}"
        token = "s3cret"

        [programs.web]
        command = ["sleep", "1000"]
        instances = 2
        start_seconds = 0

        [programs.mailer]
        command = ["sleep", "1000"]
        start_seconds = 0
        """
    )
    stoker.up()
    stoker.wait_state("web:0", "running")
    stoker.wait_state("web:1", "running")
    stoker.wait_state("mailer:0", "running")
    return stoker, unused_tcp_port


def pids(stoker: Stoker) -> dict[str, int | None]:
    return {name: row["pid"] for name, row in stoker.programs().items()}


def test_a_group_is_restarted_stopped_started_and_signalled(
    daemon: tuple[Stoker, int], tmp_path: Path
) -> None:
    stoker, port = daemon
    before = pids(stoker)

    restarted = module(tmp_path, port, name="web:", state="restarted")
    assert not restarted.get("failed"), restarted
    assert restarted["changed"] is True
    assert sorted(restarted["affected"]) == ["web:0", "web:1"]
    for name in ("web:0", "web:1"):
        row = stoker.wait_state(name, "running")
        assert row["pid"] != before[name]
    assert pids(stoker)["mailer:0"] == before["mailer:0"]  # the other program untouched

    stopped = module(tmp_path, port, name="web:", state="stopped")
    assert stopped["changed"] is True and sorted(stopped["affected"]) == ["web:0", "web:1"]
    stoker.wait_state("web:0", "stopped")
    stoker.wait_state("web:1", "stopped")
    again = module(tmp_path, port, name="web:", state="stopped")
    assert again["changed"] is False  # nothing to do: idempotent, as a playbook's second run

    started = module(tmp_path, port, name="web:", state="started")
    assert started["changed"] is True
    stoker.wait_state("web:0", "running")
    stoker.wait_state("web:1", "running")

    signalled = module(tmp_path, port, name="web:", state="signalled", signal="HUP")
    assert not signalled.get("failed"), signalled
    assert sorted(signalled["affected"]) == ["web:0", "web:1"]


def test_one_instance_by_its_process_name(daemon: tuple[Stoker, int], tmp_path: Path) -> None:
    stoker, port = daemon
    stopped = module(tmp_path, port, name="web:1", state="stopped")
    assert stopped["changed"] is True and stopped["affected"] == ["web:1"]
    stoker.wait_state("web:1", "stopped")
    assert stoker.programs()["web:0"]["state"] == "running"


def test_an_unknown_name_fails_as_against_supervisord(daemon: tuple[Stoker, int], tmp_path: Path) -> None:
    _, port = daemon
    result = module(tmp_path, port, name="nope:", state="restarted")
    assert result["failed"] is True
    assert result["msg"] == "ERROR (no such process)"


def test_present_and_absent_follow_the_config(daemon: tuple[Stoker, int], tmp_path: Path) -> None:
    # state=present runs `reread` then `add`; absent runs `reread` then `remove`: the deploy
    # script's way to bring a new worker up and an old one down.
    stoker, port = daemon
    config = stoker.config.read_text()
    stoker.config.write_text(
        config + '\n[programs.reports]\ncommand = ["sleep", "1000"]\nstart_seconds = 0\n'
    )
    present = module(tmp_path, port, name="reports", state="present")
    assert present["changed"] is True, present
    stoker.wait_state("reports:0", "running")
    assert module(tmp_path, port, name="reports", state="present")["changed"] is False

    absent = module(tmp_path, port, name="mailer", state="absent", stop_before_removing="true")
    assert absent["changed"] is True, absent
    wait_for(lambda: "mailer:0" not in stoker.programs(), what="mailer to be removed")
    assert stoker.programs()["web:0"]["state"] == "running"
