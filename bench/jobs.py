#!/usr/bin/env python3
"""Benchmark stoker's job queue against huey (SqliteHuey) and RQ (Redis), on this machine.

Usage: .venv/bin/python bench/jobs.py [--quick] [--only stoker,huey,rq] [--keep]

Measures, for each queue: throughput of no-op Python jobs with 2 workers, throughput of
command jobs (`true`) against bare fork/exec from Python, the enqueue rate (one per call and in
batches), and the enqueue→start latency on an idle queue. Prints a Markdown table and writes
bench/.work/jobs-results.json. See bench/README.md for the method. huey, rq and redis-py are
installed into bench/.work/venv-anchors; RQ runs only where a `redis-server` is on the PATH.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import queue
import random
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import floors  # bench/floors.py: a durable commit's and an HTTP exchange's cost on their own
import run as common  # bench/run.py, the programs bench: its process helpers

BENCH = common.BENCH
ROOT = common.ROOT
WORK = common.WORK
RESULTS = WORK / "jobs-results.json"
ANCHORS_VENV = WORK / "venv-anchors"
ANCHOR_PACKAGES = ["huey", "rq", "redis"]

TOOLS = ("stoker", "huey", "rq")
WORKERS = 2  # stoker queue concurrency, huey -w, rq worker-pool -n
BATCH = 500  # enqueue_many batch size
PRODUCERS = 16  # producer processes enqueueing at once (a web server's workers)
GAP = (0.005, 0.025)  # idle time before each latency job (random, seeded; the same for every tool)
LATENCY_WARMUP = 3
ROUNDS = 5  # throughput rounds (--quick: 1); see main()
SEED = 20261123

SH = common.SH
TRUE = "true"  # looked up on the PATH by every tool and by the baseline alike
BenchError = common.BenchError
Unavailable = common.Unavailable
log = common.log


# --------------------------------------------------------------------------------------------
# The huey and RQ side. Written as benchanchor.py into each temp dir, imported by the huey
# consumer and the rq workers, and run by the bench (with bench/.work/venv-anchors/bin/python)
# for everything that needs the huey or rq client: huey and rq are not in stoker's venv.

ANCHOR_PY = r'''"""Written by bench/jobs.py: the huey / RQ tasks and the client side of the jobs bench."""

import json
import os
import random
import subprocess
import sys
import time


def noop(*args, **kwargs):
    return None


def run_true():
    subprocess.run(["true"], check=True)


def stamp(path):
    t = time.time()  # the first thing the job does
    with open(path, "a") as f:
        f.write(repr(t) + "\n")


huey = None
if os.environ.get("BENCH_HUEY_DB"):
    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=os.environ["BENCH_HUEY_DB"])
    HUEY_TASKS = {"noop": huey.task()(noop), "run_true": huey.task()(run_true), "stamp": huey.task()(stamp)}


def rq_queue():
    from redis import Redis
    from rq import Queue

    return Queue("default", connection=Redis.from_url(os.environ["BENCH_REDIS_URL"]))


def enqueuer(system, task):
    if system == "huey":
        return HUEY_TASKS[task]
    q = rq_queue()
    fn = {"noop": noop, "run_true": run_true, "stamp": stamp}[task]
    return lambda *args: q.enqueue(fn, *args)


def cmd_versions():
    from importlib.metadata import version

    return {name: version(name) for name in ("huey", "rq", "redis")}


def cmd_ping():
    from redis import Redis

    r = Redis.from_url(os.environ["BENCH_REDIS_URL"])
    deadline = time.monotonic() + 20
    while True:
        try:
            r.ping()
            return {"server": r.info("server").get("redis_version")}
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def cmd_flush():
    from redis import Redis

    Redis.from_url(os.environ["BENCH_REDIS_URL"]).flushall()
    return {}


def cmd_preload(system, task, n, begin, end):
    """stamp(begin), n x task, stamp(end): the stamps time the run from the jobs themselves."""
    stamp_ = enqueuer(system, "stamp")
    work = enqueuer(system, task)
    t = time.perf_counter()
    stamp_(begin)
    for _ in range(int(n)):
        work()
    stamp_(end)
    return {"seconds": time.perf_counter() - t}


def cmd_enqueue(system, n, batch):
    """Enqueue n no-op jobs, one call each (batch 0) or in batches; nothing consumes them."""
    n, batch = int(n), int(batch)
    if batch and system == "rq":
        q = rq_queue()
        t = time.perf_counter()
        for i in range(0, n, batch):
            q.enqueue_many([q.prepare_data(noop) for _ in range(min(batch, n - i))])
        seconds = time.perf_counter() - t
        return {"seconds": seconds, "pending": len(q)}
    if batch:
        return {"unsupported": "huey has no batch enqueue"}
    work = enqueuer(system, "noop")
    t = time.perf_counter()
    for _ in range(n):
        work()
    seconds = time.perf_counter() - t
    pending = huey.pending_count() if system == "huey" else len(rq_queue())
    return {"seconds": seconds, "pending": pending}


def _produce(system, n, barrier, done):
    work = enqueuer(system, "noop")  # made in the child: no connection shared across fork()
    barrier.wait()
    ok, errors, first = 0, 0, None
    for _ in range(n):
        try:
            work()
            ok += 1
        except Exception as e:  # huey's "database is locked" under 16 writers: counted, not hidden
            errors += 1
            first = first or f"{type(e).__name__}: {e}"
    done.put((time.perf_counter(), ok, errors, first))


def collect(children, done):
    """The producers' reports; a producer that died without one ends the wait (never hangs)."""
    import queue

    reports = []
    while len(reports) < len(children):
        try:
            reports.append(done.get(timeout=1))
        except queue.Empty:
            if all(child.exitcode is not None for child in children):
                break
    for child in children:
        child.join()
    return reports


def cmd_producers(system, procs, n):
    """n no-op jobs enqueued one per call by `procs` processes at once (n / procs each)."""
    import multiprocessing

    procs, n = int(procs), int(n)
    ctx = multiprocessing.get_context("fork")
    barrier, done = ctx.Barrier(procs + 1), ctx.Queue()
    children = [ctx.Process(target=_produce, args=(system, n // procs, barrier, done)) for _ in range(procs)]
    for child in children:
        child.start()
    barrier.wait()
    t = time.perf_counter()
    reports = collect(children, done)
    if len(reports) < procs:
        raise SystemExit(f"{system}: producers exited {[child.exitcode for child in children]}")
    errors = sum(r[2] for r in reports)
    pending = huey.pending_count() if system == "huey" else len(rq_queue())
    return {
        "seconds": max(r[0] for r in reports) - t, "pending": pending, "jobs": sum(r[1] for r in reports),
        "errors": errors, "first_error": next((r[3] for r in reports if r[3]), None),
    }


def cmd_latency(system, n, warm, path, seed, gap_min, gap_max):
    """One job at a time on an idle queue: enqueue call -> the job's own first timestamp."""
    n, warm = int(n), int(warm)
    rng = random.Random(int(seed))
    enqueue = enqueuer(system, "stamp")
    open(path, "a").close()
    offset = os.path.getsize(path)
    client_ms, jobs = [], []
    for i in range(warm + n):
        time.sleep(rng.uniform(float(gap_min), float(gap_max)))
        t0 = time.time()
        job = enqueue(path)
        deadline = time.monotonic() + 30
        while True:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            if data.endswith(b"\n"):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{system}: job {i} did not start within 30 s")
            time.sleep(0.0005)
        offset += len(data)
        started = float(data.split()[-1])
        if system == "rq":  # wait until the worker has recorded the end, as for stoker
            while job.get_status(refresh=True) != "finished":
                if time.monotonic() > deadline:
                    raise SystemExit(f"rq: job {i} did not finish within 30 s")
                time.sleep(0.0005)
        if i >= warm:
            client_ms.append((started - t0) * 1000.0)
            jobs.append(job)
    out = {"client_ms": client_ms}
    if system == "rq":  # RQ's own record: enqueued_at (client) -> started_at (worker)
        server = []
        for job in jobs:
            job.refresh()
            server.append((job.started_at - job.enqueued_at).total_seconds() * 1000.0)
        out["server_ms"] = server
    return out


def cmd_pending(system):
    if system == "huey":
        return {"pending": huey.pending_count()}
    from rq.registry import FailedJobRegistry

    q = rq_queue()
    return {"pending": len(q), "failed": len(FailedJobRegistry(queue=q))}


def main(argv):
    commands = {
        "versions": cmd_versions, "ping": cmd_ping, "flush": cmd_flush, "preload": cmd_preload,
        "enqueue": cmd_enqueue, "latency": cmd_latency, "pending": cmd_pending,
        "producers": cmd_producers,
    }
    print(json.dumps(commands[argv[0]](*argv[1:])))
    return 0
'''


# The stoker side of the call tasks: benchtasks.py beside stoker.toml (on the pool's import path).
BENCHTASKS_PY = """import time


def noop(**params):
    return None


def stamp(path):
    t = time.time()  # the first thing the job does
    with open(path, "a") as f:
        f.write(repr(t) + "\\n")
"""


# --------------------------------------------------------------------------------------------
# Helpers


def iso_ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def read_stamps(path: Path) -> list[float]:
    try:
        return [float(x) for x in path.read_text().split()]
    except FileNotFoundError:
        return []


def wait_for_file_line(path: Path, timeout: float, what: str, alive: Callable[[], bool]) -> float:
    """The stamp in `path` once it appears (polled every 50 ms: the stamp holds the time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = read_stamps(path)
        if got:
            return got[0]
        if not alive():
            raise BenchError(f"{what}: the consumer exited before the last job ran")
        time.sleep(0.05)
    raise BenchError(f"{what}: not done after {timeout:.0f} s")


def toml_list(argv: list[str]) -> str:
    return "[" + ", ".join(common.toml_str(a) for a in argv) + "]"


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(samples), "p99": common.pct(samples, 0.99), "max": max(samples)}


class Procs:
    """Every huey consumer, rq worker pool and redis-server the run started (by pid)."""

    def __init__(self) -> None:
        self.live: list[tuple[subprocess.Popen[bytes], str, int]] = []

    def start(self, argv: list[str], *, cwd: Path, env: dict[str, str], logfile: Path, what: str,
              stop_signal: int = signal.SIGTERM) -> subprocess.Popen[bytes]:  # fmt: skip
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.live.append((proc, what, stop_signal))
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        for entry in list(self.live):
            if entry[0] is proc:
                self.live.remove(entry)
                _, what, sig = entry
                if proc.poll() is None:
                    with suppress(ProcessLookupError):
                        os.kill(proc.pid, sig)
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        log(f"{what} (pid {proc.pid}) ignored {signal.Signals(sig).name}; killing it")
                        with suppress(ProcessLookupError):
                            os.kill(proc.pid, signal.SIGKILL)
                        proc.wait(timeout=15)

    def stop_all(self) -> None:
        for proc, _, _ in reversed(list(self.live)):
            self.stop(proc)

    @contextmanager
    def running(self, argv: list[str], **kw: Any) -> Iterator[subprocess.Popen[bytes]]:
        proc = self.start(argv, **kw)
        try:
            yield proc
        finally:
            self.stop(proc)


# --------------------------------------------------------------------------------------------
# Baselines on this machine


def bare_fork_exec(n: int, threads: int) -> float:
    """Jobs per second of `subprocess.run(["true"])` from a Python loop, in `threads` threads."""
    for _ in range(10):
        subprocess.run([TRUE], check=True)
    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(k):
                subprocess.run([TRUE], check=True)
        except BaseException as e:
            errors.append(e)

    t = time.perf_counter()
    pool = [threading.Thread(target=work, args=(k,)) for k in per]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - t
    if errors:
        raise BenchError(f"bare fork/exec failed: {errors[0]}")
    return n / elapsed


def sh_date_floor(session: common.Session, n: int) -> float:
    """Median time from Popen to the stamp of `sh -c 'date +%s.%N >> F'` spawned directly."""
    d = session.fresh_dir("floor")
    stamp = d / "stamp.txt"
    argv = [SH, "-c", f"date +%s.%N >> {shlex.quote(str(stamp))}"]
    out = []
    for i in range(n + 2):
        stamp.unlink(missing_ok=True)
        t = time.time()
        subprocess.run(argv, env=common.base_env(), check=True)
        if i >= 2:
            out.append((read_stamps(stamp)[0] - t) * 1000.0)
    return statistics.median(out)


# --------------------------------------------------------------------------------------------
# stoker


def _stoker_producer(sock: Path, n: int, barrier: Any, done: Any) -> None:
    from stoker.client import Client

    client = Client(socket_path=sock, timeout=120.0)  # made in the child, as a web worker would
    barrier.wait()
    for _ in range(n):
        client.enqueue("noop_cmd")
    done.put(time.perf_counter())


def stoker_producers(sock: Path, procs: int, n: int) -> dict[str, float]:
    """n jobs enqueued one per call by `procs` processes at once (n / procs each)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier, done = ctx.Barrier(procs + 1), ctx.Queue()
    children = [
        ctx.Process(target=_stoker_producer, args=(sock, n // procs, barrier, done)) for _ in range(procs)
    ]
    for child in children:
        child.start()
    barrier.wait()
    t = time.perf_counter()
    ends: list[float] = []
    while len(ends) < procs:  # a producer that died without its report ends the wait
        try:
            ends.append(done.get(timeout=1))
        except queue.Empty:
            if all(child.exitcode is not None for child in children):
                break
    for child in children:
        child.join()
    if len(ends) < procs or any(child.exitcode for child in children):
        raise BenchError(f"stoker producers exited {[child.exitcode for child in children]}")
    return {"seconds": max(ends) - t, "jobs": n // procs * procs}


class StokerBench:
    name = "stoker"

    def __init__(self, session: common.Session, sizes: dict[str, int]) -> None:
        self.session = session
        self.sizes = sizes
        self.tool = common.Stoker()
        self.pid: int | None = None

    def prepare(self) -> str:
        return self.tool.prepare()

    def write(self, d: Path, tasks: str, concurrency: int = WORKERS) -> Path:
        path = d / "stoker.toml"
        path.write_text(
            f'[daemon]\nstate_dir = ".stoker"\n\n{tasks}\n[queues.default]\nconcurrency = {concurrency}\n'
        )
        return path

    def check(self, d: Path) -> subprocess.CompletedProcess[str]:
        return common.run([*self.tool.exe, "-c", str(d / "stoker.toml"), "check"], check=False)

    @contextmanager
    def daemon(self, d: Path) -> Iterator[Any]:
        from stoker.client import Client

        with self.session.deployment(self.tool, d) as dep:
            common.launch(self.tool, dep)
            self.pid = dep.daemon_pid()
            yield Client(socket_path=d / ".stoker" / "stoker.sock", timeout=120.0)

    def daemon_cpu(self) -> float:
        """CPU seconds of the daemon process itself (all its threads; not its children)."""
        if self.pid is None:
            return float("nan")
        t = psutil.Process(self.pid).cpu_times()
        return float(t.user + t.system)

    def throughput(self, d: Path, task: str, n: int) -> dict[str, Any]:
        """n jobs queued while the queue is paused, then resumed; timed by the daemon's records."""
        with self.daemon(d) as client:
            client.pause("default")
            ids: list[int] = []
            for i in range(0, n, 1000):
                ids += client.enqueue_many(task, [{} for _ in range(min(1000, n - i))])
            cpu0 = self.daemon_cpu()
            wall0 = time.time()
            client.resume("default")
            client.wait(ids[-1], timeout=n / 10 + 60)
            while True:  # the last id ended; the one beside it may still be running
                q = next(q for q in client.queues() if q.name == "default")
                if q.queued == 0 and q.running == 0:
                    break
                time.sleep(0.05)
            wall = time.time() - wall0
            cpu = self.daemon_cpu() - cpu0
            failed = client.jobs(state="failed", queue="default", limit=5)
            if failed:
                raise BenchError(f"stoker {task}: job {failed[0].id} failed: {failed[0].error}")
            first = [client.job(i) for i in ids[:8]]
            last = client.jobs(queue="default", limit=8)
            begin = min(iso_ts(j.started_at) for j in first)
            end = max(iso_ts(j.finished_at) for j in last)
        return {
            "rate": n / (end - begin),
            "seconds": end - begin,
            "wall_seconds": wall,
            "jobs": n,
            # the daemon's own CPU over the run (its event loop and store thread), per job and
            # as a share of one core: near 100% means the daemon, not the machine, sets the pace
            "daemon_cpu_ms_per_job": cpu * 1000.0 / n,
            "daemon_cpu_share": cpu / wall,
        }

    def latency(self, d: Path, task: str, stamp: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Jobs one at a time on an idle queue, each after a short random idle gap."""
        stamp.touch()
        rng = random.Random(SEED)
        daemon_ms: list[float] = []  # created_at -> started_at, the daemon's own record
        client_ms: list[float] = []  # just before the enqueue call -> the job's own timestamp
        post_ms: list[float] = []  # the enqueue call itself (connect, POST, commit, 201)
        spawn_ms: list[float] = []  # started_at (claim) -> the job's timestamp
        with self.daemon(d) as client:
            for i in range(LATENCY_WARMUP + self.sizes["latency"]):
                time.sleep(rng.uniform(*GAP))
                t0 = time.time()
                job = client.enqueue(task, params)
                t1 = time.time()
                done = client.wait(job.id, timeout=30)
                if done.state != "succeeded":
                    raise BenchError(f"stoker {task} job {job.id} {done.state}: {done.error}")
                stamps = read_stamps(stamp)
                if len(stamps) != i + 1:
                    raise BenchError(f"stoker {task} job {job.id}: {len(stamps) - i} stamps")
                if i >= LATENCY_WARMUP:
                    started = iso_ts(done.started_at)
                    client_ms.append((stamps[-1] - t0) * 1000.0)
                    daemon_ms.append((started - iso_ts(done.created_at)) * 1000.0)
                    post_ms.append((t1 - t0) * 1000.0)
                    spawn_ms.append((stamps[-1] - started) * 1000.0)
        return {
            "daemon_ms": daemon_ms,
            "client_ms": client_ms,
            "enqueue_call_ms": post_ms,
            "started_to_stamp_ms": spawn_ms,
            "p50": {
                "enqueue_call": statistics.median(post_ms),
                "created_to_started": statistics.median(daemon_ms),
                "started_to_stamp": statistics.median(spawn_ms),
                "client": statistics.median(client_ms),
            },
        }

    def throughputs(self, res: dict[str, Any]) -> dict[str, float]:
        """One round of the throughput measurements; their rates (details go into `res`)."""
        s = self.sizes
        rates: dict[str, float] = {}
        # 1. no-op Python jobs: a `call` task, where this stoker accepts one
        d = self.session.fresh_dir("stoker-noop")
        (d / "benchtasks.py").write_text(BENCHTASKS_PY)
        self.write(d, '[tasks.noop]\ncall = "benchtasks:noop"\n')
        checked = self.check(d)
        said = (checked.stderr + checked.stdout).strip()
        res["call_check"] = {"exit_code": checked.returncode, "output": said}
        if checked.returncode != 0:
            res["notes"]["noop_rate"] = "not available yet"
            log(f"stoker: no call tasks yet ({res['call_check']['output']})")
        else:
            log(f"stoker: {s['noop']} no-op call jobs, concurrency {WORKERS}")
            t = self.throughput(d, "noop", s["noop"])
            rates["noop_rate"] = t["rate"]
            res.setdefault("noop", []).append(t)
            log(
                f"stoker: no-op {t['rate']:.0f} jobs/s; daemon CPU {t['daemon_cpu_ms_per_job']:.2f} ms/job,"
                f" {t['daemon_cpu_share']:.0%} of a core"
            )

        # 2. command jobs
        for conc in (WORKERS, 4):
            d = self.session.fresh_dir(f"stoker-true-c{conc}")
            self.write(d, f"[tasks.true]\ncommand = {toml_list([TRUE])}\n", concurrency=conc)
            log(f"stoker: {s['command']} `true` jobs, concurrency {conc}")
            t = self.throughput(d, "true", s["command"])
            rates[f"true_c{conc}_rate"] = t["rate"]
            res.setdefault(f"true_c{conc}", []).append(t)
            log(
                f"stoker: `true` at concurrency {conc}: {t['rate']:.0f} jobs/s; daemon CPU"
                f" {t['daemon_cpu_ms_per_job']:.2f} ms/job, {t['daemon_cpu_share']:.0%} of a core"
            )
        return rates

    def measure(self, res: dict[str, Any]) -> None:
        """The measurements taken once: enqueue rates and latencies."""
        s = self.sizes
        # 3. enqueue rate (queue paused: nothing runs)
        d = self.session.fresh_dir("stoker-enqueue")
        relaxed = f'[tasks.noop_relaxed]\ncommand = {toml_list([TRUE])}\nqueue = "relaxed"\n'
        relaxed += '[queues.relaxed]\ndurability = "relaxed"\n'
        self.write(d, f"[tasks.noop_cmd]\ncommand = {toml_list([TRUE])}\n{relaxed}")
        if self.check(d).returncode != 0:  # a stoker from before durability
            self.write(d, f"[tasks.noop_cmd]\ncommand = {toml_list([TRUE])}\n")
            res["notes"]["enqueue_relaxed_rate"] = "not available yet"
        with self.daemon(d) as client:
            client.pause("default")
            client.enqueue("noop_cmd")  # warm-up
            n = s["enqueue"]
            # the commit floor on the same disk, just before (the disk's speed wanders)
            res["commit_floor_rate"] = floors.commit_floor(d, n)["rate"]
            t0 = time.perf_counter()
            for _ in range(n):
                client.enqueue("noop_cmd")
            res["enqueue_single_rate"] = n / (time.perf_counter() - t0)
            if "enqueue_relaxed_rate" not in res["notes"]:
                client.pause("relaxed")
                client.enqueue("noop_relaxed")  # warm-up
                t0 = time.perf_counter()
                for _ in range(n):
                    client.enqueue("noop_relaxed")
                res["enqueue_relaxed_rate"] = n / (time.perf_counter() - t0)
            got = stoker_producers(d / ".stoker" / "stoker.sock", PRODUCERS, s["producers"])
            res["enqueue_producers_rate"] = got["jobs"] / got["seconds"]
            n = s["batch"]
            t0 = time.perf_counter()
            for i in range(0, n, BATCH):
                client.enqueue_many("noop_cmd", [{} for _ in range(min(BATCH, n - i))])
            res["enqueue_batch_rate"] = n / (time.perf_counter() - t0)
            q = next(q for q in client.queues() if q.name == "default")
            want = 1 + s["enqueue"] + s["batch"] + got["jobs"]
            if q.queued != want:
                raise BenchError(f"stoker enqueue: {q.queued} queued, not {want}")
        log(
            f"stoker: enqueue {res['enqueue_single_rate']:.0f}/s single (commit floor"
            f" {res['commit_floor_rate']:.0f}/s), {res['enqueue_batch_rate']:.0f}/s in batches of {BATCH},"
            f" {res['enqueue_producers_rate']:.0f}/s from {PRODUCERS} processes,"
            f" relaxed {res.get('enqueue_relaxed_rate', float('nan')):.0f}/s single"
        )

        # 4. enqueue -> start latency, one job at a time: a command task, and a call task
        d = self.session.fresh_dir("stoker-latency")
        stamp = d / "stamp.txt"
        argv = [SH, "-c", f"date +%s.%N >> {shlex.quote(str(stamp))}"]
        self.write(d, f"[tasks.stamp]\ncommand = {toml_list(argv)}\n")
        lat = self.latency(d, "stamp", stamp, {})
        res["latency_command"] = lat
        for key, samples in (("lat_daemon", lat["daemon_ms"]), ("lat_client", lat["client_ms"])):
            sm = summary(samples)
            res[f"{key}_p50"], res[f"{key}_p99"] = sm["p50"], sm["p99"]
        log(
            f"stoker: latency created→started p50 {res['lat_daemon_p50']:.2f} ms"
            f" p99 {res['lat_daemon_p99']:.2f} ms; client→stamp p50 {res['lat_client_p50']:.2f} ms"
            f" (enqueue call {lat['p50']['enqueue_call']:.2f} ms,"
            f" started→stamp {lat['p50']['started_to_stamp']:.2f} ms)"
        )
        if "noop_rate" in res["notes"]:
            res["notes"]["lat_py_p50"] = res["notes"]["lat_py_p99"] = "not available yet"
        else:
            d = self.session.fresh_dir("stoker-latency-call")
            (d / "benchtasks.py").write_text(BENCHTASKS_PY)
            self.write(d, '[tasks.stamp]\ncall = "benchtasks:stamp"\n')
            stamp = d / "stamp.txt"
            lat = self.latency(d, "stamp", stamp, {"path": str(stamp)})
            res["latency_call"] = lat
            sm = summary(lat["client_ms"])
            res["lat_py_p50"], res["lat_py_p99"] = sm["p50"], sm["p99"]
            log(
                f"stoker: call task latency: client→first line p50 {sm['p50']:.2f} ms p99 {sm['p99']:.2f} ms;"
                f" created→started p50 {lat['p50']['created_to_started']:.2f} ms"
            )


# --------------------------------------------------------------------------------------------
# huey and RQ


def prepare_anchors() -> dict[str, str]:
    """Install huey, rq and redis-py into bench/.work/venv-anchors (once); their versions."""
    bin_ = ANCHORS_VENV / "bin"
    if not ((bin_ / "huey_consumer").exists() and (bin_ / "rq").exists()):
        python = shutil.which("python3") or sys.executable
        log(f"installing {' '.join(ANCHOR_PACKAGES)} into {ANCHORS_VENV}")
        try:
            if not (bin_ / "pip").exists():
                common.run([python, "-m", "venv", str(ANCHORS_VENV)], timeout=300)
            common.run([str(bin_ / "pip"), "install", "--quiet", *ANCHOR_PACKAGES], timeout=600)
        except (BenchError, OSError, subprocess.TimeoutExpired) as e:
            raise Unavailable(f"pip install {' '.join(ANCHOR_PACKAGES)} failed: {e}") from e
    d = Path(tempfile.mkdtemp(prefix="anchor-versions-", dir=WORK))
    try:
        (d / "benchanchor.py").write_text(ANCHOR_PY)
        out = common.run(anchor_argv("versions"), env=anchor_env(d))
        versions: dict[str, str] = json.loads(out.stdout)
    except (BenchError, OSError, ValueError) as e:
        raise Unavailable(f"the anchors do not import: {e}") from e
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return versions


def anchor_argv(*args: str | int | float | Path) -> list[str]:
    code = "import sys, benchanchor; sys.exit(benchanchor.main(sys.argv[1:]))"
    return [str(ANCHORS_VENV / "bin" / "python"), "-c", code, *map(str, args)]


def anchor_env(d: Path, **extra: str) -> dict[str, str]:
    return common.base_env(PYTHONPATH=str(d), **extra)


class AnchorBench:
    """huey or RQ: the same four measurements, through benchanchor.py."""

    name = ""

    def __init__(self, session: common.Session, procs: Procs, sizes: dict[str, int]) -> None:
        self.session = session
        self.procs = procs
        self.sizes = sizes
        self.dir: Path | None = None  # the current temp dir

    def fresh(self, label: str) -> Path:
        d = self.session.fresh_dir(f"{self.name}-{label}")
        (d / "benchanchor.py").write_text(ANCHOR_PY)
        self.dir = d
        return d

    def env(self, d: Path) -> dict[str, str]:
        raise NotImplementedError

    def consumer_argv(self, d: Path) -> list[str]:
        raise NotImplementedError

    def reset(self, d: Path) -> None:
        """An empty queue before each measurement."""

    def driver(self, d: Path, *args: str | int | float | Path, timeout: float = 600) -> dict[str, Any]:
        out = common.run(anchor_argv(*args), env=self.env(d), timeout=timeout, check=False)
        if out.returncode != 0:
            raise BenchError(f"{self.name} {args[0]} exited {out.returncode}: {out.stderr.strip()[-2000:]}")
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    @contextmanager
    def consumer(self, d: Path) -> Iterator[subprocess.Popen[bytes]]:
        with self.procs.running(
            self.consumer_argv(d), cwd=d, env=self.env(d), logfile=d / "consumer.log",
            what=f"{self.name} consumer", stop_signal=self.stop_signal,
        ) as proc:  # fmt: skip
            yield proc

    stop_signal = signal.SIGTERM

    def throughput(self, label: str, task: str, n: int) -> dict[str, Any]:
        d = self.fresh(label)
        self.reset(d)
        begin, end = d / "begin.txt", d / "end.txt"
        pre = self.driver(d, "preload", self.name, task, n, begin, end)
        wall0 = time.time()
        with self.consumer(d) as proc:
            t_end = wait_for_file_line(
                end, n / 10 + 60, f"{self.name} {task}", lambda: proc.poll() is None
            )  # fmt: skip
            wall = time.time() - wall0
            time.sleep(0.2)  # the other worker's last job
            pending = self.driver(d, "pending", self.name)
        t_begin = read_stamps(begin)[0]
        text = (d / "consumer.log").read_text(errors="replace")
        # huey's scheduler thread logs a traceback when it finds the database locked, and tries
        # again at its next tick: no task is lost by it; any other traceback is a failure
        retried = text.count("ERROR:huey.consumer.Scheduler")
        errors = text.count("Traceback") - retried
        if pending.get("pending") or pending.get("failed") or errors:
            raise BenchError(f"{self.name} {task}: left {pending}, {errors} tracebacks (see {d})")
        return {
            "rate": n / (t_end - t_begin),
            "seconds": t_end - t_begin,
            "wall_seconds_with_startup": wall,
            "preload_seconds": pre["seconds"],
            "jobs": n,
            "scheduler_errors_retried": retried,
        }

    def throughputs(self, res: dict[str, Any]) -> dict[str, float]:
        s = self.sizes
        log(f"{self.name}: {s['noop']} no-op jobs, {WORKERS} workers")
        t = self.throughput("noop", "noop", s["noop"])
        res.setdefault("noop", []).append(t)
        log(f"{self.name}: no-op {t['rate']:.0f} jobs/s")
        noop = t["rate"]

        log(f"{self.name}: {s['command']} subprocess.run(['true']) jobs, {WORKERS} workers")
        t = self.throughput("true", "run_true", s["command"])
        res.setdefault("true_c2", []).append(t)
        log(f"{self.name}: `true` {t['rate']:.0f} jobs/s")
        return {"noop_rate": noop, "true_c2_rate": t["rate"]}

    def measure(self, res: dict[str, Any]) -> None:
        s = self.sizes
        d = self.fresh("enqueue")
        self.reset(d)
        self.driver(d, "enqueue", self.name, 1, 0)  # warm-up (creates the tables / connection)
        got = self.driver(d, "enqueue", self.name, s["enqueue"], 0)
        res["enqueue_single_rate"] = s["enqueue"] / got["seconds"]
        got = self.driver(d, "enqueue", self.name, s["batch"], BATCH)
        if "unsupported" in got:
            res["notes"]["enqueue_batch_rate"] = "no batch API"
            log(
                f"{self.name}: enqueue {res['enqueue_single_rate']:.0f}/s single; {got['unsupported']}"
            )  # fmt: skip
        else:
            res["enqueue_batch_rate"] = s["batch"] / got["seconds"]
            log(
                f"{self.name}: enqueue {res['enqueue_single_rate']:.0f}/s single,"
                f" {res['enqueue_batch_rate']:.0f}/s in batches of {BATCH}"
            )

        d = self.fresh("producers")
        self.reset(d)
        self.driver(d, "enqueue", self.name, 1, 0)  # warm-up (creates the tables / connection)
        got = self.driver(d, "producers", self.name, PRODUCERS, s["producers"])
        res["enqueue_producers_rate"] = got["jobs"] / got["seconds"]
        if got["errors"]:
            res["enqueue_producers_errors"] = {"count": got["errors"], "first": got["first_error"]}
            log(f"{self.name}: {got['errors']} of the producers' enqueues failed: {got['first_error']}")
        # huey has no weaker durability to offer and RQ no stronger: their one-per-call rate is
        # what stoker's relaxed queue is held against
        res["enqueue_relaxed_rate"] = res["enqueue_single_rate"]
        log(f"{self.name}: enqueue {res['enqueue_producers_rate']:.0f}/s from {PRODUCERS} processes")

        d = self.fresh("latency")
        self.reset(d)
        with self.consumer(d):
            got = self.driver(
                d, "latency", self.name, s["latency"], LATENCY_WARMUP, d / "stamp.txt", SEED, *GAP
            )  # fmt: skip
        res["latency_client_ms"] = got["client_ms"]
        sm = summary(got["client_ms"])
        res["lat_py_p50"], res["lat_py_p99"] = sm["p50"], sm["p99"]
        if "server_ms" in got:
            res["latency_daemon_ms"] = got["server_ms"]
            sm = summary(got["server_ms"])
            res["lat_daemon_p50"], res["lat_daemon_p99"] = sm["p50"], sm["p99"]
        else:
            res["notes"]["lat_daemon_p50"] = res["notes"]["lat_daemon_p99"] = "no such record"
        log(f"{self.name}: latency enqueue call→first line p50 {sm['p50']:.2f} ms")


class HueyBench(AnchorBench):
    name = "huey"
    stop_signal = signal.SIGINT  # huey's graceful shutdown

    def env(self, d: Path) -> dict[str, str]:
        return anchor_env(d, BENCH_HUEY_DB=str(d / "huey.db"))

    def consumer_argv(self, d: Path) -> list[str]:
        exe = str(ANCHORS_VENV / "bin" / "huey_consumer")
        return [exe, "benchanchor.huey", "-k", "process", "-w", str(WORKERS)]


class RqBench(AnchorBench):
    name = "rq"

    def __init__(self, session: common.Session, procs: Procs, sizes: dict[str, int], exe: str) -> None:
        super().__init__(session, procs, sizes)
        self.exe = exe
        self.redis_dir = session.fresh_dir("redis")
        self.redis: subprocess.Popen[bytes] | None = None
        self.url = f"unix://{self.redis_dir / 'redis.sock'}"

    def start_redis(self) -> str:
        d, exe = self.redis_dir, self.exe
        argv = [exe, "--port", "0", "--unixsocket", str(d / "redis.sock"), "--unixsocketperm", "700",
                "--dir", str(d), "--daemonize", "no"]  # fmt: skip
        self.redis = self.procs.start(
            argv, cwd=d, env=common.base_env(), logfile=d / "redis.log", what="redis-server"
        )  # fmt: skip
        (d / "benchanchor.py").write_text(ANCHOR_PY)
        got = self.driver(d, "ping", timeout=60)
        return str(got["server"])

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.procs.stop(self.redis)
            self.redis = None

    def measure(self, res: dict[str, Any]) -> None:
        if self.redis is None:  # (stopped after the rounds: the others' clean-up would end it)
            self.start_redis()
        super().measure(res)

    def env(self, d: Path) -> dict[str, str]:
        return anchor_env(d, BENCH_REDIS_URL=self.url)

    def reset(self, d: Path) -> None:
        self.driver(d, "flush")

    def consumer_argv(self, d: Path) -> list[str]:
        exe = str(ANCHORS_VENV / "bin" / "rq")
        return [exe, "worker-pool", "-n", str(WORKERS), "-u", self.url, "-P", str(d), "default"]


# --------------------------------------------------------------------------------------------
# Report

# key, label, format, "high" (more is better) or "low"
ROWS: list[tuple[str, str, str, str]] = [
    ("noop_rate", "{noop} no-op Python jobs, 2 workers", "{:.0f} jobs/s", "high"),
    ("true_c2_rate", "{command} command jobs (`true`), 2 at a time", "{:.0f} jobs/s", "high"),
    ("true_c4_rate", "(info) {command} command jobs (`true`), 4 at a time", "{:.0f} jobs/s", "high"),
    ("enqueue_single_rate", "enqueue rate, one job per call ({enqueue} jobs)", "{:.0f} jobs/s", "high"),
    (
        "enqueue_producers_rate",
        "enqueue rate, one job per call, 16 producer processes ({producers} jobs)",
        "{:.0f} jobs/s",
        "high",
    ),
    (
        "enqueue_relaxed_rate",
        "enqueue rate, one job per call, relaxed queue ({enqueue} jobs; anchors: as above)",
        "{:.0f} jobs/s",
        "high",
    ),
    ("enqueue_batch_rate", "enqueue rate, batches of 500 ({batch} jobs)", "{:.0f} jobs/s", "high"),
    ("lat_daemon_p50", "enqueue→start latency, queue's own record, p50", "{:.2f} ms", "low"),
    ("lat_daemon_p99", "enqueue→start latency, queue's own record, p99", "{:.2f} ms", "low"),
    ("lat_py_p50", "(info) enqueue call → Python job's first line, p50", "{:.2f} ms", "low"),
    ("lat_py_p99", "(info) enqueue call → Python job's first line, p99", "{:.2f} ms", "low"),
    ("lat_client_p50", "(info) enqueue call → `sh -c date` job's stamp, p50", "{:.2f} ms", "low"),
    ("lat_client_p99", "(info) enqueue call → `sh -c date` job's stamp, p99", "{:.2f} ms", "low"),
]


def cell(res: dict[str, Any] | None, key: str, fmt: str, ran: bool, why: str = "") -> str:
    if not ran:
        return "not run"
    if res is None:
        return f"not available ({why})" if why and len(why) <= 40 else "not available"
    if key in res.get("notes", {}):
        return str(res["notes"][key])
    if res.get(key) is None:
        if "error" in res:
            return "interrupted" if res["error"] == "interrupted" else "failed"
        return "—"
    return fmt.format(res[key])


def ratio(other: dict[str, Any] | None, st: dict[str, Any] | None, key: str, better: str) -> str:
    """Oriented so that above 1× means stoker does better (a throughput measured in rounds:
    the median of the rounds' ratios)."""
    if not other or not st or other.get(key) is None or st.get(key) is None:
        return "—"
    paired = per_round(st, key, [r.get(key, 0.0) for r in other.get("rounds", [])])
    if len(paired) > 1:
        return f"{statistics.median(paired):.2f}×"
    a, b = (st[key], other[key]) if better == "high" else (other[key], st[key])
    if b == 0:
        return "∞"
    return f"{a / b:.2f}×"


def per_round(st: dict[str, Any] | None, key: str, against: list[float]) -> list[float]:
    """stoker's figure over the anchor's, round by round (rounds both completed)."""
    mine = [r[key] for r in (st or {}).get("rounds", []) if key in r]
    return [a / b for a, b in zip(mine, against, strict=False) if b]


def spread(values: list[float], fmt: str) -> str:
    if len(values) < 2:
        return ""
    return f", median of {len(values)} rounds: {fmt.format(min(values))}–{fmt.format(max(values))}"


def target_cell(
    st: dict[str, Any] | None,
    key: str,
    meta: dict[str, Any],
    huey: dict[str, Any] | None = None,
    others_res: dict[str, dict[str, Any] | None] | None = None,
) -> str:
    if key == "noop_rate":  # the throughput target is relative: huey's rate in the same rounds
        text = "≥ 3× huey"
        if not st or st.get(key) is None or not huey or not huey.get(key):
            return text
        times = per_round(st, key, [r.get(key, 0.0) for r in huey.get("rounds", [])])
        if not times:
            return text
        median = statistics.median(times)
        return f"{text}: {'met' if median >= 3 else 'missed'} ({median:.2f}×{spread(times, '{:.2f}×')})"
    if key == "true_c2_rate":
        bare = meta.get("bare_fork_exec", {}).get("threads_2")
        if bare is None:
            return "≥ 80% of bare fork/exec ×2"
        text = f"≥ 80% of bare ×2 ({bare:.0f}/s)"
        if not st or st.get(key) is None:
            return text
        shares = per_round(st, key, meta["bare_fork_exec"].get("threads_2_rounds", [bare]))
        if not shares:
            return text
        median = statistics.median(shares)
        return f"{text}: {'met' if median >= 0.8 else 'missed'} ({median:.0%}{spread(shares, '{:.0%}')})"
    if key == "enqueue_single_rate":
        floor = (st or {}).get("commit_floor_rate")
        if floor is None or not st or st.get(key) is None:
            return "≥ 80% of the commit floor"
        share = st[key] / floor
        verdict = "met" if share >= 0.8 else "missed"
        # what any one-per-call HTTP enqueue could reach here, a daemon doing nothing else
        measured = meta.get("floors", {})
        ceiling = measured.get("call_ceiling_rate")
        bound = (
            "" if ceiling is None else f"; an HTTP call here: at most {ceiling / measured['commit_rate']:.0%}"
        )
        return f"≥ 80% of the commit floor ({floor:.0f}/s, just before): {verdict} ({share:.0%}{bound})"
    if key in ("enqueue_producers_rate", "enqueue_relaxed_rate"):
        anchors = ["huey", "rq"] if key == "enqueue_producers_rate" else ["huey"]
        text = "> " + " and ".join("RQ" if a == "rq" else a for a in anchors)
        if not st or st.get(key) is None:
            return text
        others = [(a, (others_res or {}).get(a, {}) or {}) for a in anchors]
        known = [(a, r[key]) for a, r in others if r.get(key)]
        if not known:
            return text
        above = all(st[key] > v for _, v in known) and len(known) == len(anchors)
        return f"{text}: {'met' if above else 'missed'}"
    limits = {"lat_daemon_p50": 2.0, "lat_daemon_p99": 10.0}
    if key not in limits:
        return ""
    text = f"≤ {limits[key]:.0f} ms"
    if not st or st.get(key) is None:
        return text
    v = st[key]
    return f"{text}: met" if v <= limits[key] else f"{text}: missed ({v / limits[key]:.2f}×)"


# key in meta["floors"], label, format: the floors under an enqueue (bench/floors.py)
FLOOR_ROWS: list[tuple[str, str, str]] = [
    ("commit_rate", "(floor) one durable SQLite commit of one row (WAL, FULL)", "{:.0f} commits/s"),
    ("commit_p50_ms", "(floor) the same commit, p50", "{:.2f} ms"),
    ("http_rate", "(floor) unix-socket HTTP round trip with no work, kept alive", "{:.0f} requests/s"),
    ("http_p50_ms", "(floor) the same round trip, p50", "{:.2f} ms"),
    ("call_ceiling_rate", "(floor) a commit, then a round trip: one job per call at best", "{:.0f} calls/s"),
]


def measure_floors(session: common.Session, n: int) -> dict[str, float]:
    d = session.fresh_dir("floors")
    commit = floors.commit_floor(d, n)
    http = floors.http_floor(d, n, common.base_env())
    # A sequential client's enqueue waits for both, one after the other: no daemon, however
    # little it does between them, answers one job per call faster (issue 20's bound).
    return {
        "commit_rate": commit["rate"],
        "commit_p50_ms": commit["p50_ms"],
        "http_rate": http["rate"],
        "http_p50_ms": http["p50_ms"],
        "call_ceiling_rate": 1 / (1 / commit["rate"] + 1 / http["rate"]),
    }


def table(results: dict[str, dict[str, Any] | None], meta: dict[str, Any]) -> str:
    st = results.get("stoker")
    why = meta["unavailable"]
    head = ["metric", "stoker", "stoker target", "huey", "rq", "huey/stoker", "rq/stoker"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, fmt, better in ROWS:
        row = [
            label.format(**{k: f"{v:,}" for k, v in meta["params"]["sizes"].items()}),
            cell(st, key, fmt, "stoker" in results, why.get("stoker", "")),
            target_cell(st, key, meta, results.get("huey"), results),
            cell(results.get("huey"), key, fmt, "huey" in results, why.get("huey", "")),
            cell(results.get("rq"), key, fmt, "rq" in results, why.get("rq", "")),
            ratio(results.get("huey"), st, key, better),
            ratio(results.get("rq"), st, key, better),
        ]
        lines.append("| " + " | ".join(row) + " |")
    for key, label, fmt in FLOOR_ROWS:
        value = meta.get("floors", {}).get(key)
        shown = "—" if value is None else fmt.format(value)
        lines.append("| " + " | ".join([label, shown, "", "—", "—", "—", "—"]) + " |")
    return "\n".join(lines)


def cpu_model() -> str:
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


# --------------------------------------------------------------------------------------------


def main() -> int:
    def enqueue_only(ap: Any) -> None:
        ap.add_argument(
            "--enqueue-only",
            action="store_true",
            help="only the floors, the enqueue rows and the latencies (no throughput rounds)",
        )

    args, only = common.parse_args(
        __doc__ or "",
        TOOLS,
        "fewer jobs (about 90 s instead of 5 minutes)",
        "keep the temp dirs (configs, logs, databases)",
        enqueue_only,
    )

    if args.quick:
        sizes = {
            "noop": 1000,
            "command": 500,
            "enqueue": 500,
            "batch": 2000,
            "latency": 50,
            "producers": 1600,
        }
        rounds = 1
    else:
        sizes = {
            "noop": 5000,
            "command": 2000,
            "enqueue": 2000,
            "batch": 5000,
            "latency": 200,
            "producers": 6400,
        }
        rounds = ROUNDS
    if args.enqueue_only:
        rounds = 0
    bare_n = sizes["command"]
    floor_n = 20 if args.quick else 50

    results: dict[str, dict[str, Any] | None] = {}
    meta: dict[str, Any] = {
        "run_id": common.RUN_ID,
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "loadavg_at_start": os.getloadavg(),
        },
        "params": {
            "sizes": sizes,
            "workers": WORKERS,
            "batch": BATCH,
            "latency_gap_seconds": GAP,
            "latency_warmup": LATENCY_WARMUP,
            "seed": SEED,
            "bare_fork_exec_jobs": bare_n,
            "rounds": rounds,
            "pycache_prefix": str(common.PYCACHE),
            "environment_had_PYTHONDONTWRITEBYTECODE": "PYTHONDONTWRITEBYTECODE" in os.environ,
        },
        "versions": {},
        "unavailable": {},
        "leftovers": {},
    }
    session = common.Session()
    procs = Procs()
    failed = False
    started = time.monotonic()
    try:
        meta["sh_date_floor_ms"] = sh_date_floor(session, floor_n)
        log(f"floor: sh -c 'date >> F' spawned directly: {meta['sh_date_floor_ms']:.2f} ms")
        meta["floors"] = measure_floors(session, 300 if args.quick else 1000)
        log(
            f"floor: durable commit {meta['floors']['commit_rate']:.0f}/s"
            f" (p50 {meta['floors']['commit_p50_ms']:.2f} ms), HTTP round trip"
            f" {meta['floors']['http_rate']:.0f}/s (p50 {meta['floors']['http_p50_ms']:.2f} ms)"
        )

        benches: dict[str, StokerBench | AnchorBench] = {}
        anchors: dict[str, str] | None = None
        for name in only:
            bench: StokerBench | AnchorBench | None = None
            try:
                if name == "stoker":
                    bench = StokerBench(session, sizes)
                    meta["versions"]["stoker"] = bench.prepare()
                else:
                    if anchors is None:
                        anchors = prepare_anchors()
                    if name == "huey":
                        bench = HueyBench(session, procs, sizes)
                        meta["versions"]["huey"] = anchors["huey"]
                    else:
                        exe = shutil.which("redis-server")
                        if exe is None:
                            raise Unavailable("no redis-server")
                        bench = RqBench(session, procs, sizes, exe)
                        meta["versions"]["rq"] = anchors["rq"]
                        meta["versions"]["redis-py"] = anchors["redis"]
                        meta["versions"]["redis-server"] = bench.start_redis()
            except (Unavailable, BenchError, OSError, subprocess.TimeoutExpired) as e:
                log(f"{name}: not available: {e}")
                meta["unavailable"][name] = str(e)
                results[name] = None
                if isinstance(bench, RqBench):
                    bench.stop_redis()
                continue
            benches[name] = bench
            results[name] = {"notes": {}, "rounds": []}

        def attempt(name: str, step: Callable[[dict[str, Any]], Any]) -> Any:
            """Run one of `name`'s measurements; a failure ends that tool's part of the run."""
            nonlocal failed
            res = results[name]
            assert res is not None
            try:
                return step(res)
            except (BenchError, subprocess.TimeoutExpired, OSError, psutil.Error, TimeoutError) as e:
                failed = True
                log(f"{name}: measurement failed: {e}")
                res["error"] = str(e)
            except Exception as e:  # the stoker client's ClientError, a driver's bad JSON…
                failed = True
                log(f"{name}: measurement failed: {type(e).__name__}: {e}")
                res["error"] = f"{type(e).__name__}: {e}"
            return None

        # Throughput: ROUNDS rounds, each taking every tool's figures and the baseline's one after
        # the other, so that a slow spell of this shared machine weighs on all of them alike;
        # each figure is the median over the rounds, each ratio the median of the rounds' ratios.
        bare_rounds: list[float] = []
        log(f"baseline: {bare_n} × subprocess.run(['true']), 1 thread")
        meta["bare_fork_exec"] = {"threads_1": bare_fork_exec(bare_n, 1)}
        for number in range(1, rounds + 1):
            log(f"round {number} of {rounds}")
            bare_rounds.append(bare_fork_exec(bare_n, 2))
            log(f"baseline: {bare_rounds[-1]:.0f}/s with 2 threads")
            for name, bench in benches.items():
                res = results[name]
                if res is None or "error" in res:
                    continue
                got = attempt(name, bench.throughputs)
                if got is not None:
                    res["rounds"].append(got)
        meta["bare_fork_exec"]["threads_2_rounds"] = bare_rounds
        if bare_rounds:
            meta["bare_fork_exec"]["threads_2"] = statistics.median(bare_rounds)
        for name in benches:
            res = results[name]
            if res is not None and res["rounds"]:
                for key in res["rounds"][0]:
                    res[key] = statistics.median(r[key] for r in res["rounds"] if key in r)
        if bare_rounds:
            log(
                f"baseline: {meta['bare_fork_exec']['threads_1']:.0f}/s sequential,"
                f" {meta['bare_fork_exec']['threads_2']:.0f}/s with 2 threads (median of {rounds})"
            )

        # Each tool's measurements end with a sweep of whatever the run started that is still
        # alive: redis-server waits for RQ's turn stopped, not swept away by stoker's (it was,
        # and RQ's enqueue and latency rows failed).
        for bench in benches.values():
            if isinstance(bench, RqBench):
                bench.stop_redis()
        for name, bench in benches.items():
            res = results[name]
            if res is not None and "error" not in res:
                attempt(name, bench.measure)
            if isinstance(bench, RqBench):
                bench.stop_redis()
            procs.stop_all()
            meta["leftovers"][name] = common.sweep(name)
    except KeyboardInterrupt:
        failed = True
        log("interrupted; stopping everything")
        for r in results.values():
            if r is not None and "lat_py_p50" not in r and "lat_client_p50" not in r:
                r.setdefault("error", "interrupted")
    finally:
        common.end_of_run(session, args.keep or failed, meta, procs.stop_all)
    meta["seconds"] = time.monotonic() - started
    meta["machine"]["loadavg_at_end"] = os.getloadavg()

    report = table(results, meta)
    print(report)
    bare = meta.get("bare_fork_exec")
    if bare and "threads_2" in bare:
        each = ", ".join(f"{x:.0f}" for x in bare.get("threads_2_rounds", []))
        print(
            f"\nBare fork/exec of `true` from Python (subprocess.run): {bare['threads_1']:.0f}/s"
            f" sequential, {bare['threads_2']:.0f}/s with 2 threads (rounds: {each})."
        )
    for name, r in results.items():
        if r and len(r.get("rounds", [])) > 1:
            for key in r["rounds"][0]:
                each = ", ".join(f"{x[key]:.0f}" for x in r["rounds"] if key in x)
                print(f"{name} {key} by round: {each}")
    for name, r in results.items():
        if r and r.get("enqueue_producers_errors"):
            why = r["enqueue_producers_errors"]
            print(
                f"{name}: {why['count']} of the 16 producers' enqueues failed (not counted): {why['first']}"
            )
    floor = meta.get("sh_date_floor_ms")
    if floor is not None:
        print(f"Floor of stoker's client-side latency (sh + date spawned directly): {floor:.2f} ms.")
    st = results.get("stoker")
    if st and st.get("call_check", {}).get("exit_code"):
        print(f"stoker no-op Python jobs: `stoker check` refuses call tasks: {st['call_check']['output']}")
    common.write_results(RESULTS, meta, results, report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
