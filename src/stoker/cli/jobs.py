"""The commands about jobs, tasks and queues: enqueue, jobs, job, cancel, retry, tasks,
queues, queue; and a job's logs (`stoker logs job:ID`)."""

from __future__ import annotations

import argparse
import json
import sys

from stoker.cli.context import EXIT_FAILED, EXIT_USAGE, Context, fail, print_json, talking
from stoker.cli.render import (
    describe_param,
    follow_output,
    print_job,
    print_jobs,
    print_queues,
    print_table,
    write_output,
)

# typing costs milliseconds `stoker status` does not have (see locate.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from stoker.cli.context import Handler


def job_logs(ctx: Context, args: argparse.Namespace) -> None:
    try:
        job_id = int(args.name[4:])
    except ValueError:
        fail(f"expected job:ID, got {args.name!r}", EXIT_USAGE)
    with talking():
        client = ctx.client(timeout=None if args.follow else 120.0)
        if not args.follow:
            write_output(client.job_logs(job_id, args.lines), args.raw)
            return
        follow_output(client.follow_job_logs(job_id, args.lines), args.raw)


def _params(pairs: list[str]) -> dict[str, Any]:
    """``name=text`` (a string) or ``name:=JSON`` (a number, true, null, a list…)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail(f"expected NAME=VALUE or NAME:=JSON, got {pair!r}", EXIT_USAGE)
        if name.endswith(":"):
            name = name[:-1]
            try:
                params[name] = json.loads(value)
            except ValueError:
                fail(f"{name}:= expects JSON, got {value!r}", EXIT_USAGE)
        else:
            params[name] = value
    return params


def _job_exit(job: dict[str, Any]) -> None:
    if job["state"] in ("failed", "cancelled"):
        sys.exit(EXIT_FAILED)


def enqueue(ctx: Context, args: argparse.Namespace) -> None:
    """Queue a job of a task from the config. Like: stoker enqueue TASK name=value name:=JSON…"""
    if args.delay is not None and args.at is not None:
        fail("give --in or --at, not both", EXIT_USAGE)
    params = _params(args.params)
    with talking():
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
        print_json(job)
    elif args.wait:
        print_job(job)
    else:
        print(f"job {job['id']} {job['state']} (task {job['task']}, queue {job['queue']})")
    if args.wait:
        _job_exit(job)


def jobs_command(ctx: Context, args: argparse.Namespace) -> None:
    """Jobs, newest first, with filters."""
    with talking():
        rows = ctx.client().jobs(state=args.state, queue=args.queue, task=args.task, limit=args.limit)
    if args.as_json:
        print_json(rows)
    else:
        print_jobs(rows)


def job_command(ctx: Context, args: argparse.Namespace) -> None:
    """One job: its state, every attempt, its output. With --wait, once it has finished."""
    with talking():
        client = ctx.client(timeout=None if args.wait else 120.0)
        job = client.wait(args.id) if args.wait else client.job(args.id)
    if args.as_json:
        print_json(job)
    else:
        print_job(job)
    if args.wait:
        _job_exit(job)


def job_action(action: str, doc: str) -> Handler:
    def command(ctx: Context, args: argparse.Namespace) -> None:
        results = []
        with talking():
            client = ctx.client()
            for job_id in args.ids:
                results.append(client.cancel(job_id) if action == "cancel" else client.retry(job_id))
        if args.as_json:
            print_json(results)
        else:
            print_jobs(results)

    command.__doc__ = doc
    return command


def queues_command(ctx: Context, args: argparse.Namespace) -> None:
    """Queues: concurrency, running and queued jobs, paused or not."""
    with talking():
        rows = ctx.client().queues()
    if args.as_json:
        print_json(rows)
    else:
        print_queues(rows)


def tasks_command(ctx: Context, args: argparse.Namespace) -> None:
    """Tasks a job may run, with their parameters and rules."""
    with talking():
        rows = ctx.client().tasks()
    if args.as_json:
        print_json(rows)
        return
    if not rows:
        print("no tasks")
        return
    table = []
    for t in rows:
        described = [describe_param(p) for p in t["params"]]
        if t["open_ended"]:
            described.append("any others")
        table.append((t["name"], t["queue"], t["kind"], ", ".join(described) or "-"))
    print_table(("TASK", "QUEUE", "KIND", "PARAMETERS"), table)


def queue_command(ctx: Context, args: argparse.Namespace) -> None:
    """Pause or resume a queue. Persisted: it stays paused across restarts."""
    with talking():
        client = ctx.client()
        rows = client.pause(args.queue) if args.action == "pause" else client.resume(args.queue)
    if args.as_json:
        print_json(rows)
    else:
        print_queues(rows)
