#!/usr/bin/env python3
"""Benchmark the firing lateness of stoker's schedules against APScheduler 3.x, on this machine.

Usage: .venv/bin/python bench/schedules.py [--quick] [--only stoker,apscheduler] [--keep]

An `every = "1s"` schedule whose job runs `true`, for 200 firings (30 with --quick) after 2
warm-up firings that aren't counted. Lateness = the moment the scheduler fires a slot minus the
slot itself (p50, p99, max); the slot → job start lateness is information. The anchor is
APScheduler 3.x (a BlockingScheduler with CronTrigger(second="*"), installed into
bench/.work/venv-anchors); systemd timers appear with their documented defaults only (not run).
Prints a Markdown table and writes bench/.work/schedules-results.json. See bench/README.md.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jobs as jobsbench  # bench/jobs.py: the anchors' venv, Procs, summary
import run as common  # bench/run.py, the programs bench: its process helpers

ROOT = common.ROOT
WORK = common.WORK
RESULTS = WORK / "schedules-results.json"
ANCHORS_VENV = jobsbench.ANCHORS_VENV
APS_REQUIREMENT = "apscheduler<4"

TOOLS = ("stoker", "apscheduler")
LABELS = {"stoker": "stoker", "apscheduler": "APScheduler"}
WARMUP = 2  # firings at the start that aren't counted
TARGET_P99_MS = 10.0
TRUE = "true"  # the job of every firing, looked up on the PATH by both tools
BenchError = common.BenchError
Unavailable = common.Unavailable
log = common.log

# systemd.timer(5) of systemd 252 (Debian 12), [Timer] section: quoted in the table and the JSON.
SYSTEMD_DEFAULTS = {
    "source": "systemd.timer(5), systemd 252 (Debian 12)",
    "AccuracySec": "Defaults to 1min: the timer elapses within [slot, slot + 1 min], at a host-specific,"
    " randomized, but stable position, to coalesce wake-ups; set 1us for the best accuracy",
    "RandomizedDelaySec": "Defaults to 0: no randomized delay",
    "lateness": "up to 60 s after the slot, by design; not measured (not run here)",
}


# --------------------------------------------------------------------------------------------
# The APScheduler side: written as benchaps.py into its temp dir and run with the anchors' Python.

APS_PY = r'''"""Written by bench/schedules.py: APScheduler 3.x runs `true` on every whole second.

Usage: python benchaps.py OUT.json TOTAL WARMUP
"""

import json
import subprocess
import sys
import threading
import time

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

out_path, total, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fired = []  # [scheduled run time, time.time() as the scheduler hands the job to its executor]
started = []  # time.time() as the job's first line
cpu = {}
done = threading.Event()


class RecordingExecutor(ThreadPoolExecutor):
    """APScheduler's default executor (a pool of 10 threads) that notes when a job is fired."""

    def submit_job(self, job, run_times):
        t = time.time()
        fired.extend([rt.timestamp(), t] for rt in run_times)
        if len(fired) == warmup:
            cpu["begin"] = time.process_time()
        elif len(fired) == total:
            cpu["end"] = time.process_time()
        super().submit_job(job, run_times)


def tick():
    started.append(time.time())  # the first thing the job does
    subprocess.run(["true"], check=True)
    if len(started) >= total:
        done.set()


def main():
    # No logging set up, as in a default deployment: warnings (a missed run, a skipped one)
    # still reach stderr through logging's last-resort handler, and stderr goes to a file.
    scheduler = BlockingScheduler(executors={"default": RecordingExecutor()}, timezone="UTC")
    scheduler.add_job(tick, CronTrigger(second="*", timezone="UTC"), id="tick")

    def stopper():
        done.wait()
        scheduler.shutdown(wait=True)  # lets the running `true` finish

    threading.Thread(target=stopper, daemon=True).start()
    t0 = time.time()
    scheduler.start()  # blocks until stopper() shuts it down
    with open(out_path, "w") as f:
        json.dump({"fired": fired, "started": started, "cpu": cpu, "began": t0}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def prepare_apscheduler() -> str:
    """Install APScheduler 3.x into bench/.work/venv-anchors (once); its version."""
    bin_ = ANCHORS_VENV / "bin"
    probe = "from importlib.metadata import version; import apscheduler; print(version('apscheduler'))"

    def installed() -> str | None:
        if not (bin_ / "python").exists():
            return None
        out = common.run([str(bin_ / "python"), "-c", probe], check=False, timeout=60)
        version = out.stdout.strip()
        return version if out.returncode == 0 and version.startswith("3.") else None

    version = installed()
    if version is None:
        python = sys.executable if not (bin_ / "python").exists() else str(bin_ / "python")
        log(f"installing {APS_REQUIREMENT} into {ANCHORS_VENV}")
        try:
            if not (bin_ / "pip").exists():
                common.run([python, "-m", "venv", str(ANCHORS_VENV)], timeout=300)
            common.run([str(bin_ / "pip"), "install", "--quiet", APS_REQUIREMENT], timeout=600)
        except (BenchError, OSError, subprocess.TimeoutExpired) as e:
            raise Unavailable(f"pip install {APS_REQUIREMENT} failed: {e}") from e
        version = installed()
        if version is None:
            raise Unavailable("APScheduler 3.x does not import from bench/.work/venv-anchors")
    return version


# --------------------------------------------------------------------------------------------
# Helpers


def ms(seconds: float) -> float:
    return seconds * 1000.0


def stats(samples: list[float]) -> dict[str, float]:
    return jobsbench.summary(samples)


def worst(pairs: list[tuple[float, float]], n: int = 5) -> list[dict[str, float]]:
    """The n latest firings: slot and lateness (ms)."""
    return [{"slot": s, "ms": v} for s, v in sorted(pairs, key=lambda p: -p[1])[:n]]


def missing_slots(slots: list[float]) -> int:
    """Whole seconds between the first and the last slot that have no firing at all."""
    return sum(max(0, round(b - a) - 1) for a, b in itertools.pairwise(slots))


def sleep_until(t: float) -> None:
    while True:
        left = t - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 1.0))


def clocksource() -> str:
    try:
        return Path("/sys/devices/system/clocksource/clocksource0/current_clocksource").read_text().strip()
    except OSError:
        return "?"


# --------------------------------------------------------------------------------------------
# The floor: bare wake-ups at whole seconds, with no scheduler around them


def wakeup_floor(n: int) -> dict[str, list[float]]:
    """Lateness (ms) of n bare wake-ups in this process, one a second, each way a scheduler here sleeps.

    - asyncio: `loop.call_later(slot - time.time(), event.set)` then `await event.wait()`, the way
      stoker's scheduler sleeps (the loop waits in epoll_wait).
    - threading: `threading.Event().wait(slot - time.time())`, the way APScheduler's
      BlockingScheduler sleeps (a futex wait).

    Both run at once in two threads, half a second apart, so they never wake together. The
    first wake-up of each isn't counted.
    """
    out: dict[str, list[float]] = {"asyncio": [], "threading": []}

    async def asyncio_side() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n + 1):
            slot = math.floor(time.time()) + 1.0
            woke = asyncio.Event()
            loop.call_later(slot - time.time(), woke.set)
            await woke.wait()
            out["asyncio"].append(ms(time.time() - slot))

    stop = threading.Event()  # set only to end the floor early (Ctrl-C, SIGTERM)

    def threading_side() -> None:
        for _ in range(n + 1):
            slot = math.floor(time.time() + 0.5) + 0.5
            if stop.wait(slot - time.time()):
                return
            out["threading"].append(ms(time.time() - slot))

    th = threading.Thread(target=threading_side, daemon=True)
    th.start()
    try:
        asyncio.run(asyncio_side())
    finally:
        stop.set()
        th.join()
    return {k: v[1:] for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# stoker


def stoker_config() -> str:
    return (
        '[daemon]\nstate_dir = ".stoker"\n\n'
        f'[schedules.tick]\nevery = "1s"\ncommand = {jobsbench.toml_list([TRUE])}\n'
    )


SLOT_COLUMNS = ("slot", "fired_at", "outcome", "job_id", "created_at", "started_at", "state")


def read_slots(db: Path) -> list[tuple[Any, ...]]:
    """Every slot of the schedule with its job, from the daemon's database (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT s.slot, s.fired_at, s.outcome, s.job_id, j.created_at, j.started_at, j.state"
            " FROM schedule_slots s LEFT JOIN jobs j ON j.id = s.job_id"
            " WHERE s.schedule = 'tick' ORDER BY s.slot"
        ).fetchall()
    finally:
        conn.close()


def measure_stoker(session: common.Session, tool: common.Stoker, firings: int) -> dict[str, Any]:
    d = session.fresh_dir("stoker-every-1s")
    (d / "stoker.toml").write_text(stoker_config())
    total = WARMUP + firings
    with session.deployment(tool, d) as dep:
        common.launch(tool, dep)
        launched = time.time()
        pid = dep.daemon_pid()
        if pid is None:
            raise BenchError(f"stoker: no daemon pid after `up -d` (see {d})")
        proc = psutil.Process(pid)
        first = math.ceil(launched)  # the first slot the daemon can still fire, give or take one
        # the daemon's CPU over the counted firings: sampled half-way between two slots
        sleep_until(first + WARMUP - 0.5)
        t_cpu0, cpu0 = time.time(), sum(proc.cpu_times()[:2])
        sleep_until(first + total - 0.5)
        t_cpu1, cpu1 = time.time(), sum(proc.cpu_times()[:2])
        sleep_until(first + total + 1.5)  # the last counted slot, plus a margin
    rows = read_slots(d / ".stoker" / "stoker.db")  # the daemon has stopped: its final record
    if len(rows) < total:
        raise BenchError(f"stoker: {len(rows)} slots recorded, expected at least {total} (see {d})")
    rows = rows[:total]
    counted = rows[WARMUP:]
    slots = [r[0] for r in rows]
    fired_ms = [ms(r[1] - r[0]) for r in counted]
    fired = [r for r in counted if r[2] == "fired" and r[5] is not None]
    start_ms = [ms(r[5] - r[0]) for r in fired]
    created_vs_fired = [ms(r[4] - r[1]) for r in fired if r[4] is not None]
    not_ok = [(r[3], r[6]) for r in fired if r[6] != "succeeded"]
    in_window = sum(1 for r in rows if t_cpu0 < r[1] <= t_cpu1)
    res: dict[str, Any] = {
        "notes": {},
        "slots": [dict(zip(SLOT_COLUMNS, r, strict=True)) for r in rows],
        "fire_ms": fired_ms,
        "start_ms": start_ms,
        "worst_fire": worst([(r[0], ms(r[1] - r[0])) for r in counted]),
        "skipped": sum(1 for r in counted if r[2] != "fired"),
        "missing": missing_slots(slots),
        "created_minus_fired_ms_max": max((abs(x) for x in created_vs_fired), default=None),
        "jobs_not_succeeded": not_ok,
        "daemon_pid": pid,
        "cpu_window": {"seconds": t_cpu1 - t_cpu0, "cpu_seconds": cpu1 - cpu0, "firings": in_window},
    }
    res["not_fired"] = res["skipped"] + res["missing"]
    if in_window:
        res["cpu_ms_per_firing"] = ms(cpu1 - cpu0) / in_window
    return res


# --------------------------------------------------------------------------------------------
# APScheduler


def measure_apscheduler(session: common.Session, procs: jobsbench.Procs, firings: int) -> dict[str, Any]:
    d = session.fresh_dir("apscheduler-every-1s")
    (d / "benchaps.py").write_text(APS_PY)
    out = d / "samples.json"
    total = WARMUP + firings
    argv = [str(ANCHORS_VENV / "bin" / "python"), str(d / "benchaps.py"), str(out), str(total), str(WARMUP)]
    with procs.running(argv, cwd=d, env=common.base_env(), logfile=d / "apscheduler.log",
                       what="APScheduler") as proc:  # fmt: skip
        try:
            proc.wait(timeout=total + 60)
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"APScheduler: not done after {total + 60} s (see {d})") from e
    if proc.returncode != 0 or not out.exists():
        tail = (d / "apscheduler.log").read_text(errors="replace").strip()[-2000:]
        raise BenchError(f"APScheduler exited {proc.returncode}: {tail}")
    data = json.loads(out.read_text())
    fired_all: list[tuple[float, float]] = [(s, t) for s, t in data["fired"]][:total]
    if len(fired_all) < total:
        raise BenchError(f"APScheduler: {len(fired_all)} firings, expected {total} (see {d})")
    counted = fired_all[WARMUP:]
    by_slot = {s: t for s, t in counted}
    # the job's first line, paired with its slot: the whole second it ran in (a few ms late at most)
    start_pairs = [(float(math.floor(t)), t) for t in data["started"]]
    start_ms = [ms(t - s) for s, t in start_pairs if s in by_slot]
    log_text = (d / "apscheduler.log").read_text(errors="replace")
    res: dict[str, Any] = {
        "notes": {},
        "fired": fired_all,
        "started": data["started"],
        "fire_ms": [ms(t - s) for s, t in counted],
        "start_ms": start_ms,
        "worst_fire": worst([(s, ms(t - s)) for s, t in counted]),
        "unpaired_starts": len(counted) - len(start_ms),
        "skipped": log_text.count("was missed by") + log_text.count("maximum number of running instances"),
        "missing": missing_slots([s for s, _ in fired_all]),
        "pid": proc.pid,
    }
    res["not_fired"] = res["skipped"] + res["missing"]
    cpu = data.get("cpu", {})
    if "begin" in cpu and "end" in cpu:
        res["cpu_ms_per_firing"] = ms(cpu["end"] - cpu["begin"]) / firings
    return res


# --------------------------------------------------------------------------------------------
# Report

# key, label, format, with a ratio (other/stoker: above 1× means stoker is more punctual)
ROWS: list[tuple[str, str, str, bool]] = [
    ("fire_p50", "firing lateness (slot → the scheduler fires it), p50", "{:.2f} ms", True),
    ("fire_p99", "firing lateness (slot → the scheduler fires it), p99", "{:.2f} ms", True),
    ("fire_max", "firing lateness (slot → the scheduler fires it), max", "{:.2f} ms", True),
    ("start_p50", "(info) slot → the job starts, p50", "{:.2f} ms", True),
    ("start_p99", "(info) slot → the job starts, p99", "{:.2f} ms", True),
    ("start_max", "(info) slot → the job starts, max", "{:.2f} ms", True),
    ("not_fired", "(info) slots not fired (skipped or missed) of {firings}", "{:d}", False),
    ("cpu_ms_per_firing", "(info) the scheduler process's own CPU per firing", "{:.2f} ms", True),
]
SYSTEMD_CELLS = {key: "≤ 60 s: by design, not measured" for key in ("fire_p50", "fire_p99", "fire_max")}


def add_summaries(res: dict[str, Any]) -> None:
    for key in ("fire", "start"):
        samples = res.get(f"{key}_ms") or []
        if samples:
            for q, v in stats(samples).items():
                res[f"{key}_{q}"] = v


def ratio(other: dict[str, Any] | None, st: dict[str, Any] | None, key: str) -> str:
    if not other or not st or other.get(key) is None or st.get(key) is None:
        return "—"
    if st[key] == 0:
        return "∞"
    return f"{other[key] / st[key]:.2f}×"


def target_cell(st: dict[str, Any] | None, key: str) -> str:
    if key != "fire_p99":
        return ""
    text = f"≤ {TARGET_P99_MS:.0f} ms"
    if not st or st.get(key) is None:
        return text
    v = st[key]
    return f"{text}: met" if v <= TARGET_P99_MS else f"{text}: missed ({v / TARGET_P99_MS:.2f}×)"


def table(results: dict[str, dict[str, Any] | None], meta: dict[str, Any]) -> str:
    st = results.get("stoker")
    aps = results.get("apscheduler")
    why = meta["unavailable"]
    head = ["metric", "stoker", "stoker target", "APScheduler", "systemd timer (defaults)"]
    head.append("APScheduler/stoker")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, fmt, with_ratio in ROWS:
        row = [
            label.format(firings=meta["params"]["firings"]),
            jobsbench.cell(st, key, fmt, "stoker" in results, why.get("stoker", "")),
            target_cell(st, key),
            jobsbench.cell(aps, key, fmt, "apscheduler" in results, why.get("apscheduler", "")),
            SYSTEMD_CELLS.get(key, "—"),
            ratio(aps, st, key) if with_ratio else "—",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def main() -> int:
    args, only = common.parse_args(
        __doc__ or "",
        TOOLS,
        "30 firings per tool instead of 200",
        "keep the temp dirs (configs, logs, databases)",
    )
    firings = 30 if args.quick else 200

    results: dict[str, dict[str, Any] | None] = {}
    meta: dict[str, Any] = {
        "run_id": common.RUN_ID,
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "cpu": jobsbench.cpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "clocksource": clocksource(),
            "loadavg_at_start": os.getloadavg(),
        },
        "params": {
            "firings": firings,
            "warmup": WARMUP,
            "schedule": 'every = "1s", command = ["true"]',
            "apscheduler": 'BlockingScheduler, CronTrigger(second="*"), default ThreadPoolExecutor (10)',
            "order": "one after the other, in --only order",
            "pycache_prefix": str(common.PYCACHE),
            "environment_had_PYTHONDONTWRITEBYTECODE": "PYTHONDONTWRITEBYTECODE" in os.environ,
        },
        "systemd_timer_defaults": SYSTEMD_DEFAULTS,
        "versions": {},
        "unavailable": {},
        "leftovers": {},
    }
    session = common.Session()
    procs = jobsbench.Procs()
    failed = False
    started = time.monotonic()
    tool = common.Stoker()
    try:
        floor_n = 20 if args.quick else 60
        log(f"floor: {floor_n} bare wake-ups at whole seconds (asyncio call_later, threading.Event.wait)")
        floor = wakeup_floor(floor_n)
        meta["wakeup_floor_ms"] = {k: {"samples": v, **stats(v)} for k, v in floor.items()}
        log(
            "floor: asyncio p50 {:.2f} ms p99 {:.2f} ms; threading p50 {:.2f} ms p99 {:.2f} ms".format(
                *(meta["wakeup_floor_ms"][k][q] for k in ("asyncio", "threading") for q in ("p50", "p99"))
            )
        )
        for name in only:
            res: dict[str, Any] = {}
            try:
                if name == "stoker":
                    meta["versions"]["stoker"] = tool.prepare()
                else:
                    meta["versions"]["apscheduler"] = prepare_apscheduler()
            except (Unavailable, BenchError, OSError, subprocess.TimeoutExpired) as e:
                log(f"{name}: not available: {e}")
                meta["unavailable"][name] = str(e)
                results[name] = None
                continue
            results[name] = res
            log(f"{name}: every 1s, {WARMUP} + {firings} firings (about {WARMUP + firings + 3} s)")
            try:
                if name == "stoker":
                    res.update(measure_stoker(session, tool, firings))
                else:
                    res.update(measure_apscheduler(session, procs, firings))
                add_summaries(res)
                log(
                    f"{name}: firing lateness p50 {res['fire_p50']:.2f} ms, p99 {res['fire_p99']:.2f} ms,"
                    f" max {res['fire_max']:.2f} ms; not fired: {res['not_fired']}"
                )
            except (BenchError, subprocess.TimeoutExpired, OSError, psutil.Error, sqlite3.Error) as e:
                failed = True
                log(f"{name}: measurement failed: {e}")
                res["error"] = str(e)
            finally:
                procs.stop_all()
                meta["leftovers"][name] = common.sweep(name)
    except KeyboardInterrupt:
        failed = True
        log("interrupted; stopping everything")
        for r in results.values():
            if r is not None and "fire_p50" not in r:
                r.setdefault("error", "interrupted")
    finally:
        common.end_of_run(session, args.keep or failed, meta, procs.stop_all)
    meta["seconds"] = time.monotonic() - started
    meta["machine"]["loadavg_at_end"] = os.getloadavg()

    report = table(results, meta)
    print(report)
    sd = SYSTEMD_DEFAULTS
    print(
        f"\nsystemd timer: not run; {sd['source']}: AccuracySec= {sd['AccuracySec']};"
        f" RandomizedDelaySec= {sd['RandomizedDelaySec']}."
    )
    for name, r in results.items():
        if r and r.get("worst_fire"):
            top = ", ".join(f"{w['ms']:.1f}" for w in r["worst_fire"])
            print(f"{LABELS[name]}: the {len(r['worst_fire'])} latest firings: {top} ms")
    fl = meta.get("wakeup_floor_ms")
    if fl:
        a, t = fl["asyncio"], fl["threading"]
        print(
            f"Wake-up floor, a bare Python process ({len(a['samples'])} whole seconds): asyncio call_later"
            f" (stoker's way) p50 {a['p50']:.2f} ms, p99 {a['p99']:.2f} ms, max {a['max']:.2f} ms;"
            f" threading.Event.wait (APScheduler's way) p50 {t['p50']:.2f} ms, p99 {t['p99']:.2f} ms,"
            f" max {t['max']:.2f} ms."
        )
    st = results.get("stoker")
    if st and st.get("jobs_not_succeeded"):
        print(f"stoker: jobs that did not succeed: {st['jobs_not_succeeded'][:5]}")
    common.write_results(RESULTS, meta, results, report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
