"""The daemon with real processes: start, restart, backoff, stop, orphans, single instance."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from conftest import Stoker, marked_pids, output_of, pid_alive, wait_for, wait_for_async

PY = sys.executable


def test_up_status_down(stoker: Stoker) -> None:
    stoker.write(
        f"""
        [programs.sleeper]
        command = ["{PY}", "-c", "import time; time.sleep(1000)"]
        start_seconds = "100ms"
        """
    )
    daemon = stoker.up()
    row = stoker.wait_state("sleeper:0", "running")
    assert pid_alive(row["pid"])
    assert row["program"] == "sleeper" and row["instance"] == 0 and row["restarts"] == 0
    assert row["memory"] > 0 and row["started_at"] and row["error"] is None

    listing = stoker.json("status")
    assert [r["name"] for r in listing] == ["sleeper:0"]
    text = stoker.cli("status")
    assert text.returncode == 0 and "sleeper:0" in text.stdout and "running" in text.stdout

    mode = stat.S_IMODE(os.stat(stoker.state_dir / "stoker.sock").st_mode)
    assert mode == 0o600

    down = stoker.cli("down")
    assert down.returncode == 0, down.stderr
    assert daemon.wait(10) == 0
    assert not pid_alive(row["pid"])
    assert not (stoker.state_dir / "stoker.sock").exists()
    assert not (stoker.state_dir / "stoker.pid").exists()


def test_crash_after_start_seconds_restarts_at_once(stoker: Stoker) -> None:
    stoker.write(
        f"""
        [programs.worker]
        command = ["{PY}", "-c", "import time; time.sleep(1000)"]
        start_seconds = "200ms"
        """
    )
    stoker.up()
    first = stoker.wait_state("worker:0", "running")
    os.kill(first["pid"], signal.SIGKILL)
    second = wait_for(
        lambda: (r := stoker.programs()["worker:0"])["restarts"] == 1 and r["pid"] and r,
        what="a restart",
    )
    assert second["pid"] != first["pid"]
    assert f"worker:0: pid {first['pid']} killed by SIGKILL" in stoker.log_text()


def test_failed_starts_back_off_then_fatal(stoker: Stoker) -> None:
    stoker.write(
        f"""
        [programs.broken]
        command = ["{PY}", "-c", "import sys; sys.exit(3)"]
        start_seconds = "1s"
        backoff = {{ min = "50ms", max = "100ms" }}
        max_restarts = 3
        """
    )
    stoker.up()
    row = stoker.wait_state("broken:0", "fatal")
    assert row["restarts"] == 3  # 1 start + 3 retries
    assert row["exit_code"] == 3
    assert row["error"].startswith(
        "gave up after 4 failed starts (the first and max_restarts = 3 restarts): exited with code 3 after"
    )
    # `start` gives it a fresh chance: it fails again the same way.
    result = stoker.cli("start", "broken")
    assert result.returncode == 1
    stoker.wait_state("broken:0", "fatal")


def test_restart_policies(stoker: Stoker) -> None:
    stoker.write(
        f"""
        [programs.once]
        command = ["{PY}", "-c", "import time; time.sleep(0.3)"]
        start_seconds = "50ms"
        restart = "on-failure"
        [programs.never]
        command = ["{PY}", "-c", "import time, sys; time.sleep(0.3); sys.exit(4)"]
        start_seconds = "50ms"
        restart = "never"
        [programs.flaky]
        command = ["{PY}", "-c", "import time, sys; time.sleep(0.3); sys.exit(4)"]
        start_seconds = "50ms"
        restart = "on-failure"
        success_exit_codes = [0, 4]
        """
    )
    stoker.up()
    assert stoker.wait_state("once:0", "exited")["exit_code"] == 0
    assert stoker.wait_state("never:0", "exited")["exit_code"] == 4
    assert stoker.wait_state("flaky:0", "exited")["restarts"] == 0


def test_spawn_errors_are_shown(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.missing]
        command = "/nonexistent/bin/worker --fast"
        backoff = { min = "50ms", max = "50ms" }
        max_restarts = 1
        [programs.nodir]
        command = "sleep 100"
        directory = "no/such/dir"
        max_restarts = 1
        backoff = { min = "50ms", max = "50ms" }
        """
    )
    script = stoker.root / "not-executable.sh"
    script.write_text("#!/bin/sh\nsleep 1000\n")
    script.chmod(0o644)
    with stoker.config.open("a") as f:
        f.write(
            '[programs.noexec]\ncommand = "./not-executable.sh"\nmax_restarts = 1\nbackoff = { min = "50ms", max = "50ms" }\n'
        )
    stoker.up()
    row = stoker.wait_state("noexec:0", "fatal")
    assert row["error"].endswith(f"permission denied: {script}")
    row = stoker.wait_state("missing:0", "fatal")
    assert row["error"] == (
        "gave up after 2 failed starts (the first and max_restarts = 1 restart):"
        " command not found: /nonexistent/bin/worker"
    )
    row = stoker.wait_state("nodir:0", "fatal")
    assert "directory not found" in row["error"]
    text = stoker.cli("status").stdout
    assert "command not found: /nonexistent/bin/worker" in text


def test_stop_reaches_grandchildren_and_kills_after_timeout(stoker: Stoker) -> None:
    # The shell ignores TERM and so do its children: only SIGKILL at stop_timeout ends them.
    script = "trap '' TERM; sleep 1000 & sleep 1000 & echo started; wait"
    stoker.write(
        f"""
        [programs.stubborn]
        command = ["sh", "-c", "{script}"]
        start_seconds = "100ms"
        stop_timeout = "300ms"
        """
    )
    stoker.up()
    row = stoker.wait_state("stubborn:0", "running")
    wait_for(lambda: len(marked_pids(str(stoker.state_dir))) == 3, what="shell and two sleeps")
    result = stoker.json("stop", "stubborn")
    assert result[0]["state"] == "stopped"
    assert marked_pids(str(stoker.state_dir)) == []
    assert not pid_alive(row["pid"])
    assert "did not stop within 0.3s, sending SIGKILL" in stoker.log_text()


def test_leftover_group_members_die_with_the_leader(stoker: Stoker) -> None:
    # The leader exits on its own; its background child must not live on as an orphan
    # beside the restarted program.
    stoker.write(
        """
        [programs.leaky]
        command = ["sh", "-c", "sleep 1000 & sleep 0.5; exit 1"]
        start_seconds = "100ms"
        """
    )
    stoker.up()
    stoker.wait_state("leaky:0", "running", restarts=2)
    # Each restart's shell leaves a `sleep 1000`; only the current one may be alive.
    import psutil

    sleepers = [
        pid
        for pid in marked_pids(str(stoker.state_dir))
        if psutil.Process(pid).cmdline() == ["sleep", "1000"]
    ]
    assert len(sleepers) == 1


def test_sigkilled_daemon_takes_programs_along_and_next_daemon_cleans_up(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.tree]
        command = ["sh", "-c", "sleep 1000 & sleep 1000 & wait"]
        start_seconds = "100ms"
        """
    )
    stoker.up()
    leader = stoker.wait_state("tree:0", "running")["pid"]
    wait_for(lambda: len(marked_pids(str(stoker.state_dir))) == 3, what="the tree")
    stoker.kill()
    # The direct child dies with the daemon (PR_SET_PDEATHSIG).
    wait_for(lambda: not pid_alive(leader), what="the leader to die with the daemon")
    # A stale pidfile and socket stay behind; they must not block the next start.
    assert (stoker.state_dir / "stoker.pid").exists()
    stoker.up()
    new_leader = stoker.wait_state("tree:0", "running")["pid"]
    wait_for(lambda: len(marked_pids(str(stoker.state_dir))) == 3, what="the new tree only")
    assert new_leader != leader
    assert "left behind by a previous daemon" in stoker.log_text()


def test_single_instance_per_state_dir(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.sleeper]
        command = "sleep 1000"
        """
    )
    daemon = stoker.up()
    second = stoker.cli("up")
    assert second.returncode == 1
    assert f"already running (pid {daemon.pid})" in second.stderr


def test_detach_returns_once_answering(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.sleeper]
        command = "sleep 1000"
        start_seconds = 0
        """
    )
    result = stoker.cli("up", "-d")
    assert result.returncode == 0, result.stderr
    assert "daemon running, pid" in result.stdout
    pid = int((stoker.state_dir / "stoker.pid").read_text())
    try:
        assert stoker.client.status()["pid"] == pid
        assert stoker.cli("up", "-d").returncode == 1
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().startswith(b"stoker: daemon")
    finally:
        down = stoker.cli("down")
    assert down.returncode == 0, down.stderr
    wait_for(lambda: not pid_alive(pid), what="the detached daemon to exit")
    assert marked_pids(str(stoker.state_dir)) == []
    assert "stopped" in (stoker.state_dir / "stoker.log").read_text()


def test_detach_reports_why_it_could_not_start(stoker: Stoker, unused_tcp_port: int) -> None:
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", unused_tcp_port))
    busy.listen(1)
    try:
        stoker.write(
            f"""
            [daemon]
            listen = "127.0.0.1:{unused_tcp_port}"
            [programs.sleeper]
            command = "sleep 1000"
            """
        )
        result = stoker.cli("up", "-d")
    finally:
        busy.close()
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{unused_tcp_port}" in result.stderr
    assert marked_pids(str(stoker.state_dir)) == []


def test_environment_instances_and_directory(stoker: Stoker) -> None:
    (stoker.root / "work").mkdir()
    stoker.write(
        f"""
        [daemon]
        node = "web-7"
        [programs.crawler]
        command = ["{PY}", "-c", "import os, time; print(os.getcwd(), os.environ['STOKER_PROGRAM'], os.environ['STOKER_INSTANCE'], os.environ['MERCHANT'], os.environ['STOKER_NODE'], flush=True); time.sleep(1000)"]
        instances = 3
        directory = "work"
        environment = {{ MERCHANT = "shop-{{instance}}" }}
        start_seconds = 0
        """
    )
    stoker.up()
    for i in range(3):
        stoker.wait_state(f"crawler:{i}", "running")
    for i in range(3):
        expected = f"{stoker.root / 'work'} crawler {i} shop-{i} web-7\n"
        wait_for(
            lambda i=i, e=expected: output_of(stoker.cli("logs", f"crawler:{i}").stdout) == e,
            what=f"crawler:{i} output",
        )
    # NAME may be a program, an instance, or all.
    stopped = stoker.json("stop", "crawler:1")
    assert [r["name"] for r in stopped] == ["crawler:1"]
    states = {r["name"]: r["state"] for r in stoker.json("status", "crawler")}
    assert states == {"crawler:0": "running", "crawler:1": "stopped", "crawler:2": "running"}
    started = stoker.json("start", "all")
    assert {r["state"] for r in started} == {"running"}


def test_unknown_names_and_daemon_not_running(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.sleeper]
        command = "sleep 1000"
        """
    )
    down = stoker.cli("status")
    assert down.returncode == 3
    assert "not running" in down.stderr
    stoker.up()
    missing = stoker.cli("stop", "nosuch")
    assert missing.returncode == 2
    assert "no program or instance named 'nosuch'" in missing.stderr


def test_bad_config_is_exit_2_naming_file_and_key(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.mailer]
        command = "php send.php"
        restart = "sometimes"
        """
    )
    result = stoker.cli("check")
    assert result.returncode == 2
    assert str(stoker.config) in result.stderr
    assert "programs.mailer" in result.stderr and "restart" in result.stderr
    assert "Traceback" not in result.stderr
    assert stoker.cli("up").returncode == 2


def test_init_writes_a_config_that_runs(stoker: Stoker) -> None:
    result = stoker.cli("init")
    assert result.returncode == 0, result.stderr
    assert stoker.cli("check").returncode == 0
    assert stoker.cli("init").returncode == 1  # never overwrites silently
    stoker.up()
    rows = stoker.programs()
    assert rows
    for name in rows:
        stoker.wait_state(name, "running")


def test_signal_reaches_the_program(stoker: Stoker) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGUSR1, lambda *a: print('got USR1', flush=True))\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(1)\n"
    )
    (stoker.root / "usr1.py").write_text(code)
    stoker.write(
        f"""
        [programs.listener]
        command = ["{PY}", "usr1.py"]
        start_seconds = 0
        """
    )
    stoker.up()
    stoker.wait_state("listener:0", "running")
    wait_for(lambda: "ready" in stoker.cli("logs", "listener").stdout, what="ready")
    result = stoker.cli("signal", "USR1", "listener")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "got USR1" in stoker.cli("logs", "listener").stdout, what="the signal")
    assert stoker.cli("signal", "NOPE", "listener").returncode == 2


def test_restart_command_gives_a_new_pid(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.sleeper]
        command = "sleep 1000"
        start_seconds = "100ms"
        """
    )
    stoker.up()
    before = stoker.wait_state("sleeper:0", "running")["pid"]
    rows = stoker.json("restart", "sleeper")
    assert rows[0]["state"] == "running" and rows[0]["pid"] != before
    assert not pid_alive(before)


def test_sigterm_stops_everything(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.a]
        command = ["sh", "-c", "sleep 1000 & wait"]
        instances = 2
        start_seconds = 0
        """
    )
    stoker.up()
    wait_for(lambda: len(marked_pids(str(stoker.state_dir))) == 4, what="two shells and two sleeps")
    assert stoker.terminate() == 0
    assert marked_pids(str(stoker.state_dir)) == []


def test_subprocess_cli_help_is_fast_to_import() -> None:
    # `stoker status` must not import the server stack.
    code = (
        "import sys, stoker.cli, stoker.client, stoker.locate\n"
        "heavy = [m for m in ('starlette', 'uvicorn', 'asyncio', 'psutil', 'msgspec', 'http.client') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_user_group_and_umask(stoker: Stoker) -> None:
    if os.geteuid() != 0:
        import pytest

        pytest.skip("dropping to another user needs root")
    import pwd

    nobody = pwd.getpwnam("nobody")
    stoker.root.chmod(0o755)
    stoker.write(
        """
        [programs.dropped]
        command = ["sh", "-c", "echo $(id -u) $(id -g) $(umask); exec sleep 1000"]
        user = "nobody"
        group = "nogroup"
        umask = "027"
        start_seconds = 0
        [programs.nosuchuser]
        command = "sleep 1000"
        user = "no-such-user-here"
        max_restarts = 1
        backoff = { min = "50ms", max = "50ms" }
        """
    )
    stoker.up()
    stoker.wait_state("dropped:0", "running")
    import grp

    expected = f"{nobody.pw_uid} {grp.getgrnam('nogroup').gr_gid} 0027\n"
    wait_for(
        lambda: output_of(stoker.cli("logs", "dropped").stdout) == expected, what="the dropped program's ids"
    )
    row = stoker.wait_state("nosuchuser:0", "fatal")
    assert row["error"] == (
        "gave up after 2 failed starts (the first and max_restarts = 1 restart): unknown user: no-such-user-here"
    )


def test_cron_restart_restarts_running_instances_only(tmp_path: Path) -> None:
    """The restart loop with a 1 s trigger (a cron expression's finest step is a minute) over
    real processes: running instances get new pids, one stopped by hand stays stopped."""
    import asyncio

    from stoker.config import load_config
    from stoker.schedule.triggers import Every
    from stoker.supervise.cron_restart import restart_on_schedule
    from stoker.supervise.supervisor import Supervisor

    config_file = tmp_path / "stoker.toml"
    config_file.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[programs.web]\ncommand = ["{PY}", "-c", "import time; time.sleep(1000)"]\ninstances = 2\n'
        'start_seconds = "100ms"\ncron_restart = "0 4 * * *"\n'
    )
    config = load_config(config_file)
    assert config.programs["web"].cron_restart == "0 4 * * *"

    async def main() -> tuple[list[int | None], list[int | None], str]:
        (tmp_path / "state" / "logs").mkdir(parents=True)
        supervisor = Supervisor(config)
        try:
            await supervisor.start(supervisor.select(["web"]))
            await supervisor.stop(supervisor.select(["web:1"]))
            before = [i.pid for i in supervisor.select(["web"])]
            task = asyncio.create_task(restart_on_schedule(supervisor, {"web": Every(1)}))

            def restarted() -> bool:
                web0 = supervisor.instances["web:0"]
                return web0.pid not in (None, before[0]) and web0.state.value == "running"

            await wait_for_async(restarted, 10, "a restart")
            task.cancel()
            after = [i.pid for i in supervisor.select(["web"])]
            return before, after, supervisor.instances["web:1"].state.value
        finally:
            await supervisor.shutdown()

    before, after, stopped = asyncio.run(main())
    assert after[0] != before[0] and after[0] is not None
    assert before[1] is None and after[1] is None and stopped == "stopped"


def test_cron_restart_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "stoker.toml"
    for value, message in [("61 * * * *", "bad minute"), ("@reboot", "cron expression with times")]:
        bad.write_text(f'[programs.x]\ncommand = "sleep 1"\ncron_restart = "{value}"\n')
        result = subprocess.run(
            [sys.executable, "-m", "stoker", "-c", str(bad), "check"], capture_output=True, text=True
        )
        assert result.returncode == 2 and "cron_restart" in result.stderr and message in result.stderr


def test_status_shows_cpu(stoker: Stoker) -> None:
    stoker.write(
        f"""
        [programs.spinner]
        command = ["{PY}", "-c", "while True: pass"]
        start_seconds = 0
        [programs.idler]
        command = ["sleep", "300"]
        start_seconds = 0
        """
    )
    stoker.up()
    stoker.wait_state("spinner:0", "running")

    def cpu_column() -> dict[str, str] | None:
        lines = stoker.cli("status").stdout.splitlines()
        at = lines[0].index("CPU")
        cells = {line.split()[0]: line[at:].split()[0] for line in lines[1:]}
        return cells if cells["spinner:0"] not in ("-", "0%") and cells["idler:0"] != "-" else None

    cells = wait_for(cpu_column, what="CPU figures in stoker status")
    assert cells["idler:0"] == "0%"
    assert int(cells["spinner:0"].rstrip("%")) > 0


def test_a_listen_port_in_use_fails_the_start_and_leaves_nothing(stoker: Stoker) -> None:
    import socket

    from conftest import free_port

    port = free_port()
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{port}"
        [programs.p]
        command = "sleep 1000"
        [tasks.t]
        command = "true"
        """
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        for detach in ([], ["-d"]):
            up = stoker.cli("up", *detach)
            assert up.returncode == 1, up.stderr
            assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in up.stderr
            left = sorted(p.name for p in stoker.state_dir.iterdir())
            assert "stoker.sock" not in left and "stoker.pid" not in left, left
            status = stoker.cli("status")
            assert status.returncode == 3 and "not running" in status.stderr, status
            assert not marked_pids(str(stoker.state_dir))  # no program was started


def test_check_counts_what_the_user_declared(stoker: Stoker) -> None:
    stoker.write(
        """
        [schedules.nightly]
        cron = "0 3 * * *"
        command = "true"
        """
    )
    out = stoker.cli("check")
    assert out.returncode == 0, out.stderr
    # the inline command is the internal task schedule.nightly, on a queue of its own: not the user's
    assert out.stdout == f"{stoker.config}: ok, 0 programs, 1 schedule\n"
    assert stoker.json("check") == {
        "ok": True, "config": str(stoker.config), "programs": 0, "instances": 0, "tasks": 0,
        "queues": 0, "schedules": 1, "webhooks": 0, "warnings": [],
    }  # fmt: skip
    stoker.write(
        """
        [programs.web]
        command = "sleep 1000"
        instances = 3
        [programs.mailer]
        command = "sleep 1000"
        [tasks.build]
        command = "true"
        queue = "builds"
        [tasks.mail]
        command = "true"
        [schedules.nightly]
        cron = "0 3 * * *"
        task = "build"
        [schedules.hourly]
        every = "1h"
        command = "true"
        queue = "builds"
        """
    )
    out = stoker.cli("check")
    assert out.stdout == f"{stoker.config}: ok, 2 programs (4 instances), 2 tasks, 2 queues, 2 schedules\n"
    stoker.write('[programs.one]\ncommand = "sleep 1000"\n[tasks.t]\ncommand = "true"\n')
    assert stoker.cli("check").stdout == f"{stoker.config}: ok, 1 program, 1 task, 1 queue\n"
