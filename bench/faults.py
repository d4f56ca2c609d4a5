#!/usr/bin/env python3
"""The cluster under real network faults, for minutes: `make bench-faults` (issue 21).

Usage: .venv/bin/python bench/faults.py [--minutes M] [--seed S] [--kinds cut-db,pause,…]
                                         [--node-timeout SECONDS] [--keep]

PostgreSQL and three stoker nodes in network namespaces of their own (tests/netbench.py), a
seeded random sequence of faults (tests/faultsched.py: a node cut off from the database, cut
off from the other nodes, a lossy link to the database, the daemon paused past its lease, the
daemon SIGKILLed and started again, its clock jumped ahead or behind) while a client enqueues
jobs of 0.2–6 s, a schedule fires every second and a singleton program ticks; then everything
healed, every accepted job waited for, and the history judged (tests/fault_history.py). Prints the
table of bench/README.md and exits 1 if the checker found a broken promise. Root only (network
namespaces). The run's folder (the history, every daemon's log) is kept with --keep, or when
something was found.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fault_history import EARLY, Fault, Report
from faultsched import KINDS, run  # tests/faultsched.py
from netbench import Cluster, Timing, failover_bound, tools_missing


def table(report: Report, faults: list[Fault], timing: Timing, seed: int, minutes: float) -> str:
    t = timing.node_timeout
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(report.faults.items()))
    rows = [
        ("seed, minutes, node_timeout", f"{seed}, {minutes:g}, {t:g} s"),
        ("faults injected", f"{len(faults)} ({kinds})"),
        ("jobs accepted (201)", str(report.accepted)),
        ("jobs run to their end", str(report.ran)),
        ("jobs lost", str(len(report.lost))),
        ("jobs failed by the crash rule (3 daemon deaths)", str(len(report.given_up))),
        ("jobs run more than once (at-least-once)", str(report.run_again)),
        ("jobs run on two nodes at once", str(len(report.overlapping))),
        ("schedule slots fired", str(report.slots)),
        ("slots fired twice", str(len(report.doubled_slots))),
        (
            f"earliest slot start (bound: {EARLY:g} s, whatever the skew)",
            f"{report.slot_early:.2f} s before its time (largest skew ahead {report.skew:g} s)",
        ),
        ("slots started earlier than the bound", str(len(report.early_slots))),
        ("worst enqueue → first start", f"{report.start_latency:.2f} s"),
        ("singleton copies started", str(report.singleton_copies)),
        ("singleton overlaps", str(len(report.singleton_overlaps))),
        (
            "worst singleton gap (failover)",
            f"{report.singleton_gap:.2f} s (documented: about node_timeout, {t:g} s)",
        ),
        (f"singleton gaps over {failover_bound(timing):g} s", str(len(report.slow_failovers))),
        ("worst job re-run after its node was lost", f"{report.job_failover:.2f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'':<{width}} | result |", f"|{'-' * (width + 2)}|--------|"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--node-timeout", type=float, default=3.0)
    parser.add_argument("--keep", action="store_true", help="keep the run's folder")
    args = parser.parse_args()
    why = tools_missing()
    if why is not None:
        print(f"bench-faults: {why}", file=sys.stderr)
        return 2
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    timing = Timing(node_timeout=args.node_timeout)
    root = Path(tempfile.mkdtemp(prefix="stoker-faults-"))
    print(f"seed {args.seed}, {args.minutes:g} minutes, faults {', '.join(kinds)}; folder {root}", flush=True)
    cluster = Cluster(root, timing)
    found: list[str] = []
    try:
        report, faults = run(cluster, args.seed, args.minutes * 60, kinds, say=lambda s: print(s, flush=True))
    finally:
        leftovers = cluster.close()
    if leftovers:
        found.append(f"processes survived the daemons: {leftovers}")
    print()
    print(table(report, faults, timing, args.seed, args.minutes))
    found += report.violations()
    for line in found:
        print(f"FOUND: {line}")
    if found or args.keep:
        print(f"the run's folder (history.log, each node's daemon.log): {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
