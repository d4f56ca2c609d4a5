"""A Procfile (Heroku, foreman, honcho) → programs.

``NAME: COMMAND`` per line; ``#`` comments and blank lines are skipped. foreman and Heroku run
each command with a shell, so a command that needs one (variables, pipes, ``&&``) gets
``shell = true``; a plain one runs directly. They also give each process a ``$PORT``, which
stoker does not: a note says so where a command uses it.
"""

from __future__ import annotations

import re

from stoker.importing.model import Converted, InputError, Program, program_name, quoted

FORMAT = "Procfile"
_LINE = re.compile(r"(?P<name>[A-Za-z0-9_-]+)\s*:\s*(?P<command>.*)")
# What only a shell understands: variables, pipes, redirections, lists, globs, subshells,
# a leading VAR=value.
_SHELL = re.compile(r"[$|&;<>()`*?~\n]|^\s*[A-Za-z_][A-Za-z0-9_]*=")
FOREMAN_FIRST_PORT = 5000


def convert(text: str, file: str) -> Converted:
    converted = Converted(file=file, format=FORMAT)
    converted.notes.append(
        "Relative paths were relative to the Procfile's folder; here they are relative to this "
        "file's folder: keep it beside the Procfile."
    )
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.fullmatch(stripped)
        if match is None:
            raise InputError(
                file, f"line {number}", None, f'expected "NAME: COMMAND", got {quoted(stripped)}'
            )
        original, command = match.group("name"), match.group("command").strip()
        if not command:
            raise InputError(file, f"line {number}", None, f'expected a command after "{original}:"')
        if original in seen:
            raise InputError(
                file,
                f"line {number}",
                None,
                f"{quoted(original)} is already defined on line {seen[original]}",
            )
        seen[original] = number
        if original == "release":
            converted.notes.append(
                f"line {number}, release: {command}: Heroku runs this once per deploy, not as a "
                "program to keep running: run it in your deploy step (or as a [tasks.NAME] with "
                "`stoker enqueue NAME --wait`)."
            )
            continue
        converted.programs.append(_program(original, command, number, len(seen) - 1))
    return converted


def _program(original: str, command: str, line: int, position: int) -> Program:
    name, renamed = program_name(original)
    program = Program(name=name, source=f"line {line} of the Procfile")
    if renamed:
        program.note(renamed)
    program.set("command", command)
    if needs_shell(command):
        program.set("shell", True, "foreman runs each line with sh -c")
    if re.search(r"\$\{?PORT\b", command):
        port = FOREMAN_FIRST_PORT + 100 * position
        program.note(
            f"$PORT: foreman gave this process PORT={port} (Heroku picks one); stoker sets no "
            f'PORT: add environment = {{ PORT = "{port}" }}.'
        )
    return program


def needs_shell(command: str) -> bool:
    """Whether a command line uses something only a shell understands."""
    return bool(_SHELL.search(command))
