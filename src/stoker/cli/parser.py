"""The command line: every command's name, handler and arguments (COMMANDS), and argparse
laid out the way click laid it out before (help, usage errors). The handler's docstring is the
command's help; its first sentence is its line in `stoker --help`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from stoker import __version__
from stoker.cli.context import EXIT_USAGE
from stoker.cli.daemon import check, down, import_command, init, systemd, up
from stoker.cli.jobs import (
    enqueue,
    job_action,
    job_command,
    jobs_command,
    queue_command,
    queues_command,
    tasks_command,
)
from stoker.cli.programs import (
    has_started,
    logs,
    nodes_command,
    program_action,
    reload_command,
    signal_command,
    status,
)
from stoker.cli.schedules import cron, schedule_command, schedules_command
from stoker.cli.top import top_command

# typing costs milliseconds `stoker status` does not have (see locate.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from stoker.cli.context import Arg, Handler


def _arg(*flags: str, **options: Any) -> Arg:
    return flags, options


_JSON = _arg("--json", dest="as_json", action="store_true", help="Print one JSON document.")


_NAMES = _arg("names", nargs="+", metavar="NAMES")


# name: (handler, its arguments); the handler's docstring is the command's help.
COMMANDS: dict[str, tuple[Handler, list[Arg]]] = {
    "init": (init, [_arg("--force", action="store_true", help="Overwrite an existing file.")]),
    "check": (check, [_JSON]),
    "import": (
        import_command,
        [
            _arg("file", metavar="FILE", help="The file to convert; - reads standard input."),
            _arg(
                "--format",
                choices=["supervisord", "pm2", "procfile", "crontab", "system-crontab"],
                metavar="FORMAT",
                help="supervisord, pm2, procfile, crontab, or system-crontab (/etc/crontab, /etc/cron.d: "
                "a user column) (default: told by the file's name or contents).",
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
    "top": (top_command, []),
    "start": (
        program_action(
            "start",
            has_started,
            "Start programs and wait until they run. NAME: program, program:instance, or all.",
        ),
        [_NAMES, _JSON],
    ),
    "stop": (
        program_action(
            "stop",
            lambda r: r["state"] in ("stopped", "exited", "fatal"),
            "Stop programs gracefully. Each gets stop_signal, then SIGKILL after stop_timeout.",
        ),
        [_NAMES, _JSON],
    ),
    "restart": (
        program_action("restart", has_started, "Stop then start programs."),
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
        job_action("cancel", "Cancel jobs: a queued one never runs, a running one is stopped."),
        [_arg("ids", type=int, nargs="+", metavar="ID"), _JSON],
    ),
    "retry": (
        job_action("retry", "Queue failed or cancelled jobs again, with fresh attempts."),
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


def top_parser() -> _Parser:
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
