#!/usr/bin/env python3
"""Scale: 1,000 programs against supervisord and pm2, a million queued jobs, and a soak.

Usage: .venv/bin/python bench/scale.py [--quick] [--parts programs,million,soak]
                                       [--tools stoker,supervisord,pm2] [--soak-minutes 10] [--keep]

1. 1,000 programs (`sleep 100000`) under stoker, supervisord and pm2, one after the other:
   time until all are running, daemon RSS, idle CPU, and the latency of the status command.
2. 1,000,000 queued jobs in stoker's SQLite store: the enqueue rate (one per call, and in
   batches) and the claim rate (no-op call jobs, 2 workers) with an empty queue and with a
   million jobs waiting; the target is a ratio of at most 2×.
3. A soak: one daemon for --soak-minutes with programs that restart, crash and chat, jobs every
   second, a schedule every second, restarts and reloads; its RSS sampled every 5 s.

Prints a Markdown table and writes bench/.work/scale-results.json. See bench/README.md. Reuses
bench/run.py's supervisors, installers and process helpers (standard library, psutil, stoker).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import signal
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as common  # bench/run.py: the supervisors, their installers, the process helpers

RESULTS = common.WORK / "scale-results.json"
PARTS = ("programs", "million", "soak")
TOOLS = common.TOOLS
BenchError = common.BenchError
log = common.log

NOOP_PY = "def noop(**params):\n    return None\n"
BATCH = 500  # enqueue_many batch for the measured rates (the jobs bench's size)
FILL_BATCH = 10_000  # the API's largest batch: filling a million takes 100 requests
WORKERS = 2  # the queue's concurrency: 2 warm pool workers, as in bench/jobs.py


def toml_list(argv: list[str]) -> str:
    return "[" + ", ".join(json.dumps(a) for a in argv) + "]"


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def iso_ts(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text).timestamp()


def ratio_cell(empty: float | None, full: float | None, limit: float) -> tuple[str, str]:
    """(empty/full as text, the target's verdict): how many times slower the full queue is."""
    if not empty or not full:
        return "—", f"≤ {limit:.0f}×"
    r = empty / full
    return f"{r:.2f}×", f"≤ {limit:.0f}×: {'met' if r <= limit else 'missed'}"


# --------------------------------------------------------------------------------------------
# 1. A thousand programs, against supervisord and pm2


def thousand_programs(
    session: common.Session, name: str, n: int, status_runs: int, idle_s: float
) -> dict[str, Any]:
    tool: common.Tool = {"stoker": common.Stoker, "supervisord": common.Supervisord, "pm2": common.Pm2}[
        name
    ]()
    res: dict[str, Any] = {"version": tool.prepare()}  # Unavailable: the caller says so
    d = session.fresh_dir(f"{name}-{n}")
    tool.write_hundred_config(d, n)
    with session.deployment(tool, d) as dep:
        log(f"{name} {res['version']}: starting {n} programs")
        started = common.wait_for_hundred(tool, dep, timeout=900.0, n=n, poll=0.1)
        res["ready_s"] = started["ready_ms"] / 1000.0
        res["launcher_s"] = started["launcher_ms"] / 1000.0
        pid = dep.daemon_pid()
        assert pid is not None
        time.sleep(common.SETTLE)
        proc = psutil.Process(pid)
        mem = proc.memory_full_info()
        res.update(
            daemon_pid=pid,
            rss_mb=mem.rss / 2**20,
            uss_mb=mem.uss / 2**20,
            fds=proc.num_fds(),
            threads=proc.num_threads(),
            programs=common.count_sleep_children(pid),
        )
        ticks0 = common.cpu_ticks(pid)
        time.sleep(idle_s)
        res["idle_cpu_ms"] = (common.cpu_ticks(pid) - ticks0) * 1000.0 / common.CLK_TCK
        log(f"{name}: {status_runs} × status")
        times, rc = common.time_command(tool.status_argv(d), tool.env(d), status_runs)
        res.update(status_ms=times, status_median_ms=statistics.median(times), status_exit_code_max=rc)
        res["rss_after_status_mb"] = rss_mb(pid)
        res["programs_at_end"] = common.count_sleep_children(pid)
    log(
        f"{name}: {n} running after {res['ready_s']:.1f} s, RSS {res['rss_mb']:.1f} MB,"
        f" status {res['status_median_ms']:.0f} ms"
    )
    return res


# --------------------------------------------------------------------------------------------
# stoker daemons for parts 2 and 3


@contextmanager
def stoker_daemon(session: common.Session, label: str, body: str) -> Iterator[tuple[Path, Any, int]]:
    """A stoker daemon (`stoker up -d`) on `body` in a fresh dir: (dir, client, daemon pid)."""
    from stoker.client import Client

    tool = common.Stoker()
    d = session.fresh_dir(label)
    (d / "benchtasks.py").write_text(NOOP_PY)
    (d / "stoker.toml").write_text(f'[daemon]\nstate_dir = ".stoker"\n\n{body}')
    with session.deployment(tool, d) as dep:
        common.launch(tool, dep)
        pid = dep.daemon_pid()
        if pid is None:
            raise BenchError(f"stoker in {d} has no pid")
        yield d, Client(socket_path=d / ".stoker" / "stoker.sock", timeout=600.0), pid


def stoker_cli(d: Path, *args: str) -> list[str]:
    return [*common.Stoker().exe, "-c", str(d / "stoker.toml"), *args]


# --------------------------------------------------------------------------------------------
# 2. A million queued jobs


def enqueue_rates(client: Any, singles: int, batched: int) -> dict[str, Any]:
    """With the queue paused: `singles` calls of enqueue, then `batched` jobs in batches. A
    tenth of each goes first, not counted: on a fresh database the first commits also grow
    its files, which would make the empty queue look slower than it is."""
    warm_ids = [client.enqueue("noop").id for _ in range(singles // 10)]
    warm_ids += client.enqueue_many("noop", [{}] * (batched // 10))
    t0 = time.perf_counter()
    single_ids = [client.enqueue("noop").id for _ in range(singles)]
    single_rate = singles / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    batch_ids: list[int] = []
    for i in range(0, batched, BATCH):
        batch_ids += client.enqueue_many("noop", [{}] * min(BATCH, batched - i))
    batch_rate = batched / (time.perf_counter() - t0)
    return {"single_rate": single_rate, "batch_rate": batch_rate, "ids": warm_ids + single_ids + batch_ids}


def claim_rate(client: Any, ids: list[int]) -> dict[str, Any]:
    """Resume the queue until the jobs `ids` (the next due ones, oldest first) have run, then
    pause it again. Rate by the daemon's own records: first start to last finish."""
    client.resume("default")
    done = client.wait(ids[-1], timeout=len(ids) / 50 + 120)
    client.pause("default")
    if done.state != "succeeded":
        raise BenchError(f"job {done.id} {done.state}: {done.error}")
    while any(q.running for q in client.queues() if q.name == "default"):
        time.sleep(0.2)
    first = [client.job(i) for i in ids[:8]]
    last = [client.job(i) for i in ids[-8:]]
    if any(j.state != "succeeded" for j in first + last):
        raise BenchError(f"not all of {ids[0]}…{ids[-1]} ran: {[(j.id, j.state) for j in first + last]}")
    begin = min(iso_ts(j.started_at) for j in first)
    end = max(iso_ts(j.finished_at) for j in last)
    return {"rate": len(ids) / (end - begin), "seconds": end - begin, "jobs": len(ids)}


def million_jobs(
    session: common.Session, total: int, singles: int, batched: int, claims: int
) -> dict[str, Any]:
    body = f'[tasks.noop]\ncall = "benchtasks:noop"\n\n[queues.default]\nconcurrency = {WORKERS}\n'
    res: dict[str, Any] = {"total": total, "singles": singles, "batched": batched, "claims": claims}
    with stoker_daemon(session, "million", body) as (d, client, pid):
        client.pause("default")
        log(f"empty queue: {singles} single enqueues, {batched} in batches of {BATCH}")
        empty = enqueue_rates(client, singles, batched)
        log(f"empty queue: claiming {len(empty['ids'])} no-op jobs")
        empty.update(claim=claim_rate(client, empty.pop("ids")))
        res["empty"] = empty

        log(f"filling: {total:,} jobs in batches of {FILL_BATCH:,}")
        fill_ids: list[int] = []
        per_100k: list[float] = []
        t0 = t_block = time.perf_counter()
        for i in range(0, total, FILL_BATCH):
            fill_ids += client.enqueue_many("noop", [{}] * min(FILL_BATCH, total - i))
            if len(fill_ids) % 100_000 == 0:
                now = time.perf_counter()
                per_100k.append(100_000 / (now - t_block))
                t_block = now
                log(f"filled {len(fill_ids):,}: {per_100k[-1]:.0f} jobs/s over the last 100,000")
        res["fill"] = {"seconds": time.perf_counter() - t0, "rate_per_100k": per_100k}
        queued = next(q.queued for q in client.queues() if q.name == "default")
        res["queued_when_full"] = queued
        if queued < total:
            raise BenchError(f"only {queued} queued after filling {total}")

        log(f"full queue ({queued:,}): {singles} single enqueues, {batched} in batches of {BATCH}")
        full = enqueue_rates(client, singles, batched)
        del full["ids"]
        log(f"full queue: claiming the oldest {claims:,}")
        full.update(claim=claim_rate(client, fill_ids[:claims]))
        res["full"] = full

        env = common.base_env()
        for what, argv in (
            ("status", stoker_cli(d, "status")),
            ("queues", stoker_cli(d, "queues")),
            ("jobs", stoker_cli(d, "jobs")),
        ):
            times, rc = common.time_command(argv, env, 5)
            res[f"{what}_ms"] = statistics.median(times)
            res[f"{what}_exit_code"] = rc
        res["db_mb"] = sum(p.stat().st_size for p in (d / ".stoker").glob("stoker.db*")) / 2**20
        res["rss_mb"] = rss_mb(pid)
    for phase in ("empty", "full"):
        p = res[phase]
        log(
            f"{phase}: enqueue {p['single_rate']:.0f}/s single, {p['batch_rate']:.0f}/s batched,"
            f" claim {p['claim']['rate']:.0f}/s"
        )
    return res


# --------------------------------------------------------------------------------------------
# 3. Soak


CHATTY = "import time\nwhile True:\n    print('x' * 200, flush=True)\n    time.sleep(0.002)\n"
SOAK_PROGRAMS = f"""
[programs.steady]
command = {toml_list([common.SLEEP, "100000"])}
instances = 20
stop_timeout = "5s"

[programs.crashy]        # runs 2 s, crashes, is restarted at once: a crash every 2 s
command = {toml_list([common.SH, "-c", "sleep 2; exit 1"])}
stable_seconds = "1s"    # (each run is a stable one: no crash-loop backoff, the load stays)

[programs.chatty]        # output all the time, rotated every megabyte
command = {toml_list([sys.executable, "-c", CHATTY])}
log = {{ max_size = "1MB", keep = 2 }}

[tasks.noop]
call = "benchtasks:noop"
[tasks.true]
command = ["true"]

[queues.default]
concurrency = {WORKERS}

[schedules.tick]
every = "1s"
command = ["true"]
"""


def soak(session: common.Session, minutes: float, sample_every: float = 5.0) -> dict[str, Any]:
    """Every second: 40 no-op jobs in a batch and 5 `true` jobs one by one, and a look at the
    programs; every 15 s a restart of the 20 steady instances; every minute a reload."""
    samples: list[dict[str, float]] = []
    enqueued = restarts = reloads = 0
    with stoker_daemon(session, "soak", SOAK_PROGRAMS) as (_, client, pid):
        proc = psutil.Process(pid)
        t0 = time.monotonic()
        next_sample = next_restart = next_reload = 0.0
        while (elapsed := time.monotonic() - t0) < minutes * 60:
            client.enqueue_many("noop", [{}] * 40)
            for _ in range(5):
                client.enqueue("true")
            enqueued += 45
            client.programs()
            if elapsed >= next_restart and elapsed > 0:
                client.program_action("steady", "restart")
                restarts += 1
            if elapsed >= next_reload and elapsed > 0:
                client.request("POST", "/api/v1/reload")
                reloads += 1
            if elapsed >= next_sample:
                mem = proc.memory_full_info()
                samples.append(
                    {
                        "t": elapsed,
                        "rss_mb": mem.rss / 2**20,
                        "uss_mb": mem.uss / 2**20,
                        "fds": proc.num_fds(),
                        "threads": proc.num_threads(),
                    }
                )
                if len(samples) % 12 == 1:
                    last = samples[-1]
                    log(f"soak {elapsed / 60:.1f} min: RSS {last['rss_mb']:.1f} MB, {last['fds']:.0f} fds")
                next_sample += sample_every
            next_restart = max(next_restart, 15.0 * (restarts + 1) - 14.0)
            next_reload = max(next_reload, 60.0 * (reloads + 1) - 59.0)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - elapsed)))
        queued = sum(q.queued + q.running for q in client.queues())
        failed = client.jobs(state="failed", limit=1000)
        crashy = next(p for p in client.programs() if p["name"] == "crashy:0")
        slots = [s for s in client.schedules() if s.name == "tick"]
    rss = [s["rss_mb"] for s in samples]
    half = [s for s in samples if s["t"] >= minutes * 30.0] or samples  # the second half
    res: dict[str, Any] = {
        "minutes": minutes,
        "samples": samples,
        "rss_first_mb": rss[0],
        "rss_half_mb": half[0]["rss_mb"],
        "rss_last_mb": rss[-1],
        "rss_max_mb": max(rss),
        "fds_first": samples[0]["fds"],
        "fds_last": samples[-1]["fds"],
        "jobs_enqueued": enqueued,
        "jobs_left_queued": queued,
        "jobs_failed": len(failed),
        "steady_restarts": restarts,
        "reloads": reloads,
        "crashy_restarts": crashy["restarts"],
        "schedule_last_state": slots[0].last_state if slots else None,
    }
    # Caches fill during the first minutes (SQLite's page cache as the job table grows, the
    # allocator's arenas): flat means the second half does not grow.
    if len(half) >= 3:
        ts, ys = [s["t"] for s in half], [s["rss_mb"] for s in half]
        mt, my = statistics.fmean(ts), statistics.fmean(ys)
        slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / sum((t - mt) ** 2 for t in ts)
        res["rss_slope_mb_per_hour"] = slope * 3600.0
    res["rss_growth_second_half"] = (res["rss_last_mb"] - res["rss_half_mb"]) / res["rss_half_mb"]
    log(
        f"soak: RSS first {res['rss_first_mb']:.1f}, half-way {res['rss_half_mb']:.1f},"
        f" last {res['rss_last_mb']:.1f}, max {res['rss_max_mb']:.1f} MB; {enqueued} jobs,"
        f" {crashy['restarts']} crashes"
    )
    return res


# --------------------------------------------------------------------------------------------
# Report


def fmt(value: Any, spec: str) -> str:
    return "—" if value is None else spec.format(value)


def programs_table(results: dict[str, Any], n: int) -> str:
    rows = [
        ("ready_s", f"time until {n:,} programs are running", "{:.1f} s", "low"),
        ("rss_mb", f"daemon RSS with {n:,} programs", "{:.1f} MB", "low"),
        ("status_median_ms", f"`status` latency with {n:,} programs, median", "{:.0f} ms", "low"),
        ("idle_cpu_ms", "(info) idle daemon CPU over the idle window", "{:.0f} ms", "low"),
        ("uss_mb", f"(info) daemon USS with {n:,} programs", "{:.1f} MB", "low"),
        ("fds", "(info) daemon open files", "{:.0f}", "low"),
    ]
    head = ["metric", "stoker", "supervisord", "pm2", "supervisord/stoker", "pm2/stoker"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(tool: str, key: str, spec: str) -> str:
        if tool not in results:
            return "not run"
        r = results[tool]
        if r.get("unavailable"):
            return "not available"
        if r.get("error") and key not in r:
            return "failed"
        return fmt(r.get(key), spec)

    def ratio(tool: str, key: str) -> str:
        st, other = results.get("stoker") or {}, results.get(tool) or {}
        if st.get(key) in (None, 0) or other.get(key) is None:
            return "—"
        return f"{other[key] / st[key]:.1f}×"

    for key, label, spec, _ in rows:
        out.append(
            "| "
            + " | ".join(
                [label, *(cell(t, key, spec) for t in TOOLS), ratio("supervisord", key), ratio("pm2", key)]
            )
            + " |"
        )
    return "\n".join(out)


def million_table(r: dict[str, Any]) -> str:
    head = ["metric", "empty queue", f"{r['total']:,} queued", "empty/full", "target"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    e, f = r.get("empty", {}), r.get("full", {})
    for label, get in (
        (f"enqueue, one job per call ({r['singles']:,} jobs)", lambda p: p.get("single_rate")),
        (f"enqueue, batches of {BATCH} ({r['batched']:,} jobs)", lambda p: p.get("batch_rate")),
        ("claim and run no-op call jobs, 2 workers", lambda p: p.get("claim", {}).get("rate")),
    ):
        ratio, verdict = ratio_cell(get(e), get(f), 2.0)
        cells = [label, fmt(get(e), "{:.0f} jobs/s"), fmt(get(f), "{:.0f} jobs/s"), ratio, verdict]
        out.append("| " + " | ".join(cells) + " |")
    fill = r.get("fill", {}).get("rate_per_100k") or [None]
    out.append(
        f"| (info) filling, batches of {FILL_BATCH:,}: first / last 100,000 | {fmt(fill[0], '{:.0f} jobs/s')}"
        f" | {fmt(fill[-1], '{:.0f} jobs/s')} | | |"
    )
    for what in ("status", "queues", "jobs"):
        out.append(
            f"| (info) `stoker {what}` latency, median of 5 | | {fmt(r.get(f'{what}_ms'), '{:.0f} ms')} | | |"
        )
    out.append(f"| (info) database size (stoker.db + WAL) | | {fmt(r.get('db_mb'), '{:.0f} MB')} | | |")
    out.append(f"| (info) daemon RSS | | {fmt(r.get('rss_mb'), '{:.1f} MB')} | | |")
    return "\n".join(out)


def soak_table(r: dict[str, Any]) -> str:
    out = ["| metric | value |", "|---|---|"]
    rows = [
        ("daemon RSS: first sample", r.get("rss_first_mb"), "{:.1f} MB"),
        ("daemon RSS: half-way", r.get("rss_half_mb"), "{:.1f} MB"),
        ("daemon RSS: last sample", r.get("rss_last_mb"), "{:.1f} MB"),
        ("daemon RSS: max", r.get("rss_max_mb"), "{:.1f} MB"),
        ("daemon RSS trend over the second half", r.get("rss_slope_mb_per_hour"), "{:+.2f} MB/hour"),
        ("daemon open files: first / last", f"{r.get('fds_first')} / {r.get('fds_last')}", "{}"),
        ("jobs enqueued (40 no-op + 5 `true` a second)", r.get("jobs_enqueued"), "{:,}"),
        ("jobs failed / left queued", f"{r.get('jobs_failed')} / {r.get('jobs_left_queued')}", "{}"),
        ("restarts of `steady` / reloads", f"{r.get('steady_restarts')} / {r.get('reloads')}", "{}"),
        ("crashes of `crashy` (restarted at once)", r.get("crashy_restarts"), "{}"),
    ]  # fmt: skip
    for label, value, spec in rows:
        out.append(f"| {label} | {fmt(value, spec)} |")
    growth = r.get("rss_growth_second_half")
    if growth is not None:
        verdict = "met" if abs(growth) <= 0.02 else "missed"
        out.append(f"| RSS flat: the second half grows by at most 2% | {growth:+.1%}: {verdict} |")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100,000 jobs, 2-minute soak, fewer status runs")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ",".join(PARTS))
    ap.add_argument("--tools", default=",".join(TOOLS), help="for the programs part: " + ",".join(TOOLS))
    ap.add_argument("--soak-minutes", type=float, default=None, help="default 10 (2 with --quick)")
    ap.add_argument("--programs", type=int, default=1000)
    ap.add_argument(
        "--jobs", type=int, default=None, help="queued jobs, default 1,000,000 (100,000 with --quick)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (configs, logs, databases)")
    args = ap.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    tools = [t for t in args.tools.split(",") if t]
    if bad := [p for p in parts if p not in PARTS] + [t for t in tools if t not in TOOLS]:
        ap.error(f"unknown: {bad}")
    soak_minutes = args.soak_minutes if args.soak_minutes is not None else (2.0 if args.quick else 10.0)
    total = args.jobs if args.jobs is not None else (100_000 if args.quick else 1_000_000)
    singles, batched, claims = (500, 5_000, 5_000) if args.quick else (2_000, 20_000, 20_000)
    status_runs, idle_s = (5, 5.0) if args.quick else (10, 10.0)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    meta: dict[str, Any] = {
        "run_id": common.RUN_ID,
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "open_files_limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            "loadavg_at_start": os.getloadavg(),
        },
        "params": {
            "parts": parts,
            "tools": tools,
            "programs": args.programs,
            "jobs": total,
            "singles": singles,
            "batched": batched,
            "claims": claims,
            "soak_minutes": soak_minutes,
            "status_runs": status_runs,
            "idle_seconds": idle_s,
        },
        "unavailable": {},
        "leftovers": {},
    }
    results: dict[str, Any] = {}
    session = common.Session()
    failed = False
    started = time.monotonic()

    def attempt(key: str, measure: Callable[[], dict[str, Any]]) -> None:
        nonlocal failed
        try:
            results[key] = measure()
        except common.Unavailable as e:
            log(f"{key}: not available: {e}")
            meta["unavailable"][key] = str(e)
            results[key] = {"unavailable": str(e)}
        except Exception as e:  # a BenchError, the stoker client's ClientError, a timeout…
            failed = True
            log(f"{key}: failed: {type(e).__name__}: {e}")
            results[key] = {"error": f"{type(e).__name__}: {e}"}
        finally:
            meta["leftovers"][key] = common.sweep(key)

    try:
        if "programs" in parts:
            programs: dict[str, Any] = {}
            results["programs"] = programs
            for name in tools:
                attempt(
                    name,
                    functools.partial(thousand_programs, session, name, args.programs, status_runs, idle_s),
                )
                programs[name] = results.pop(name)
        if "million" in parts:
            attempt("million", lambda: million_jobs(session, total, singles, batched, claims))
        if "soak" in parts:
            attempt("soak", lambda: soak(session, soak_minutes))
    except KeyboardInterrupt:
        failed = True
        log("interrupted; stopping everything")
    finally:
        common.end_of_run(session, args.keep or failed, meta)
    meta["seconds"] = time.monotonic() - started
    meta["machine"]["loadavg_at_end"] = os.getloadavg()

    report = []
    if "programs" in results:
        report.append(programs_table(results["programs"], args.programs))
    if "total" in results.get("million", {}):
        report.append(million_table(results["million"]))
    if "samples" in results.get("soak", {}):
        report.append(soak_table(results["soak"]))
    text = "\n\n".join(report)
    print(text)
    la0, la1 = meta["machine"]["loadavg_at_start"], meta["machine"]["loadavg_at_end"]
    print(f"\nLoad average (1, 5, 15 min) at the start {la0[0]:.2f} {la0[1]:.2f} {la0[2]:.2f},"
          f" at the end {la1[0]:.2f} {la1[1]:.2f} {la1[2]:.2f}.")  # fmt: skip
    common.write_results(RESULTS, meta, results, text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
