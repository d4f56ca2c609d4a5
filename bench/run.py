#!/usr/bin/env python3
"""Benchmark stoker against supervisord and pm2 on the same programs, on this machine.

Usage: .venv/bin/python bench/run.py [--quick] [--only stoker,supervisord,pm2]

Measures, for each supervisor: crash→restart latency of a program that ran past its start
time, time until 100 programs are running, daemon RSS with 100 programs, idle daemon CPU, and
the latency of the `status` command. Prints a Markdown table and writes bench/.work/results.json.
See bench/README.md for the method. Standard library + psutil only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
RESULTS = WORK / "results.json"
PYCACHE = WORK / "pycache"

TOOLS = ("stoker", "supervisord", "pm2")
N_PROGRAMS = 100
START_SECONDS = 1.0  # stoker start_seconds, supervisord startsecs, pm2 min_uptime
KILL_MARGIN = 1.5  # extra wait past START_SECONDS before each kill
SETTLE = 3.0  # after the 100 programs are up, before RSS / idle CPU
CLK_TCK = os.sysconf("SC_CLK_TCK")
MARK = "STOKER_BENCH_RUN"  # in the environment of everything we launch: the final sweep finds it
RUN_ID = uuid.uuid4().hex[:12]

SH = shutil.which("sh") or "/bin/sh"
SLEEP = shutil.which("sleep") or "/bin/sleep"
SLEEP_ARGV = [SLEEP, "100000"]


class Unavailable(Exception):
    """The supervisor cannot be installed or run on this machine."""


class BenchError(Exception):
    """A measurement could not be taken."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env[MARK] = RUN_ID
    env.pop("STOKER_CONFIG", None)
    # Bytecode is cached the way a normal install has it, but under bench/.work: with
    # PYTHONDONTWRITEBYTECODE set (some sandboxes do) an editable install would recompile
    # its modules on every `stoker status`, which no pip-installed tool ever does.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update(extra)
    return env


def run(
    argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv,
        env=env or base_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,  # a Ctrl-C at the terminal hits the bench, not its helpers
    )
    if check and proc.returncode != 0:
        raise BenchError(
            f"{shlex.join(argv)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()}"
        )
    return proc


def stamp_script(stamp: Path) -> str:
    """Records its pid and its start time (one fork: `date`), then becomes `sleep 100000`."""
    q = shlex.quote(str(stamp))
    return f"printf '%s ' $$ >> {q}; date +%s.%N >> {q}; exec {shlex.quote(SLEEP)} 100000"


# --------------------------------------------------------------------------------------------
# /proc helpers


def read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if psutil.pid_exists(pid) else None


def children(pid: int) -> set[int]:
    kids: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.update(int(k) for k in f.read().split())
        except OSError:
            continue
    return kids


if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"):  # no CONFIG_PROC_CHILDREN

    def children(pid: int) -> set[int]:
        try:
            return {c.pid for c in psutil.Process(pid).children()}
        except psutil.Error:
            return set()


def is_sleep_program(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            parts = f.read().split(b"\0")
    except OSError:
        return False
    return len(parts) >= 2 and os.path.basename(parts[0]) == b"sleep" and parts[1] == b"100000"


def count_sleep_children(pid: int) -> int:
    return sum(1 for k in children(pid) if is_sleep_program(k))


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads, in clock ticks


def context_switches(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def marked_processes() -> list[psutil.Process]:
    """Every process that carries this run's marker in its environment (all we started)."""
    found = []
    needle = f"{MARK}={RUN_ID}".encode()
    me = os.getpid()
    for pid in psutil.pids():
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(psutil.Process(pid))
        except (OSError, psutil.Error):
            continue
    return found


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def terminate(pid: int, what: str) -> None:
    """SIGTERM, then SIGKILL, one process we started (by id)."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_gone(pid, grace):
            return
    log(f"could not end {what} (pid {pid})")


def sweep(context: str) -> list[str]:
    """End whatever this run started that is still alive; return what was found."""
    left = marked_processes()
    found = []
    for p in left:
        with suppress(psutil.Error):
            found.append(f"{p.pid} {shlex.join(p.cmdline()) or p.name()}")
    if found:
        log(f"left running after {context}: {found}; ending them")
        for p in left:
            terminate(p.pid, "leftover")
    return found


# --------------------------------------------------------------------------------------------
# The supervisors: how to configure, launch, query and stop each of them


class Deployment:
    """One running (or launching) daemon of one supervisor in one directory."""

    def __init__(self, tool: Tool, directory: Path) -> None:
        self.tool = tool
        self.dir = directory
        self.pid: int | None = None
        self.stopped = False

    def daemon_pid(self) -> int | None:
        if self.pid is None or not psutil.pid_exists(self.pid):
            self.pid = read_pidfile(self.tool.pidfile(self.dir))
        return self.pid

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        pid = self.daemon_pid()
        try:
            self.tool.stop(self.dir)
        except (BenchError, subprocess.TimeoutExpired, OSError) as e:
            log(f"{self.tool.name}: stop command failed: {e}")
        if pid is not None and not wait_gone(pid, 30.0):
            log(f"{self.tool.name}: daemon {pid} still alive after stop; terminating it")
            terminate(pid, f"{self.tool.name} daemon")


class Tool:
    name = ""

    def prepare(self) -> str:
        """Install if needed; return the version. Raise Unavailable."""
        raise NotImplementedError

    def env(self, directory: Path) -> dict[str, str]:
        return base_env()

    def write_stamp_config(self, directory: Path, stamp: Path) -> None:
        raise NotImplementedError

    def write_hundred_config(self, directory: Path, n: int = N_PROGRAMS) -> None:
        raise NotImplementedError

    def launch_argv(self, directory: Path) -> list[str]:
        raise NotImplementedError

    def pidfile(self, directory: Path) -> Path:
        raise NotImplementedError

    def status_argv(self, directory: Path) -> list[str]:
        raise NotImplementedError

    def stop(self, directory: Path) -> None:
        raise NotImplementedError


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string of plain text is a valid TOML basic string


class Stoker(Tool):
    name = "stoker"

    def __init__(self) -> None:
        exe = Path(sys.executable).parent / "stoker"
        self.exe = [str(exe)] if exe.exists() else [sys.executable, "-m", "stoker"]

    def prepare(self) -> str:
        try:
            out = run([*self.exe, "--version"], timeout=60).stdout.strip()
        except (BenchError, OSError) as e:
            raise Unavailable(str(e)) from e
        return out.split()[-1] if out else "?"

    def _write(self, directory: Path, body: str) -> None:
        (directory / "stoker.toml").write_text(f'[daemon]\nstate_dir = ".stoker"\n\n{body}')

    def write_stamp_config(self, directory: Path, stamp: Path) -> None:
        argv = [SH, "-c", stamp_script(stamp)]
        self._write(
            directory,
            "[programs.stamp]\n"
            f"command = [{', '.join(toml_str(a) for a in argv)}]\n"
            'start_seconds = "1s"\n'
            # each kill comes after a stable run: the latency of a crash, not a crash loop's wait
            'stable_seconds = "1s"\n'
            'backoff = { min = "1s", max = "60s" }\n'
            'stop_timeout = "5s"\n',
        )

    def write_hundred_config(self, directory: Path, n: int = N_PROGRAMS) -> None:
        self._write(
            directory,
            "[programs.w]\n"
            f"command = [{', '.join(toml_str(a) for a in SLEEP_ARGV)}]\n"
            f"instances = {n}\n"
            'start_seconds = "1s"\n'
            'stop_timeout = "5s"\n',
        )

    def launch_argv(self, directory: Path) -> list[str]:
        return [*self.exe, "-c", str(directory / "stoker.toml"), "up", "-d"]

    def pidfile(self, directory: Path) -> Path:
        return directory / ".stoker" / "stoker.pid"

    def status_argv(self, directory: Path) -> list[str]:
        return [*self.exe, "-c", str(directory / "stoker.toml"), "status"]

    def stop(self, directory: Path) -> None:
        run([*self.exe, "-c", str(directory / "stoker.toml"), "down"], timeout=60)


class Supervisord(Tool):
    name = "supervisord"
    venv = WORK / "venv-supervisor"

    def prepare(self) -> str:
        bin_ = self.venv / "bin"
        if not (bin_ / "supervisord").exists():
            python = shutil.which("python3") or sys.executable
            log(f"installing supervisor into {self.venv}")
            try:
                if not (bin_ / "pip").exists():
                    run([python, "-m", "venv", str(self.venv)], timeout=300)
                run([str(bin_ / "pip"), "install", "--quiet", "supervisor"], timeout=600)
            except (BenchError, OSError, subprocess.TimeoutExpired) as e:
                raise Unavailable(f"pip install supervisor failed: {e}") from e
        try:
            return run([str(bin_ / "supervisord"), "--version"], timeout=60).stdout.strip()
        except (BenchError, OSError) as e:
            raise Unavailable(str(e)) from e

    def _write(self, directory: Path, program: str) -> None:
        d = directory
        (d / "logs").mkdir(exist_ok=True)
        (d / "supervisord.conf").write_text(
            f"[unix_http_server]\nfile={d / 'supervisor.sock'}\n\n"
            "[supervisord]\n"
            f"pidfile={d / 'supervisord.pid'}\n"
            f"logfile={d / 'supervisord.log'}\n"
            f"childlogdir={d / 'logs'}\n"
            "nodaemon=false\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{d / 'supervisor.sock'}\n\n{program}"
        )

    def write_stamp_config(self, directory: Path, stamp: Path) -> None:
        command = shlex.join([SH, "-c", stamp_script(stamp)]).replace("%", "%%")
        self._write(
            directory,
            "[program:stamp]\n"
            f"command={command}\n"
            "startsecs=1\nautorestart=true\nstartretries=3\nstopwaitsecs=5\n",
        )

    def write_hundred_config(self, directory: Path, n: int = N_PROGRAMS) -> None:
        self._write(
            directory,
            "[program:w]\n"
            f"command={shlex.join(SLEEP_ARGV)}\n"
            f"numprocs={n}\n"
            "process_name=%(program_name)s_%(process_num)d\n"
            "startsecs=1\nautorestart=true\nstopwaitsecs=5\n",
        )

    def launch_argv(self, directory: Path) -> list[str]:
        return [str(self.venv / "bin" / "supervisord"), "-c", str(directory / "supervisord.conf")]

    def pidfile(self, directory: Path) -> Path:
        return directory / "supervisord.pid"

    def status_argv(self, directory: Path) -> list[str]:
        ctl = str(self.venv / "bin" / "supervisorctl")
        return [ctl, "-c", str(directory / "supervisord.conf"), "status"]

    def stop(self, directory: Path) -> None:
        ctl = str(self.venv / "bin" / "supervisorctl")
        run([ctl, "-c", str(directory / "supervisord.conf"), "shutdown"], timeout=60)


class Pm2(Tool):
    name = "pm2"
    exe = WORK / "node_modules" / ".bin" / "pm2"

    def prepare(self) -> str:
        if not self.exe.exists():
            npm = shutil.which("npm")
            if npm is None or shutil.which("node") is None:
                raise Unavailable("npm/node not found")
            log(f"installing pm2 into {WORK}")
            try:
                run([npm, "install", "--prefix", str(WORK), "pm2"], timeout=900)
            except (BenchError, OSError, subprocess.TimeoutExpired) as e:
                raise Unavailable(f"npm install pm2 failed: {e}") from e
            if not self.exe.exists():
                raise Unavailable("npm install pm2 did not create node_modules/.bin/pm2")
        # Not `pm2 --version`: that starts a daemon.
        package = json.loads((WORK / "node_modules" / "pm2" / "package.json").read_text())
        return str(package["version"])

    def home(self, directory: Path) -> Path:
        return directory / "pm2home"

    def env(self, directory: Path) -> dict[str, str]:
        # PM2_HOME in a temp dir: never the user's ~/.pm2.
        return base_env(PM2_HOME=str(self.home(directory)))

    def _write(self, directory: Path, apps: list[dict[str, Any]]) -> None:
        self.home(directory).mkdir(exist_ok=True)
        common = {
            "interpreter": "none",
            "exec_mode": "fork",
            "autorestart": True,
            "min_uptime": int(START_SECONDS * 1000),
            "restart_delay": 0,
            "kill_timeout": 5000,
            "watch": False,
            "cwd": str(directory),
        }
        text = json.dumps({"apps": [{**common, **a} for a in apps]}, indent=1)
        (directory / "ecosystem.config.js").write_text(f"module.exports = {text};\n")

    def write_stamp_config(self, directory: Path, stamp: Path) -> None:
        self._write(directory, [{"name": "stamp", "script": SH, "args": ["-c", stamp_script(stamp)]}])

    def write_hundred_config(self, directory: Path, n: int = N_PROGRAMS) -> None:
        apps = [{"name": f"w{i}", "script": SLEEP, "args": ["100000"]} for i in range(n)]
        self._write(directory, apps)

    def launch_argv(self, directory: Path) -> list[str]:
        return [str(self.exe), "start", str(directory / "ecosystem.config.js")]

    def pidfile(self, directory: Path) -> Path:
        return self.home(directory) / "pm2.pid"

    def status_argv(self, directory: Path) -> list[str]:
        return [str(self.exe), "jlist"]

    def stop(self, directory: Path) -> None:
        if self.home(directory).exists():
            run([str(self.exe), "kill"], env=self.env(directory), timeout=60)


# --------------------------------------------------------------------------------------------
# Measurements


class Session:
    """Owns every deployment and temp dir of the run; stops them all at the end."""

    def __init__(self) -> None:
        WORK.mkdir(parents=True, exist_ok=True)
        base = WORK
        # unix socket paths are limited to 107 bytes; fall back to /tmp in a deep checkout
        if len(str(WORK)) > 50:
            base = Path(tempfile.gettempdir())
        self.root = Path(tempfile.mkdtemp(prefix="stoker-bench-", dir=base))
        self.deployments: list[Deployment] = []
        self.count = 0

    def fresh_dir(self, label: str) -> Path:
        self.count += 1
        d = self.root / f"{self.count:02d}-{label}"
        d.mkdir()
        return d

    @contextmanager
    def deployment(self, tool: Tool, directory: Path) -> Iterator[Deployment]:
        dep = Deployment(tool, directory)
        self.deployments.append(dep)
        try:
            yield dep
        finally:
            dep.stop()

    def close(self, keep: bool) -> None:
        for dep in self.deployments:
            dep.stop()
        if keep:
            log(f"kept {self.root} for inspection")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


class StampReader:
    """Reads "<pid> <epoch seconds>" lines appended by the stamp program."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def poll(self) -> tuple[int, float] | None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return None
        end = data.rfind(b"\n")
        if end < 0:
            return None
        self.offset += end + 1
        pid, stamp = data[:end].splitlines()[-1].split()
        return int(pid), float(stamp)

    def wait(self, timeout: float) -> tuple[int, float] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.poll()
            if got is not None:
                return got
            time.sleep(0.001)
        return None


def launch(tool: Tool, dep: Deployment) -> None:
    with open(dep.dir / "launch.log", "w") as out:
        proc = subprocess.run(
            tool.launch_argv(dep.dir),
            env=tool.env(dep.dir),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            timeout=120,
        )
    if proc.returncode != 0:
        raise BenchError(f"{tool.name} launch exited {proc.returncode}: see {dep.dir}/launch.log")


def pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def measure_restart(session: Session, tool: Tool, reps: int) -> dict[str, Any]:
    d = session.fresh_dir(f"{tool.name}-restart")
    stamp = d / "stamp.txt"
    tool.write_stamp_config(d, stamp)
    reader = StampReader(stamp)
    latencies: list[float] = []
    failures: list[str] = []
    with session.deployment(tool, d) as dep:
        launch(tool, dep)
        got = reader.wait(30.0)
        if got is None:
            raise BenchError(f"{tool.name}: the stamp program never started (see {d})")
        pid, started = got
        for i in range(reps):
            time.sleep(max(0.0, started + START_SECONDS + KILL_MARGIN - time.time()))
            killed_at = time.time()
            os.kill(pid, signal.SIGKILL)
            got = reader.wait(20.0)
            if got is None:
                failures.append(f"kill {i + 1}: no restart within 20 s")
                break
            new_pid, started = got
            if new_pid == pid:
                failures.append(f"kill {i + 1}: same pid {pid} stamped again")
            pid = new_pid
            latencies.append((started - killed_at) * 1000.0)
    if not latencies:
        raise BenchError(f"{tool.name}: no restart measured: {failures}")
    return {
        "restart_ms": latencies,
        "restart_median_ms": statistics.median(latencies),
        "restart_p90_ms": pct(latencies, 0.90),
        "restart_failures": failures,
    }


def wait_for_hundred(
    tool: Tool, dep: Deployment, timeout: float = 120.0, n: int = N_PROGRAMS, poll: float = 0.01
) -> dict[str, float]:
    """Launch `tool` in `dep` and time it until `n` `sleep 100000` programs are its children,
    looking every `poll` seconds (a look reads /proc for every child: bench/scale.py's 1,000
    programs look less often, so that looking does not take a CPU from the daemon)."""
    t0 = time.perf_counter()
    with open(dep.dir / "launch.log", "w") as out:
        launcher = subprocess.Popen(
            tool.launch_argv(dep.dir),
            env=tool.env(dep.dir),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    launcher_s: float | None = None
    try:
        count = 0
        while True:
            now = time.perf_counter()
            if launcher_s is None and launcher.poll() is not None:
                launcher_s = now - t0
                if launcher.returncode != 0:
                    raise BenchError(
                        f"{tool.name} launch exited {launcher.returncode}: see {dep.dir}/launch.log"
                    )
            pid = dep.daemon_pid()
            if pid is not None:
                count = count_sleep_children(pid)
                if count >= n:
                    break
            if now - t0 > timeout:
                raise BenchError(f"{tool.name}: only {count} programs after {timeout:.0f} s")
            time.sleep(poll)
        ready_s = time.perf_counter() - t0
        launcher.wait(timeout=max(120.0, timeout))
        if launcher_s is None:
            launcher_s = time.perf_counter() - t0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    return {"ready_ms": ready_s * 1000.0, "launcher_ms": launcher_s * 1000.0}


def time_command(argv: list[str], env: dict[str, str], n: int) -> tuple[list[float], int]:
    def once() -> tuple[float, int]:
        t = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Not wait(timeout=…) / run(timeout=…): those poll with sleeps of up to 50 ms, which
        # would round every sample up to the next 50 ms. A blocking waitpid, and a watchdog.
        watchdog = threading.Timer(60.0, proc.kill)
        watchdog.start()
        try:
            rc = proc.wait()
        finally:
            watchdog.cancel()
        return (time.perf_counter() - t) * 1000.0, rc

    once()  # warm the page cache; not counted
    runs = [once() for _ in range(n)]
    return [t for t, _ in runs], max(rc for _, rc in runs)


def measure_hundred(
    session: Session, tool: Tool, startup_reps: int, idle_s: float, status_n: int
) -> dict[str, Any]:
    ready: list[float] = []
    launcher: list[float] = []
    res: dict[str, Any] = {}
    for rep in range(startup_reps):
        d = session.fresh_dir(f"{tool.name}-100")
        tool.write_hundred_config(d)
        with session.deployment(tool, d) as dep:
            t = wait_for_hundred(tool, dep)
            ready.append(t["ready_ms"])
            launcher.append(t["launcher_ms"])
            if rep < startup_reps - 1:
                continue  # the deployment is stopped; start again from nothing
            pid = dep.daemon_pid()
            assert pid is not None
            time.sleep(SETTLE)
            proc = psutil.Process(pid)
            mem = proc.memory_full_info()
            res["daemon_pid"] = pid
            res["daemon_cmdline"] = " ".join(proc.cmdline())
            res["daemon_threads"] = proc.num_threads()
            res["daemon_fds"] = proc.num_fds()
            res["rss_mb"] = mem.rss / 2**20
            res["uss_mb"] = mem.uss / 2**20
            res["programs_at_rss"] = count_sleep_children(pid)
            others = []
            for k in children(pid):
                if not is_sleep_program(k):
                    with suppress(psutil.Error):
                        c = psutil.Process(k)
                        others.append(
                            {
                                "pid": k,
                                "cmdline": " ".join(c.cmdline()),
                                "rss_mb": c.memory_info().rss / 2**20,
                            }
                        )
            res["daemon_helper_children"] = others

            log(f"{tool.name}: idle for {idle_s:.0f} s")
            ticks0, cs0, t0 = cpu_ticks(pid), context_switches(pid), time.monotonic()
            time.sleep(idle_s)
            ticks1, cs1, t1 = cpu_ticks(pid), context_switches(pid), time.monotonic()
            res["idle_seconds"] = t1 - t0
            res["idle_ticks"] = ticks1 - ticks0
            res["idle_cpu_ms"] = (ticks1 - ticks0) * 1000.0 / CLK_TCK
            res["idle_context_switches"] = cs1 - cs0
            res["programs_after_idle"] = count_sleep_children(pid)

            log(f"{tool.name}: {status_n} × {shlex.join(tool.status_argv(d))}")
            times, rc = time_command(tool.status_argv(d), tool.env(d), status_n)
            res["status_ms"] = times
            res["status_median_ms"] = statistics.median(times)
            res["status_exit_code_max"] = rc
            res["rss_after_status_mb"] = psutil.Process(pid).memory_info().rss / 2**20
    res["ready_ms"] = ready
    res["ready_median_ms"] = statistics.median(ready)
    res["launcher_ms"] = launcher
    return res


def spawn_floor(session: Session, n: int) -> float:
    """Median time for sh to record its stamp when spawned directly: the floor for metric 1."""
    d = session.fresh_dir("floor")
    stamp = d / "stamp.txt"
    reader = StampReader(stamp)
    script = stamp_script(stamp).rsplit(";", 1)[0]  # without `exec sleep`
    out = []
    for _ in range(n):
        t = time.time()
        p = subprocess.Popen([SH, "-c", script], env=base_env())
        got = reader.wait(10.0)
        p.wait()
        if got is not None:
            out.append((got[1] - t) * 1000.0)
    return statistics.median(out) if out else float("nan")


# --------------------------------------------------------------------------------------------
# Report


TARGETS: dict[str, tuple[float, str]] = {
    "restart_median_ms": (5.0, "≤ 5 ms"),
    "status_median_ms": (60.0, "≤ 60 ms"),
    "rss_mb": (32.0, "≤ 32 MB"),
    "idle_ticks": (0.0, "0 ticks"),
}

ROWS: list[tuple[str, str, str]] = [
    ("restart_median_ms", "crash→restart latency, median", "{:.1f} ms"),
    ("restart_p90_ms", "crash→restart latency, p90", "{:.1f} ms"),
    ("ready_median_ms", f"time until {N_PROGRAMS} programs are running", "{:.0f} ms"),
    ("rss_mb", f"daemon RSS with {N_PROGRAMS} programs", "{:.1f} MB"),
    ("idle_ticks", "idle daemon CPU over {idle} s (ticks)", "{:.0f} ticks"),
    ("idle_cpu_ms", "idle daemon CPU over {idle} s (CPU time)", "{:.0f} ms"),
    ("status_median_ms", f"`status` latency with {N_PROGRAMS} programs, median", "{:.0f} ms"),
    # context, not targets
    ("idle_context_switches", "(info) daemon context switches while idle", "{:.0f}"),
    ("rss_after_status_mb", "(info) daemon RSS after the status runs", "{:.1f} MB"),
    ("uss_mb", f"(info) daemon USS with {N_PROGRAMS} programs", "{:.1f} MB"),
]


def cell(tool_res: dict[str, Any] | None, key: str, fmt: str) -> str:
    if tool_res is None:
        return "not available"
    if "error" in tool_res and key not in tool_res:
        return "interrupted" if tool_res["error"] == "interrupted" else "failed"
    v = tool_res.get(key)
    return "—" if v is None else fmt.format(v)


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> str:
    if not a or not b or a.get(key) is None or b.get(key) is None:
        return "—"
    if b[key] == 0:
        return "∞" if a[key] > 0 else "1.0×"
    return f"{a[key] / b[key]:.1f}×"


def target_cell(st: dict[str, Any] | None, key: str) -> str:
    if key not in TARGETS:
        return ""
    limit, text = TARGETS[key]
    if not st or st.get(key) is None:
        return text
    v = st[key]
    if v <= limit:
        return f"{text}: met"
    if limit == 0:
        return f"{text}: missed ({v:.0f})"
    return f"{text}: missed ({v / limit:.1f}×)"


def table(results: dict[str, dict[str, Any] | None], idle: float) -> str:
    st = results.get("stoker")
    sd = results.get("supervisord")
    pm = results.get("pm2")
    head = [
        "metric",
        "stoker",
        "stoker target",
        "supervisord",
        "pm2",
        "supervisord/stoker",
        "pm2/stoker",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, fmt in ROWS:
        row = [
            label.format(idle=f"{idle:.0f}"),
            cell(st, key, fmt) if "stoker" in results else "not run",
            target_cell(st, key),
            cell(sd, key, fmt) if "supervisord" in results else "not run",
            cell(pm, key, fmt) if "pm2" in results else "not run",
            ratio(sd, st, key),
            ratio(pm, st, key),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def parse_args(
    doc: str,
    tools: Sequence[str],
    quick_help: str,
    keep_help: str,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[Any, list[str]]:
    """The options every bench takes (--quick, --only, --keep), and those `extra` adds; also
    turns SIGTERM into KeyboardInterrupt, so a stopped bench cleans up like an interrupted one."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--only", default=",".join(tools), help="comma-separated: " + ",".join(tools))
    ap.add_argument("--keep", action="store_true", help=keep_help)
    if extra is not None:
        extra(ap)
    args = ap.parse_args()
    only = [t.strip() for t in args.only.split(",") if t.strip()]
    bad = [t for t in only if t not in tools]
    if bad:
        ap.error(f"--only: unknown {bad}; choose from {', '.join(tools)}")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return args, only


def write_results(path: Path, meta: dict[str, Any], results: dict[str, Any], report: str) -> None:
    """The end of a jobs or schedules run: what could not run or failed, the JSON file, and a
    note when the machine was busy as the run began."""
    for name, why in meta["unavailable"].items():
        print(f"{name}: not available ({why})")
    for name, r in results.items():
        if r and r.get("error"):
            print(f"{name}: failed: {r['error']}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": results, "table": report}, indent=2) + "\n")
    load = meta["machine"]["loadavg_at_start"][0]
    if load > 0.5:
        print(f"Note: the 1-minute load average was {load:.2f} as the run began: other work shared the CPUs.")
    print(f"\n(JSON: {path.relative_to(ROOT)}; {meta['seconds']:.0f} s)")


def end_of_run(
    session: Session, keep: bool, meta: dict[str, Any], stop: Callable[[], None] = lambda: None
) -> None:
    """Stop what the run started (`stop`, then the session's daemons), sweep, and say whether
    anything is left; SIGINT is held off meanwhile so a second Ctrl-C cannot cut it short."""
    previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop()
    session.close(keep=keep)
    meta["leftovers"]["end"] = sweep("the run")
    still = marked_processes()
    if still:
        log(f"STILL RUNNING (could not end): {[p.pid for p in still]}")
    else:
        log("verified: nothing this run started is still running")
    signal.signal(signal.SIGINT, previous_sigint)


def main() -> int:
    args, only = parse_args(
        __doc__ or "", TOOLS, "fewer repetitions, 10 s idle window", "keep the temp dirs (configs, logs)"
    )

    restart_reps = 5 if args.quick else 20
    status_n = 5 if args.quick else 20
    startup_reps = 1 if args.quick else 3
    idle_s = 10.0 if args.quick else 30.0

    factories: dict[str, Callable[[], Tool]] = {
        "stoker": Stoker,
        "supervisord": Supervisord,
        "pm2": Pm2,
    }
    results: dict[str, dict[str, Any] | None] = {}
    meta: dict[str, Any] = {
        "run_id": RUN_ID,
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "clk_tck": CLK_TCK,
        },
        "params": {
            "programs": N_PROGRAMS,
            "restart_reps": restart_reps,
            "status_runs": status_n,
            "startup_reps": startup_reps,
            "idle_seconds": idle_s,
            "start_seconds": START_SECONDS,
            "kill_after_seconds": START_SECONDS + KILL_MARGIN,
            "settle_seconds": SETTLE,
            "pycache_prefix": str(PYCACHE),
            "environment_had_PYTHONDONTWRITEBYTECODE": "PYTHONDONTWRITEBYTECODE" in os.environ,
        },
        "versions": {},
        "unavailable": {},
        "leftovers": {},
    }
    session = Session()
    failed = False
    try:
        meta["spawn_floor_ms"] = spawn_floor(session, 10 if args.quick else 30)
        log(f"spawn floor (sh + date, spawned directly): {meta['spawn_floor_ms']:.2f} ms")
        for name in only:
            tool = factories[name]()
            try:
                meta["versions"][name] = tool.prepare()
            except Unavailable as e:
                log(f"{name}: not available: {e}")
                meta["unavailable"][name] = str(e)
                results[name] = None
                continue
            log(f"{name} {meta['versions'][name]}: restart latency, {restart_reps} kills")
            res: dict[str, Any] = {}
            results[name] = res
            try:
                res.update(measure_restart(session, tool, restart_reps))
                log(
                    f"{name}: restart median {res['restart_median_ms']:.1f} ms,"
                    f" p90 {res['restart_p90_ms']:.1f} ms"
                )
                meta["leftovers"][f"{name} restart"] = sweep(f"{name} restart")
                log(f"{name}: {N_PROGRAMS} programs, {startup_reps} start(s)")
                res.update(measure_hundred(session, tool, startup_reps, idle_s, status_n))
                log(
                    f"{name}: ready {res['ready_median_ms']:.0f} ms, rss {res['rss_mb']:.1f} MB,"
                    f" idle {res['idle_ticks']} ticks, status {res['status_median_ms']:.0f} ms"
                )
            except (BenchError, subprocess.TimeoutExpired, OSError, psutil.Error) as e:
                failed = True
                log(f"{name}: measurement failed: {e}")
                res["error"] = str(e)
            finally:
                meta["leftovers"][f"{name} 100"] = sweep(f"{name} 100 programs")
    except KeyboardInterrupt:
        failed = True
        log("interrupted; stopping everything")
        for r in results.values():
            if r is not None and "ready_median_ms" not in r:
                r.setdefault("error", "interrupted")
    finally:
        end_of_run(session, args.keep or failed, meta)

    report = table(results, idle_s)
    print(report)
    floor = meta.get("spawn_floor_ms")
    if floor is not None:
        print(f"\nRestart latency floor (sh + date spawned directly by Python): {floor:.2f} ms.")
    for name, why in meta["unavailable"].items():
        print(f"{name}: not available ({why})")
    for name, r in results.items():
        if r and r.get("error"):
            print(f"{name}: failed: {r['error']}")
        if r and r.get("restart_failures"):
            print(f"{name}: restart anomalies: {r['restart_failures']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "results": results, "table": report}, indent=2) + "\n")
    print(f"\n(JSON: {RESULTS.relative_to(ROOT)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
