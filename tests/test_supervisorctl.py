"""The real supervisorctl against a real stoker daemon, over the unix socket and over TCP with the
token as the password; and the same commands against a real supervisord (from the same PyPI
package, started here on an equivalent config), whose answers stoker's must match: state names,
ordering, the texts of errors."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Stoker, free_port, kill_marked, wait_for

# One program, and one of two instances; the worker prints a line each time it gets a HUP.
STOKER_PROGRAMS = """
[programs.web]
command = "sleep 1000"
start_seconds = "1s"

[programs.worker]
command = ["sh", "-c", "trap 'echo ping-$0' HUP; echo out-$0; echo err-$0 >&2; while :; do sleep 1 & wait $!; done", "{instance}"]
instances = 2
start_seconds = "1s"
log = { stderr = "separate", timestamps = false, markers = false }  # the bytes, as supervisord keeps them
"""

SUPERVISORD_PROGRAMS = """
[program:web]
command=sleep 1000
startsecs=1
stopsignal=TERM

[program:worker]
command=sh -c "trap 'echo ping-$0' HUP; echo out-$0; echo err-$0 >&2; while :; do sleep 1 & wait $!; done" %(process_num)d
numprocs=2
process_name=%(process_num)d
startsecs=1
"""

EXTRA_STOKER = '\n[programs.extra]\ncommand = "sleep 1000"\nstart_seconds = "1s"\n'
EXTRA_SUPERVISORD = "\n[program:extra]\ncommand=sleep 1000\nstartsecs=1\n"


def ctl(conf: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real supervisorctl with `conf` (its [supervisorctl] section names the server)."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


def ctl_conf(path: Path, serverurl: str, *, username: str | None = None, password: str | None = None) -> Path:
    """The one line a supervisord user changes: serverurl (and, over TCP, the password)."""
    text = f"[supervisorctl]\nserverurl = {serverurl}\n"
    if password is not None:
        text += f"username = {username}\npassword = {password}\n"
    path.write_text(text)
    return path


class Supervisord:
    """A real supervisord in its own folder, on an equivalent config."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.sock = root / "supervisor.sock"
        self.conf = root / "supervisord.conf"
        self.ctl = ctl_conf(root / "ctl.conf", f"unix://{self.sock}")
        self.process: subprocess.Popen[bytes] | None = None
        self.programs = SUPERVISORD_PROGRAMS

    def write(self, programs: str, inet: str = "") -> None:
        self.programs = programs
        self.conf.write_text(
            f"[unix_http_server]\nfile={self.sock}\nchmod=0700\n\n{inet}"
            f"[supervisord]\nlogfile={self.root / 'supervisord.log'}\npidfile={self.root / 'supervisord.pid'}\n"
            f"childlogdir={self.root}\nnodaemon=true\nuser=root\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            f"{programs}"
        )

    def up(self) -> None:
        log = open(self.root / "supervisord.out", "ab")  # noqa: SIM115 - handed to the child
        env = {**os.environ, "STOKER_SUPERVISOR": str(self.root)}  # marks its children for cleanup
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()
        wait_for(self._answers, 30, "supervisord to answer")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError((self.root / "supervisord.out").read_text())
        return ctl(self.ctl, "status").returncode in (0, 3)  # (3: some are not running)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        kill_marked(str(self.root))


@pytest.fixture
def supervisord(tmp_path: Path) -> Iterator[Supervisord]:
    s = Supervisord(tmp_path / "supervisord")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def both(stoker: Stoker, supervisord: Supervisord) -> tuple[Path, Path]:
    """stoker and supervisord, each with its supervisorctl config, every program running."""
    stoker.write(STOKER_PROGRAMS)
    stoker.up()
    supervisord.write(SUPERVISORD_PROGRAMS)
    supervisord.up()
    ours = ctl_conf(stoker.root / "ctl.conf", f"unix://{stoker.state_dir / 'stoker.sock'}")
    settled(ours, supervisord.ctl, 3)
    return ours, supervisord.ctl


def settled(ours: Path, theirs: Path, running: int) -> None:
    """Wait until both run `running` processes (an added group starts without a wait)."""
    for conf in (ours, theirs):
        wait_for(lambda conf=conf: ctl(conf, "status").stdout.count("RUNNING") == running, what="the starts")  # type: ignore[misc]


PID_UPTIME = re.compile(r"pid \d+, uptime \d+:\d\d:\d\d")
STOP_TIME = re.compile(r"\w{3} \d\d \d\d:\d\d [AP]M")


def normal(text: str) -> str:
    """What may differ between two runs of the same command: pids, uptimes, clock times, paths."""
    text = PID_UPTIME.sub("pid N, uptime T", text)
    return STOP_TIME.sub("STOPPED-AT", text)


def same(ours: Path, theirs: Path, *args: str, ordered: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `args` against both; the outputs (pids and times aside) and exit codes must match.
    `ordered=False`: as sets of lines, for what supervisord lists in the order its waits end."""
    a, b = ctl(ours, *args), ctl(theirs, *args)
    mine, its = normal(a.stdout), normal(b.stdout)
    if not ordered:
        mine, its = "\n".join(sorted(mine.splitlines())), "\n".join(sorted(its.splitlines()))
    assert (mine, a.returncode) == (its, b.returncode), f"supervisorctl {' '.join(args)}"
    assert a.stderr == b.stderr == ""
    return a


# -- the same answers as supervisord -------------------------------------------------------------


def test_status_start_stop_like_supervisord(both: tuple[Path, Path]) -> None:
    ours, theirs = both
    assert normal(same(ours, theirs, "status").stdout).splitlines() == [
        "web                              RUNNING   pid N, uptime T",
        "worker:0                         RUNNING   pid N, uptime T",
        "worker:1                         RUNNING   pid N, uptime T",
    ]
    same(ours, theirs, "status", "web", "worker:*")
    same(ours, theirs, "status", "nope")  # nope: ERROR (no such process), exit 4
    same(ours, theirs, "status", "nope:*")  # no such group
    same(ours, theirs, "status", "worker:7")
    same(ours, theirs, "stop", "web")
    same(ours, theirs, "status")  # web STOPPED at a time; exit 3
    same(ours, theirs, "stop", "web")  # web: ERROR (not running)
    same(ours, theirs, "start", "web")
    same(ours, theirs, "start", "web")  # web: ERROR (already started)
    same(ours, theirs, "start", "nope")
    same(ours, theirs, "start", "nope:*")
    same(ours, theirs, "stop", "nope")
    same(ours, theirs, "stop", "worker:*")
    same(ours, theirs, "status", "worker:*")
    same(ours, theirs, "start", "worker:*")
    same(ours, theirs, "restart", "worker:1")
    same(ours, theirs, "restart", "worker:*", ordered=False)
    same(ours, theirs, "restart", "all", ordered=False)
    same(ours, theirs, "stop", "all", ordered=False)
    same(ours, theirs, "start", "all", ordered=False)
    same(ours, theirs, "status")


def test_signal_pid_tail_clear_like_supervisord(both: tuple[Path, Path]) -> None:
    ours, theirs = both
    same(ours, theirs, "signal", "HUP", "worker:0")
    same(ours, theirs, "signal", "NOPE", "worker:0")
    same(ours, theirs, "signal", "HUP", "nope")
    same(ours, theirs, "signal", "USR2", "nope:*")
    for conf in (ours, theirs):
        wait_for(lambda conf=conf: "ping-0" in ctl(conf, "tail", "worker:0").stdout, what="the HUP's line")  # type: ignore[misc]
    same(ours, theirs, "tail", "worker:0")
    same(ours, theirs, "tail", "worker:1", "stderr")
    same(ours, theirs, "tail", "-4", "worker:1")
    same(ours, theirs, "tail", "nope")
    same(ours, theirs, "pid", "nope")
    assert ctl(ours, "pid", "web").stdout.strip().isdigit()
    assert len(ctl(ours, "pid", "all").stdout.split()) == 3
    same(ours, theirs, "clear", "worker:0")
    same(ours, theirs, "tail", "worker:0")
    same(ours, theirs, "clear", "nope")
    same(ours, theirs, "clear", "all")


def test_reread_update_avail_like_supervisord(
    stoker: Stoker, supervisord: Supervisord, both: tuple[Path, Path]
) -> None:
    ours, theirs = both
    same(ours, theirs, "reread")  # No config updates to processes
    same(ours, theirs, "avail")
    stoker.write(STOKER_PROGRAMS + EXTRA_STOKER)
    supervisord.write(SUPERVISORD_PROGRAMS + EXTRA_SUPERVISORD)
    same(ours, theirs, "reread")  # extra: available
    same(ours, theirs, "avail")  # extra avail
    same(ours, theirs, "update")  # extra: added process group
    settled(ours, theirs, 4)
    same(ours, theirs, "status")
    # worker changes, web goes
    stoker.write(STOKER_PROGRAMS.replace('"1s"\nlog', '"2s"\nlog').split("[programs.worker]")[0].replace(
        "[programs.web]", "[programs.worker]") + EXTRA_STOKER)  # fmt: skip
    supervisord.write("\n[program:worker]\ncommand=sleep 1000\nstartsecs=1\n" + EXTRA_SUPERVISORD)
    same(ours, theirs, "reread")  # web: disappeared, worker: changed
    same(ours, theirs, "avail")  # the file's, web not among them
    same(ours, theirs, "update")
    settled(ours, theirs, 2)
    same(ours, theirs, "status")
    same(ours, theirs, "remove", "extra")  # still running
    same(ours, theirs, "stop", "extra")
    same(ours, theirs, "remove", "extra")
    same(ours, theirs, "add", "extra")
    same(ours, theirs, "add", "nope")
    same(ours, theirs, "update", "nope")
    settled(ours, theirs, 2)
    same(ours, theirs, "status")


def test_start_errors_like_supervisord(stoker: Stoker, supervisord: Supervisord) -> None:
    """A command that is not there, one that is not executable, one that dies at once."""
    (stoker.root / "script.sh").write_text("echo hi\n")  # (no x bit)
    stoker.write(
        f"""
        [programs.flaky]
        command = ["sh", "-c", "exit 3"]
        autostart = false
        backoff = {{ min = "30s", max = "30s" }}
        [programs.missing]
        command = "/nonexistent/prog"
        autostart = false
        [programs.noexec]
        command = "{stoker.root / "script.sh"}"
        autostart = false
        """
    )
    stoker.up()
    supervisord.write(
        "[program:flaky]\ncommand=sh -c 'exit 3'\nautostart=false\nstartretries=100\n"
        "[program:missing]\ncommand=/nonexistent/prog\nautostart=false\n"
        f"[program:noexec]\ncommand={stoker.root / 'script.sh'}\nautostart=false\n"
    )
    supervisord.up()
    ours = ctl_conf(stoker.root / "ctl.conf", f"unix://{stoker.state_dir / 'stoker.sock'}")
    theirs = supervisord.ctl
    same(ours, theirs, "status")  # all Not started, exit 3
    same(ours, theirs, "start", "missing")  # missing: ERROR (no such file)
    same(ours, theirs, "start", "noexec")  # noexec: ERROR (file is not executable)
    same(ours, theirs, "start", "flaky")  # flaky: ERROR (spawn error), exit 7
    same(ours, theirs, "start", "flaky")  # flaky: ERROR (already started): backing off
    same(ours, theirs, "stop", "flaky")
    same(ours, theirs, "start", "missing", "noexec", "flaky")


def test_over_tcp_like_supervisord(stoker: Stoker, supervisord: Supervisord) -> None:
    """supervisord's inet_http_server with a user and password, stoker's listen with the token:
    the same answers to the right password, a wrong one, and none."""
    ours_port, theirs_port = free_port(), free_port()
    stoker.write(f'[daemon]\nlisten = "127.0.0.1:{ours_port}"\ntoken = "s3cret"\n' + STOKER_PROGRAMS)
    stoker.up()
    inet = f"[inet_http_server]\nport=127.0.0.1:{theirs_port}\nusername=deploy\npassword=s3cret\n\n"
    supervisord.write(SUPERVISORD_PROGRAMS, inet)
    supervisord.up()
    for password in ("s3cret", "wrong", None):
        ours = ctl_conf(
            stoker.root / "tcp.conf", f"http://127.0.0.1:{ours_port}", username="deploy", password=password
        )
        theirs = ctl_conf(supervisord.root / "tcp.conf", f"http://127.0.0.1:{theirs_port}", username="deploy",
                          password=password)  # fmt: skip
        if password == "s3cret":
            settled(ours, theirs, 3)
        same(ours, theirs, "status")
        same(ours, theirs, "stop", "worker:*")
        same(ours, theirs, "start", "worker:*")


def test_maintail(stoker: Stoker, both: tuple[Path, Path]) -> None:
    ours, _ = both
    result = ctl(ours, "maintail")
    assert result.returncode == 0
    assert "ready" in result.stdout and result.stdout.rstrip("\n") in stoker.log_text()
    assert ctl(ours, "maintail", "-200").stdout.rstrip("\n") == stoker.log_text()[-200:].rstrip("\n")


# -- stoker alone ---------------------------------------------------------------------------------


@pytest.fixture
def tcp(stoker: Stoker) -> tuple[Path, int]:
    port = free_port()
    stoker.write(f'[daemon]\nlisten = "127.0.0.1:{port}"\ntoken = "s3cret"\n' + STOKER_PROGRAMS)
    stoker.up()
    for name in ("web:0", "worker:0", "worker:1"):
        stoker.wait_state(name, "running")
    return ctl_conf(
        stoker.root / "tcp.conf", f"http://127.0.0.1:{port}", username="any", password="s3cret"
    ), port


def test_over_tcp_with_the_token_as_password(stoker: Stoker, tcp: tuple[Path, int]) -> None:
    conf, port = tcp
    status = ctl(conf, "status")
    assert status.returncode == 0, status.stdout
    assert [line.split()[:2] for line in status.stdout.splitlines()] == [
        ["web", "RUNNING"],
        ["worker:0", "RUNNING"],
        ["worker:1", "RUNNING"],
    ]
    assert ctl(conf, "stop", "worker:*").stdout == "worker:0: stopped\nworker:1: stopped\n"
    assert ctl(conf, "start", "worker:1").stdout == "worker:1: started\n"
    assert ctl(conf, "tail", "worker:1").stdout == "out-1\nout-1\n\n"  # its two runs
    wrong = ctl_conf(stoker.root / "wrong.conf", f"http://127.0.0.1:{port}", username="any", password="nope")
    refused = ctl(wrong, "status")
    assert refused.stdout.startswith("Server requires authentication\n") and refused.returncode != 0
    anonymous = ctl_conf(stoker.root / "anon.conf", f"http://127.0.0.1:{port}")
    assert ctl(anonymous, "status").stdout.startswith("Server requires authentication\n")


def follow(conf: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "supervisor.supervisorctl", "-c", str(conf), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(process: subprocess.Popen[str], wanted: str, timeout: float = 15) -> str:
    """What `process` printed, up to `wanted` (an AssertionError at the deadline)."""
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    fd = process.stdout.fileno()
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {wanted!r}; got {seen!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536).decode()
            assert chunk, f"ended before {wanted!r}; got {seen!r}"
            seen += chunk
    return seen


def end(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)  # Ctrl-C, as a person ends a tail -f
    try:
        return process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("door", ["unix", "tcp"])
def test_tail_f_follows(stoker: Stoker, tcp: tuple[Path, int], door: str) -> None:
    conf = (
        tcp[0]
        if door == "tcp"
        else ctl_conf(stoker.root / "ctl.conf", f"unix://{stoker.state_dir / 'stoker.sock'}")
    )
    tail = follow(conf, "tail", "-f", "worker:0")
    try:
        read_until(tail, "out-0")  # the last KB first
        assert ctl(conf, "signal", "HUP", "worker:0").stdout == "worker:0: signalled\n"
        read_until(tail, "ping-0")  # then what comes
    finally:
        end(tail)
    errors = follow(conf, "tail", "-f", "worker:1", "stderr")
    try:
        read_until(errors, "err-1")
    finally:
        end(errors)


def test_maintail_f_follows(stoker: Stoker, tcp: tuple[Path, int]) -> None:
    conf, _ = tcp
    tail = follow(conf, "maintail", "-f")
    try:
        read_until(tail, "ready")
        ctl(conf, "stop", "web")
        read_until(tail, "web:0: pid")  # the daemon's line about the stop, as it is logged
    finally:
        end(tail)


def test_shutdown(stoker: Stoker, tcp: tuple[Path, int]) -> None:
    conf, _ = tcp
    result = ctl(conf, "shutdown")
    assert result.stdout == "Shut down\n" and result.returncode == 0
    assert stoker.daemon is not None and stoker.daemon.wait(30) == 0


def test_reload_restarts_every_program(stoker: Stoker, tcp: tuple[Path, int]) -> None:
    conf, _ = tcp
    before = ctl(conf, "pid", "all").stdout.split()
    assert ctl(conf, "reload").stdout == "Restarted supervisord\n"
    after = ctl(conf, "pid", "all").stdout.split()
    assert len(after) == 3 and not set(before) & set(after)


def test_update_after_adding_and_removing_a_program(stoker: Stoker, tcp: tuple[Path, int]) -> None:
    conf, port = tcp
    web_pid = ctl(conf, "pid", "web").stdout
    head = f'[daemon]\nlisten = "127.0.0.1:{port}"\ntoken = "s3cret"\n'
    stoker.write(head + STOKER_PROGRAMS + EXTRA_STOKER)
    assert ctl(conf, "reread").stdout == "extra: available\n"
    assert ctl(conf, "update").stdout == "extra: added process group\n"
    stoker.wait_state("extra:0", "running")
    stoker.write(head + textwrap.dedent(STOKER_PROGRAMS).split("[programs.worker]")[0] + EXTRA_STOKER)
    assert ctl(conf, "reread").stdout == "worker: disappeared\n"
    assert ctl(conf, "update").stdout == "worker: stopped\nworker: removed process group\n"
    assert "worker" not in ctl(conf, "status").stdout
    assert ctl(conf, "pid", "web").stdout == web_pid  # untouched: stoker's reload applies a diff
    assert set(stoker.programs()) == {"web:0", "extra:0"}
