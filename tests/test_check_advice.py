"""`stoker check` warns (exit 0) about what a valid config will likely fail at once it runs: an
executable not found on the PATH the daemon will give the command, and a config with nothing
to run. The pure part (stoker.advice) with a given `which`, then the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from stoker.advice import warnings
from stoker.config import Config, parse_config


def config(tmp_path: Path, text: str) -> Config:
    return parse_config(text, str(tmp_path / "stoker.toml"))


def test_executables_found_or_not_on_the_childs_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "gunicorn").write_text("#!/bin/sh\n")
    (bin_dir / "gunicorn").chmod(0o755)
    (tmp_path / "script.sh").write_text("#!/bin/sh\n")  # not executable
    cfg = config(
        tmp_path,
        f"""
        [programs.web]
        command = "gunicorn app:wsgi"
        [programs.venv]
        command = "gunicorn app:wsgi"
        environment = {{ PATH = "{bin_dir}:/usr/bin" }}
        [programs.local]
        command = "./venv/bin/gunicorn"
        [programs.script]
        command = "./script.sh"
        [programs.shell]
        command = "nosuchthing | grep x"
        shell = true
        [programs.clean]
        command = "gunicorn"
        inherit_environment = false
        [tasks.build]
        command = ["nosuch-builder", "{{target}}"]
        params = ["target"]
        [tasks.py]
        call = "app.jobs:run"
        [schedules.nightly]
        cron = "0 3 * * *"
        command = "nightly-job --all"
        """.replace("\n        ", "\n"),
    )
    environ = {"PATH": "/usr/bin:/bin"}
    found = warnings(cfg, environ, which=lambda name, path: None)
    assert found == [
        '[programs.web] command: "gunicorn" is not found on the PATH the daemon will use (/usr/bin:/bin)',
        f'[programs.venv] command: "gunicorn" is not found on the PATH the daemon will use ({bin_dir}:/usr/bin)',
        f'[programs.script] command: "./script.sh" is not an executable file (from {tmp_path})',
        '[programs.clean] command: "gunicorn" is not found on the PATH the daemon will use (/usr/bin:/bin)',
        '[tasks.build] command: "nosuch-builder" is not found on the PATH the daemon will use (/usr/bin:/bin)',
        '[schedules.nightly] command: "nightly-job" is not found on the PATH the daemon will use (/usr/bin:/bin)',
    ]
    # the real which: the venv's gunicorn is found on the venv program's PATH only
    real = warnings(cfg, environ)
    assert not any(line.startswith("[programs.venv]") for line in real)
    assert any(line.startswith("[programs.web]") for line in real)
    # a daemon without PATH gives a clean child the default one
    assert '"gunicorn" is not found on the PATH the daemon will use (/usr/local/sbin:' in " ".join(
        warnings(cfg, {}, which=lambda name, path: None)
    )


def test_nothing_to_run(tmp_path: Path) -> None:
    said = warnings(config(tmp_path, '[daemon]\nstate_dir = ".stoker"\n'), {})
    assert said == [
        "defines nothing to run: add a [programs.NAME] (kept running), [tasks.NAME] (run as jobs) "
        "or [schedules.NAME] table"
    ]
    assert warnings(config(tmp_path, '[tasks.t]\ncall = "a.b:c"\n'), {}) == []


def test_check_prints_warnings_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "stoker.toml"
    path.write_text(
        '[programs.web]\ncommand = "stoker-surely-missing --port 80"\n[programs.ok]\ncommand = "sh -c true"\n'
    )
    env = {**os.environ, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    result = subprocess.run(
        [sys.executable, "-m", "stoker", "-c", str(path), "check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout == f"{path}: ok, 2 programs\n"
    assert result.stderr == (
        f'stoker: warning: {path}: [programs.web] command: "stoker-surely-missing" is not found on the PATH '
        f"the daemon will use ({env['PATH']})\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "stoker", "-c", str(path), "check", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["warnings"] == [
        f'[programs.web] command: "stoker-surely-missing" is not found on the PATH the daemon will use ({env["PATH"]})'
    ]
    path.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "stoker", "-c", str(path), "check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "warning" in result.stderr and "defines nothing to run" in result.stderr


def test_an_env_file_that_cannot_be_read_is_warned_about(tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text("NOT A LINE\n")
    cfg = config(
        tmp_path,
        '[programs.a]\ncommand = "sh"\nenv_file = "missing.env"\n[tasks.t]\ncommand = "sh"\nenv_file = "bad.env"\n',
    )
    assert warnings(cfg, {"PATH": "/usr/bin:/bin"}) == [
        f"[programs.a] env_file: env_file {tmp_path}/missing.env: cannot read it (No such file or directory); "
        "each start will fail until it can be read",
        f"[tasks.t] env_file: env_file {tmp_path}/bad.env: line 1: expected KEY=VALUE, got 'NOT A LINE'; "
        "each start will fail until it can be read",
    ]
