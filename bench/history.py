#!/usr/bin/env python3
"""What the history (issue 19: the dashboard's charts) costs: stoker with `[daemon] history`
on and off, in the same run, on the same work.

Usage: .venv/bin/python bench/history.py [--quick] [--keep]

- jobs: `make bench-jobs`' throughput runs (`true` command jobs at concurrency 2, no-op Python
  call jobs), rounds alternating on and off; rates and the daemon's CPU per job;
- programs: `make bench-programs`' 100 programs, the daemon's RSS and idle CPU (the history's
  10-second samples fall in the idle window);
- memory: the daemon's RSS before and after many jobs, on and off: what the history keeps.

Prints a Markdown table and writes bench/.work/history-results.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jobs  # bench/jobs.py: stoker's job throughput runs
import run as common  # bench/run.py: the programs bench's helpers

RESULTS = common.WORK / "history-results.json"
log = common.log


class Jobs(jobs.StokerBench):
    """bench/jobs.py's stoker, its config with `history` on or off."""

    history = True

    def write(self, d: Path, tasks: str, concurrency: int = jobs.WORKERS) -> Path:
        path = super().write(d, tasks, concurrency)
        if not self.history:
            path.write_text(path.read_text().replace("[daemon]\n", "[daemon]\nhistory = false\n", 1))
        return path


class Programs(common.Stoker):
    history = True

    def _write(self, directory: Path, body: str) -> None:
        flag = "" if self.history else "history = false\n"
        (directory / "stoker.toml").write_text(f'[daemon]\nstate_dir = ".stoker"\n{flag}\n{body}')


def label(on: bool) -> str:
    return "on" if on else "off"


def job_rounds(session: common.Session, sizes: dict[str, int], rounds: int) -> dict[str, Any]:
    bench = Jobs(session, sizes)
    out: dict[str, Any] = {"on": {}, "off": {}}
    for r in range(rounds):
        for on in (True, False) if r % 2 == 0 else (False, True):
            bench.history = on
            d = session.fresh_dir(f"jobs-true-{label(on)}")
            bench.write(d, f"[tasks.true]\ncommand = {jobs.toml_list([jobs.TRUE])}\n")
            t = bench.throughput(d, "true", sizes["command"])
            out[label(on)].setdefault("true", []).append(t)
            d = session.fresh_dir(f"jobs-noop-{label(on)}")
            (d / "benchtasks.py").write_text(jobs.BENCHTASKS_PY)
            bench.write(d, '[tasks.noop]\ncall = "benchtasks:noop"\n')
            n = bench.throughput(d, "noop", sizes["noop"])
            out[label(on)].setdefault("noop", []).append(n)
            log(
                f"history {label(on)}: `true` {t['rate']:.0f} jobs/s ({t['daemon_cpu_ms_per_job']:.2f} ms"
                f" CPU/job), no-op call {n['rate']:.0f} jobs/s ({n['daemon_cpu_ms_per_job']:.3f} ms CPU/job)"
            )
    return out


def memory_after_jobs(session: common.Session, sizes: dict[str, int]) -> dict[str, Any]:
    """The daemon's RSS once started and after sizes["memory"] no-op call jobs, on and off."""
    bench = Jobs(session, sizes)
    out: dict[str, Any] = {}
    for on in (True, False):
        bench.history = on
        d = session.fresh_dir(f"memory-{label(on)}")
        (d / "benchtasks.py").write_text(jobs.BENCHTASKS_PY)
        bench.write(d, '[tasks.noop]\ncall = "benchtasks:noop"\n')
        n = sizes["memory"]
        with bench.daemon(d) as client:
            assert bench.pid is not None
            client.enqueue("noop")  # the worker pool up, the code paths warm
            time.sleep(1.0)
            before = psutil.Process(bench.pid).memory_info().rss
            client.pause("default")
            ids: list[int] = []
            for i in range(0, n, 1000):
                ids += client.enqueue_many("noop", [{} for _ in range(min(1000, n - i))])
            client.resume("default")
            client.wait(ids[-1], timeout=n / 10 + 60)
            after = psutil.Process(bench.pid).memory_info().rss
            history = client.request("GET", "/api/v1/history?range=24h") if on else None
        done = 0.0
        if history is not None:
            done = sum(p or 0 for p in history["queues"]["default"]["succeeded"])
        out[label(on)] = {"jobs": n, "rss_before_mb": before / 2**20, "rss_after_mb": after / 2**20,
                          "growth_mb": (after - before) / 2**20, "history_counted": done}  # fmt: skip
        log(f"history {label(on)}: RSS {before / 2**20:.1f} MB → {after / 2**20:.1f} MB after {n} jobs")
    return out


def programs(session: common.Session, idle_s: float) -> dict[str, Any]:
    tool = Programs()
    out: dict[str, Any] = {}
    for on in (True, False):
        tool.history = on
        log(f"history {label(on)}: {common.N_PROGRAMS} programs, idle {idle_s:.0f} s")
        out[label(on)] = common.measure_hundred(session, tool, 1, idle_s, 5)
        r = out[label(on)]
        log(
            f"history {label(on)}: RSS {r['rss_mb']:.1f} MB,"
            f" idle CPU {r['idle_cpu_ms']:.0f} ms in {idle_s:.0f} s"
        )
    return out


def table(res: dict[str, Any]) -> str:
    def med(side: str, kind: str, key: str) -> float:
        return statistics.median(t[key] for t in res["jobs"][side][kind])

    rows = [
        ("`true` jobs/s (concurrency 2)", "true", "rate", "{:.0f}"),
        ("daemon CPU per `true` job (ms)", "true", "daemon_cpu_ms_per_job", "{:.2f}"),
        ("no-op call jobs/s", "noop", "rate", "{:.0f}"),
        ("daemon CPU per call job (ms)", "noop", "daemon_cpu_ms_per_job", "{:.3f}"),
    ]
    lines = ["| | history on | history off | on/off |", "|---|---:|---:|---:|"]
    for title, kind, key, fmt in rows:
        on, off = med("on", kind, key), med("off", kind, key)
        lines.append(f"| {title} | {fmt.format(on)} | {fmt.format(off)} | {on / off:.2f}× |")
    p = res["programs"]
    for title, key, fmt in (("daemon RSS, 100 programs (MB)", "rss_mb", "{:.1f}"),
                            (f"idle daemon CPU, 100 programs, {p['on']['idle_seconds']:.0f} s (ms)",
                             "idle_cpu_ms", "{:.0f}")):  # fmt: skip
        on, off = p["on"][key], p["off"][key]
        ratio = f"{on / off:.2f}×" if off else "-"
        lines.append(f"| {title} | {fmt.format(on)} | {fmt.format(off)} | {ratio} |")
    m = res["memory"]
    lines.append(
        f"| daemon RSS growth over {m['on']['jobs']} jobs (MB) | {m['on']['growth_mb']:.1f} |"
        f" {m['off']['growth_mb']:.1f} | {m['on']['growth_mb'] - m['off']['growth_mb']:+.1f} MB |"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, one round each way")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = parser.parse_args()
    sizes = {"command": 1000, "noop": 3000, "memory": 20000} if args.quick else {
        "command": 3000, "noop": 10000, "memory": 100000}  # fmt: skip
    rounds, idle_s = (2, 20.0) if args.quick else (4, 60.0)
    session = common.Session()
    res: dict[str, Any] = {"sizes": sizes, "rounds": rounds, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        res["version"] = Jobs(session, sizes).prepare()
        res["jobs"] = job_rounds(session, sizes, rounds)
        res["memory"] = memory_after_jobs(session, sizes)
        res["programs"] = programs(session, idle_s)
    finally:
        session.close(args.keep)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(table(res))
    print(f"\n(results: {RESULTS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
