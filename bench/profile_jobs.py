"""Where a job's time goes in stoker: CPU and context switches per job, by process and thread,
while a batch of jobs runs; optionally the daemon's instructions per job.

Usage: .venv/bin/python bench/profile_jobs.py [--task noop|true] [--jobs N] [--callgrind] [--json]

A diagnostic, not a target (the targets are in bench/jobs.py). It starts a daemon in a temp dir
on a config with a no-op `call` task (`noop`) and a `true` command task (`true`), concurrency 2,
enqueues N jobs while the queue is paused, resumes it, waits until every job has ended, and
reports per job: the CPU of each of the daemon's threads, of its pool workers and of the
commands they reaped (read from /proc), and how often each slept (voluntary context switches)
or was preempted (involuntary ones).

On a shared machine rates and CPU times swing 2-5x within minutes. With `--callgrind` the daemon
runs under valgrind's callgrind (50x slower: use a few thousand jobs), its counters zeroed as the
queue resumes and dumped once the last job has ended: the daemon's instructions per job while
jobs run (user space, all threads), which repeat to about 1% and so show what a change costs or
saves. Needs valgrind (`apt-get install -y valgrind`).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from stoker.client import Client, NotRunning  # noqa: E402

CONFIG = """
[daemon]
state_dir = ".stoker"

[tasks.noop]
call = "benchtasks:noop"

[tasks.true]
command = ["true"]

[queues.default]
concurrency = 2
"""
TASKS = "def noop(**params):\n    return None\n"
WORKERS = 2  # the queue's concurrency: one warm worker per slot
HZ = os.sysconf("SC_CLK_TCK")


def wait_until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Poll `check()` until it returns something truthy; give up at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"profile_jobs: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def stat_ticks(path: str) -> tuple[int, int, int, int]:
    """utime, stime, cutime, cstime of /proc/PID[/task/TID]/stat, in clock ticks."""
    fields = Path(path, "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12]), int(fields[13]), int(fields[14])


def machine_ticks() -> list[int]:
    """The first line of /proc/stat: the machine's user, nice, system, idle, iowait, irq,
    softirq and steal time, in clock ticks, summed over its CPUs."""
    return [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def machine_shares(before: list[int], after: list[int]) -> dict[str, float]:
    """How the machine's CPUs spent the time between two machine_ticks()."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    user, nice, system, idle, iowait, irq, softirq, steal = spent
    total = max(1, user + nice + system + idle + iowait + irq + softirq + steal)
    return {
        "user": (user + nice) / total,
        "system": (system + irq + softirq) / total,
        "idle": (idle + iowait) / total,
        "steal": steal / total,
    }


def switches(path: str) -> tuple[int, int]:
    """Voluntary and involuntary context switches of /proc/PID[/task/TID]."""
    voluntary = involuntary = 0
    for line in Path(path, "status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            voluntary = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches"):
            involuntary = int(line.split()[1])
    return voluntary, involuntary


def workers_of(pid: int) -> list[int]:
    """The daemon's children that are pool workers."""
    found = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        for child in Path(task).read_text().split():
            try:
                if b"stoker.jobs.worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
            except FileNotFoundError:
                pass
    return sorted(found)


def snapshot(daemon: int, workers: list[int]) -> dict[str, dict[str, Any]]:
    """For each daemon thread and each worker still alive: its ticks and context switches."""
    taken: dict[str, dict[str, Any]] = {}
    for task in glob.glob(f"/proc/{daemon}/task/*"):
        try:
            tid = int(os.path.basename(task))
            what = "event loop" if tid == daemon else "another thread (the store's, as a rule)"
            taken[f"daemon thread {tid}, {what}"] = {
                "ticks": stat_ticks(task),
                "switches": switches(task),
            }
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    for worker in workers:
        try:
            taken[f"worker {worker}"] = {
                "ticks": stat_ticks(f"/proc/{worker}"),
                "switches": switches(f"/proc/{worker}"),
            }
        except FileNotFoundError:  # recycled meanwhile (worker_max_jobs)
            pass
    return taken


def per_job(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], jobs: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for key, end in after.items():
        start = before.get(key)
        if start is None:
            continue
        ticks = [b - a for a, b in zip(start["ticks"], end["ticks"], strict=True)]
        sw = [b - a for a, b in zip(start["switches"], end["switches"], strict=True)]
        row = {
            "cpu_ms": (ticks[0] + ticks[1]) * 1000.0 / HZ / jobs,
            "user_ms": ticks[0] * 1000.0 / HZ / jobs,
            "system_ms": ticks[1] * 1000.0 / HZ / jobs,
            "voluntary": sw[0] / jobs,
            "involuntary": sw[1] / jobs,
        }
        if key.startswith("worker"):
            row["children_cpu_ms"] = (ticks[2] + ticks[3]) * 1000.0 / HZ / jobs
        if any(row.values()):
            rows[key] = row
    return rows


def run(task: str, jobs: int, callgrind: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="stoker-profile-") as tmp:
        root = Path(tmp)
        (root / "stoker.toml").write_text(CONFIG)
        (root / "benchtasks.py").write_text(TASKS)
        dump = root / "callgrind.out"
        argv = [sys.executable, "-m", "stoker", "-c", str(root / "stoker.toml"), "up"]
        if callgrind:
            argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}", *argv]
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        with open(root / "daemon.log", "wb") as log:
            daemon = subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            client = Client(socket_path=root / ".stoker" / "stoker.sock", timeout=600)

            def answers() -> bool:
                try:
                    client.queues()
                except NotRunning:
                    if daemon.poll() is not None:
                        log = (root / "daemon.log").read_text()[-2000:]
                        raise SystemExit(f"profile_jobs: the daemon exited:\n{log}") from None
                    return False
                return True

            wait_until("the daemon to answer", answers, 120 if callgrind else 30)
            client.pause("default")
            ids: list[int] = []
            for at in range(0, jobs, 1000):
                ids += client.enqueue_many(task, [{} for _ in range(min(1000, jobs - at))])

            def warm() -> list[int] | None:
                found = workers_of(daemon.pid)
                return found if len(found) >= WORKERS else None

            workers = wait_until("the warm workers", warm, 120 if callgrind else 30)
            if callgrind:
                subprocess.run(["callgrind_control", "-z", str(daemon.pid)], check=True, capture_output=True)
            before = snapshot(daemon.pid, workers)
            machine_before = machine_ticks()
            began = time.monotonic()
            client.resume("default")
            client.wait(ids[-1], timeout=jobs / 5 + 60)

            def idle() -> bool:
                queue = next(q for q in client.queues() if q.name == "default")
                return queue.queued == 0 and queue.running == 0

            wait_until("the last jobs to end", idle, 60)
            wall = time.monotonic() - began
            machine_after = machine_ticks()
            after = snapshot(daemon.pid, workers)
            if callgrind:
                subprocess.run(["callgrind_control", "-d", str(daemon.pid)], check=True, capture_output=True)
            failed = client.jobs(state="failed", queue="default", limit=1)
            if failed:
                raise SystemExit(f"profile_jobs: job {failed[0].id} failed: {failed[0].error}")
            result: dict[str, Any] = {
                "task": task,
                "jobs": jobs,
                "jobs_per_second": jobs / wall,
                "load_average": os.getloadavg()[0],
                "machine": machine_shares(machine_before, machine_after),
                "per_job": per_job(before, after, jobs),
            }
            if callgrind:
                result["daemon_instructions_per_job"] = _dumped_instructions(dump) / jobs
            return result
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(120 if callgrind else 30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def _dumped_instructions(dump: Path) -> float:
    """The instructions in the dump `callgrind_control -d` wrote (the first numbered part)."""
    parts = sorted(glob.glob(f"{dump}.*"))
    if not parts:
        raise SystemExit("profile_jobs: callgrind wrote no dump")
    for line in Path(parts[0]).read_text().splitlines():
        if line.startswith("summary:"):
            return float(line.split()[1])
    raise SystemExit(f"profile_jobs: no summary line in {parts[0]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("noop", "true"), default="noop")
    parser.add_argument("--jobs", type=int, default=None, help="default 10,000 (2,000 with --callgrind)")
    parser.add_argument("--callgrind", action="store_true", help="count the daemon's instructions")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    jobs = args.jobs or (2000 if args.callgrind else 10000)
    result = run(args.task, jobs, args.callgrind)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rate, load = result["jobs_per_second"], result["load_average"]
    print(f"{jobs} {args.task} jobs: {rate:.0f} jobs/s (load {load:.2f});")
    shares = ", ".join(f"{what} {share:.0%}" for what, share in result["machine"].items())
    print(f"the machine's CPUs meanwhile (all processes): {shares};")
    print("per job of the batch (a worker runs a share of them):")
    for key, row in result["per_job"].items():
        extra = f", its commands {row['children_cpu_ms']:.3f} ms" if "children_cpu_ms" in row else ""
        print(
            f"  {key}: {row['cpu_ms']:.3f} ms CPU (user {row['user_ms']:.3f}, system"
            f" {row['system_ms']:.3f}){extra}; slept {row['voluntary']:.2f},"
            f" preempted {row['involuntary']:.2f} times"
        )
    if "daemon_instructions_per_job" in result:
        print(
            f"  the daemon: {result['daemon_instructions_per_job']:,.0f} instructions per job while jobs ran"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
