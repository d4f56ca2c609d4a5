"""The commands about the config file and the daemon itself: init, check, import, systemd,
up, down."""

from __future__ import annotations

import argparse
import os
import sys
import time

from stoker.cli.context import EXIT_FAILED, EXIT_USAGE, Context, fail, print_json, talking


def init(ctx: Context, args: argparse.Namespace) -> None:
    """Write a commented starter stoker.toml."""
    from stoker.config import STARTER_TOML
    from stoker.locate import find_config_path

    path = find_config_path(ctx.config_option)
    if path.exists() and not args.force:
        fail(f"{path} exists; use --force to overwrite it", EXIT_FAILED)
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
        print_json({"ok": True, "config": config.path, **counts, "warnings": advice})
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
    """Convert supervisord, pm2, Procfile or crontab files to TOML. It is printed,
    commented: FILE is a supervisord .conf/.ini, a pm2 ecosystem .json/.js, a Procfile or a
    crontab; - reads standard input (`crontab -l | stoker import -`)."""
    from stoker.importing import STDIN, InputError, convert, read

    try:
        if args.file == "-":
            path, source = STDIN, sys.stdin.read()
        else:
            path = os.path.abspath(args.file)
            source = read(path)
        text = convert(source, path, format=args.format, env=args.env)
    except InputError as e:
        fail(str(e), EXIT_USAGE)
    sys.stdout.write(text)


def systemd(ctx: Context, args: argparse.Namespace) -> None:
    """Print a systemd unit that runs this config's daemon. Install it as its comments say."""
    import getpass

    from stoker.systemd import stoker_command, unit

    sys.stdout.write(unit(ctx.config, stoker_command(), user=args.user, username=getpass.getuser()))


def up(ctx: Context, args: argparse.Namespace) -> None:
    """Start the daemon (foreground; -d to detach)."""
    from stoker.daemon.main import StartupError, run

    try:
        code = run(ctx.config, detach=args.detach)
    except StartupError as e:
        fail(str(e), EXIT_FAILED)
    sys.exit(code)


def down(ctx: Context, args: argparse.Namespace) -> None:
    """Stop every program gracefully, then the daemon."""
    from pathlib import Path

    from stoker.daemon.lock import is_locked

    with talking():
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
            fail(f"the daemon is still stopping after {limit:g}s", EXIT_FAILED)
        time.sleep(0.02)
    print("stoker: stopped")
