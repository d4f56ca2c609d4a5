#!/usr/bin/env python3
"""Benchmark stoker's job queue on PostgreSQL, with 1 and 3 nodes, against procrastinate.

Usage: .venv/bin/python bench/cluster.py [--quick] [--only stoker,procrastinate] [--jobs N]
                                          [--rounds R] [--keep]

One PostgreSQL server for the whole run (tests/postgres.py's harness, with the server's
default durability: fsync = on, synchronous_commit = on), a fresh database for every
measurement. On it, side by side: N no-op Python jobs through stoker with 1 node and with 3
nodes (daemons), each with a queue of concurrency 2, and through procrastinate with 1 and 3
worker processes of concurrency 2. Prints a Markdown table of jobs/s and the ratio
stoker/procrastinate, and where each side spends its CPU per job; writes
bench/.work/cluster-results.json. See bench/README.md for the method. procrastinate is
installed into bench/.work/venv-procrastinate, never into stoker's venv.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))
import jobs as jobsbench  # bench/jobs.py: the Procs helper, cpu_model
import postgres as pg  # tests/postgres.py: the PostgreSQL server harness the tests use
import run as common  # bench/run.py: process helpers, the run marker, the end-of-run sweep

WORK = common.WORK
ROOT = common.ROOT
RESULTS = WORK / "cluster-results.json"
PROC_VENV = WORK / "venv-procrastinate"
PROC_PACKAGES = ["procrastinate", "psycopg[binary]"]  # the binary psycopg, as stoker's venv has

TOOLS = ("stoker", "procrastinate")
CONCURRENCY = 2  # per node: stoker's [queues.default] concurrency, procrastinate's worker --concurrency
NODES = (1, 3)
BATCH = 500  # enqueue batch size (stoker enqueue_many, procrastinate batch_defer)
TRUE = "true"
STATEMENTS_SHOWN = 6

BenchError = common.BenchError
Unavailable = common.Unavailable
log = common.log


# --------------------------------------------------------------------------------------------
# The procrastinate side: benchproc.py, written into each temp dir. The workers import its
# app and task; the bench runs its commands with bench/.work/venv-procrastinate/bin/python.

BENCHPROC_PY = r'''"""Written by bench/cluster.py: procrastinate's app, a no-op task, the bench's driver."""

import asyncio
import json
import os
import sys
import time

import procrastinate

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_PG_URL"]))


@app.task(name="noop", queue="default")
async def noop():
    return None


def cmd_versions():
    from importlib.metadata import version

    import psycopg

    return {"procrastinate": version("procrastinate"), "psycopg": version("psycopg"),
            "psycopg_impl": psycopg.pq.__impl__}


async def _schema():
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    return {}


async def _defer(n, batch):
    """n jobs in batches of `batch` (each one statement, so one transaction); the seconds it took."""
    async with app.open_async():
        t = time.perf_counter()
        done = 0
        while done < n:
            k = min(batch, n - done)
            ids = await noop.batch_defer_async(*({} for _ in range(k)))
            assert len(ids) == k
            done += k
        return {"seconds": time.perf_counter() - t}


def main(argv):
    if argv[0] == "versions":
        out = cmd_versions()
    elif argv[0] == "schema":
        out = asyncio.run(_schema())
    else:
        out = asyncio.run(_defer(int(argv[1]), int(argv[2])))
    print(json.dumps(out))
    return 0
'''

# stoker's no-op: its return value (stored as the job's result) says when it ran, which splits
# the job's span into before the function (start commit, dispatch to the pool) and after it
BENCHTASKS_PY = """import time


def noop(**params):
    return time.time()
"""


# --------------------------------------------------------------------------------------------
# PostgreSQL


@contextmanager
def postgres_server() -> Iterator[pg.Server]:
    """One server for the run, with PostgreSQL's default durability; stopped on the way out."""
    bindir = pg.binaries()
    if bindir is None:
        raise Unavailable("no PostgreSQL server binaries (apt-get install postgresql)")
    # pg_stat_statements: where each side's statements spend the server's time (both pay its
    # small cost alike)
    server = contextmanager(pg.run_server)
    settings = ["shared_preload_libraries=pg_stat_statements"]
    with server(bindir, durable=True, settings=settings, env=common.base_env()) as running:
        yield running


def server_version(server: pg.Server) -> str:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def database_name(url: str) -> str:
    return url.split("/", 3)[3].split("?", 1)[0]


class Watch:
    """The bench's one connection to a database under test: it polls the run's progress and
    reads PostgreSQL's statistics. Its backend is left out of the server's CPU figure."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.dbname = database_name(url)
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.backend = int(self.scalar("SELECT pg_backend_pid()"))

    def close(self) -> None:
        self.conn.close()

    def scalar(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        row = self.conn.execute(query, params).fetchone()
        return row[0] if row else None

    def rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(query, params).fetchall()

    def reset_statements(self) -> None:
        self.conn.execute("SELECT pg_stat_statements_reset()")

    def commits(self) -> int:
        return int(self.scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self.dbname,)))

    def statements(self) -> list[dict[str, Any]]:
        """This database's statements since the reset, the most time-consuming first (the
        bench's own polling left out)."""
        got = self.rows(
            "SELECT s.query, s.calls, s.total_exec_time, s.rows FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s ORDER BY s.total_exec_time DESC",
            (self.dbname,),
        )
        own = ("pg_stat_statements", "pg_stat_database", "pg_backend_pid", "BENCH-POLL")
        return [
            {"query": " ".join(q.split()), "calls": calls, "total_ms": total, "rows": rows}
            for q, calls, total, rows in got
            if not any(mark in q for mark in own)
        ]

    def wait_until(self, query: str, want: int, timeout: float, what: str, alive: Any) -> float:
        """Poll `query` (one integer) every 20 ms until it equals `want`; the wall time it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            if int(self.scalar(query)) == want:
                return time.monotonic() - t0
            problem = alive()
            if problem:
                raise BenchError(f"{what}: {problem}")
            if time.monotonic() > deadline:
                raise BenchError(f"{what}: not done after {timeout:.0f} s")
            time.sleep(0.02)


# --------------------------------------------------------------------------------------------
# CPU accounting through /proc (psutil)


class Cpu:
    """CPU seconds of process groups between two moments: processes alive at the end count
    their change since the start (or all they used, if they began later)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.begin = {name: self._sample(pids) for name, pids in groups.items()}

    @staticmethod
    def _sample(pids: list[int]) -> dict[int, float]:
        out = {}
        for pid in pids:
            with suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                out[pid] = float(t.user + t.system)
        return out

    def end(self, groups: dict[str, list[int]]) -> dict[str, float]:
        used = {}
        for name, pids in groups.items():
            now = self._sample(pids)
            before = self.begin.get(name, {})
            used[name] = sum(v - before.get(pid, 0.0) for pid, v in now.items())
        return used


def descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def reaped_children_cpu(pids: list[int]) -> float:
    """CPU of the children these processes have waited for (command jobs that came and went)."""
    total = 0.0
    for pid in pids:
        with suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += float(t.children_user + t.children_system)
    return total


def server_pids(server: pg.Server, exclude: int) -> list[int]:
    """The postmaster and every live process under it but the bench's own backend."""
    main = server.postmaster_pid()
    if main is None:
        return []
    return [main, *(p for p in descendants(main) if p != exclude)]


# --------------------------------------------------------------------------------------------
# One measurement, either side


def summarize(
    label: str, n: int, begin: float, end: float, wall: float, cpu: dict[str, float],
    commits: int, statements: list[dict[str, Any]], held: tuple[float, float], slots: int,
) -> dict[str, Any]:  # fmt: skip
    """One measurement's figures. `held`: the median and the sum of each job's own span (its
    start record to its end record); `slots`: the jobs that may run at once, all nodes together."""
    rate = n / (end - begin)
    per_job = {k: v * 1000.0 / n for k, v in cpu.items()}
    held_median, held_sum = held
    out = {
        "rate": rate,
        "seconds": end - begin,
        # how the slots spent the span: holding a job (its start record to its end record), or
        # empty (between a job's end record and the next start record: the claim's cost)
        "held_ms_median": held_median * 1000.0,
        "in_flight_mean": held_sum / (end - begin),
        "slot_empty_ms_per_job": (slots * (end - begin) - held_sum) * 1000.0 / n,
        "wall_seconds": wall,
        "jobs": n,
        "cpu_ms_per_job": per_job,
        "cpu_ms_per_job_total": sum(per_job.values()),
        # share of the measured span each group kept a CPU busy (2 cores: at most 200%)
        "cpu_share": {k: v / (end - begin) for k, v in cpu.items()},
        "commits_per_job": commits / n,
        "statements_per_job": sum(s["calls"] for s in statements) / n,
        "statements": statements[:20],
    }
    shares = ", ".join(f"{k} {v:.2f} ms ({out['cpu_share'][k]:.0%})" for k, v in per_job.items())
    log(
        f"{label}: {rate:.0f} jobs/s; CPU per job: {shares}; {commits / n:.2f} commits/job;"
        f" {out['in_flight_mean']:.2f} of {slots} slots busy on average"
    )
    return out


class StokerCluster:
    name = "stoker"

    def __init__(self, session: common.Session, server: pg.Server) -> None:
        self.session = session
        self.server = server
        self.tool = common.Stoker()

    def prepare(self) -> str:
        return self.tool.prepare()

    def write(self, d: Path, url: str, node: int) -> None:
        (d / "benchtasks.py").write_text(BENCHTASKS_PY)
        (d / "stoker.toml").write_text(
            "[daemon]\n"
            'state_dir = ".stoker"\n'
            f"store = {common.toml_str(url)}\n"
            f'node = "bench-{node}"\n\n'
            '[tasks.noop]\ncall = "benchtasks:noop"\n\n'
            f'[tasks.true]\ncommand = ["{TRUE}"]\n\n'
            f"[queues.default]\nconcurrency = {CONCURRENCY}\n"
        )

    def measure(self, nodes: int, task: str, n: int) -> dict[str, Any]:
        from stoker.client import Client

        label = f"stoker {task} × {n}, {nodes} node{'s' if nodes > 1 else ''}"
        url = pg.fresh_database(self.server)
        watch = Watch(url)
        with ExitStack() as stack:
            stack.callback(watch.close)
            clients, pids = [], []
            for i in range(1, nodes + 1):
                d = self.session.fresh_dir(f"stoker-{task}-{nodes}n-{i}")
                self.write(d, url, i)
                dep = stack.enter_context(self.session.deployment(self.tool, d))
                common.launch(self.tool, dep)
                pid = dep.daemon_pid()
                if pid is None:
                    raise BenchError(f"{label}: no daemon pid in {d}")
                pids.append(pid)
                clients.append(Client(socket_path=d / ".stoker" / "stoker.sock", timeout=120.0))

            def gone() -> str | None:
                dead = [p for p in pids if not psutil.pid_exists(p)]
                return f"daemon {dead} exited" if dead else None

            # every job is queued before any can run: the queue is paused cluster-wide (every
            # node says so) while they are enqueued, then resumed
            clients[0].pause("default")
            deadline = time.monotonic() + 20
            while not all(next(q for q in c.queues() if q.name == "default").paused for c in clients):
                if time.monotonic() > deadline:
                    raise BenchError(f"{label}: the pause did not reach every node")
                time.sleep(0.02)
            t0 = time.perf_counter()
            for i in range(0, n, BATCH):
                clients[0].enqueue_many(task, [{} for _ in range(min(BATCH, n - i))])
            enqueue_seconds = time.perf_counter() - t0
            early = watch.scalar("SELECT count(*) FROM stoker.jobs WHERE state <> 'queued'")
            if early:
                raise BenchError(f"{label}: {early} jobs started while the queue was paused")

            time.sleep(0.5)  # the enqueue's statistics reach pg_stat_database
            watch.reset_statements()
            commits0 = watch.commits()
            groups = {"daemons": pids, "jobs' processes": [c for p in pids for c in descendants(p)],
                      "PostgreSQL": server_pids(self.server, watch.backend)}  # fmt: skip
            cpu = Cpu(groups)
            reaped0 = reaped_children_cpu(pids)
            clients[0].resume("default")
            wall = watch.wait_until(
                "SELECT count(*) /* BENCH-POLL */ FROM stoker.jobs WHERE state IN ('queued', 'running')",
                0, n / 20 + 120, label, gone,
            )  # fmt: skip
            groups["jobs' processes"] = [c for p in pids for c in descendants(p)]
            groups["PostgreSQL"] = server_pids(self.server, watch.backend)
            used = cpu.end(groups)
            used["jobs' processes"] += reaped_children_cpu(pids) - reaped0
            time.sleep(1.5)  # the backends flush their statistics (at most once a second)
            commits = watch.commits() - commits0
            statements = watch.statements()
            begin, end, ok = watch.rows(
                "SELECT min(started_at), max(finished_at), count(*) FILTER (WHERE state = 'succeeded')"
                " FROM stoker.jobs"
            )[0]
            if ok != n:
                bad = watch.rows("SELECT state, error FROM stoker.jobs WHERE state <> 'succeeded' LIMIT 1")
                raise BenchError(f"{label}: {ok} of {n} jobs succeeded; e.g. {bad}")
            per_node = dict(watch.rows("SELECT node, count(*) FROM stoker.jobs GROUP BY node ORDER BY node"))
            attempts = int(watch.scalar("SELECT coalesce(sum(attempt), 0) FROM stoker.jobs"))
            held = watch.rows(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - started_at),"
                " sum(finished_at - started_at) FROM stoker.jobs"
            )[0]
            before, after = watch.rows(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ran - started_at),"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - ran) FROM"
                " (SELECT started_at, finished_at, (result::text)::float8 AS ran FROM stoker.jobs"
                "  WHERE jsonb_typeof(result) = 'number') AS calls"
            )[0]
        out = summarize(label, n, begin, end, wall, used, commits, statements, held, nodes * CONCURRENCY)
        if before is not None and after is not None:
            out["start_to_call_ms_median"] = before * 1000.0
            out["call_to_end_ms_median"] = after * 1000.0
        out.update(
            enqueue_rate=n / enqueue_seconds, jobs_per_node=per_node, attempts=attempts, nodes=nodes
        )  # fmt: skip
        return out


class Procrastinate:
    name = "procrastinate"

    def __init__(self, session: common.Session, server: pg.Server, procs: jobsbench.Procs) -> None:
        self.session = session
        self.server = server
        self.procs = procs

    def prepare(self) -> dict[str, str]:
        """Install procrastinate into bench/.work/venv-procrastinate (once); its versions."""
        bin_ = PROC_VENV / "bin"
        if not (bin_ / "procrastinate").exists():
            python = shutil.which("python3") or sys.executable
            log(f"installing {' '.join(PROC_PACKAGES)} into {PROC_VENV}")
            try:
                if not (bin_ / "pip").exists():
                    common.run([python, "-m", "venv", str(PROC_VENV)], timeout=300)
                common.run([str(bin_ / "pip"), "install", "--quiet", *PROC_PACKAGES], timeout=600)
            except (BenchError, OSError, subprocess.TimeoutExpired) as e:
                raise Unavailable(f"pip install {' '.join(PROC_PACKAGES)} failed: {e}") from e
        d = Path(tempfile.mkdtemp(prefix="procrastinate-versions-", dir=WORK))
        try:
            (d / "benchproc.py").write_text(BENCHPROC_PY)
            versions: dict[str, str] = self.driver(d, self.server.url(), "versions")
        except (BenchError, OSError, ValueError) as e:
            raise Unavailable(f"procrastinate does not import: {e}") from e
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return versions

    def env(self, d: Path, url: str) -> dict[str, str]:
        return common.base_env(PYTHONPATH=str(d), BENCH_PG_URL=url)

    def driver(self, d: Path, url: str, *args: str | int) -> Any:
        code = "import sys, benchproc; sys.exit(benchproc.main(sys.argv[1:]))"
        argv = [str(PROC_VENV / "bin" / "python"), "-c", code, *map(str, args)]
        out = common.run(argv, env=self.env(d, url), timeout=600, check=False)
        if out.returncode != 0:
            raise BenchError(f"procrastinate {args[0]} exited {out.returncode}: {out.stderr.strip()[-2000:]}")
        return json.loads(out.stdout)

    def database(self, label: str, synchronous_commit: bool) -> tuple[Path, str]:
        url = pg.fresh_database(self.server)
        if not synchronous_commit:  # this database's sessions commit as stoker's claims and ends do
            with psycopg.connect(self.server.url(), autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{database_name(url)}" SET synchronous_commit = off')
        d = self.session.fresh_dir(label)
        (d / "benchproc.py").write_text(BENCHPROC_PY)
        self.driver(d, url, "schema")
        return d, url

    def enqueue_rate(self, n: int) -> float:
        """n jobs in batches of BATCH into a database nothing consumes."""
        d, url = self.database("procrastinate-enqueue", True)
        got = self.driver(d, url, "defer", n, BATCH)
        return n / float(got["seconds"])

    def measure(self, workers: int, n: int, synchronous_commit: bool) -> dict[str, Any]:
        sync = "on" if synchronous_commit else "off"
        plural = "s" if workers > 1 else ""
        label = f"procrastinate noop × {n}, {workers} worker{plural}, synchronous_commit {sync}"
        d, url = self.database(f"procrastinate-{workers}w-sync-{sync}", synchronous_commit)
        watch = Watch(url)
        exe = str(PROC_VENV / "bin" / "procrastinate")
        with ExitStack() as stack:
            stack.callback(watch.close)
            procs = []
            for i in range(1, workers + 1):
                # no log line per job (INFO, procrastinate's default level): stoker writes none either
                argv = [exe, "--app=benchproc.app", "--log-level=warning", "worker", "--name", f"bench-{i}",
                        "--queues", "default", "--concurrency", str(CONCURRENCY)]  # fmt: skip
                running = self.procs.running(
                    argv,
                    cwd=d,
                    env=self.env(d, url),
                    logfile=d / f"worker-{i}.log",
                    what=f"procrastinate {i}",
                )
                procs.append(stack.enter_context(running))

            def gone() -> str | None:
                dead = [p.pid for p in procs if p.poll() is not None]
                return f"worker {dead} exited (see {d})" if dead else None

            # Every worker is up and listening before anything is queued; then all n jobs are
            # queued in one statement, so they become visible to every worker at once (the
            # commit), as stoker's resume makes them.
            watch.wait_until(
                f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{watch.dbname}'"
                " AND state = 'idle' AND query LIKE 'LISTEN %%'",
                workers, 60, f"{label}: workers listening", gone,
            )  # fmt: skip
            time.sleep(0.5)
            watch.reset_statements()
            commits0 = watch.commits()
            pids = [p.pid for p in procs]
            groups = {"workers": pids, "PostgreSQL": server_pids(self.server, watch.backend)}
            cpu = Cpu(groups)
            t0 = time.monotonic()
            got = self.driver(d, url, "defer", n, n)
            wall = time.monotonic() - t0
            wall += watch.wait_until(
                "SELECT count(*) /* BENCH-POLL */ FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
                0, n / 20 + 120, label, gone,
            )  # fmt: skip
            groups["PostgreSQL"] = server_pids(self.server, watch.backend)
            used = cpu.end(groups)
            time.sleep(1.5)
            commits = watch.commits() - commits0
            statements = watch.statements()
            ok = int(watch.scalar("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"))
            if ok != n:
                raise BenchError(f"{label}: {ok} of {n} jobs succeeded (see {d})")
            begin, end = watch.rows(
                "SELECT extract(epoch FROM min(at) FILTER (WHERE type = 'started'))::float8,"
                " extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded'))::float8"
                " FROM procrastinate_events"
            )[0]
            held = watch.rows(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d), sum(d) FROM"
                " (SELECT extract(epoch FROM e.at - s.at)::float8 AS d FROM procrastinate_events s"
                "  JOIN procrastinate_events e ON e.job_id = s.job_id AND e.type = 'succeeded'"
                "  WHERE s.type = 'started') AS spans"
            )[0]
        errors = sum(p.read_text(errors="replace").count("Traceback") for p in d.glob("worker-*.log"))
        if errors:
            raise BenchError(f"{label}: {errors} tracebacks in the worker logs (see {d})")
        out = summarize(label, n, begin, end, wall, used, commits, statements, held, workers * CONCURRENCY)
        out.update(defer_one_statement_seconds=got["seconds"], workers=workers, synchronous_commit=sync)
        return out


# --------------------------------------------------------------------------------------------
# Report


def median_of(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(values) if values else None


def spread(samples: list[dict[str, Any]], key: str) -> str:
    values = [s[key] for s in samples if s.get(key) is not None]
    return f" ({min(values):.0f}–{max(values):.0f})" if len(values) > 1 else ""


def rate_cell(samples: list[dict[str, Any]] | None, why: str) -> str:
    if samples is None:
        return why
    m = median_of(samples, "rate")
    return "—" if m is None else f"{m:.0f} jobs/s{spread(samples, 'rate')}"


def ratio_cell(st: list[dict[str, Any]] | None, other: list[dict[str, Any]] | None, key: str = "rate") -> str:
    a = median_of(st, key) if st else None
    b = median_of(other, key) if other else None
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def target_cell(st: list[dict[str, Any]] | None, other: list[dict[str, Any]] | None) -> str:
    a = median_of(st, "rate") if st else None
    b = median_of(other, "rate") if other else None
    if a is None or b is None:
        return "≥ 2×"
    return f"≥ 2×: {'met' if a / b >= 2 else 'missed'} ({a / b:.2f}×)"


def table(res: dict[str, Any], meta: dict[str, Any]) -> str:
    n = meta["params"]["jobs"]
    why = meta["unavailable"]
    st_na = f"not available ({why['stoker']})" if "stoker" in why else "not run"
    pr_na = f"not available ({why['procrastinate']})" if "procrastinate" in why else "not run"
    head = ["workload (concurrency 2 per node / worker)", "stoker", "procrastinate, synchronous_commit off",
            "procrastinate, server default (on)", "stoker/procr. (off)", "stoker/procr. (on)",
            "target: ≥ 2× procrastinate (off)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for nodes in NODES:
        st = res.get(f"stoker_noop_{nodes}")
        off = res.get(f"procrastinate_{nodes}_off")
        on = res.get(f"procrastinate_{nodes}_on")
        what = "1 node / 1 worker process" if nodes == 1 else f"{nodes} nodes / {nodes} worker processes"
        lines.append(
            f"| {n:,} no-op Python jobs, {what} | {rate_cell(st, st_na)} | {rate_cell(off, pr_na)} |"
            f" {rate_cell(on, pr_na)} | {ratio_cell(st, off)} | {ratio_cell(st, on)} |"
            f" {target_cell(st, off)} |"
        )
    cmd_n = meta["params"]["command_jobs"]
    for nodes in NODES:
        st = res.get(f"stoker_true_{nodes}")
        if st:
            lines.append(
                f"| (info) {cmd_n:,} command jobs (`true`), {nodes} node{'s' if nodes > 1 else ''}"
                f" | {rate_cell(st, st_na)} | — | — | — | — | |"
            )
    st_enq = res.get("stoker_noop_1")
    pr_enq = res.get("procrastinate_enqueue")
    st_cell = "—" if not st_enq else f"{median_of(st_enq, 'enqueue_rate'):.0f} jobs/s"
    pr_cell = "—" if not pr_enq else f"{median_of(pr_enq, 'enqueue_rate'):.0f} jobs/s"
    lines.append(
        f"| (info) enqueue, batches of {BATCH} ({n:,} jobs) | {st_cell} | {pr_cell} | {pr_cell} |"
        f" {ratio_cell(st_enq, pr_enq, 'enqueue_rate')} | {ratio_cell(st_enq, pr_enq, 'enqueue_rate')} | |"
    )
    return "\n".join(lines)


def cost_table(res: dict[str, Any]) -> str:
    """Per job, medians over the rounds: wall time, CPU by process group, commits, statements."""
    cols: list[tuple[str, list[dict[str, Any]]]] = []
    for nodes in NODES:
        for key, title in ((f"stoker_noop_{nodes}", f"stoker {nodes}n"),
                           (f"procrastinate_{nodes}_off", f"procr. {nodes}w off"),
                           (f"procrastinate_{nodes}_on", f"procr. {nodes}w on")):  # fmt: skip
            if res.get(key):
                cols.append((title, res[key]))
    if not cols:
        return ""

    def med(samples: list[dict[str, Any]], get: Any) -> float | None:
        values = [v for v in (get(s) for s in samples) if v is not None]
        return statistics.median(values) if values else None

    rows: list[tuple[str, Any, str]] = [
        ("wall time per job (1 / rate)", lambda s: 1000.0 / s["rate"], "{:.2f} ms"),
        ("CPU: stoker daemon(s) / procrastinate worker(s)",
         lambda s: s["cpu_ms_per_job"].get("daemons", s["cpu_ms_per_job"].get("workers")), "{:.2f} ms"),
        ("CPU: stoker's pool workers (the Python jobs)", lambda s: s["cpu_ms_per_job"].get("jobs' processes"),
         "{:.2f} ms"),
        ("CPU: PostgreSQL server", lambda s: s["cpu_ms_per_job"]["PostgreSQL"], "{:.2f} ms"),
        ("CPU: all of the above", lambda s: s["cpu_ms_per_job_total"], "{:.2f} ms"),
        ("busy share of one core: daemon(s) / worker(s)",
         lambda s: s["cpu_share"].get("daemons", s["cpu_share"].get("workers")), "{:.0%}"),
        ("busy share of one core: PostgreSQL", lambda s: s["cpu_share"]["PostgreSQL"], "{:.0%}"),
        ("a job's own span (start record → end record), median", lambda s: s["held_ms_median"], "{:.2f} ms"),
        ("… stoker: start record → the function runs", lambda s: s.get("start_to_call_ms_median"),
         "{:.2f} ms"),
        ("… stoker: the function returned → end record", lambda s: s.get("call_to_end_ms_median"),
         "{:.2f} ms"),
        ("slots busy on average (of 2 per node / worker)", lambda s: s["in_flight_mean"], "{:.2f}"),
        ("slot time empty per job (end record → next start)", lambda s: s["slot_empty_ms_per_job"],
         "{:.2f} ms"),
        ("transactions committed", lambda s: s["commits_per_job"], "{:.2f}"),
        ("statements run", lambda s: s["statements_per_job"], "{:.2f}"),
    ]  # fmt: skip
    head = ["per job (median of the rounds)", *(t for t, _ in cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, get, fmt in rows:
        cells = []
        for _, samples in cols:
            v = med(samples, get)
            cells.append("—" if v is None else fmt.format(v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def statements_table(samples: list[dict[str, Any]] | None, title: str) -> str:
    """The statements of the first round's run, by the server's time in them."""
    if not samples:
        return ""
    s = samples[0]
    n = s["jobs"]
    lines = [f"{title}: statements by server time (first round; pg_stat_statements)", "",
             "| statement | calls per job | server ms per job | mean ms |", "|---|---|---|---|"]  # fmt: skip
    for st in s["statements"][:STATEMENTS_SHOWN]:
        q = st["query"].replace("|", "\\|")
        q = q if len(q) <= 90 else q[:87] + "…"
        mean = st["total_ms"] / st["calls"] if st["calls"] else 0.0
        lines.append(f"| `{q}` | {st['calls'] / n:.2f} | {st['total_ms'] / n:.3f} | {mean:.3f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 jobs, one round (about 1 minute)")
    ap.add_argument("--only", default=",".join(TOOLS), help="comma-separated: " + ",".join(TOOLS))
    ap.add_argument("--jobs", type=int, help="no-op jobs per measurement (default 3,000; 1,000 with --quick)")
    ap.add_argument("--rounds", type=int, help="rounds of each measurement, medians reported (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (configs, logs)")
    args = ap.parse_args()
    args.only = [t.strip() for t in args.only.split(",") if t.strip()]
    bad = [t for t in args.only if t not in TOOLS]
    if bad:
        ap.error(f"--only: unknown {bad}; choose from {', '.join(TOOLS)}")
    if args.jobs is None:
        args.jobs = 1000 if args.quick else 3000
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.jobs < BATCH or args.rounds < 1:
        ap.error(f"--jobs must be at least {BATCH}, --rounds at least 1")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return args


def main() -> int:
    args = parse_args()
    n = args.jobs
    command_n = max(BATCH, n // 3)
    res: dict[str, Any] = {}
    meta: dict[str, Any] = {
        "run_id": common.RUN_ID,
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "cpu": jobsbench.cpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg(),
        },
        "params": {
            "jobs": n,
            "command_jobs": command_n,
            "rounds": args.rounds,
            "concurrency": CONCURRENCY,
            "nodes": NODES,
            "batch": BATCH,
            "pycache_prefix": str(common.PYCACHE),
        },
        "versions": {},
        "unavailable": {},
        "leftovers": {},
    }
    session = common.Session()
    procs = jobsbench.Procs()
    failed = False
    started = time.monotonic()
    stack = ExitStack()

    def stop_everything() -> None:
        """Workers and daemons first (they hold connections), then the server."""
        procs.stop_all()
        for dep in session.deployments:
            dep.stop()
        stack.close()

    def add(key: str, sample: dict[str, Any]) -> None:
        res.setdefault(key, []).append(sample)

    try:
        server = stack.enter_context(postgres_server())
        meta["versions"]["postgresql"] = server_version(server)
        meta["server"] = {"options": server.options, "fsync": "on", "synchronous_commit": "on (default)"}
        log(f"PostgreSQL {meta['versions']['postgresql']} on {server.host} (fsync on)")
        st: StokerCluster | None = None
        pr: Procrastinate | None = None
        if "stoker" in args.only:
            st = StokerCluster(session, server)
            meta["versions"]["stoker"] = st.prepare()
        if "procrastinate" in args.only:
            try:
                pr = Procrastinate(session, server, procs)
                meta["versions"].update(pr.prepare())
            except Unavailable as e:
                log(f"procrastinate: not available: {e}")
                meta["unavailable"]["procrastinate"] = str(e)
                pr = None
        if pr is not None:
            log(f"procrastinate: enqueue {n} jobs in batches of {BATCH}")
            add("procrastinate_enqueue", {"enqueue_rate": pr.enqueue_rate(n)})
        for r in range(1, args.rounds + 1):
            log(f"round {r} of {args.rounds}")
            for nodes in NODES:  # the two sides alternate, so a slow spell of the machine hits both
                if st is not None:
                    add(f"stoker_noop_{nodes}", st.measure(nodes, "noop", n))
                if pr is not None:
                    add(f"procrastinate_{nodes}_off", pr.measure(nodes, n, synchronous_commit=False))
                    add(f"procrastinate_{nodes}_on", pr.measure(nodes, n, synchronous_commit=True))
        if st is not None:
            for nodes in NODES:
                add(f"stoker_true_{nodes}", st.measure(nodes, "true", command_n))
    except KeyboardInterrupt:
        failed = True
        log("interrupted; stopping everything")
        meta["error"] = "interrupted"
    except (BenchError, Unavailable, OSError, subprocess.SubprocessError, psycopg.Error, psutil.Error,
            RuntimeError) as e:  # fmt: skip
        failed = True
        log(f"measurement failed: {type(e).__name__}: {e}")
        meta["error"] = f"{type(e).__name__}: {e}"
    except Exception as e:  # the stoker client's ClientError…
        failed = True
        log(f"measurement failed: {type(e).__name__}: {e}")
        meta["error"] = f"{type(e).__name__}: {e}"
    finally:
        common.end_of_run(session, args.keep or failed, meta, stop_everything)
    meta["seconds"] = time.monotonic() - started
    meta["machine"]["loadavg_at_end"] = os.getloadavg()

    report = table(res, meta)
    costs = cost_table(res)
    print(report)
    if costs:
        print("\n" + costs)
    for key, title in (("stoker_noop_1", "stoker, 1 node"), ("procrastinate_1_off", "procrastinate, 1 w.")):
        text = statements_table(res.get(key), title)
        if text:
            print("\n" + text)
    print(
        "\nstoker's durability: an enqueue commits with the server's synchronous_commit (on); its claims"
        " and ends are single autocommit statements with synchronous_commit = off. procrastinate commits"
        " each fetch and each end on its own, with the database's setting (both columns are shown)."
    )
    if meta.get("error"):
        print(f"failed: {meta['error']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    full = "\n\n".join(x for x in (report, costs) if x)
    document = {"meta": meta, "results": res, "table": full}
    RESULTS.write_text(json.dumps(document, indent=2, default=str) + "\n")
    load = meta["machine"]["loadavg_at_start"][0]
    if load > 0.5:
        print(f"Note: the 1-minute load average was {load:.2f} as the run began: other work shared the CPUs.")
    print(f"\n(JSON: {RESULTS.relative_to(ROOT)}; {meta['seconds']:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
