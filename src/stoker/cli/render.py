"""What the commands print for a person: tables padded to fit (a state coloured on a terminal),
human sizes, durations and times, one job in full, program and job output made safe for a
terminal. Every cell may hold what a program, a job or another node wrote: each is shown on
one line, control characters escaped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence

from stoker.terminal import Stream, cell, json_text, visible, visible_bytes

# typing costs milliseconds `stoker status` does not have (see locate.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{s}s"
    return f"{s}s"


def node_cell(row: dict[str, Any]) -> str:
    """The NODE column: the name, and for a lapsed node how long it has been silent."""
    if row.get("node_lapsed"):
        return f"{row['node']} (silent {human_duration(row.get('node_silent_for'))})"
    return str(row["node"])


def _crash_loop_note(loop: dict[str, Any]) -> str:
    """ "crash loop: 12 exits in 40s" (the program JSON's `crash_loop`)."""
    seconds = loop["seconds"]
    took = human_duration(seconds) if seconds >= 1 else f"{seconds:.2f}s"
    return f"crash loop: {loop['exits']} exits in {took}"


def next_try(iso: str, now: float | None = None) -> str:
    """ "next try in 4s" (a backing-off instance's `retry_at`), from now or Unix time `now`."""
    import datetime as dt  # only when an instance backs off
    import time

    left = dt.datetime.fromisoformat(iso).timestamp() - (time.time() if now is None else now)
    return f"next try in {human_duration(left)}" if left >= 1 else "next try now"


COLLAPSE_AT = 10  # instances of a program, all alike, shown as its summary line only


def _instance_note(r: dict[str, Any]) -> str:
    note = r["error"] or ""
    if not note and r["state"] == "exited" and r["exit_code"] is not None:
        note = f"exit code {r['exit_code']}"
    if r.get("waiting_for"):
        note = "waiting for " + ", ".join(r["waiting_for"])
    elif r.get("crash_loop"):
        note = _crash_loop_note(r["crash_loop"]) + (f" ({note})" if note else "")
    elif r.get("placement") and r["state"] in ("stopped", "stopping"):
        note = ("stopped by hand; " if r.get("stopped_by_hand") else "") + r["placement"]
    elif not note and r.get("stopped_by_hand") and r["state"] == "stopped":
        note = "stopped by hand"
    elif not note and r.get("status_text"):
        note = r["status_text"]
    if r.get("retry_at") and r["state"] == "backoff":
        note = f"{note}; {next_try(r['retry_at'])}" if note else next_try(r["retry_at"])
    return note


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def summary_of(rows: list[dict[str, Any]]) -> str:
    """ "10 instances: 9 running, 1 backoff" (states in the order of their first instance)."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return f"{len(rows)} instances: " + ", ".join(f"{n} {state}" for state, n in counts.items())


def print_instances(rows: list[dict[str, Any]], *, nodes: bool = False, expand: bool = False) -> None:
    """The instances, a row each; a program of several instances first gets a summary line
    (its restarts, memory and CPU summed, and how many are in each state). Unless `expand`,
    a program of COLLAPSE_AT instances or more that are all alike (one state, nothing to
    note) is shown by its summary line alone: `stoker status NAME` lists them all."""
    if not rows:
        print("no programs")
        return
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["node"], r["program"]), []).append(r)
    table = []
    for (_, program), members in groups.items():
        notes = [_instance_note(r) for r in members]
        if len(members) > 1:
            one_state = len({r["state"] for r in members}) == 1
            collapsed = one_state and not any(notes) and len(members) >= COLLAPSE_AT and not expand
            memory = [r["memory"] for r in members if r["memory"] is not None]
            cpu = [r["cpu"] for r in members if r.get("cpu") is not None]
            cells = (
                program,
                members[0]["state"] if one_state else "",
                "-",
                "-",
                str(sum(r["restarts"] for r in members)),
                _human_bytes(sum(memory)) if memory else "-",
                _cpu(sum(cpu)) if cpu else "-",
                summary_of(members) + (f" (stoker status {program} lists them)" if collapsed else ""),
            )
            table.append((node_cell(members[0]), *cells) if nodes else cells)
            if collapsed:
                continue
        for r, note in zip(members, notes, strict=True):
            cells = (
                r["name"],
                r["state"],
                str(r["pid"] or "-"),
                human_duration(r["uptime"]),
                str(r["restarts"]),
                _human_bytes(r["memory"]),
                _cpu(r.get("cpu")),
                note,
            )
            table.append((node_cell(r), *cells) if nodes else cells)
    header: tuple[str, ...] = ("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "MEMORY", "CPU", "")
    if nodes:
        header = ("NODE", *header)
    print_table(header, table, colours=_STATE_COLOURS, state_at=2 if nodes else 1)


# ANSI foreground colours; every coloured cell ends with a reset (click.style did the same).
_STATE_COLOURS = {
    "running": "\x1b[32m",  # green
    "starting": "\x1b[36m",  # cyan
    "stopping": "\x1b[36m",
    "backoff": "\x1b[33m",  # yellow
    "fatal": "\x1b[31m",  # red
    "exited": "\x1b[33m",
}


_RESET = "\x1b[0m"


def write_output(data: bytes, raw: bool) -> None:
    """Output as stored; shown safe for a terminal unless `raw`. Escaped even into a pipe (unlike
    `ls`): `stoker logs app | grep x` hands grep's lines to the terminal all the same."""
    sys.stdout.buffer.write(data if raw else visible_bytes(data))
    sys.stdout.buffer.flush()


def follow_output(events: Iterator[dict[str, Any]], raw: bool) -> None:
    out, stream = sys.stdout.buffer, Stream()
    try:
        for event in events:
            if event.get("event") == "end":  # a job's: it has finished
                break
            out.write((event["text"] if raw else stream.feed(event["text"])).encode())
            out.flush()
    except KeyboardInterrupt:
        pass
    out.write(stream.end().encode())
    out.flush()


def short_time(iso: str | None) -> str:
    if not iso:
        return "-"
    return iso[:19].replace("T", " ")


def print_table(
    header: tuple[str, ...],
    rows: Sequence[tuple[str, ...]],
    *,
    colours: Mapping[str, str] | None = None,
    state_at: int = 1,
) -> None:
    """Columns padded to fit (the last one, a free-form note, is not); with `colours`, the
    column `state_at` (a state) is coloured on a terminal unless NO_COLOR is set. Every cell is
    shown safe for a terminal, on one line: programs, jobs and other nodes wrote much of it."""
    table = [header, *[tuple(cell(c) for c in row) for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    color = colours is not None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    for n, row in enumerate(table):
        cells = [row[i].ljust(widths[i]) for i in range(len(widths))]
        if color and n:
            assert colours is not None
            cells[state_at] = f"{colours.get(row[state_at], '')}{cells[state_at]}{_RESET}"
        print("  ".join([*cells, row[-1]]).rstrip())


_JOB_COLOURS = {
    "succeeded": "\x1b[32m",
    "running": "\x1b[36m",
    "queued": "",
    "failed": "\x1b[31m",
    "cancelled": "\x1b[33m",
}


def print_jobs(jobs: Sequence[dict[str, Any]]) -> None:
    if not jobs:
        print("no jobs")
        return
    rows = []
    for j in jobs:
        when = j["finished_at"] or j["started_at"] or j["run_at"]
        note = j["error"] or ""
        if j["state"] == "queued" and j["attempt"]:
            note = f"retry at {short_time(j['run_at'])}: {note}"
        rows.append(
            (
                str(j["id"]),
                j["state"],
                j["task"],
                j["queue"],
                f"{j['attempt']}/{j['max_attempts']}",
                short_time(when),
                note.splitlines()[0] if note else "",
            )
        )
    print_table(("ID", "STATE", "TASK", "QUEUE", "ATTEMPT", "WHEN", "NOTE"), rows, colours=_JOB_COLOURS)


def print_job(job: dict[str, Any]) -> None:
    fields = [
        ("job", str(job["id"])),
        ("task", job["task"]),
        ("queue", job["queue"]),
        ("state", job["state"]),
        ("params", json_text(job["params"])),
        ("attempt", f"{job['attempt']} of {job['max_attempts']}"),
        ("priority", str(job["priority"])),
        ("key", job["key"] or "-"),
        ("created", job["created_at"]),
        ("run at", job["run_at"]),
        ("started", job["started_at"] or "-"),
        ("finished", job["finished_at"] or "-"),
        ("exit code", "-" if job["exit_code"] is None else str(job["exit_code"])),
        ("error", (job["error"] or "-").splitlines()[0]),
    ]
    if job.get("result") is not None:
        fields.append(("result", json_text(job["result"])))
    if job.get("schedule"):
        fields.append(("schedule", job["schedule"]))
    width = max(len(k) for k, _ in fields)
    for k, v in fields:  # JSON is safe as json_text wrote it; the rest may be anything
        print(f"{k.ljust(width)}  {v if k in ('params', 'result') else cell(v)}")
    attempts = job.get("attempts") or []
    if attempts:
        print("attempts:")
        for a in attempts:
            code = "" if a["exit_code"] is None else f", exit code {a['exit_code']}"
            error = f": {a['error'].splitlines()[0]}" if a["error"] and a["outcome"] != "succeeded" else ""
            print(cell(f"  {a['number']}. {short_time(a['started_at'])}  {a['outcome']}{code}{error}"))
    if job.get("output"):
        print("output:")
        output = visible(job["output"])
        sys.stdout.write(output if output.endswith("\n") else output + "\n")


def print_queues(rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        print("no queues")
        return
    table = [
        (
            q["name"],
            str(q["concurrency"]),
            str(q["running"]),
            str(q["queued"]),
            "paused" if q["paused"] else "",
        )
        for q in rows
    ]
    print_table(("QUEUE", "CONCURRENCY", "RUNNING", "QUEUED", ""), table)


def describe_param(p: Mapping[str, Any]) -> str:
    """``count (int 1..50)``, ``channel (android|ios, default android)``: one parameter."""
    rules = []
    if p["choices"] is not None:
        rules.append("|".join(json_text(c) if not isinstance(c, str) else c for c in p["choices"]))
    elif p["type"] != "any":
        rules.append(p["type"])
    if p["min"] is not None or p["max"] is not None:
        low, high = ("" if v is None else str(v) for v in (p["min"], p["max"]))
        rules[-1:] = [f"{rules[-1]} {low}..{high}" if rules else f"{low}..{high}"]
    if p["pattern"] is not None:
        rules.append(f"pattern {p['pattern']}")
    if p["default"] is not None:
        rules.append(f"default {json_text(p['default'])}")
    elif not p["required"]:
        rules.append("optional")
    if p["allow_option"]:
        rules.append("may begin with -")
    return f"{p['name']} ({', '.join(rules)})" if rules else p["name"]


def print_schedules(rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        print("no schedules")
        return
    table = []
    for r in rows:
        last = "-"
        if r["last_run"]:
            last = f"{short_time(r['last_run'])} {r['last_state'] or ''}".rstrip()
            if r["last_job"]:
                last += f" (job {r['last_job']})"
            if r.get("last_reason"):
                last += f": {r['last_reason']}"
        nxt = "paused" if r["paused"] else short_time(r["next_run"])
        trigger = r["trigger"] + (f" while {r['when_file']} exists" if r.get("when_file") else "")
        table.append((r["name"], trigger, r["task"], nxt, last))
    print_table(("SCHEDULE", "TRIGGER", "TASK", "NEXT", "LAST"), table)
