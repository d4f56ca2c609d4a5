"""A crontab → schedules: a user's (``crontab -l``) or the system's (/etc/crontab, /etc/cron.d).

Each entry becomes a ``[schedules.NAME]`` with the same ``cron`` expression (stoker reads it
with cronsim, Debian cron's rules), an inline ``command`` and what the lines above it set:

- ``VAR=value`` lines: the ``environment`` of the entries after them (cron's rule: a line
  applies from where it stands), ``CRON_TZ`` their ``timezone``, ``SHELL`` the shell a line
  that needs one goes through, ``MAILTO`` a note (stoker keeps each run's output);
- a leading ``cd DIR &&`` (DIR absolute) → ``directory``;
- trailing ``> file``, ``>> file``, ``2>&1`` … → a note: the output is the job's now;
- a line that still needs a shell (pipes, lists, ``$``, globs, cron's ``%`` stdin) runs as
  ``[SHELL, "-c", line]``, with a note saying what needed it;
- ``@reboot`` → ``cron = "@reboot"`` (stoker fires it once per machine boot, when the daemon
  starts), the ``@daily``-style macros as they are;
- the system format's user column → ``user``.

The lines and their fields are read here; each command is shaped by
:mod:`~stoker.importing.cronline`. Pure: text in, :class:`~stoker.importing.model.Converted` out.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from stoker.importing.cronline import (
    LAUNCHERS,
    command_for,
    flock_n,
    leading_cd,
    name_for,
    trailing_redirections,
    unique_name,
)
from stoker.importing.model import Converted, InputError, Program, quoted
from stoker.importing.shellwords import ShellSyntaxError, scan

FORMAT = "crontab"
DEFAULT_SHELL = "/bin/sh"
_VARIABLE = re.compile(r"\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*?)\s*")
_MACROS = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# A time field: digits, names (jan, mon), *, ranges, steps, lists, and cronie's L W # ?.
_FIELD = re.compile(r"[0-9A-Za-z*/,#?-]+")
_HEADER = re.compile(r"^#\s*m\s+h\s+dom\s+mon\s+dow\s+(?P<user>user\s+)?command\b", re.MULTILINE)
# What cron gave a command: its own small environment, not a login shell's.
CRON_ENVIRONMENT = "PATH=/usr/bin:/bin, SHELL=/bin/sh, HOME and LOGNAME of the user"


@dataclass
class _Context:
    """What the lines read so far set for the entries after them."""

    environment: dict[str, str] = field(default_factory=dict)
    timezone: str | None = None
    shell: str = DEFAULT_SHELL


@dataclass
class Entry:
    """One crontab entry, parsed: its line, ``when`` (5 fields or a macro), the user column
    (system format), the command as cron would run it and its standard input (``%``)."""

    line: int
    text: str
    when: str
    user: str | None
    command: str
    stdin: str | None


def convert(text: str, file: str, *, system: bool | None = None) -> Converted:
    """The schedules of a crontab. `system`: whether entries have a user column (the
    /etc/crontab and /etc/cron.d format); None tells it from the file's path and contents."""
    if system is None:
        system = is_system(file, text)
    converted = Converted(file=file, format="system crontab" if system else FORMAT)
    context = _Context()
    names: set[str] = set()
    entries = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        variable = _VARIABLE.fullmatch(line)
        if variable is not None:  # an entry begins with a digit, * or @: never a name
            _set_variable(
                variable.group("name"), _unquote(variable.group("value")), number, context, converted
            )
            continue
        entry = parse_entry(line, number, file, system=system)
        entries += 1
        converted.programs.append(schedule(entry, context, names, file))
    converted.notes += _file_notes(system, entries)
    return converted


def is_system(file: str, text: str) -> bool:
    """Whether a crontab has the user column: /etc/crontab, a file in a cron.d folder, or one
    whose entries all name root after their times (Debian's /etc/crontab, copied elsewhere)."""
    path = posixpath.normpath(file)
    if path == "/etc/crontab" or posixpath.basename(posixpath.dirname(path)) == "cron.d":
        return True
    header = _HEADER.search(text)  # Debian's: "# m h dom mon dow user command" or without user
    if header is not None:
        return header.group("user") is not None
    sixth = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#") or _VARIABLE.fullmatch(line):
            continue
        at = 1 if words[0].startswith("@") else 5
        sixth.append(words[at] if len(words) > at + 1 else "")
    return bool(sixth) and all(user == "root" for user in sixth)


def looks_like_crontab(text: str) -> bool:
    """Whether every line that is not blank nor a comment is a cron entry or a variable."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    entries = [line for line in lines if not _VARIABLE.fullmatch(line)]
    return bool(entries) and all(_looks_like_entry(line) for line in entries)


def _looks_like_entry(line: str) -> bool:
    words = line.split()
    if words[0].lower() in _MACROS:
        return len(words) >= 2
    return len(words) >= 6 and all(_FIELD.fullmatch(w) for w in words[:5]) and words[0][0] in "*0123456789"


def parse_entry(line: str, number: int, file: str, *, system: bool) -> Entry:
    """One entry line; InputError naming the line when it is not one."""
    where = f"line {number}"
    expected = "MINUTE HOUR DAY MONTH WEEKDAY" + (" USER" if system else "") + " COMMAND"
    if line.split()[0].startswith("@"):
        count = 1
        macro = line.split()[0].lower()
        if macro not in _MACROS:
            raise InputError(
                file,
                where,
                None,
                f"unknown macro {quoted(line.split()[0])}; expected one of {', '.join(_MACROS)}",
            )
    else:
        count = 5
    parts = line.split(None, count + (1 if system else 0))
    if len(parts) < count + (2 if system else 1):
        raise InputError(file, where, None, f"expected {expected}, got {quoted(line)}")
    when = " ".join(parts[:count]).lower() if count == 1 else " ".join(parts[:count])
    user = parts[count] if system else None
    if user is not None and ("/" in user or user in LAUNCHERS or user == "cd"):
        raise InputError(
            file,
            where,
            None,
            f"the user column reads {quoted(user)}, the start of a command: a system crontab has "
            f"{expected}; a user's crontab (no user column) belongs in `crontab -e`, not here",
        )
    command, stdin = split_percent(parts[-1])
    if count == 5 and not all(_FIELD.fullmatch(f) for f in parts[:5]):
        raise InputError(file, where, None, f"expected {expected}, got {quoted(line)}")
    _check_when(when, file, where)
    if not command.strip():
        raise InputError(file, where, None, f"expected a command after {quoted(when)}")
    return Entry(number, line, when, user, command.strip(), stdin)


def _check_when(when: str, file: str, where: str) -> None:
    from stoker.schedule.triggers import TriggerError, parse_cron, zone_named

    try:
        parse_cron(when, zone_named("UTC"))
    except TriggerError as e:
        raise InputError(file, where, None, str(e)) from None


def split_percent(command: str) -> tuple[str, str | None]:
    """cron's ``%``: the first unescaped one ends the command, the text after it is the
    command's standard input, with each further ``%`` a newline. ``\\%`` is a literal ``%``
    (the backslash goes); any other backslash stays for the shell."""
    out: list[str] = []
    stdin: list[str] | None = None
    i = 0
    while i < len(command):
        c = command[i]
        if c == "\\" and command.startswith("%", i + 1):
            (out if stdin is None else stdin).append("%")
            i += 2
            continue
        if c == "%":
            if stdin is None:
                stdin = []
            else:
                stdin.append("\n")
        else:
            (out if stdin is None else stdin).append(c)
        i += 1
    return "".join(out), None if stdin is None else "".join(stdin)


def _unquote(value: str) -> str:
    """cron strips one pair of matching quotes around a value (to keep spaces at its ends)."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _set_variable(name: str, value: str, number: int, context: _Context, converted: Converted) -> None:
    if name == "MAILTO":
        said = (
            f"MAILTO={value}: cron mailed each run's output there"
            if value
            else 'MAILTO="": cron mailed nothing'
        )
        converted.notes.append(
            f"line {number}, {said}. stoker keeps each run's output with its job instead: "
            "`stoker schedule history NAME`, then `stoker job ID` or `stoker logs job:ID`; "
            'for a message when a run fails, add a [notify.NAME] webhook with events = ["job_failed"].'
        )
    elif name == "CRON_TZ":
        from stoker.schedule.triggers import TriggerError, zone_named

        try:
            zone_named(value)
        except TriggerError as e:
            raise InputError(converted.file, f"line {number}", "CRON_TZ", str(e)) from None
        context.timezone = value
    elif name in ("MAILFROM", "CONTENT_TYPE", "CONTENT_TRANSFER_ENCODING", "RANDOM_DELAY"):
        converted.notes.append(
            f"line {number}, {name}={value}: cron's own setting; stoker has no use for it."
        )
    else:
        if name == "SHELL":
            context.shell = value or DEFAULT_SHELL
        context.environment = {**context.environment, name: value}


def schedule(entry: Entry, context: _Context, names: set[str], file: str) -> Program:
    """The ``[schedules.NAME]`` of one entry, in the context the lines above it set."""
    try:
        tokens = scan(entry.command)
    except ShellSyntaxError as e:
        raise InputError(file, f"line {entry.line}", None, f"cannot read the command: {e}") from None
    out = Program(name="", source=f"line {entry.line}: {entry.text}", table="schedules")
    out.set("cron", entry.when)
    if context.timezone is not None and entry.when != "@reboot":
        out.set("timezone", context.timezone, "CRON_TZ")
    directory, tokens = leading_cd(tokens)
    tokens, redirected = trailing_redirections(tokens, entry.command)
    tokens, lock = flock_n(tokens)
    if not tokens:
        raise InputError(file, f"line {entry.line}", None, f"expected a command, got {quoted(entry.command)}")
    text = entry.command[tokens[0].start : tokens[-1].end]
    out.name = unique_name(name_for(tokens), names)
    command, why = command_for(text, tokens, entry.stdin, context.shell)
    out.set("command", command)
    if why:
        out.note(f"through {context.shell} -c, as cron ran it: {why}.")
    if directory is not None:
        out.set("directory", directory, f"from `cd {directory} &&`")
    if entry.user is not None:
        out.set("user", entry.user, "the user column: the daemon must run as root to switch")
    if context.environment:
        out.set("environment", dict(context.environment))
    if lock is not None:
        out.set("overlap", "skip", f"was `flock -n {lock}`: a run still going is not doubled")
    elif entry.when != "@reboot":  # once per boot: nothing to overlap
        out.set("overlap", "allow", "cron starts each run even while the last one is still going")
    if redirected:
        out.note(
            f"cron's `{redirected}` is left out: stoker keeps each run's output with its job "
            f"(`stoker schedule history {out.name}`, then `stoker logs job:ID`)."
        )
    if entry.when == "@reboot":
        out.note(
            "@reboot: stoker fires it once per machine boot, when the daemon starts after it (a "
            "daemon restart alone does not). A program meant to keep running belongs in "
            "[programs.NAME] instead: stoker then restarts it when it dies."
        )
    if tokens[-1].kind == "op" and tokens[-1].value == "&":
        out.note(
            "the line ends with &: it starts something in the background. If that is a program "
            "meant to keep running, make it a [programs.NAME] and let stoker keep it up."
        )
    return out


def _file_notes(system: bool, entries: int) -> list[str]:
    notes = [
        f"cron ran each command through /bin/sh with its own small environment ({CRON_ENVIRONMENT}), "
        "in the user's home folder; stoker runs a plain command directly, with the daemon's "
        "environment plus the schedule's, in its directory (this file's folder by default)."
    ]
    if not system and entries:
        notes.append(
            "A user's crontab ran as its owner: run the daemon as that user (or, as root, add "
            'user = "NAME" to each schedule).'
        )
    notes.append(
        "Times are read in each schedule's timezone (CRON_TZ), else [daemon] timezone, else the "
        'system\'s zone, as cron read them: `stoker cron "EXPR"` prints the next times.'
    )
    return notes
