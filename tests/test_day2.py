"""Day-2 operations with a real daemon and real processes: readiness (tcp, http, notify), the
watchdog, depends_on, max_memory, watch, and "stopped by hand" across daemon restarts.

The programs wait for files the test creates ("go", "ping") instead of sleeping, so every
step happens when the test says, not after some guessed delay.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

import pytest
from conftest import Stoker, wait_for

PY = sys.executable

# A program that serves TCP (and HTTP /health) once ./go exists; /health says 503 until ./healthy.
SERVER = """
import http.server, os, socketserver, sys, time
port = int(sys.argv[1])
while not os.path.exists("go"):
    time.sleep(0.02)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = os.path.exists("healthy")
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"not yet")
    def log_message(self, *a):
        pass
socketserver.TCPServer.allow_reuse_address = True
with socketserver.TCPServer(("127.0.0.1", port), Health) as server:
    print("listening", flush=True)
    server.serve_forever()
"""

# A program that speaks sd_notify: STATUS at once, READY=1 once ./go exists, then WATCHDOG=1
# every 0.1 s while ./ping exists.
NOTIFIER = """
import os, socket, time
address = os.environ["NOTIFY_SOCKET"]
if address.startswith("@"):
    address = "\\0" + address[1:]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def say(text):
    sock.sendto(text.encode(), address)
say("STATUS=warming up")
while not os.path.exists("go"):
    time.sleep(0.02)
say("READY=1\\nSTATUS=serving")
while True:
    if os.path.exists("ping"):
        say("WATCHDOG=1")
    time.sleep(0.1)
"""


def write_script(stoker: Stoker, name: str, text: str) -> None:
    (stoker.root / name).write_text(text)


def touch(stoker: Stoker, name: str) -> None:
    (stoker.root / name).write_text("")


# readiness -----------------------------------------------------------------------------------


def test_ready_by_tcp(stoker: Stoker, unused_tcp_port: int) -> None:
    write_script(stoker, "server.py", SERVER)
    stoker.write(
        f"""
        [programs.api]
        command = ["{PY}", "server.py", "{unused_tcp_port}"]
        start_seconds = 0
        ready = "tcp:{unused_tcp_port}"
        """
    )
    stoker.up()
    row = stoker.wait_state("api:0", "starting")
    assert row["pid"] is not None  # it runs, but is not ready: nothing listens yet
    touch(stoker, "go")
    stoker.wait_state("api:0", "running")
    assert f"api:0: ready (tcp:127.0.0.1:{unused_tcp_port})" in stoker.log_text()


def test_ready_by_http_needs_a_2xx(stoker: Stoker, unused_tcp_port: int) -> None:
    write_script(stoker, "server.py", SERVER)
    stoker.write(
        f"""
        [programs.api]
        command = ["{PY}", "server.py", "{unused_tcp_port}"]
        start_seconds = 0
        ready = "http://127.0.0.1:{unused_tcp_port}/health"
        """
    )
    stoker.up()
    touch(stoker, "go")
    wait_for(lambda: "listening" in stoker.cli("logs", "api").stdout, what="the server to listen")
    # It listens and answers, but 503: not ready.
    assert stoker.programs()["api:0"]["state"] == "starting"
    touch(stoker, "healthy")
    stoker.wait_state("api:0", "running")


def test_ready_by_notify_and_status_text(stoker: Stoker) -> None:
    write_script(stoker, "notifier.py", NOTIFIER)
    stoker.write(
        f"""
        [programs.svc]
        command = ["{PY}", "notifier.py"]
        start_seconds = 0
        ready = "notify"
        """
    )
    stoker.up()
    stoker.wait_state("svc:0", "starting", status_text="warming up")
    # Someone else on the machine saying READY=1 on the socket does not count.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", str(stoker.state_dir / "notify.sock"))
    assert stoker.programs()["svc:0"]["state"] == "starting"
    touch(stoker, "go")
    row = stoker.wait_state("svc:0", "running", status_text="serving")
    environ = Path(f"/proc/{row['pid']}/environ").read_bytes().split(b"\0")
    assert f"NOTIFY_SOCKET={stoker.state_dir / 'notify.sock'}".encode() in environ
    assert "serving" in stoker.cli("status").stdout


def test_not_ready_in_time_is_a_failed_start(stoker: Stoker, unused_tcp_port: int) -> None:
    write_script(stoker, "server.py", SERVER)  # never listens: no ./go
    stoker.write(
        f"""
        [programs.api]
        command = ["{PY}", "server.py", "{unused_tcp_port}"]
        start_seconds = 0
        ready = "tcp:{unused_tcp_port}"
        ready_timeout = "500ms"
        backoff = {{ min = "30s", max = "30s" }}
        """
    )
    stoker.up()
    row = stoker.wait_state("api:0", "backoff")
    assert row["error"] == "not ready within 0.5s"
    assert "api:0: not ready within 0.5s, stopping it" in stoker.log_text()


def test_watchdog_restarts_a_program_that_stops_pinging(stoker: Stoker) -> None:
    write_script(stoker, "notifier.py", NOTIFIER)
    touch(stoker, "go")
    touch(stoker, "ping")
    stoker.write(
        f"""
        [programs.svc]
        command = ["{PY}", "notifier.py"]
        start_seconds = 0
        ready = "notify"
        watchdog = "1s"
        """
    )
    stoker.up()
    first = stoker.wait_state("svc:0", "running")
    environ = Path(f"/proc/{first['pid']}/environ").read_bytes().split(b"\0")
    assert b"WATCHDOG_USEC=1000000" in environ
    (stoker.root / "ping").unlink()  # it hangs, as far as anyone can tell
    wait_for(lambda: stoker.programs()["svc:0"]["pid"] not in (None, first["pid"]), what="a restart")
    assert "svc:0: watchdog: no ping within 1s, stopping it" in stoker.log_text()
    assert stoker.programs()["svc:0"]["restarts"] >= 1


# depends_on ----------------------------------------------------------------------------------


def test_depends_on_starts_after_ready_and_stops_before(stoker: Stoker, unused_tcp_port: int) -> None:
    write_script(stoker, "server.py", SERVER)
    write_script(
        stoker,
        "web.py",
        "import signal, sys, time\n"
        "def bye(*a):\n"
        "    open('stops', 'a').write('web\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "open('starts', 'a').write('web\\n')\n"
        "while True: time.sleep(1)\n",
    )
    stoker.write(
        f"""
        [programs.web]
        command = ["{PY}", "web.py"]
        start_seconds = 0
        depends_on = ["db"]

        [programs.db]
        command = ["sh", "-c", "trap 'echo db >> stops; exit 0' TERM; exec {PY} server.py {unused_tcp_port} & wait"]
        start_seconds = 0
        ready = "tcp:{unused_tcp_port}"
        """
    )
    stoker.up()
    web = stoker.wait_state("web:0", "starting", waiting_for=["db"])
    assert web["pid"] is None
    assert "waiting for db" in stoker.cli("status").stdout
    assert not (stoker.root / "starts").exists()
    touch(stoker, "go")
    stoker.wait_state("db:0", "running")
    stoker.wait_state("web:0", "running", waiting_for=[])
    wait_for(lambda: (stoker.root / "starts").exists(), what="web to start")
    assert stoker.terminate() == 0
    assert (stoker.root / "stops").read_text() == "web\ndb\n"


def test_stop_while_waiting_for_a_dependency(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.web]
        command = ["sleep", "300"]
        depends_on = ["db"]

        [programs.db]
        command = ["sleep", "300"]
        autostart = false
        """
    )
    stoker.up()
    stoker.wait_state("web:0", "starting", waiting_for=["db"])
    assert stoker.cli("stop", "web").returncode == 0
    stoker.wait_state("web:0", "stopped", waiting_for=[], pid=None)
    assert stoker.cli("start", "db").returncode == 0
    stoker.wait_state("db:0", "running")
    assert stoker.programs()["web:0"]["state"] == "stopped"  # stopped by hand stays stopped


# Each program of STOP_ORDER leaves a line in ./stops at each step, and waits for files the
# others leave, so the order is decided by the stops themselves, never by a delay:
# - slow depends on db and does not stop on TERM until lone has had its TERM and db is gone;
# - db exits (a crash: code 1) once slow has had its TERM, the moment a dependency dies under a
#   dependent that is shutting down; it must not be started again;
# - lone is unrelated to the others, and crashy crashes every 1.5 s (issue 22's repro).
STOP_ORDER = """
[programs.db]
command = ["sh", "-c", "trap 'echo db-term >> stops; exit 0' TERM; until [ -e slow.term ]; do sleep 0.02; done; echo db-exit >> stops; touch db.gone; exit 1"]

[programs.slow]
command = ["sh", "-c", "trap 'echo slow-term >> stops; touch slow.term; until [ -e lone.term ] && [ -e db.gone ]; do sleep 0.02; done; echo slow-exit >> stops; exit 0' TERM; while true; do sleep 0.05; done"]
depends_on = ["db"]
stop_timeout = "5s"

[programs.lone]
command = ["sh", "-c", "trap 'echo lone-term >> stops; touch lone.term; exit 0' TERM; while true; do sleep 0.05; done"]

[programs.crashy]
command = ["sh", "-c", "sleep 1.5; exit 1"]
"""


@pytest.mark.parametrize("how", ["down", "stop all", "reload"])
def test_a_stop_signals_unrelated_programs_at_once_and_starts_nothing(stoker: Stoker, how: str) -> None:
    """Issue 22: stop waves came from a depth that was 0 for a dependency and for a program
    unrelated to any other alike, so lone and crashy were signalled only once slow had exited
    (SIGKILLed after its stop_timeout), and crashy and db were restarted meanwhile."""
    keep = '[programs.keep]\ncommand = ["sleep", "1000"]\n'  # what a reload leaves
    stoker.write(STOP_ORDER + keep)
    stoker.up()
    for name in ("db:0", "slow:0", "lone:0"):
        stoker.wait_state(name, "running")
    wait_for(lambda: stoker.programs()["crashy:0"]["restarts"] >= 1, 15, "crashy to crash once")
    began = len(stoker.log_text())
    if how == "down":
        assert stoker.cli("down").returncode == 0
        assert stoker.daemon is not None and stoker.daemon.wait(10) == 0
        after = stoker.log_text()[began:]
        after = after[after.index("shutting down") :]
    else:
        if how == "stop all":
            assert stoker.cli("stop", "all").returncode == 0
        else:
            stoker.write(keep)
            assert stoker.cli("reload").returncode == 0
        wait_for(lambda: all(r["state"] == "stopped" for n, r in stoker.programs().items() if n != "keep:0"))
        after = stoker.log_text()[began:]
    stops = (stoker.root / "stops").read_text().split()
    # lone (unrelated) had its stop signal before slow (its dependent's own stop) was over
    assert "slow-exit" in stops, f"slow did not stop by itself: {stops}; log:\n{after}"
    assert stops.index("lone-term") < stops.index("slow-exit")
    assert stops.index("slow-term") < stops.index("db-exit") < stops.index("slow-exit")
    assert "db-term" not in stops  # db was gone before its turn: it was never started again
    assert ": started" not in after, after  # nothing, crashy and db included, started again


def test_a_slow_crash_loop_backs_off_and_says_so(stoker: Stoker) -> None:
    """Issue 22: a program that started fine and died a moment later was restarted at once,
    forever, and shown `running` with its restarts climbing. Its second end is a crash loop:
    it waits in `backoff`, and status says so, until someone gives it a fresh start."""
    stoker.write(
        """
        [programs.flaky]                   # dies 0.3 s after its start while ./crash exists
        command = ["sh", "-c", "sleep 0.3; if [ -e crash ]; then exit 1; fi; exec sleep 1000"]
        start_seconds = "0.1s"
        backoff = { min = "30s", max = "60s" }
        """
    )
    touch(stoker, "crash")
    stoker.up()
    row = stoker.wait_state("flaky:0", "backoff")
    assert (row["restarts"], row["pid"]) == (1, None)  # the first: at once
    assert row["error"].startswith("exited with code 1 after 0.")  # the last crash (issue 19)
    assert row["crash_loop"]["exits"] == 2 and 0.3 <= row["crash_loop"]["seconds"] < 30
    status = stoker.cli("status", "flaky").stdout
    assert re.search(r"flaky:0 +backoff .* crash loop: 2 exits in 0\.\d\ds", status), status
    (stoker.root / "crash").unlink()  # fixed
    assert stoker.cli("start", "flaky").returncode == 0  # a fresh chance: the loop is forgotten
    row = stoker.wait_state("flaky:0", "running")
    assert row["crash_loop"] is None and "crash loop" not in stoker.cli("status", "flaky").stdout


# resource restarts ---------------------------------------------------------------------------


def test_memory_hog_is_restarted(stoker: Stoker) -> None:
    write_script(
        stoker,
        "hog.py",
        "import time\nheap = b'x' * (200 * 1024 * 1024)\nprint('hogging', flush=True)\ntime.sleep(1000)\n",
    )
    stoker.write(
        f"""
        [programs.hog]
        command = ["{PY}", "hog.py"]
        start_seconds = 0
        max_memory = "100MB"
        """
    )
    stoker.up()
    first = stoker.wait_state("hog:0", "running")
    wait_for(
        lambda: stoker.programs()["hog:0"]["pid"] not in (None, first["pid"]),
        timeout=30,
        what="the hog to be restarted",
    )
    assert "hog:0: uses " in stoker.log_text()
    assert "over max_memory 100MB: restarting it" in stoker.log_text()


def test_watch_restarts_on_change_but_not_for_ignored_files_or_its_own_logs(stoker: Stoker) -> None:
    (stoker.root / "src").mkdir()
    stoker.write(
        f"""
        [programs.app]
        command = ["{PY}", "-c", "import time\\nwhile True:\\n    print('tick', flush=True)\\n    time.sleep(0.05)"]
        start_seconds = 0
        watch = ["."]
        watch_ignore = ["*.tmp"]
        """
    )
    stoker.up()
    first = stoker.wait_state("app:0", "running")
    # its own log lines (in .stoker/, under ".") are being written all along
    wait_for(lambda: stoker.cli("logs", "app", "-n", "5").stdout.count("tick") >= 5, what="log lines")
    (stoker.root / "src" / "scratch.tmp").write_text("ignored")
    (stoker.root / "src" / "app.php").write_text("<?php echo 1;")
    second = wait_for(
        lambda: (row := stoker.programs()["app:0"])["pid"] not in (None, first["pid"]) and row,
        what="a restart after the change",
    )
    stoker.wait_state("app:0", "running", pid=second["pid"])
    log = stoker.log_text()
    assert "app: src/app.php changed: restarting it" in log
    assert "scratch.tmp" not in log
    assert stoker.programs()["app:0"]["restarts"] == 1


# what an operator asked for, across daemon restarts ---------------------------------------------


def test_stopped_by_hand_stays_stopped_across_daemon_restarts(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.a]
        command = ["sleep", "300"]
        start_seconds = 0
        [programs.b]
        command = ["sleep", "301"]
        start_seconds = 0
        """
    )
    stoker.up()
    stoker.wait_state("a:0", "running")
    assert stoker.cli("stop", "a").returncode == 0
    assert stoker.terminate() == 0
    stoker.up()
    stoker.wait_state("b:0", "running")
    assert stoker.programs()["a:0"]["state"] == "stopped"
    assert stoker.programs()["a:0"]["stopped_by_hand"] is True
    assert "stopped by hand" in stoker.cli("status").stdout
    assert stoker.cli("start", "a").returncode == 0
    stoker.wait_state("a:0", "running", stopped_by_hand=False)
    assert stoker.terminate() == 0
    stoker.up()
    stoker.wait_state("a:0", "running")


def test_a_damaged_stopped_file_starts_everything(stoker: Stoker) -> None:
    stoker.write('[programs.a]\ncommand = ["sleep", "300"]\nstart_seconds = 0\n')
    stoker.state_dir.mkdir()
    (stoker.state_dir / "stopped.json").write_text("{not json")
    stoker.up()
    stoker.wait_state("a:0", "running")
    assert "stopped.json: ignored" in stoker.log_text()


# stoker itself under systemd (Type=notify) -----------------------------------------------------


def test_daemon_tells_systemd_ready_reloading_stopping(
    stoker: Stoker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = str(tmp_path / "systemd.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(address)
        systemd.settimeout(20)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        stoker.write('[programs.a]\ncommand = ["sleep", "300"]\nstart_seconds = 0\n')
        daemon = stoker.up()
        ready = systemd.recv(4096).decode().split("\n")
        assert "READY=1" in ready
        assert f"MAINPID={daemon.pid}" in ready
        row = stoker.wait_state("a:0", "running")
        # what stoker starts cannot speak to systemd in its name
        environ = Path(f"/proc/{row['pid']}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.startswith(b"NOTIFY_SOCKET=")]
        assert stoker.cli("reload").returncode == 0
        assert systemd.recv(4096).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert systemd.recv(4096) == b"READY=1"
        assert stoker.terminate() == 0
        assert systemd.recv(4096) == b"STOPPING=1"
    os.unlink(address)


# PID 1 in a container ---------------------------------------------------------------------------

ORPHANS = """
i=0
while [ $i -lt 20 ]; do (true &); i=$((i+1)); done
# Each `true` was orphaned (its subshell exited): only PID 1 can collect it. Wait for that.
n=0
while :; do
  z=$(cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == "Z"' | wc -l)
  if [ "$z" -eq 0 ]; then echo reaped > result; break; fi
  n=$((n+1))
  if [ $n -gt 200 ]; then echo "zombies: $z" > result; break; fi
  sleep 0.05
done
exec sleep 300
"""


def test_as_pid_1_orphans_are_reaped_and_signals_reach_the_daemon(stoker: Stoker) -> None:
    import subprocess

    import psutil

    unshare = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    probe = subprocess.run([*unshare, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a PID namespace here: {probe.stderr.decode().strip()}")
    write_script(stoker, "orphans.sh", ORPHANS)
    stoker.write('[programs.spawner]\ncommand = ["sh", "orphans.sh"]\nstart_seconds = 0\n')
    with open(stoker.daemon_log, "ab") as log:
        outer = subprocess.Popen(
            [*unshare, PY, "-m", "stoker", "-c", str(stoker.config), "up"],
            stdout=log,
            stderr=log,
            cwd=stoker.root,
        )
    try:
        init = wait_for(lambda: psutil.Process(outer.pid).children(), what="PID 1 of the namespace")[0]
        wait_for(lambda: "stoker: init" in " ".join(init.cmdline()), what="PID 1 to be stoker's init")
        result = stoker.root / "result"
        wait_for(result.exists, what=f"the orphans' fate; log:\n{stoker.log_text()}")
        wait_for(lambda: result.read_text().strip(), what="the result line")
        assert result.read_text() == "reaped\n"
        init.send_signal(15)  # `docker stop`: SIGTERM to PID 1 reaches the daemon, which stops
        assert outer.wait(30) == 0
        assert "shutting down" in stoker.log_text()
    finally:
        if outer.poll() is None:
            outer.kill()  # --kill-child: PID 1 of the namespace dies with it, and with it the rest
            outer.wait(10)


def test_reload_restarts_a_changed_program_one_instance_at_a_time(stoker: Stoker) -> None:
    # Each instance notes when it is up (just before READY=1) and when it goes: the notes,
    # in order, must never show every instance gone at once.
    write_script(
        stoker,
        "served.py",
        "import os, signal, socket, sys, time\n"
        "me = os.environ['STOKER_INSTANCE'] + ':' + sys.argv[1]\n"
        "def note(what):\n"
        "    with open('notes', 'a') as f:\n"
        "        f.write(what + ' ' + me + '\\n')\n"
        "def bye(*a):\n"
        "    note('down')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "note('up')\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
        "while True: time.sleep(1)\n",
    )
    config = """
        [programs.web]
        command = ["{py}", "served.py", "{version}"]
        instances = 3
        start_seconds = 0
        ready = "notify"
        """
    stoker.write(config.format(py=PY, version="v1"))
    stoker.up()
    for i in range(3):
        stoker.wait_state(f"web:{i}", "running")
    stoker.write(config.format(py=PY, version="v2"))
    assert stoker.cli("reload").returncode == 0
    for i in range(3):
        stoker.wait_state(f"web:{i}", "running")
    notes = (stoker.root / "notes").read_text().split("\n")[:-1]
    up: set[str] = set()
    for line in notes:
        what, who = line.split()
        if what == "up":
            up.add(who)
        else:
            up.discard(who)
            assert up, f"every instance was down at once: {notes}"
    assert up == {"0:v2", "1:v2", "2:v2"}
    assert sorted(notes[:3]) == ["up 0:v1", "up 1:v1", "up 2:v1"]
    assert notes[3:] == ["down 0:v1", "up 0:v2", "down 1:v1", "up 1:v2", "down 2:v1", "up 2:v2"]
