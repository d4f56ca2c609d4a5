"""The commands about schedules: schedules, schedule (run, pause, resume, history), cron."""

from __future__ import annotations

import argparse
import sys

from stoker.cli.context import EXIT_USAGE, Context, fail, print_json, talking
from stoker.cli.render import print_schedules, print_table, short_time


def schedules_command(ctx: Context, args: argparse.Namespace) -> None:
    """Schedules: trigger, next run, last run and how it ended."""
    with talking():
        rows = ctx.client().schedules()
    if args.as_json:
        print_json(rows)
    else:
        print_schedules(rows)


def schedule_command(ctx: Context, args: argparse.Namespace) -> None:
    """Run, pause or resume a schedule, or show its slots."""
    if args.action == "history":
        with talking():
            rows = ctx.client().schedule_slots(args.name, args.limit)
        if args.as_json:
            print_json(rows)
        elif not rows:
            print(f"schedule {args.name}: no slot recorded yet")
        else:
            table = [
                (short_time(r["slot"]), r["state"], str(r["job"] or "-"), r["reason"] or "") for r in rows
            ]
            print_table(("SLOT", "STATE", "JOB", "REASON"), table)
        return
    with talking():
        result = ctx.client().schedule_action(args.name, args.action)
    if args.as_json:
        print_json(result)
    elif args.action == "run":
        print(f"job {result['id']} {result['state']} (task {result['task']}, schedule {args.name})")
    else:
        print_schedules([result])


def cron(ctx: Context, args: argparse.Namespace) -> None:
    """Print the next fire times of a cron expression. Debian cron's rules, DST included."""
    import datetime as dt

    from stoker.schedule.triggers import Reboot, TriggerError, fire_times, parse_cron, zone_named

    try:
        zone = zone_named(args.tz)
        trigger = parse_cron(args.expression, zone)
    except TriggerError as e:
        fail(str(e), EXIT_USAGE)
    after = dt.datetime.now(zone)
    if args.after is not None:
        try:
            after = dt.datetime.fromisoformat(args.after.strip().replace("Z", "+00:00"))
        except ValueError:
            fail(f"--after expects an ISO 8601 time, like 2026-11-23T09:00, not {args.after!r}", EXIT_USAGE)
        if after.tzinfo is None:
            after = after.replace(tzinfo=zone)
    if args.count < 1:
        fail("-n must be 1 or more", EXIT_USAGE)
    times = [
        dt.datetime.fromtimestamp(t, zone).isoformat()
        for t in fire_times(trigger, after.timestamp(), args.count)
    ]
    if args.as_json:
        print_json(times)
        return
    if isinstance(trigger, Reboot):
        print(
            "@reboot fires once when the daemon starts after the machine booted: no times to show",
            file=sys.stderr,
        )
    for line in times:
        print(line)
