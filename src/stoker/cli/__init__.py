"""The `stoker` command.

Kept light on purpose: a bare `stoker status` imports argparse, the config reader and a
standard-library HTTP client, never the server stack, so it answers in tens of milliseconds.
Written with argparse, not click: importing click alone took ~45 ms, more than the rest of
`stoker status` together, where argparse takes a few (it shares `re` with json). Help and
usage errors keep click's layout; only the wording of argparse's own usage errors changed.
Exit codes: 0 ok, 1 operation failed, 2 usage or config error, 3 daemon not running.

The package: :mod:`~stoker.cli.parser` (COMMANDS: each command's handler and arguments; the
help's layout), :mod:`~stoker.cli.context` (what every command shares: the config, a client,
the exit codes), the commands by what they act on (:mod:`~stoker.cli.daemon`,
:mod:`~stoker.cli.programs`, :mod:`~stoker.cli.jobs`, :mod:`~stoker.cli.schedules`), and
:mod:`~stoker.cli.render` (the tables and text they print). :func:`main` is the console script.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from stoker.cli.context import EXIT_FAILED, EXIT_USAGE, Context
from stoker.cli.parser import COMMANDS, command_parser, top_parser

__all__ = ["COMMANDS", "command_parser", "main", "top_parser"]


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: `stoker [-c FILE] COMMAND [ARGS]...`."""
    top = top_parser()
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
