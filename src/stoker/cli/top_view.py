"""`stoker top`'s screen as lines of text: pure, from the API's JSON (programs, queues, the
last failed jobs), cut to the terminal's width and height. stoker.cli.top draws it."""

from __future__ import annotations

from stoker.cli.render import _human_bytes, human_duration, short_time
from stoker.terminal import visible

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Columns padded to fit; the last one free-form."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return [
        "  ".join([*(row[i].ljust(widths[i]) for i in range(len(widths))), row[-1]]).rstrip() for row in table
    ]


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def screen(
    programs: Sequence[dict[str, Any]],
    queues: Sequence[dict[str, Any]],
    failures: Sequence[dict[str, Any]],
    *,
    title: str,
    width: int = 100,
    height: int | None = None,
) -> list[str]:
    """The lines of the screen (each at most `width` columns; at most `height` lines, the
    failures cut first)."""
    lines = [title, ""]
    running = sum(1 for p in programs if p["state"] == "running")
    lines.append(f"PROGRAMS  {running}/{len(programs)} running")
    if programs:
        rows = [
            (
                visible(p["name"]),
                p["state"],
                str(p["pid"] or "-"),
                _cpu(p.get("cpu")),
                _human_bytes(p.get("memory")),
                str(p["restarts"]),
                human_duration(p.get("uptime")),
            )
            for p in programs
        ]
        lines += _table(("NAME", "STATE", "PID", "CPU", "MEMORY", "RESTARTS", "UPTIME"), rows)
    else:
        lines.append("no programs")
    lines += ["", "QUEUES"]
    if queues:
        queue_rows = [
            (
                visible(q["name"]),
                "paused" if q["paused"] else "active",
                str(q["queued"]),
                f"{q['running']}/{q['concurrency']}",
                str(q.get("done_per_minute", 0)),
                str(q.get("failed_per_minute", 0)),
            )
            for q in queues
        ]
        lines += _table(("QUEUE", "STATE", "QUEUED", "RUNNING", "DONE/MIN", "FAILED/MIN"), queue_rows)
    else:
        lines.append("no queues")
    lines += ["", "LAST FAILURES"]
    if failures:
        failure_rows = [
            (
                str(j["id"]),
                visible(j["task"]),
                short_time(j.get("finished_at")),
                visible((j.get("error") or "").splitlines()[0] if j.get("error") else "-"),
            )
            for j in failures
        ]
        lines += _table(("JOB", "TASK", "FINISHED", "ERROR"), failure_rows)
    else:
        lines.append("none")
    lines = [line[:width] for line in lines]
    if height is not None and len(lines) > height - 1:
        lines = lines[: max(0, height - 1)]
    return lines
