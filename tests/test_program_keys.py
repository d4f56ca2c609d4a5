"""Program keys that came with importing (issue 25): groups, log.file / log.stderr_file,
env_file and stop_daemon_on_exit. The config's rules first, then each with a real daemon."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import Stoker, wait_for
from hypothesis import given
from hypothesis import strategies as st

from stoker import envfile
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
    # --all-nodes filters the rows it is sent: a program's NAME:* works there too
    assert [row["name"] for row in stoker.json("status", "--all-nodes", "worker:*")] == [
        "worker:0",
        "worker:1",
    ]
    missing = stoker.cli("stop", "nope:*")
    assert missing.returncode != 0 and "nope:*" in missing.stderr
    assert stoker.terminate() == 0


# log.file / log.stderr_file ---------------------------------------------------------------------


def test_log_files_are_checked(tmp_path: Path) -> None:
    config = parse(
        tmp_path,
        '[programs.a]\ncommand = "x"\ninstances = 2\nlog = { file = "logs/a.{instance}.log", '
        'stderr_file = "/dev/stderr" }\n[programs.b]\ncommand = "y"\nlog = { file = "/dev/stdout" }\n',
    )
    a = config.programs["a"].log
    assert (a.file, a.stderr_file, a.stderr) == (
        f"{tmp_path}/logs/a.{{instance}}.log",
        "/dev/stderr",
        "separate",
    )
    assert (config.programs["b"].log.file, config.programs["b"].log.stderr) == ("/dev/stdout", "merge")
    for text, message in [
        (
            'instances = 2\nlog = { file = "a.log" }',
            'log.file: expected a path with "{instance}" in it, like "logs/web.{instance}.log"',
        ),
        (
            'log = { stderr = "merge", stderr_file = "a.err" }',
            'log.stderr_file: expected no stderr_file with stderr = "merge"',
        ),
        (
            'log = { file = "a.log", stderr_file = "a.log" }',
            "log.stderr_file: expected a file no other log writes",
        ),
        ('log = { file = "" }', "log.file: expected a non-empty path"),
        ('log = { file = "logs/" }', "log.file: expected a file path, not a folder"),
        (
            'log = { file = "b.log" }\n[programs.b]\ncommand = "y"\nlog = { file = "b.log" }',
            "(it is a:0 log.file's",
        ),
    ]:
        with pytest.raises(ConfigError) as info:
            parse(tmp_path, f'[programs.a]\ncommand = "x"\n{text}\n')
        assert message in str(info.value), str(info.value)


LOUD = """\
import sys
for i in range(40):
    print(f"out line {i:03d} " + "x" * 40, flush=True)
    print(f"err line {i:03d}", file=sys.stderr, flush=True)
print("done", flush=True)
import time
time.sleep(600)
"""


def test_log_file_at_a_chosen_path_is_rotated_without_loss(stoker: Stoker) -> None:
    (stoker.root / "loud.py").write_text(LOUD)
    stoker.write(
        f"""
        [programs.loud]
        command = ["{sys.executable}", "loud.py"]
        log = {{ file = "var/log/loud.log", stderr_file = "var/log/loud.err", max_size = "1KB", keep = 5 }}
        """
    )
    stoker.up()
    stoker.wait_state("loud:0", "running")
    out = stoker.root / "var" / "log" / "loud.log"
    wait_for(lambda: out.exists() and out.read_text().endswith("done\n"), what="loud's last line")
    # every line is there once, in order, across the current file and its rotations
    files = [out.with_name(f"loud.log.{n}") for n in range(5, 0, -1)] + [out]
    lines = "".join(f.read_text() for f in files if f.exists()).splitlines()
    assert lines == [f"out line {i:03d} " + "x" * 40 for i in range(40)] + ["done"]
    assert out.with_name("loud.log.1").exists()
    assert all(f.stat().st_size <= 1024 for f in files if f.exists())
    err = stoker.root / "var" / "log" / "loud.err"
    wait_for(lambda: "err line 039" in err.read_text(), what="loud's stderr")
    assert not (stoker.state_dir / "logs" / "loud.0.log").exists()
    # `stoker logs` reads the chosen files
    assert "done" in stoker.cli("logs", "loud").stdout
    assert "err line 039" in stoker.cli("logs", "loud", "--stderr").stdout
    assert stoker.terminate() == 0


def test_log_to_the_daemons_own_stdout_and_stderr_or_nowhere(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.talk]
        command = ["sh", "-c", "echo said-on-stdout; echo said-on-stderr >&2; exec sleep 600"]
        log = { file = "/dev/stdout", stderr_file = "/dev/stderr", timestamps = true }
        [programs.quiet]
        command = ["sh", "-c", "echo nobody-reads-this; exec sleep 600"]
        log = { file = "/dev/null" }
        """
    )
    stoker.up()
    stoker.wait_state("quiet:0", "running")
    # the fixture sends the daemon's stdout and stderr to one file: both lines land there
    wait_for(
        lambda: "said-on-stdout" in stoker.log_text() and "said-on-stderr" in stoker.log_text(),
        what="the lines",
    )
    assert re.search(
        r"^\d{4}-\d\d-\d\dT[\d:.]+[+-]\d\d:\d\d said-on-stdout$", stoker.log_text(), re.MULTILINE
    )
    assert "nobody-reads-this" not in stoker.log_text()
    logs = stoker.cli("logs", "talk")
    assert logs.returncode == 0 and logs.stdout == ""  # nothing to read back from a stream
    assert not list((stoker.state_dir / "logs").glob("talk.*")) and not list(
        (stoker.state_dir / "logs").glob("quiet.*")
    )
    assert stoker.terminate() == 0


# env_file -----------------------------------------------------------------------------------------


def test_env_file_syntax() -> None:
    text = (
        "# a comment\n\nexport APP_ENV=production\nDB_URL = postgres://u:p@db/app?a=1#frag  # trailing\n"
        'QUOTED="two words \\"and\\" a\\nnewline"\nSINGLE=\'$NOT_EXPANDED \\n\'\nEMPTY=\nURL=http://x/#anchor\n'
    )
    assert envfile.parse(text) == {
        "APP_ENV": "production",
        "DB_URL": "postgres://u:p@db/app?a=1#frag",
        "QUOTED": 'two words "and" a\nnewline',
        "SINGLE": "$NOT_EXPANDED \\n",
        "EMPTY": "",
        "URL": "http://x/#anchor",
    }
    for bad, message in [
        ("JUST_A_NAME\n", "x.env: line 1: expected KEY=VALUE, got 'JUST_A_NAME'"),
        ("A=1\n1A=2\n", "x.env: line 2: expected KEY=VALUE"),
        ('A="open\n', 'x.env: line 1: A: the value opens a " that does not close on its line'),
        ("A='x' y\n", "x.env: line 1: A: expected nothing but a comment after the closing '"),
    ]:
        with pytest.raises(envfile.EnvFileError) as info:
            envfile.parse(bad, "x.env")
        assert str(info.value).startswith(message), str(info.value)


def test_env_file_is_read_at_each_start_and_environment_wins(stoker: Stoker) -> None:
    env = stoker.root / "app.env"
    env.write_text("GREETING=hello\nNAME=from-file\n")
    stoker.write(
        """
        [programs.hi]
        command = ["sh", "-c", "echo \\"$GREETING $NAME\\"; exec sleep 600"]
        env_file = "app.env"
        environment = { NAME = "from-config" }
        [tasks.job]
        command = ["sh", "-c", "echo \\"job $GREETING\\""]
        env_file = "app.env"
        """
    )
    stoker.up()
    stoker.wait_state("hi:0", "running")
    wait_for(lambda: "hello from-config" in stoker.cli("logs", "hi").stdout, what="hi's line")
    env.write_text("GREETING=bonjour\n")  # a deploy rewrites it: the next start reads it
    assert stoker.cli("restart", "hi").returncode == 0
    wait_for(lambda: "bonjour from-config" in stoker.cli("logs", "hi").stdout, what="the new line")
    job = stoker.json("enqueue", "job", "--wait")
    assert job["state"] == "succeeded", job
    wait_for(lambda: stoker.client.job(job["id"]).output == "job bonjour\n", what="the job's output")
    env.unlink()  # gone: the start fails, saying why
    stoker.cli("restart", "hi")
    wait_for(
        lambda: "env_file" in stoker.log_text() and "cannot read it" in stoker.log_text(), what="the reason"
    )
    assert stoker.programs()["hi:0"]["state"] in ("backoff", "starting", "fatal")
    result = stoker.cli("enqueue", "job", "--wait", "--json")
    assert result.returncode == 1  # it failed
    failed = json.loads(result.stdout)
    assert (
        failed["state"] == "failed" and "env_file" in failed["error"] and "cannot read it" in failed["error"]
    )
    assert stoker.terminate() == 0


# stop_daemon_on_exit --------------------------------------------------------------------------------


def test_daemon_exit_code() -> None:
    from stoker.supervise.state import State, daemon_exit_code

    assert daemon_exit_code(State.EXITED, 3, None) == 3
    assert daemon_exit_code(State.EXITED, 0, None) == 0
    assert daemon_exit_code(State.EXITED, None, 9) == 137
    assert daemon_exit_code(State.FATAL, 2, None) == 2
    assert daemon_exit_code(State.FATAL, None, None) == 1  # never ran: a command not found
    for state in (State.STOPPED, State.STARTING, State.RUNNING, State.BACKOFF, State.STOPPING):
        assert daemon_exit_code(state, 3, None) is None


def test_a_program_that_ends_stops_the_daemon_with_its_code(stoker: Stoker) -> None:
    flag = stoker.root / "go"
    stoker.write(
        f"""
        [programs.main]
        command = ["sh", "-c", "while [ ! -e {flag} ]; do sleep 0.05; done; exit 3"]
        restart = "never"
        stop_daemon_on_exit = true
        [programs.sidecar]
        command = "sleep 600"
        """
    )
    daemon = stoker.up()
    stoker.wait_state("sidecar:0", "running")
    stoker.wait_state("main:0", "running")
    flag.touch()
    assert daemon.wait(30) == 3  # the daemon ended, with the program's exit code
    assert "main:0 ended (exited): stop_daemon_on_exit: stopping the daemon" in stoker.log_text()
    assert "stopped" in stoker.log_text()


def test_a_stop_by_hand_or_a_restart_does_not_stop_the_daemon(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.main]
        command = "sleep 600"
        stop_daemon_on_exit = true
        [programs.crashy]
        command = ["sh", "-c", "exit 1"]
        max_restarts = 2
        backoff = { min = "10ms", max = "20ms" }
        stop_daemon_on_exit = true
        autostart = false
        """
    )
    daemon = stoker.up()
    stoker.wait_state("main:0", "running")
    assert stoker.cli("stop", "main").returncode == 0
    stoker.wait_state("main:0", "stopped")
    assert stoker.cli("start", "main").returncode == 0
    stoker.wait_state("main:0", "running")
    assert daemon.poll() is None
    # one that crashes is restarted (the daemon stays) until it is given up on (FATAL): then it ends
    assert stoker.cli("start", "crashy").returncode in (0, 1)
    assert daemon.wait(30) == 1
    assert "crashy:0 ended (fatal): stop_daemon_on_exit" in stoker.log_text()


def _double_quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + escaped.replace("\t", "\\t") + '"'


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
        max_size=8,
    ),
    st.sampled_from(["", "export "]),
    st.sampled_from(["\n", "\r\n"]),
)
def test_env_file_double_quoted_values_read_back_exactly(
    variables: dict[str, str], export: str, end: str
) -> None:
    text = end.join(f"{export}{name}={_double_quoted(value)}" for name, value in variables.items()) + end
    assert envfile.parse(text) == variables


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="#'\" ")))
def test_env_file_bare_values_read_back_trimmed(value: str) -> None:
    assert envfile.parse(f"KEY= {value} \n") == {"KEY": value.strip(" \t")}
