#!/usr/bin/env python3
"""`supervisorctl status` with 100 programs: against stoker's XML-RPC API and against a real
supervisord, in the same run, on the same machine, with the same supervisorctl.

Usage: .venv/bin/python bench/supervisorctl.py [--runs 20] [--calls 200] [--keep]

Two figures, each a median, measured in turns (stoker, supervisord, stoker, …) so that noise on
the shared machine falls on both alike:
- the whole command, interpreter start included, output discarded: what a deploy script waits;
- one getAllProcessInfo call through supervisorctl's own transport (the unix socket), in this
  process: the daemon's share of it.
Needs the dev extras (the `supervisor` package: supervisord and supervisorctl). See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from supervisor.xmlrpc import SupervisorTransport

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYCACHE = BENCH / ".work" / "pycache"
N_PROGRAMS = 100
MARK = "STOKER_BENCH_SUPERVISORCTL"  # in the environment of all we launch: the final sweep finds it


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def env() -> dict[str, str]:
    out = {**os.environ, MARK: str(os.getpid())}
    out.pop("STOKER_CONFIG", None)
    out.pop("PYTHONDONTWRITEBYTECODE", None)  # (bytecode cached as an install has it: bench/run.py)
    out["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return out


def proxy(sock: Path) -> Any:
    transport = SupervisorTransport(None, None, f"unix://{sock}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def wait_running(sock: Path, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            infos = proxy(sock).getAllProcessInfo()
            if sum(info["statename"] == "RUNNING" for info in infos) == N_PROGRAMS:
                return
        except (OSError, xmlrpc.client.Error):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what}: the {N_PROGRAMS} programs are not all running after {timeout:g}s")


def start_stoker(root: Path) -> tuple[Path, Callable[[], None]]:
    folder = root / "stoker"
    folder.mkdir()
    programs = "".join(f'[programs.p{i:03d}]\ncommand = "sleep 100000"\n\n' for i in range(N_PROGRAMS))
    config = folder / "stoker.toml"
    config.write_text(programs)
    stoker = [sys.executable, "-m", "stoker", "-c", str(config)]
    subprocess.run([*stoker, "up", "-d"], check=True, env=env(), capture_output=True)

    def stop() -> None:
        subprocess.run([*stoker, "down"], env=env(), capture_output=True, timeout=120)

    return folder / ".stoker" / "stoker.sock", stop


def start_supervisord(root: Path) -> tuple[Path, Callable[[], None]]:
    folder = root / "supervisord"
    folder.mkdir()
    sock = folder / "supervisor.sock"
    programs = "".join(f"[program:p{i:03d}]\ncommand=sleep 100000\n\n" for i in range(N_PROGRAMS))
    config = folder / "supervisord.conf"
    config.write_text(
        f"[unix_http_server]\nfile={sock}\nchmod=0700\n\n"
        f"[supervisord]\nlogfile={folder / 'supervisord.log'}\npidfile={folder / 'supervisord.pid'}\n"
        f"childlogdir={folder}\nnodaemon=true\nuser={os.environ.get('USER', 'root')}\nminfds=1024\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"{programs}"
    )
    out = open(folder / "supervisord.out", "ab")  # noqa: SIM115 - handed to the child
    daemon = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(config)], stdout=out, stderr=out, env=env()
    )
    out.close()

    def stop() -> None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(120)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()

    return sock, stop


def ctl_conf(root: Path, name: str, sock: Path) -> Path:
    path = root / f"ctl-{name}.conf"
    path.write_text(f"[supervisorctl]\nserverurl = unix://{sock}\n")
    return path


def status_seconds(conf: Path) -> float:
    """Wall time of one `supervisorctl status`; its answer is checked, then discarded."""
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), "status"],
        capture_output=True,
        text=True,
        env=env(),
    )
    took = time.perf_counter() - began
    if result.returncode != 0 or result.stdout.count("RUNNING") != N_PROGRAMS:
        raise SystemExit(f"supervisorctl -c {conf} status failed:\n{result.stdout}{result.stderr}")
    return took


def rpc_seconds(sock: Path) -> float:
    supervisor = proxy(sock)  # (a fresh connection each time, as each supervisorctl has)
    began = time.perf_counter()
    infos = supervisor.getAllProcessInfo()
    took = time.perf_counter() - began
    if len(infos) != N_PROGRAMS:
        raise SystemExit(f"{sock}: {len(infos)} processes, not {N_PROGRAMS}")
    return took


def in_turns(measure: Callable[[Path], float], targets: dict[str, Path], runs: int) -> dict[str, list[float]]:
    for target in targets.values():  # one warm-up each, not counted
        measure(target)
    times: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(runs):
        for name, target in targets.items():
            times[name].append(measure(target))
    return times


def sweep() -> list[int]:
    """Kill whatever this run started and left behind (found by MARK); their pids."""
    left = []
    for process in psutil.process_iter(["pid"]):
        try:
            if process.environ().get(MARK) == str(os.getpid()) and process.pid != os.getpid():
                process.kill()
                left.append(process.pid)
        except psutil.Error:
            continue
    return left


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="supervisorctl status runs per daemon")
    parser.add_argument("--calls", type=int, default=200, help="getAllProcessInfo calls per daemon")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = parser.parse_args()
    PYCACHE.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="stoker-bench-ctl-"))
    stops: list[Callable[[], None]] = []
    try:
        log(f"starting stoker and supervisord with {N_PROGRAMS} programs each in {root}")
        stoker_sock, stop = start_stoker(root)
        stops.append(stop)
        supervisord_sock, stop = start_supervisord(root)
        stops.append(stop)
        wait_running(stoker_sock, "stoker")
        wait_running(supervisord_sock, "supervisord")
        confs = {
            "stoker": ctl_conf(root, "stoker", stoker_sock),
            "supervisord": ctl_conf(root, "supervisord", supervisord_sock),
        }
        log(f"supervisorctl status: {args.runs} runs each, in turns")
        status = in_turns(status_seconds, confs, args.runs)
        log(f"getAllProcessInfo: {args.calls} calls each, in turns")
        rpc = in_turns(rpc_seconds, {"stoker": stoker_sock, "supervisord": supervisord_sock}, args.calls)
    finally:
        for stop in reversed(stops):
            stop()
        if left := sweep():
            log(f"killed leftovers: {left}")
        if args.keep:
            log(f"kept {root}")
        else:
            subprocess.run(["rm", "-rf", str(root)], check=False)
    from supervisor.options import VERSION as supervisor_version

    from stoker import __version__ as stoker_version

    print(f"\nstoker {stoker_version}, supervisord {supervisor_version}, Python {sys.version.split()[0]}, "
          f"{N_PROGRAMS} programs, medians\n")  # fmt: skip
    print("| metric | stoker | supervisord | supervisord/stoker |")
    print("|---|---|---|---|")
    for label, figures in (
        (f"`supervisorctl status`, whole command ({args.runs} runs)", status),
        (f"getAllProcessInfo over the unix socket ({args.calls} calls)", rpc),
    ):
        ours, theirs = statistics.median(figures["stoker"]), statistics.median(figures["supervisord"])
        print(f"| {label} | {ours * 1000:.1f} ms | {theirs * 1000:.1f} ms | {theirs / ours:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
