"""The commands about programs: status, nodes, start, stop, restart, signal, reload, logs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from stoker.cli.context import EXIT_FAILED, EXIT_USAGE, Context, fail, print_json, talking
from stoker.cli.jobs import job_logs
from stoker.cli.render import follow_output, human_duration, print_instances, print_table, write_output

# typing costs milliseconds `stoker status` does not have (see locate.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from stoker.cli.context import Handler


_OK_RUNNING = ("running", "starting")  # a start did its part


def selected(rows: list[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """The rows NAMEs select (all, a program, program:N), on any node; exit 2 naming one that
    selects none."""
    if not names or "all" in names:
        return rows
    # NAME:* is a program's instances here (a group's programs are known to the daemon only)
    wanted = {name.removesuffix(":*") for name in names}
    for name in names:
        if not any(name.removesuffix(":*") in (r["name"], r["program"]) for r in rows):
            fail(f"no program or instance named {name!r} on any node", EXIT_USAGE)
    return [r for r in rows if r["name"] in wanted or r["program"] in wanted]


def status(ctx: Context, args: argparse.Namespace) -> None:
    """Programs: name, state, pid, uptime, restarts, memory."""
    rows: list[dict[str, Any]]
    with talking():
        client = ctx.client()
        if args.all_nodes:  # every node's, as each last published them (on SQLite: this node's)
            rows = selected(client.programs(all_nodes=True), args.names)
        elif args.names:
            rows = []
            seen: set[str] = set()
            for name in args.names:
                for row in client.programs(name):
                    if row["name"] not in seen:
                        seen.add(row["name"])
                        rows.append(row)
        else:
            rows = client.programs()
    if args.as_json:
        print_json(rows)
    else:
        print_instances(rows, nodes=args.all_nodes, expand=bool(args.names))


def nodes_command(ctx: Context, args: argparse.Namespace) -> None:
    """The nodes sharing this daemon's store. Each alive or lapsed, last heard from, programs."""
    with talking():
        rows = ctx.client().nodes()
    if args.as_json:
        print_json(rows)
        return
    table = []
    for r in rows:
        if r["local"]:
            state, seen = "this node", "-"
        else:
            state = "alive" if r["alive"] else "lapsed"
            seen = f"{human_duration(r['silent_for'])} ago"
        counts = ", ".join(f"{n} {s}" for s, n in r["states"].items()) or "no programs"
        table.append((r["name"], state, seen, r["host"] or "-", str(r["pid"] or "-"), r["version"] or "-",
                      counts))  # fmt: skip
    header = ("NODE", "STATE", "HEARTBEAT", "HOST", "PID", "VERSION", "PROGRAMS")
    print_table(header, table, colours={"alive": "\x1b[32m", "lapsed": "\x1b[31m"})


def has_started(row: dict[str, Any]) -> bool:
    """A start did its part: the instance runs, or it waits for this node to be allowed to run
    it (`nodes`, a singleton held elsewhere: the row says why); the start is remembered."""
    return row["state"] in _OK_RUNNING or (row["state"] == "stopped" and bool(row.get("placement")))


def program_action(action: str, ok: Callable[[dict[str, Any]], bool], doc: str) -> Handler:
    def command(ctx: Context, args: argparse.Namespace) -> None:
        from contextlib import nullcontext

        rows: dict[str, dict[str, Any]] = {}
        with talking():
            client = ctx.client()
            # Each instance as it settles, on stderr (cli/progress.py); --json: the document only.
            said = None if args.as_json else _progress(ctx, action, args.names)
            with said or nullcontext():
                for name in args.names:
                    for row in client.program_action(name, action):
                        rows[row["name"]] = row
                if said is not None:  # those the stream has not said yet, from the answer
                    said.finish(list(rows.values()))
        result = list(rows.values())
        if args.as_json:
            print_json(result)
        else:
            print_instances(result)
        if not all(ok(r) for r in result):
            sys.exit(EXIT_FAILED)

    command.__doc__ = doc
    return command


def _progress(ctx: Context, action: str, names: list[str]) -> Any:
    from stoker.cli.progress import progress

    return progress(ctx.client(timeout=None), action, names)


def reload_command(ctx: Context, args: argparse.Namespace) -> None:
    """Re-read the config and apply only what changed. As SIGHUP does; a config that is not
    valid changes nothing (exit 2, with the reason)."""
    from stoker.locate import config_file
    from stoker.reload import describe

    client = ctx.client(timeout=None)
    with talking():
        # The daemon re-reads the file it was started with; `-c` only found its socket.
        running, mine = client.status()["config"], config_file(ctx.config_option)
        if os.path.realpath(running) != os.path.realpath(mine):
            fail(
                f"the daemon runs {running}; reload re-reads that file, not {mine}"
                f" (edit {running}, or restart the daemon with -c {mine})",
                EXIT_USAGE,
            )
        changes = client.reload(progress=_say_progress)  # to stderr: --json stays one document
    if args.as_json:
        print_json(changes)
    else:
        print(f"reloaded {changes.get('config', running)}: {describe(changes)}")


def _say_progress(event: dict[str, Any]) -> None:
    """A reload's progress: each instance it stops, as it stops."""
    from stoker.durations import format_duration

    name = event.get("name")
    if event.get("type") == "stopping":
        limit = format_duration(event["stop_timeout"])
        print(f"stopping {name} (up to {limit})…", file=sys.stderr, flush=True)
    elif event.get("type") in ("stopped", "started"):
        print(f"{event['type']} {name}", file=sys.stderr, flush=True)


def signal_command(ctx: Context, args: argparse.Namespace) -> None:
    """Send a signal (HUP, USR1, 15 …) to programs. To the process group of each instance."""
    from stoker.signals import parse_signal

    try:
        parse_signal(args.sig)
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    rows: dict[str, dict[str, Any]] = {}
    with talking():
        client = ctx.client()
        for name in args.names:
            for row in client.signal(name, args.sig):
                rows[row["name"]] = row
    result = list(rows.values())
    if args.as_json:
        print_json(result)
    else:
        print_instances(result)
    if not any(r["pid"] for r in result):
        fail("no running process received the signal", EXIT_FAILED)


def logs(ctx: Context, args: argparse.Namespace) -> None:
    """Show the output of a program or a job. NAME: program, program:instance, or job:ID.
    Control characters are shown as escapes (\\x1b), unless --raw."""
    stream = "err" if args.stderr_stream else "out"
    if args.name.startswith("job:"):
        job_logs(ctx, args)
        return
    with talking():
        client = ctx.client(timeout=None if args.follow else 120.0)
        if not args.follow:
            write_output(client.logs(args.name, args.lines, stream), args.raw)
            return
        follow_output(client.follow_logs(args.name, args.lines, stream), args.raw)
