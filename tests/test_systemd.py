"""`stoker systemd`: the unit it prints parses, names absolute paths, and its ExecStart, run as
a real process the way systemd would run it, brings the daemon up on the config."""

from __future__ import annotations

import configparser
import os
import shlex
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Stoker, wait_for

from stoker.config import parse_config
from stoker.systemd import STOP_MARGIN, _quote, stop_timeout, unit, unit_name

CONFIG = """\
[daemon]
shutdown_timeout = "20s"

[programs.ticker]
command = ["sh", "-c", "while true; do echo tick; sleep 1; done"]
start_seconds = 0
stop_timeout = "7s"

[tasks.report]
command = ["true"]
stop_timeout = "3s"
"""


def stoker_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stoker", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )


def read_unit(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


def exec_argv(line: str) -> list[str]:
    """ExecStart= as systemd splits it: quotes and backslashes (what shlex does for the forms
    the unit uses), then $$ → $ and %% → % (variables and specifiers, escaped)."""
    return [word.replace("$$", "$").replace("%%", "%") for word in shlex.split(line)]


def test_unit_for_the_config_found_like_other_commands(tmp_path: Path) -> None:
    (tmp_path / "stoker.toml").write_text(CONFIG)
    by_cwd = stoker_cli("systemd", cwd=tmp_path)
    assert by_cwd.returncode == 0, by_cwd.stderr
    by_env = stoker_cli(
        "systemd", cwd=tmp_path.parent, env={**os.environ, "STOKER_CONFIG": str(tmp_path / "stoker.toml")}
    )
    by_option = stoker_cli("-c", "stoker.toml", "systemd", cwd=tmp_path)
    assert by_cwd.stdout == by_env.stdout == by_option.stdout

    unit_file = read_unit(by_cwd.stdout)
    service = unit_file["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "always"
    assert service["KillMode"] == "mixed"
    assert service["Delegate"] == "yes"  # stoker's cgroups below its own (stoker.supervise.cgroups)
    assert service["WorkingDirectory"] == str(tmp_path)
    # shutdown_timeout + the longest stop_timeout (of programs and tasks) + the margin
    assert service["TimeoutStopSec"] == str(20 + 7 + STOP_MARGIN)
    assert unit_file["Install"]["WantedBy"] == "multi-user.target"
    assert "After" in unit_file["Unit"]

    argv = exec_argv(service["ExecStart"])
    assert argv[-3:] == ["-c", str(tmp_path / "stoker.toml"), "up"]
    assert os.path.isabs(argv[0]) and os.access(argv[0], os.X_OK)
    # the comments say where the file goes and the two commands that enable it
    name = unit_name(parse_config(CONFIG, tmp_path / "stoker.toml"))
    assert f"/etc/systemd/system/{name}" in by_cwd.stdout
    assert "#   sudo systemctl daemon-reload\n" in by_cwd.stdout
    assert f"#   sudo systemctl enable --now {name}\n" in by_cwd.stdout


def test_user_unit(tmp_path: Path) -> None:
    (tmp_path / "stoker.toml").write_text(CONFIG)
    result = stoker_cli("systemd", "--user", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    unit_file = read_unit(result.stdout)
    assert unit_file["Install"]["WantedBy"] == "default.target"
    assert "User" not in unit_file["Service"]  # a user unit runs as its user anyway
    name = unit_name(parse_config(CONFIG, tmp_path / "stoker.toml"))
    assert f"~/.config/systemd/user/{name}" in result.stdout
    assert "#   systemctl --user daemon-reload\n" in result.stdout
    assert f"#   systemctl --user enable --now {name}\n" in result.stdout
    assert "loginctl enable-linger" in result.stdout


def test_missing_config_is_a_config_error(tmp_path: Path) -> None:
    result = stoker_cli("systemd", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"stoker: {tmp_path / 'stoker.toml'}: no such file")
    assert result.stdout == ""


def test_exec_start_brings_the_daemon_up(stoker: Stoker) -> None:
    """Run ExecStart= in WorkingDirectory= the way systemd would (a folder whose name needs
    quoting and escaping, a $NOTIFY_SOCKET to say READY=1 on), see the program run, stop it as
    systemd stops it (SIGTERM to the main process)."""
    folder = stoker.root / "my app 100%"
    folder.mkdir()
    stoker.config = folder / "stoker.toml"
    stoker.state_dir = folder / ".stoker"
    stoker.daemon_log = folder / "daemon.log"
    stoker.config.write_text(CONFIG)
    result = stoker_cli("-c", str(stoker.config), "systemd", cwd=stoker.root)
    assert result.returncode == 0, result.stderr
    service = read_unit(result.stdout)["Service"]
    directory = service["WorkingDirectory"].replace("%%", "%")
    assert directory == str(folder)
    argv = exec_argv(service["ExecStart"])
    assert argv[-3:] == ["-c", str(stoker.config), "up"]
    address = str(stoker.root / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(address)
        systemd.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # who sent it, as systemd asks
        systemd.settimeout(30)
        with open(stoker.daemon_log, "ab") as log:
            env = {**os.environ, "NOTIFY_SOCKET": address}
            stoker.daemon = subprocess.Popen(argv, cwd=directory, env=env, stdout=log, stderr=log)
        message, sender = notification(systemd)
        # Type=notify with NotifyAccess=main: READY=1 must come from the process systemd started
        assert "READY=1" in message.split("\n")
        assert sender == stoker.daemon.pid
        wait_for(stoker._answers, what=f"the daemon to answer; its log:\n{stoker.log_text()}")
        stoker.wait_state("ticker:0", "running")
        wait_for(lambda: "tick" in stoker.cli("logs", "ticker").stdout, what="the ticker's output")
        assert stoker.terminate() == 0
        assert notification(systemd) == ("STOPPING=1", stoker.daemon.pid)


def notification(sock: socket.socket) -> tuple[str, int]:
    """One sd_notify datagram and the pid of its sender (SCM_CREDENTIALS: pid, uid, gid)."""
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
    pids = [
        struct.unpack("3i", cdata)[0] for level, kind, cdata in ancillary if kind == socket.SCM_CREDENTIALS
    ]
    assert pids, "no sender credentials"
    return data.decode(), pids[0]


# The pure pieces -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arg",
    [
        "/usr/bin/stoker",
        "/srv/my app/stoker.toml",
        "/srv/100%/x",
        "/srv/$HOME/x",
        'a "quoted" word',
        "back\\slash",
        "",
    ],
)
def test_exec_start_arguments_survive_quoting(arg: str) -> None:
    assert exec_argv(f"{_quote(arg)} -c {_quote(arg)}") == [arg, "-c", arg]


def test_stop_timeout_without_programs_or_tasks(tmp_path: Path) -> None:
    config = parse_config("", tmp_path / "stoker.toml")
    assert stop_timeout(config) == 30 + STOP_MARGIN  # the default shutdown_timeout
    text = unit(config, ["/opt/stoker/bin/stoker"], username="deploy")
    assert "# User=deploy" in text.splitlines()
    assert read_unit(text)["Service"]["ExecStart"] == f"/opt/stoker/bin/stoker -c {tmp_path}/stoker.toml up"


def test_unit_name_follows_the_folder(tmp_path: Path) -> None:
    assert unit_name(parse_config("", tmp_path / "shop api" / "stoker.toml")) == "stoker-shop-api.service"
    assert unit_name(parse_config("", "/stoker.toml")) == "stoker.service"
