"""The `stoker` command.

Kept light on purpose: a bare `stoker status` imports argparse, the config reader and a
standard-library HTTP client, never the server stack, so it answers in tens of milliseconds.
Written with argparse, not click: importing click alone took ~45 ms, more than the rest of
`stoker status` together, where argparse takes a few (it shares `re` with json). Help and
usage errors keep click's layout; only the wording of argparse's own usage errors changed.
Exit codes: 0 ok, 1 operation failed, 2 usage or config error, 3 daemon not running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from stoker import __version__
from stoker.terminal import Stream, cell, json_text, visible, visible_bytes

# typing and pathlib cost milliseconds `stoker status` does not have (see locate.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from stoker.client import Client
    from stoker.config import Config

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 1, 2, 3


def _fail(message: str, code: int) -> NoReturn:
    print(f"stoker: {visible(message)}", file=sys.stderr)  # it may quote the daemon's text
    sys.exit(code)


class Context:
    def __init__(self, config_option: str | None) -> None:
        self.config_option = config_option
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from stoker.config import ConfigError, load_config
            from stoker.locate import find_config_path

            path = find_config_path(self.config_option)
            try:
                self._config = load_config(path)
            except ConfigError as e:
                hint = "" if path.exists() else " (create one with `stoker init`, or pass -c FILE)"
                _fail(f"{e}{hint}", EXIT_USAGE)
        return self._config

    def client(self, timeout: float | None = 120.0) -> Client:
        """A client of this config's daemon, found without decoding the whole config."""
        from stoker.client import Client
        from stoker.locate import config_file, quick_state_dir

        state_dir = quick_state_dir(config_file(self.config_option))
        if state_dir is None:  # unreadable or odd: the full loader says exactly what is wrong
            return Client.for_config(self.config, timeout=timeout)
        return Client(socket_path=os.path.join(state_dir, "stoker.sock"), timeout=timeout)


@contextmanager
def _talking() -> Iterator[None]:
    """Turn client errors into the contract's exit codes."""
    from stoker.client import ClientError, NotRunning

    try:
        yield
    except NotRunning:
        _fail("the daemon is not running (start it with `stoker up -d`)", EXIT_NOT_RUNNING)
    except ClientError as e:
        _fail(str(e), EXIT_USAGE if e.status in (400, 404, 422) else EXIT_FAILED)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


# config --------------------------------------------------------------------------------------


def init(ctx: Context, args: argparse.Namespace) -> None:
    """Write a commented starter stoker.toml."""
    from stoker.config import STARTER_TOML
    from stoker.locate import find_config_path

    path = find_config_path(ctx.config_option)
    if path.exists() and not args.force:
        _fail(f"{path} exists; use --force to overwrite it", EXIT_FAILED)
    path.write_text(STARTER_TOML)
    print(f"wrote {path}; check it with `stoker check`, run it with `stoker up`")


def check(ctx: Context, args: argparse.Namespace) -> None:
    """Validate the config. Exit 0, or 2 naming the file, the key and what was expected."""
    from stoker.config import SCHEDULE_TASK_PREFIX

    config = ctx.config
    instances = sum(p.instances for p in config.programs.values())
    # What the user declared: an inline schedule command is an internal task schedule.NAME, on
    # an internal queue of that name unless it names one.
    inline = {
        SCHEDULE_TASK_PREFIX + name
        for name, s in config.schedules.items()
        if s.task == SCHEDULE_TASK_PREFIX + name
    }
    tasks = [name for name in config.tasks if name not in inline]
    queues = [name for name in config.queues if name not in inline]
    counts = {
        "programs": len(config.programs),
        "instances": instances,
        "tasks": len(tasks),
        "queues": len(queues),
        "schedules": len(config.schedules),
        "webhooks": len(config.notify),
    }
    from stoker.advice import warnings

    advice = warnings(config, os.environ)
    if args.as_json:
        _print_json({"ok": True, "config": config.path, **counts, "warnings": advice})
        return
    for line in advice:  # exit 0 all the same: the config is valid, the machine may change
        print(f"stoker: warning: {config.path}: {line}", file=sys.stderr)
    said = [_count(counts["programs"], "program")]
    if instances != counts["programs"]:
        said[0] += f" ({_count(instances, 'instance')})"
    said += [
        _count(n, kind[:-1]) for kind, n in counts.items() if n and kind not in ("programs", "instances")
    ]
    print(f"{config.path}: ok, {', '.join(said)}")


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def import_command(ctx: Context, args: argparse.Namespace) -> None:
    """Turn a supervisord, pm2 or Procfile config into a stoker.toml. It is printed, commented:
    FILE is a supervisord .conf/.ini, a pm2 ecosystem .json/.js or a Procfile."""
    from stoker.importing import InputError, convert, read

    path = os.path.abspath(args.file)
    try:
        text = convert(read(path), path, format=args.format, env=args.env)
    except InputError as e:
        _fail(str(e), EXIT_USAGE)
    sys.stdout.write(text)


def systemd(ctx: Context, args: argparse.Namespace) -> None:
    """Print a systemd unit that runs this config's daemon. Install it as its comments say."""
    import getpass

    from stoker.systemd import stoker_command, unit

    sys.stdout.write(unit(ctx.config, stoker_command(), user=args.user, username=getpass.getuser()))


# the daemon ----------------------------------------------------------------------------------


def up(ctx: Context, args: argparse.Namespace) -> None:
    """Start the daemon (foreground; -d to detach)."""
    from stoker.daemon.main import StartupError, run

    try:
        code = run(ctx.config, detach=args.detach)
    except StartupError as e:
        _fail(str(e), EXIT_FAILED)
    sys.exit(code)


def down(ctx: Context, args: argparse.Namespace) -> None:
    """Stop every program gracefully, then the daemon."""
    from pathlib import Path

    from stoker.daemon.lock import is_locked

    with _talking():
        ctx.client().shutdown()
    config = ctx.config
    stops = [p.stop_timeout for p in config.programs.values()]
    if config.tasks:  # running jobs get shutdown_timeout to finish, then their stop_timeout
        stops.append(config.daemon.shutdown_timeout + max(t.stop_timeout for t in config.tasks.values()))
    limit = args.timeout if args.timeout is not None else max(stops, default=0) + 15
    deadline = time.monotonic() + limit
    state_dir = Path(config.daemon.state_dir)
    while is_locked(state_dir):
        if time.monotonic() > deadline:
            _fail(f"the daemon is still stopping after {limit:g}s", EXIT_FAILED)
        time.sleep(0.02)
    print("stoker: stopped")


# programs ------------------------------------------------------------------------------------


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def _human_duration(seconds: float | None) -> str:
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


def _node_cell(row: dict[str, Any]) -> str:
    """The NODE column: the name, and for a lapsed node how long it has been silent."""
    if row.get("node_lapsed"):
        return f"{row['node']} (silent {_human_duration(row.get('node_silent_for'))})"
    return str(row["node"])


def _crash_loop_note(loop: dict[str, Any]) -> str:
    """ "crash loop: 12 exits in 40s" (the program JSON's `crash_loop`)."""
    seconds = loop["seconds"]
    took = _human_duration(seconds) if seconds >= 1 else f"{seconds:.2f}s"
    return f"crash loop: {loop['exits']} exits in {took}"


def _print_instances(rows: list[dict[str, Any]], *, nodes: bool = False) -> None:
    if not rows:
        print("no programs")
        return
    table = []
    for r in rows:
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
        cells = (
            r["name"],
            r["state"],
            str(r["pid"] or "-"),
            _human_duration(r["uptime"]),
            str(r["restarts"]),
            _human_bytes(r["memory"]),
            "-" if r.get("cpu") is None else f"{r['cpu']:.0f}%",
            note,
        )
        table.append((_node_cell(r), *cells) if nodes else cells)
    header: tuple[str, ...] = ("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "MEMORY", "CPU", "")
    if nodes:
        header = ("NODE", *header)
    _print_table(header, table, colours=_STATE_COLOURS, state_at=2 if nodes else 1)


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


def _selected(rows: list[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """The rows NAMEs select (all, a program, program:N), on any node; exit 2 naming one that
    selects none."""
    if not names or "all" in names:
        return rows
    # NAME:* is a program's instances here (a group's programs are known to the daemon only)
    wanted = {name.removesuffix(":*") for name in names}
    for name in names:
        if not any(name.removesuffix(":*") in (r["name"], r["program"]) for r in rows):
            _fail(f"no program or instance named {name!r} on any node", EXIT_USAGE)
    return [r for r in rows if r["name"] in wanted or r["program"] in wanted]


def status(ctx: Context, args: argparse.Namespace) -> None:
    """Programs: name, state, pid, uptime, restarts, memory."""
    rows: list[dict[str, Any]]
    with _talking():
        client = ctx.client()
        if args.all_nodes:  # every node's, as each last published them (on SQLite: this node's)
            rows = _selected(client.programs(all_nodes=True), args.names)
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
        _print_json(rows)
    else:
        _print_instances(rows, nodes=args.all_nodes)


def nodes_command(ctx: Context, args: argparse.Namespace) -> None:
    """The nodes sharing this daemon's store. Each alive or lapsed, last heard from, programs."""
    with _talking():
        rows = ctx.client().nodes()
    if args.as_json:
        _print_json(rows)
        return
    table = []
    for r in rows:
        if r["local"]:
            state, seen = "this node", "-"
        else:
            state = "alive" if r["alive"] else "lapsed"
            seen = f"{_human_duration(r['silent_for'])} ago"
        counts = ", ".join(f"{n} {s}" for s, n in r["states"].items()) or "no programs"
        table.append((r["name"], state, seen, r["host"] or "-", str(r["pid"] or "-"), r["version"] or "-",
                      counts))  # fmt: skip
    header = ("NODE", "STATE", "HEARTBEAT", "HOST", "PID", "VERSION", "PROGRAMS")
    _print_table(header, table, colours={"alive": "\x1b[32m", "lapsed": "\x1b[31m"})


def _started(row: dict[str, Any]) -> bool:
    """A start did its part: the instance runs, or it waits for this node to be allowed to run
    it (`nodes`, a singleton held elsewhere: the row says why); the start is remembered."""
    return row["state"] in _OK_RUNNING or (row["state"] == "stopped" and bool(row.get("placement")))


def _program_action(action: str, ok: Callable[[dict[str, Any]], bool], doc: str) -> Handler:
    def command(ctx: Context, args: argparse.Namespace) -> None:
        rows: dict[str, dict[str, Any]] = {}
        with _talking():
            client = ctx.client()
            for name in args.names:
                for row in client.program_action(name, action):
                    rows[row["name"]] = row
        result = list(rows.values())
        if args.as_json:
            _print_json(result)
        else:
            _print_instances(result)
        if not all(ok(r) for r in result):
            sys.exit(EXIT_FAILED)

    command.__doc__ = doc
    return command


def reload_command(ctx: Context, args: argparse.Namespace) -> None:
    """Re-read the config and apply only what changed. As SIGHUP does; a config that is not
    valid changes nothing (exit 2, with the reason)."""
    from stoker.locate import config_file
    from stoker.reload import describe

    client = ctx.client(timeout=None)
    with _talking():
        # The daemon re-reads the file it was started with; `-c` only found its socket.
        running, mine = client.status()["config"], config_file(ctx.config_option)
        if os.path.realpath(running) != os.path.realpath(mine):
            _fail(
                f"the daemon runs {running}; reload re-reads that file, not {mine}"
                f" (edit {running}, or restart the daemon with -c {mine})",
                EXIT_USAGE,
            )
        changes = client.reload(progress=_say_progress)  # to stderr: --json stays one document
    if args.as_json:
        _print_json(changes)
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
        _fail(str(e), EXIT_USAGE)
    rows: dict[str, dict[str, Any]] = {}
    with _talking():
        client = ctx.client()
        for name in args.names:
            for row in client.signal(name, args.sig):
                rows[row["name"]] = row
    result = list(rows.values())
    if args.as_json:
        _print_json(result)
    else:
        _print_instances(result)
    if not any(r["pid"] for r in result):
        _fail("no running process received the signal", EXIT_FAILED)


def logs(ctx: Context, args: argparse.Namespace) -> None:
    """Show the output of a program or a job. NAME: program, program:instance, or job:ID.
    Control characters are shown as escapes (\\x1b), unless --raw."""
    stream = "err" if args.stderr_stream else "out"
    if args.name.startswith("job:"):
        _job_logs(ctx, args)
        return
    with _talking():
        client = ctx.client(timeout=None if args.follow else 120.0)
        if not args.follow:
            _write_output(client.logs(args.name, args.lines, stream), args.raw)
            return
        _follow_output(client.follow_logs(args.name, args.lines, stream), args.raw)


def _write_output(data: bytes, raw: bool) -> None:
    """Output as stored; shown safe for a terminal unless `raw`. Escaped even into a pipe (unlike
    `ls`): `stoker logs app | grep x` hands grep's lines to the terminal all the same."""
    sys.stdout.buffer.write(data if raw else visible_bytes(data))
    sys.stdout.buffer.flush()


def _follow_output(events: Iterator[dict[str, Any]], raw: bool) -> None:
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


# jobs ----------------------------------------------------------------------------------------


def _job_logs(ctx: Context, args: argparse.Namespace) -> None:
    try:
        job_id = int(args.name[4:])
    except ValueError:
        _fail(f"expected job:ID, got {args.name!r}", EXIT_USAGE)
    with _talking():
        client = ctx.client(timeout=None if args.follow else 120.0)
        if not args.follow:
            _write_output(client.job_logs(job_id, args.lines), args.raw)
            return
        _follow_output(client.follow_job_logs(job_id, args.lines), args.raw)


def _params(pairs: list[str]) -> dict[str, Any]:
    """``name=text`` (a string) or ``name:=JSON`` (a number, true, null, a list…)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            _fail(f"expected NAME=VALUE or NAME:=JSON, got {pair!r}", EXIT_USAGE)
        if name.endswith(":"):
            name = name[:-1]
            try:
                params[name] = json.loads(value)
            except ValueError:
                _fail(f"{name}:= expects JSON, got {value!r}", EXIT_USAGE)
        else:
            params[name] = value
    return params


def _short_time(iso: str | None) -> str:
    if not iso:
        return "-"
    return iso[:19].replace("T", " ")


def _print_table(
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


def _print_jobs(jobs: Sequence[dict[str, Any]]) -> None:
    if not jobs:
        print("no jobs")
        return
    rows = []
    for j in jobs:
        when = j["finished_at"] or j["started_at"] or j["run_at"]
        note = j["error"] or ""
        if j["state"] == "queued" and j["attempt"]:
            note = f"retry at {_short_time(j['run_at'])}: {note}"
        rows.append(
            (
                str(j["id"]),
                j["state"],
                j["task"],
                j["queue"],
                f"{j['attempt']}/{j['max_attempts']}",
                _short_time(when),
                note.splitlines()[0] if note else "",
            )
        )
    _print_table(("ID", "STATE", "TASK", "QUEUE", "ATTEMPT", "WHEN", "NOTE"), rows, colours=_JOB_COLOURS)


def _print_job(job: dict[str, Any]) -> None:
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
            print(cell(f"  {a['number']}. {_short_time(a['started_at'])}  {a['outcome']}{code}{error}"))
    if job.get("output"):
        print("output:")
        output = visible(job["output"])
        sys.stdout.write(output if output.endswith("\n") else output + "\n")


def _job_exit(job: dict[str, Any]) -> None:
    if job["state"] in ("failed", "cancelled"):
        sys.exit(EXIT_FAILED)


def enqueue(ctx: Context, args: argparse.Namespace) -> None:
    """Queue a job of a task from the config. Like: stoker enqueue TASK name=value name:=JSON…"""
    if args.delay is not None and args.at is not None:
        _fail("give --in or --at, not both", EXIT_USAGE)
    params = _params(args.params)
    with _talking():
        client = ctx.client()
        job = client.enqueue(
            args.task, params, delay=args.delay, run_at=args.at, key=args.key, priority=args.priority
        )
        if args.wait:
            if not args.as_json:
                print(f"job {job['id']} {job['state']} (task {job['task']}, queue {job['queue']}); waiting…",
                      file=sys.stderr)  # fmt: skip
            job = client.wait(job["id"])
    if args.as_json:
        _print_json(job)
    elif args.wait:
        _print_job(job)
    else:
        print(f"job {job['id']} {job['state']} (task {job['task']}, queue {job['queue']})")
    if args.wait:
        _job_exit(job)


def jobs_command(ctx: Context, args: argparse.Namespace) -> None:
    """Jobs, newest first, with filters."""
    with _talking():
        rows = ctx.client().jobs(state=args.state, queue=args.queue, task=args.task, limit=args.limit)
    if args.as_json:
        _print_json(rows)
    else:
        _print_jobs(rows)


def job_command(ctx: Context, args: argparse.Namespace) -> None:
    """One job: its state, every attempt, its output. With --wait, once it has finished."""
    with _talking():
        client = ctx.client(timeout=None if args.wait else 120.0)
        job = client.wait(args.id) if args.wait else client.job(args.id)
    if args.as_json:
        _print_json(job)
    else:
        _print_job(job)
    if args.wait:
        _job_exit(job)


def _job_action(action: str, doc: str) -> Handler:
    def command(ctx: Context, args: argparse.Namespace) -> None:
        results = []
        with _talking():
            client = ctx.client()
            for job_id in args.ids:
                results.append(client.cancel(job_id) if action == "cancel" else client.retry(job_id))
        if args.as_json:
            _print_json(results)
        else:
            _print_jobs(results)

    command.__doc__ = doc
    return command


def _print_queues(rows: Sequence[dict[str, Any]]) -> None:
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
    _print_table(("QUEUE", "CONCURRENCY", "RUNNING", "QUEUED", ""), table)


def queues_command(ctx: Context, args: argparse.Namespace) -> None:
    """Queues: concurrency, running and queued jobs, paused or not."""
    with _talking():
        rows = ctx.client().queues()
    if args.as_json:
        _print_json(rows)
    else:
        _print_queues(rows)


def _describe_param(p: Mapping[str, Any]) -> str:
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


def tasks_command(ctx: Context, args: argparse.Namespace) -> None:
    """Tasks a job may run, with their parameters and rules."""
    with _talking():
        rows = ctx.client().tasks()
    if args.as_json:
        _print_json(rows)
        return
    if not rows:
        print("no tasks")
        return
    table = []
    for t in rows:
        described = [_describe_param(p) for p in t["params"]]
        if t["open_ended"]:
            described.append("any others")
        table.append((t["name"], t["queue"], t["kind"], ", ".join(described) or "-"))
    _print_table(("TASK", "QUEUE", "KIND", "PARAMETERS"), table)


def queue_command(ctx: Context, args: argparse.Namespace) -> None:
    """Pause or resume a queue. Persisted: it stays paused across restarts."""
    with _talking():
        client = ctx.client()
        rows = client.pause(args.queue) if args.action == "pause" else client.resume(args.queue)
    if args.as_json:
        _print_json(rows)
    else:
        _print_queues(rows)


# schedules ------------------------------------------------------------------------------------


def _print_schedules(rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        print("no schedules")
        return
    table = []
    for r in rows:
        last = "-"
        if r["last_run"]:
            last = f"{_short_time(r['last_run'])} {r['last_state'] or ''}".rstrip()
            if r["last_job"]:
                last += f" (job {r['last_job']})"
            if r.get("last_reason"):
                last += f": {r['last_reason']}"
        nxt = "paused" if r["paused"] else _short_time(r["next_run"])
        trigger = r["trigger"] + (f" while {r['when_file']} exists" if r.get("when_file") else "")
        table.append((r["name"], trigger, r["task"], nxt, last))
    _print_table(("SCHEDULE", "TRIGGER", "TASK", "NEXT", "LAST"), table)


def schedules_command(ctx: Context, args: argparse.Namespace) -> None:
    """Schedules: trigger, next run, last run and how it ended."""
    with _talking():
        rows = ctx.client().schedules()
    if args.as_json:
        _print_json(rows)
    else:
        _print_schedules(rows)


def schedule_command(ctx: Context, args: argparse.Namespace) -> None:
    """Run, pause or resume a schedule, or show its slots."""
    if args.action == "history":
        with _talking():
            rows = ctx.client().schedule_slots(args.name, args.limit)
        if args.as_json:
            _print_json(rows)
        elif not rows:
            print(f"schedule {args.name}: no slot recorded yet")
        else:
            table = [
                (_short_time(r["slot"]), r["state"], str(r["job"] or "-"), r["reason"] or "") for r in rows
            ]
            _print_table(("SLOT", "STATE", "JOB", "REASON"), table)
        return
    with _talking():
        result = ctx.client().schedule_action(args.name, args.action)
    if args.as_json:
        _print_json(result)
    elif args.action == "run":
        print(f"job {result['id']} {result['state']} (task {result['task']}, schedule {args.name})")
    else:
        _print_schedules([result])


def cron(ctx: Context, args: argparse.Namespace) -> None:
    """Print the next fire times of a cron expression. Debian cron's rules, DST included."""
    import datetime as dt

    from stoker.schedule.triggers import Reboot, TriggerError, fire_times, parse_cron, zone_named

    try:
        zone = zone_named(args.tz)
        trigger = parse_cron(args.expression, zone)
    except TriggerError as e:
        _fail(str(e), EXIT_USAGE)
    after = dt.datetime.now(zone)
    if args.after is not None:
        try:
            after = dt.datetime.fromisoformat(args.after.strip().replace("Z", "+00:00"))
        except ValueError:
            _fail(f"--after expects an ISO 8601 time, like 2026-11-23T09:00, not {args.after!r}", EXIT_USAGE)
        if after.tzinfo is None:
            after = after.replace(tzinfo=zone)
    if args.count < 1:
        _fail("-n must be 1 or more", EXIT_USAGE)
    times = [
        dt.datetime.fromtimestamp(t, zone).isoformat()
        for t in fire_times(trigger, after.timestamp(), args.count)
    ]
    if args.as_json:
        _print_json(times)
        return
    if isinstance(trigger, Reboot):
        print(
            "@reboot fires once when the daemon starts after the machine booted: no times to show",
            file=sys.stderr,
        )
    for line in times:
        print(line)


# the command line ----------------------------------------------------------------------------

if TYPE_CHECKING:
    Handler = Callable[[Context, argparse.Namespace], None]
    Arg = tuple[tuple[str, ...], dict[str, Any]]  # what one add_argument call gets


def _arg(*flags: str, **options: Any) -> Arg:
    return flags, options


_JSON = _arg("--json", dest="as_json", action="store_true", help="Print one JSON document.")
_NAMES = _arg("names", nargs="+", metavar="NAMES")
_OK_RUNNING = ("running", "starting")

# name: (handler, its arguments); the handler's docstring is the command's help.
COMMANDS: dict[str, tuple[Handler, list[Arg]]] = {
    "init": (init, [_arg("--force", action="store_true", help="Overwrite an existing file.")]),
    "check": (check, [_JSON]),
    "import": (
        import_command,
        [
            _arg("file", metavar="FILE"),
            _arg(
                "--format",
                choices=["supervisord", "pm2", "procfile"],
                metavar="FORMAT",
                help="supervisord, pm2 or procfile (default: told by the file's name or contents).",
            ),
            _arg(
                "--env",
                metavar="NAME",
                help="pm2: merge each app's env_NAME into its env, as `pm2 start --env NAME` does.",
            ),
        ],
    ),
    "systemd": (
        systemd,
        [_arg("--user", action="store_true", help="A user unit (systemctl --user), not a system one.")],
    ),
    "up": (
        up,
        [_arg("-d", "--detach", action="store_true", help="Run in the background; return once it answers.")],
    ),
    "down": (
        down,
        [_arg("--timeout", type=float, metavar="FLOAT", help="Seconds to wait for the daemon to exit.")],
    ),
    "status": (
        status,
        [
            _arg("names", nargs="*", metavar="NAMES"),
            _arg(
                "--all-nodes",
                dest="all_nodes",
                action="store_true",
                help="Every node sharing the store (PostgreSQL), as each last published; a NODE column.",
            ),
            _JSON,
        ],
    ),
    "nodes": (nodes_command, [_JSON]),
    "start": (
        _program_action(
            "start",
            _started,
            "Start programs and wait until they run. NAME: program, program:instance, or all.",
        ),
        [_NAMES, _JSON],
    ),
    "stop": (
        _program_action(
            "stop",
            lambda r: r["state"] in ("stopped", "exited", "fatal"),
            "Stop programs gracefully. Each gets stop_signal, then SIGKILL after stop_timeout.",
        ),
        [_NAMES, _JSON],
    ),
    "restart": (
        _program_action("restart", _started, "Stop then start programs."),
        [_NAMES, _JSON],
    ),
    "signal": (signal_command, [_arg("sig", metavar="SIG"), _NAMES, _JSON]),
    "reload": (reload_command, [_JSON]),
    "logs": (
        logs,
        [
            _arg("name", metavar="NAME"),
            _arg(
                "-n", "--lines", type=int, default=100, metavar="INTEGER", help="How many lines of the end."
            ),
            _arg("-f", "--follow", action="store_true", help="Keep printing new output."),
            _arg(
                "--stderr",
                dest="stderr_stream",
                action="store_true",
                help='The separate stderr log (log.stderr = "separate").',
            ),
            _arg(
                "--raw",
                action="store_true",
                help="The bytes as they are, control characters too (for a file).",
            ),
        ],
    ),
    "enqueue": (
        enqueue,
        [
            _arg("task", metavar="TASK"),
            _arg(
                "params",
                nargs="*",
                metavar="NAME=VALUE",
                help="Parameters: count=5 (converted for an int, number or bool parameter); "
                "NAME:=JSON for other JSON.",
            ),
            _arg("--in", dest="delay", metavar="DURATION", help='Run after this long ("5m", "2h", 30).'),
            _arg("--at", metavar="ISO", help="Run at this time (ISO 8601; without offset: local time)."),
            _arg("--key", metavar="KEY", help="Dedup: while a job with this key is live, return it."),
            _arg("--priority", type=int, default=0, metavar="N", help="Higher runs first (default 0)."),
            _arg("--wait", action="store_true", help="Wait until it has finished; exit 1 if it failed."),
            _JSON,
        ],
    ),
    "jobs": (
        jobs_command,
        [
            _arg(
                "--state",
                choices=["queued", "running", "succeeded", "failed", "cancelled"],
                help="Only jobs in this state.",
            ),
            _arg("--queue", metavar="QUEUE", help="Only jobs of this queue."),
            _arg("--task", metavar="TASK", help="Only jobs of this task."),
            _arg("-n", "--limit", type=int, default=50, metavar="N", help="How many (default 50)."),
            _JSON,
        ],
    ),
    "job": (
        job_command,
        [
            _arg("id", type=int, metavar="ID"),
            _arg("--wait", action="store_true", help="Wait until it has finished; exit 1 if it failed."),
            _JSON,
        ],
    ),
    "cancel": (
        _job_action("cancel", "Cancel jobs: a queued one never runs, a running one is stopped."),
        [_arg("ids", type=int, nargs="+", metavar="ID"), _JSON],
    ),
    "retry": (
        _job_action("retry", "Queue failed or cancelled jobs again, with fresh attempts."),
        [_arg("ids", type=int, nargs="+", metavar="ID"), _JSON],
    ),
    "queues": (queues_command, [_JSON]),
    "tasks": (tasks_command, [_JSON]),
    "schedules": (schedules_command, [_JSON]),
    "schedule": (
        schedule_command,
        [
            _arg("action", choices=["run", "pause", "resume", "history"]),
            _arg("name", metavar="NAME"),
            _arg("-n", "--limit", type=int, default=20, metavar="N", help="history: how many (default 20)."),
            _JSON,
        ],
    ),
    "cron": (
        cron,
        [
            _arg("expression", metavar="EXPR", help='A cron expression, quoted: "*/30 * * * *", "@daily".'),
            _arg("--tz", metavar="ZONE", help="Time zone (default: the system's), like Europe/Berlin."),
            _arg("--after", metavar="ISO", help="Start from this time (default: now; without offset: --tz)."),
            _arg("-n", dest="count", type=int, default=10, metavar="N", help="How many (default 10)."),
            _JSON,
        ],
    ),
    "queue": (
        queue_command,
        [_arg("action", choices=["pause", "resume"]), _arg("queue", metavar="QUEUE"), _JSON],
    ),
}

_CONFIG = _arg(
    "-c",
    "--config",
    dest="config_option",
    metavar="FILE",
    help="Config file (default: $STOKER_CONFIG, else ./stoker.toml).",
)
# `-c` is also taken after the command name (unlisted in the command's help), and wins there.
_CONFIG_AFTER = _arg(*_CONFIG[0], **{**_CONFIG[1], "default": argparse.SUPPRESS, "help": argparse.SUPPRESS})
_VERSION = _arg(
    "--version", action="version", version=f"stoker, version {__version__}", help="Show the version and exit."
)
_HELP = _arg("-h", "--help", action="help", help="Show this message and exit.")


class _Parser(argparse.ArgumentParser):
    """argparse, with help and usage errors laid out the way click laid them out before."""

    def __init__(self, prog: str, description: str, args: list[Arg], commands: Sequence[str] = ()) -> None:
        super().__init__(
            prog=prog,
            description=description,
            add_help=False,
            allow_abbrev=False,
            formatter_class=_formatter,
        )
        for flags, options in [*args, _HELP]:
            self.add_argument(*flags, **options)
        self.commands = commands
        # The usage after the prog, worked out now: parse_intermixed_args hides the positionals
        # while it runs (and `-h` may), and calls format_usage() itself while `usage` is None.
        words = ["[OPTIONS]"]
        for action in self._get_positional_actions():
            many = {"*": "[{}]...", "+": "{}...", argparse.REMAINDER: "[{}]..."}  # "?": COMMAND, required
            words.append(many.get(str(action.nargs), "{}").format(_metavar(action)))
        self.usage = " ".join(words)

    def format_usage(self) -> str:
        import textwrap

        prefix = f"Usage: {self.prog} "
        lines = textwrap.wrap(
            str(self.usage), _width(), initial_indent=prefix, subsequent_indent=" " * len(prefix)
        )
        return "\n".join(lines) + "\n"

    def format_help(self) -> str:
        import textwrap

        width = _width()
        options = []
        for action in self._get_optional_actions():
            if action.help == argparse.SUPPRESS:
                continue
            term = ", ".join(action.option_strings)
            if action.nargs != 0:
                term += f" {_metavar(action)}"
            text = action.help or ""
            if action.nargs != 0 and action.default not in (None, argparse.SUPPRESS):
                text += f"  [default: {action.default}]"
            options.append((term, text))
        sections = [
            self.format_usage(),
            textwrap.fill(str(self.description), width, initial_indent="  ", subsequent_indent="  ") + "\n",
            "Options:\n" + _definitions(options, width),
        ]
        if self.commands:
            rows = [(name, _short_help(str(COMMANDS[name][0].__doc__))) for name in sorted(self.commands)]
            sections.append("Commands:\n" + _definitions(rows, width))
        return "\n".join(sections)

    def error(self, message: str) -> NoReturn:
        hint = f"Try '{self.prog} --help' for help."
        self.exit(EXIT_USAGE, f"{self.format_usage()}{hint}\n\nError: {message[:1].upper()}{message[1:]}\n")


def _metavar(action: argparse.Action) -> str:
    """What an argument's value is called in the help: its metavar, or its choices (a|b)."""
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "|".join(map(str, action.choices))
    return action.dest.upper()


def _formatter(prog: str) -> argparse.HelpFormatter:
    """argparse makes one per add_argument; a set width spares it importing shutil (~5 ms)."""
    return argparse.HelpFormatter(prog, width=78)


def _width() -> int:
    """Help width as click chose it: the terminal's, at most 80 columns, less a margin of 2."""
    import shutil

    return max(min(shutil.get_terminal_size().columns, 80) - 2, 50)


def _definitions(rows: list[tuple[str, str]], width: int) -> str:
    """Two indented columns, the second wrapped, as in click's option and command lists."""
    import textwrap

    first = min(max(len(term) for term, _ in rows), 30) + 2
    lines = []
    for term, text in rows:
        wrapped = textwrap.wrap(text, max(width - first - 2, 10)) or [""]
        if len(term) <= first - 2:
            lines.append(f"  {term.ljust(first)}{wrapped[0]}".rstrip())
        else:
            lines += [f"  {term}", " " * (first + 2) + wrapped[0]]
        lines += [" " * (first + 2) + line for line in wrapped[1:]]
    return "".join(line + "\n" for line in lines)


def _short_help(doc: str) -> str:
    """The first sentence of a command's help, whole, for the command list (keep it short: a
    test holds each to one line)."""
    words = doc.split()
    for i, word in enumerate(words):
        if word.endswith(".") and (i == len(words) - 1 or not words[i + 1][0].islower()):
            words = words[: i + 1]
            break
    return " ".join(words)


def _top_parser() -> _Parser:
    """Global options and the command's name; the rest, options included, is the command's."""
    command = _arg("command", nargs="?", metavar="COMMAND")  # "?": main() words its absence
    rest = _arg("rest", nargs=argparse.REMAINDER, metavar="ARGS")
    parser = _Parser(
        "stoker",
        "stoker keeps a server's background work alive: programs, jobs and schedules.",
        [_CONFIG, _VERSION, command, rest],
        commands=list(COMMANDS),
    )
    return parser


def command_parser(name: str) -> _Parser:
    """The parser of one command: its arguments, and its handler's docstring as its help."""
    handler, args = COMMANDS[name]
    return _Parser(f"stoker {name}", str(handler.__doc__), [*args, _CONFIG_AFTER])


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: `stoker [-c FILE] COMMAND [ARGS]...`."""
    top = _top_parser()
    arguments = sys.argv[1:] if argv is None else list(argv)
    if not arguments:  # a bare `stoker` shows the help, as a usage error
        top.exit(EXIT_USAGE, top.format_help())
    namespace = top.parse_args(arguments)
    if namespace.command is None:
        top.error("Missing command.")
    if namespace.command not in COMMANDS:
        import difflib

        close = sorted(difflib.get_close_matches(namespace.command, COMMANDS))
        hint = {0: "", 1: " Did you mean {}?"}.get(len(close), " (Did you mean one of: {}?)")
        top.error(f"No such command {namespace.command!r}.{hint.format(', '.join(map(repr, close)))}")
    handler = COMMANDS[namespace.command][0]
    command = command_parser(namespace.command)
    # intermixed: options may come between the names, as they could with click
    command.parse_intermixed_args(namespace.rest, namespace)
    try:
        try:
            handler(Context(namespace.config_option), namespace)
        finally:
            sys.stdout.flush()  # so that a closed pipe shows here, not at interpreter exit
    except KeyboardInterrupt:
        print("\nAborted!", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except BrokenPipeError:  # `stoker status | head`: the reader left; leave quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_FAILED)
