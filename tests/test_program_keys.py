"""Program keys that came with importing (issue 25): groups, log.file / log.stderr_file,
env_file and stop_daemon_on_exit. The config's rules first, then each with a real daemon."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Stoker

from stoker.config import Config, ConfigError, parse_config


def parse(tmp_path: Path, text: str) -> Config:
    return parse_config(text, str(tmp_path / "stoker.toml"))


# groups -----------------------------------------------------------------------------------------


def test_groups_are_checked(tmp_path: Path) -> None:
    config = parse(tmp_path, '[programs.a]\ncommand = "x"\ngroups = ["web", "web", "all-of-it"]\n')
    assert config.programs["a"].groups == ("web", "all-of-it")
    for bad, message in [
        ('["a b"]', 'groups: expected group names matching [A-Za-z0-9_.-]+, not "all", got "a b"'),
        ('["all"]', 'groups: expected group names matching [A-Za-z0-9_.-]+, not "all", got "all"'),
        ('"web"', "groups: expected an array of group names"),
        ('["b"]', 'groups: "b" is the name of a program: "b:*" would select both'),
    ]:
        with pytest.raises(ConfigError) as info:
            parse(tmp_path, f'[programs.a]\ncommand = "x"\ngroups = {bad}\n[programs.b]\ncommand = "y"\n')
        assert message in str(info.value), str(info.value)


def test_a_group_is_selected_as_group_star(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.web]
        command = "sleep 600"
        groups = ["site"]
        [programs.worker]
        command = "sleep 600"
        instances = 2
        groups = ["site", "queue"]
        [programs.other]
        command = "sleep 600"
        """
    )
    stoker.up()
    for name in ("web:0", "worker:0", "worker:1", "other:0"):
        stoker.wait_state(name, "running")
    result = stoker.cli("stop", "site:*")
    assert result.returncode == 0, result.stderr
    for name in ("web:0", "worker:0", "worker:1"):
        stoker.wait_state(name, "stopped")
    assert stoker.programs()["other:0"]["state"] == "running"
    assert stoker.cli("start", "queue:*").returncode == 0
    stoker.wait_state("worker:1", "running")
    assert stoker.programs()["web:0"]["state"] == "stopped"
    status = stoker.json("status", "site:*")
    assert [row["name"] for row in status] == ["web:0", "worker:0", "worker:1"]
    missing = stoker.cli("stop", "nope:*")
    assert missing.returncode != 0 and "nope:*" in missing.stderr
    assert stoker.terminate() == 0
