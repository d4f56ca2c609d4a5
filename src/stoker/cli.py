"""The `stoker` command.

Kept light on purpose: a bare `stoker status` imports click, the config reader and a
standard-library HTTP client, never the server stack, so it answers in tens of milliseconds.
Exit codes: 0 ok, 1 operation failed, 2 usage or config error, 3 daemon not running.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from stoker.client import Client
    from stoker.config import Config

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 1, 2, 3


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"stoker: {message}", err=True)
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
        from stoker.locate import find_config_path, quick_state_dir

        state_dir = quick_state_dir(find_config_path(self.config_option))
        if state_dir is None:  # unreadable or odd: the full loader says exactly what is wrong
            return Client.for_config(self.config, timeout=timeout)
        return Client(socket_path=state_dir / "stoker.sock", timeout=timeout)


pass_ctx = click.make_pass_decorator(Context)


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
    click.echo(json.dumps(data, indent=2))


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_option",
    metavar="FILE",
    help="Config file (default: $STOKER_CONFIG, else ./stoker.toml).",
)
@click.version_option(package_name="stoker", prog_name="stoker")
@click.pass_context
def main(ctx: click.Context, config_option: str | None) -> None:
    """stoker keeps a server's background work alive: programs, jobs and schedules."""
    ctx.obj = Context(config_option)


# config --------------------------------------------------------------------------------------


@main.command()
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@pass_ctx
def init(ctx: Context, force: bool) -> None:
    """Write a commented starter stoker.toml."""
    from stoker.config import STARTER_TOML
    from stoker.locate import find_config_path

    path = find_config_path(ctx.config_option)
    if path.exists() and not force:
        _fail(f"{path} exists; use --force to overwrite it", EXIT_FAILED)
    path.write_text(STARTER_TOML)
    click.echo(f"wrote {path}; check it with `stoker check`, run it with `stoker up`")


@main.command()
@json_option
@pass_ctx
def check(ctx: Context, as_json: bool) -> None:
    """Validate the config; exit 0, or 2 naming file, key and what was expected."""
    config = ctx.config
    instances = sum(p.instances for p in config.programs.values())
    if as_json:
        _print_json(
            {
                "ok": True,
                "config": config.path,
                "programs": len(config.programs),
                "instances": instances,
            }
        )
        return
    click.echo(f"{config.path}: ok, {len(config.programs)} program(s), {instances} instance(s)")


# the daemon ----------------------------------------------------------------------------------


@main.command()
@click.option("-d", "--detach", is_flag=True, help="Run in the background; return once it answers.")
@pass_ctx
def up(ctx: Context, detach: bool) -> None:
    """Start the daemon (foreground; -d to detach)."""
    from stoker.daemon.main import StartupError, run

    try:
        code = run(ctx.config, detach=detach)
    except StartupError as e:
        _fail(str(e), EXIT_FAILED)
    sys.exit(code)


@main.command()
@click.option("--timeout", type=float, default=None, help="Seconds to wait for the daemon to exit.")
@pass_ctx
def down(ctx: Context, timeout: float | None) -> None:
    """Stop every program gracefully, then the daemon."""
    from stoker.daemon.lock import is_locked

    with _talking():
        ctx.client().shutdown()
    config = ctx.config
    stops = [p.stop_timeout for p in config.programs.values()]
    limit = timeout if timeout is not None else max(stops, default=0) + 15
    deadline = time.monotonic() + limit
    state_dir = Path(config.daemon.state_dir)
    while is_locked(state_dir):
        if time.monotonic() > deadline:
            _fail(f"the daemon is still stopping after {limit:g}s", EXIT_FAILED)
        time.sleep(0.02)
    click.echo("stoker: stopped")


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


def _print_instances(rows: list[dict[str, Any]]) -> None:
    if not rows:
        click.echo("no programs")
        return
    table = [("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "MEMORY", "")]
    for r in rows:
        note = r["error"] or ""
        if not note and r["state"] == "exited" and r["exit_code"] is not None:
            note = f"exit code {r['exit_code']}"
        table.append(
            (
                r["name"],
                r["state"],
                str(r["pid"] or "-"),
                _human_duration(r["uptime"]),
                str(r["restarts"]),
                _human_bytes(r["memory"]),
                note,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(6)]
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    for n, row in enumerate(table):
        cells = [row[i].ljust(widths[i]) for i in range(6)]
        if color and n:
            cells[1] = click.style(cells[1], fg=_STATE_COLOURS.get(row[1]))
        click.echo("  ".join([*cells, row[6]]).rstrip())


_STATE_COLOURS = {
    "running": "green",
    "starting": "cyan",
    "stopping": "cyan",
    "backoff": "yellow",
    "fatal": "red",
    "exited": "yellow",
    "stopped": None,
}


@main.command()
@click.argument("names", nargs=-1)
@json_option
@pass_ctx
def status(ctx: Context, names: tuple[str, ...], as_json: bool) -> None:
    """Programs: name, state, pid, uptime, restarts, memory."""
    with _talking():
        client = ctx.client()
        if names:
            rows: list[dict[str, Any]] = []
            seen: set[str] = set()
            for name in names:
                for row in client.programs(name):
                    if row["name"] not in seen:
                        seen.add(row["name"])
                        rows.append(row)
        else:
            rows = client.programs()
    if as_json:
        _print_json(rows)
    else:
        _print_instances(rows)


def _program_action(action: str, ok: Callable[[dict[str, Any]], bool]) -> click.Command:
    @click.argument("names", nargs=-1, required=True)
    @json_option
    @pass_ctx
    def command(ctx: Context, names: tuple[str, ...], as_json: bool) -> None:
        rows: dict[str, dict[str, Any]] = {}
        with _talking():
            client = ctx.client()
            for name in names:
                for row in client.program_action(name, action):
                    rows[row["name"]] = row
        result = list(rows.values())
        if as_json:
            _print_json(result)
        else:
            _print_instances(result)
        if not all(ok(r) for r in result):
            sys.exit(EXIT_FAILED)

    command.__doc__ = {
        "start": "Start programs (NAME: program, program:instance, or all); wait until running.",
        "stop": "Stop programs gracefully (stop_signal, SIGKILL after stop_timeout).",
        "restart": "Stop then start programs.",
    }[action]
    return main.command(name=action)(command)


_program_action("start", lambda r: r["state"] in ("running", "starting"))
_program_action("stop", lambda r: r["state"] in ("stopped", "exited", "fatal"))
_program_action("restart", lambda r: r["state"] in ("running", "starting"))


@main.command(name="signal")
@click.argument("sig", metavar="SIG")
@click.argument("names", nargs=-1, required=True)
@json_option
@pass_ctx
def signal_command(ctx: Context, sig: str, names: tuple[str, ...], as_json: bool) -> None:
    """Send a signal (HUP, USR1, 15 …) to the process group of each instance."""
    from stoker.signals import parse_signal

    try:
        parse_signal(sig)
    except ValueError as e:
        _fail(str(e), EXIT_USAGE)
    rows: dict[str, dict[str, Any]] = {}
    with _talking():
        client = ctx.client()
        for name in names:
            for row in client.signal(name, sig):
                rows[row["name"]] = row
    result = list(rows.values())
    if as_json:
        _print_json(result)
    else:
        _print_instances(result)
    if not any(r["pid"] for r in result):
        _fail("no running process received the signal", EXIT_FAILED)


@main.command()
@click.argument("name")
@click.option("-n", "--lines", default=100, show_default=True, help="How many lines of the end.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output.")
@click.option(
    "--stderr",
    "stderr_stream",
    is_flag=True,
    help='The separate stderr log (log.stderr = "separate").',
)
@pass_ctx
def logs(ctx: Context, name: str, lines: int, follow: bool, stderr_stream: bool) -> None:
    """Program output (NAME: program or program:instance)."""
    stream = "err" if stderr_stream else "out"
    out = sys.stdout.buffer
    with _talking():
        client = ctx.client(timeout=None if follow else 120.0)
        if not follow:
            out.write(client.logs(name, lines, stream))
            out.flush()
            return
        try:
            for event in client.follow_logs(name, lines, stream):
                out.write(event["text"].encode())
                out.flush()
        except KeyboardInterrupt:
            pass
