"""The checker: what the cluster promised, judged from a history kept outside it.

Its inputs are facts no node can rewrite: the job ids the API answered 201 (the enqueuer's
list), the lines jobs and the singleton appended to the history file themselves (start, a tick
every 0.1 s, end; the singleton's tick every 0.05 s and `overlap` when its flock was taken), the
slot each schedule job was fired for (the jobs table), and the faults injected, with their times.
All times are one machine's clock (every node runs here), so intervals from different nodes
compare exactly.

What it checks (`Report.violations()`):
- no accepted job lost: every job answered 201 ran to its end (an `end` line);
- no job on two nodes at once: no two attempts of one job (on any nodes) whose runs overlap,
  a run lasting from its start to its last line (an attempt killed without a word is seen until
  its last tick: an overlap shorter than a tick can go unseen);
- no slot fired twice: one job per (schedule, slot);
- at most one singleton copy at any instant: no `overlap` line, no two copies' runs (first to
  last tick) that intersect;
- no slot run early: a slot's first start is no earlier than its time minus `EARLY`, however
  far ahead a node's clock was put (each node times its slots by the database server's clock,
  measured at its heartbeats and carried on the monotonic clock: stoker/skew.py, whose BOUND
  is the threshold under which an offset is not corrected plus half a heartbeat's round trip).
Timings are reported, not judged here (a test asserts no timing): the worst gap in the
singleton's ticks (its failover) and every gap over the bound it is given (the README's "about
`node_timeout` after the death", plus the new copy's start: netbench.failover_bound), and for
each interrupted job the time from its last line to its next attempt's start.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from stoker import skew

EARLY = skew.BOUND  # seconds a slot may start before its time (a node's clock off, corrected)


@dataclass
class Run:
    """One process's run: an attempt of a job, or one copy of the singleton."""

    job: str
    attempt: str
    node: str
    pid: str
    start: float
    last: float
    ended: bool = False


@dataclass
class Fault:
    kind: str
    node: str
    start: float
    end: float = 0.0
    detail: str = ""
    skew: float = 0.0  # a `skew` fault's offset: seconds the node's clock was put ahead (negative: behind)


@dataclass
class Report:
    accepted: int = 0
    ran: int = 0  # accepted jobs that ran to their end at least once
    lost: list[int] = field(default_factory=list)
    # failed by the store's rule for a job running when its daemon died three times (it may be
    # what kills it): not lost (the job says why; `stoker retry` runs it), but not run either
    given_up: list[int] = field(default_factory=list)
    run_again: int = 0  # accepted jobs that started more than once (at-least-once: allowed)
    overlapping: list[str] = field(default_factory=list)  # jobs run on two nodes at once
    slots: int = 0
    doubled_slots: list[str] = field(default_factory=list)
    skew: float = 0.0  # the largest offset of a node's clock ahead injected (reported)
    slot_early: float = 0.0  # the most a slot's first start came before its time (0: none early)
    early_slots: list[str] = field(default_factory=list)  # started more than EARLY before their time
    start_latency: float = 0.0  # the longest from an enqueue's request to the job's first start
    singleton_copies: int = 0
    singleton_overlaps: list[str] = field(default_factory=list)
    singleton_gap: float = 0.0  # the longest time with no copy ticking, after the first tick
    singleton_gap_at: float = 0.0
    slow_failovers: list[str] = field(default_factory=list)  # singleton gaps over `check`'s bound
    job_failover: float = 0.0  # the longest time from an interrupted attempt's last line to the next start
    faults: dict[str, int] = field(default_factory=dict)

    def violations(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} accepted job(s) lost: {self.lost[:20]}")
        if self.overlapping:
            found.append(f"{len(self.overlapping)} job(s) ran on two nodes at once: {self.overlapping[:10]}")
        if self.doubled_slots:
            found.append(f"{len(self.doubled_slots)} slot(s) fired twice: {self.doubled_slots[:10]}")
        if self.early_slots:
            found.append(f"{len(self.early_slots)} slot(s) run too early: {self.early_slots[:10]}")
        if self.singleton_overlaps:
            found.append(
                f"{len(self.singleton_overlaps)} singleton overlap(s): {self.singleton_overlaps[:10]}"
            )
        return found


def read_runs(path: Path) -> tuple[dict[tuple[str, str, str], Run], list[tuple[str, str, float]]]:
    """The runs in the history file, by (job or "single", attempt, pid); the `overlap` lines."""
    runs: dict[tuple[str, str, str], Run] = {}
    overlaps: list[tuple[str, str, float]] = []
    for line in path.read_text().splitlines():
        kind, job, attempt, node, pid, when = line.split()
        t = float(when)
        if kind == "overlap":
            overlaps.append((node, pid, t))
            continue
        key = ("single" if kind == "single" else job, attempt, pid)
        run = runs.get(key)
        if run is None:
            runs[key] = run = Run(key[0], attempt, node, pid, t, t)
        run.last = max(run.last, t)
        run.ended = run.ended or kind == "end"
    return runs, overlaps


def _intersecting(runs: list[Run]) -> list[tuple[Run, Run]]:
    ordered = sorted(runs, key=lambda r: r.start)
    pairs = []
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b.start >= a.last:
                break
            pairs.append((a, b))
    return pairs


def check(
    history: Path,
    accepted: list[int],
    slot_of: dict[int, tuple[str, float]],
    faults: list[Fault],
    bound: float | None = None,
    given_up: frozenset[int] = frozenset(),
    accepted_at: dict[int, float] | None = None,
) -> Report:
    """Judge `history`; `accepted`: the ids answered 201; `slot_of`: job id → (schedule, slot)
    of the schedule's jobs (from the store); `bound`: the singleton's failover bound in seconds
    (each gap longer is listed in `slow_failovers`, reported, not judged); `given_up`: the ids
    the store failed by its crash rule (see `Report.given_up`); `accepted_at`: id → when its
    enqueue was sent (the machine's clock), for `Report.start_latency`."""
    runs, overlap_lines = read_runs(history)
    report = Report(accepted=len(accepted))
    by_job: dict[str, list[Run]] = defaultdict(list)
    singles: list[Run] = []
    for run in runs.values():
        (singles if run.job == "single" else by_job[run.job]).append(run)

    for job in accepted:
        attempts = by_job.get(str(job), [])
        if any(r.ended for r in attempts):
            report.ran += 1
        elif job in given_up:
            report.given_up.append(job)
        else:
            report.lost.append(job)
        if len(attempts) > 1:
            report.run_again += 1
        if attempts and accepted_at and job in accepted_at:
            first = min(r.start for r in attempts)
            report.start_latency = max(report.start_latency, first - accepted_at[job])
    for name, attempts in sorted(by_job.items()):
        for a, b in _intersecting(attempts):
            report.overlapping.append(
                f"job {name}: attempt {a.attempt} on {a.node} ({a.start:.3f}–{a.last:.3f}) and attempt {b.attempt} "
                f"on {b.node} ({b.start:.3f}–{b.last:.3f})"
            )
        ordered = sorted(attempts, key=lambda r: r.start)
        for a, b in itertools.pairwise(ordered):
            if not a.ended:
                report.job_failover = max(report.job_failover, b.start - a.last)

    fired: dict[tuple[str, float], set[int]] = defaultdict(set)
    for job, schedule_slot in slot_of.items():
        if str(job) in by_job:
            fired[schedule_slot].add(job)
    report.slots = len(fired)
    report.skew = max(
        (f.skew for f in faults if f.skew > 0), default=0.0
    )  # a clock behind fires nothing early
    for (schedule, slot), jobs in sorted(fired.items()):
        if len(jobs) > 1:
            report.doubled_slots.append(f"{schedule} {slot}: jobs {sorted(jobs)}")
        first = min(r.start for job in jobs for r in by_job[str(job)])
        report.slot_early = max(report.slot_early, slot - first)
        if first < slot - EARLY:
            report.early_slots.append(
                f"{schedule} {slot}: first started {slot - first:.3f}s before its time (bound {EARLY:g}s; "
                f"largest skew ahead {report.skew:g}s)"
            )

    report.singleton_copies = len(singles)
    for node, pid, t in overlap_lines:
        report.singleton_overlaps.append(f"copy {pid} on {node} found the lock taken at {t:.3f}")
    for a, b in _intersecting(singles):
        report.singleton_overlaps.append(
            f"copies {a.pid} on {a.node} ({a.start:.3f}–{a.last:.3f}) and {b.pid} on {b.node} "
            f"({b.start:.3f}–{b.last:.3f})"
        )
    ticks = sorted((r.start, r.last) for r in singles)
    reach = ticks[0][1] if ticks else 0.0
    for start, last in ticks[1:]:
        if start - reach > report.singleton_gap:
            report.singleton_gap, report.singleton_gap_at = start - reach, reach
        if bound is not None and start - reach > bound:
            report.slow_failovers.append(f"{start - reach:.2f}s from {reach:.3f}")
        reach = max(reach, last)

    for fault in faults:
        report.faults[fault.kind] = report.faults.get(fault.kind, 0) + 1
    return report
