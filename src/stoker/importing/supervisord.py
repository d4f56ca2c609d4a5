"""supervisord's ini (supervisord.conf, conf.d/*.conf) → programs.

Read the way supervisord reads it: configparser without interpolation, ``;`` and ``#`` start
inline comments, repeated sections merge; then ``%(name)s`` expansions are applied with
supervisord's names. Where supervisord's default differs from stoker's (autorestart,
startretries, where stderr goes), the default is written out, so the program behaves as it
did; every option stoker has no equivalent for becomes a note saying what to do instead.

Length: a table of supervisord's options, each with its mapping or its note, in the order of
supervisord's documentation; splitting it by option would scatter the defaults it writes out.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
from collections.abc import Callable, Mapping

from stoker.durations import InvalidValue, parse_size
from stoker.importing.model import (
    Converted,
    InputError,
    Machine,
    Program,
    Value,
    program_name,
    quoted,
    seconds,
)
from stoker.signals import parse_signal

STREAMS = ("/dev/stdout", "/dev/stderr", "/dev/null")  # stoker.config.programs.STREAMS

FORMAT = "supervisord"
INSTANCE = "{instance}"

# %(name)s, %(name)d, %(name)02d …: a Python %-format with a name.
_EXPANSION = re.compile(r"%(?:%|\((?P<name>[^)]*)\)(?P<spec>[-#0 +]*\d*(?:\.\d+)?[sdiouxXeEfFgGcr])?)")

_ENV = re.compile(r"%\(ENV_(\w+)\)s")
_AUTORESTART = {"true": "always", "false": "never", "unexpected": "on-failure"}
_NO_FILE = frozenset({"NONE", "AUTO", ""})  # stdout_logfile values that name no file
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class _Section:
    """One section's options, with its name for errors and expansion at hand."""

    def __init__(
        self, file: str, header: str, options: Mapping[str, str], names: Mapping[str, str | int]
    ) -> None:
        self.file = file
        self.header = f"[{header}]"
        self.options = dict(options)
        self.names = names

    def error(self, key: str | None, problem: str) -> InputError:
        return InputError(self.file, self.header, key, problem)

    def raw(self, key: str) -> str | None:
        return self.options.get(key)

    def text(self, key: str, *, keep_env: bool = False) -> str | None:
        """The value with supervisord's %(name)s expanded (%(process_num)d → {instance});
        `keep_env`: %(ENV_X)s becomes ${X}, for a shell to read when the program starts."""
        value = self.options.get(key)
        if value is None:
            return None
        return expand(value, self.names, lambda p: self.error(key, p), keep_env=keep_env)

    def number(self, key: str, minimum: int | None) -> int | None:
        """A whole number (at least `minimum`, if given), or None when the option is absent."""
        value = self.options.get(key)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            raise self.error(key, f"expected a whole number, got {quoted(value)}") from None
        if minimum is not None and number < minimum:
            raise self.error(key, f"expected a whole number, {minimum} or more, got {quoted(value)}")
        return number

    def boolean(self, key: str) -> bool | None:
        value = self.options.get(key)
        if value is None:
            return None
        word = value.strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise self.error(key, f"expected true or false, got {quoted(value)}")


# --------------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------------


def expand(
    value: str, names: Mapping[str, str | int], fail: Callable[[str], Exception], *, keep_env: bool = False
) -> str:
    """supervisord's ``%(name)s`` expansion; ``process_num`` becomes stoker's ``{instance}``.

    A zero-padded ``%(process_num)02d`` keeps its padding as long as every number has one digit
    (``0{instance}`` for at most 10 instances); beyond that it has to go (see `loses_padding`).
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        name, spec = match.group("name"), match.group("spec")
        if spec is None:
            raise fail(f"expected %({name})s or %({name})d: a % expansion ends with its type")
        if name == "process_num":
            width = re.fullmatch(r"0(\d+)d", spec)
            if width and _one_digit(names):
                return "0" * (int(width.group(1)) - 1) + INSTANCE
            return INSTANCE
        if keep_env and name.startswith("ENV_") and spec == "s":
            return "${" + name[4:] + "}"
        if name not in names:
            if name.startswith("ENV_"):
                raise fail(f"%({name})s: the environment variable {name[4:]} is not set")
            known = ", ".join(sorted(n for n in names if not n.startswith("ENV_")))
            raise fail(f"%({name})s: supervisord expands only {known}, process_num and ENV_*")
        try:
            return ("%" + spec) % names[name]
        except (TypeError, ValueError):
            raise fail(f"%({name}){spec}: {quoted(names[name])} cannot be formatted that way") from None

    return _EXPANSION.sub(replace, value)


def _one_digit(names: Mapping[str, str | int]) -> bool:
    """Whether every instance number of the program has one digit."""
    numprocs, start = names.get("numprocs", 1), names.get("numprocs_start", 0)
    return isinstance(numprocs, int) and isinstance(start, int) and start + numprocs <= 10


def loses_padding(value: str, names: Mapping[str, str | int]) -> str | None:
    """The zero-padded ``%(process_num)0Nd`` in `value` that `expand` cannot keep, if any."""
    padded = re.search(r"%\(process_num\)0\d+d", value)
    return padded.group(0) if padded and not _one_digit(names) else None


def parse_environment(value: str) -> dict[str, str]:
    """supervisord's ``KEY="val",KEY2=val2``: commas separate pairs, quotes (single or
    double) keep commas and spaces in a value. ValueError saying what was expected."""
    pairs: dict[str, str] = {}
    position, end = 0, len(value)
    while position < end:
        equals = value.find("=", position)
        if equals < 0:
            raise ValueError(f"expected KEY=value, got {quoted(value[position:].strip())}")
        name = value[position:equals].strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
            raise ValueError(f"expected a variable name before '=', got {quoted(name)}")
        position = equals + 1
        while position < end and value[position] in " \t":
            position += 1
        if position < end and value[position] in "\"'":
            quote = value[position]
            close = value.find(quote, position + 1)
            if close < 0:
                raise ValueError(f"the value of {name} opens a {quote} that never closes")
            text = value[position + 1 : close]
            position = close + 1
            while position < end and value[position] in " \t":
                position += 1
            if position < end and value[position] != ",":
                raise ValueError(f"expected ',' after the quoted value of {name}")
        else:
            comma = value.find(",", position)
            comma = end if comma < 0 else comma
            text = value[position:comma].strip()
            position = comma
        pairs[name] = text
        position += 1  # past the comma
        while position < end and value[position] in " \t\n":
            position += 1
    return pairs


def restart_policy(autorestart: str) -> str:
    """supervisord's autorestart (true/false/unexpected) → stoker's restart."""
    policy = _AUTORESTART.get(autorestart.strip().lower())
    if policy is None:
        raise ValueError(f"expected true, false or unexpected, got {quoted(autorestart)}")
    return policy


def exit_codes(value: str) -> list[int]:
    """``0,2`` → ``[0, 2]``."""
    codes = []
    for part in value.split(","):
        text = part.strip()
        if not text.isdigit() or int(text) > 255:
            raise ValueError(f"expected exit codes (0-255) separated by commas, got {quoted(value)}")
        codes.append(int(text))
    return codes


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------


def read(text: str, file: str) -> configparser.RawConfigParser:
    """The ini as supervisord reads it; syntax errors name the line."""
    parser = configparser.RawConfigParser(
        inline_comment_prefixes=(";", "#"), strict=False, interpolation=None
    )
    try:
        parser.read_string(text, source=file)
    except configparser.MissingSectionHeaderError as e:
        raise InputError(
            file, f"line {e.lineno}", None, f"expected a [section] header first, got {quoted(e.line.strip())}"
        ) from None
    except configparser.ParsingError as e:
        line = e.errors[0][0]
        content = text.splitlines()[line - 1].strip()
        raise InputError(
            file, f"line {line}", None, f"expected key = value or a [section], got {quoted(content)}"
        ) from None
    except configparser.Error as e:
        raise InputError(file, None, None, f"expected an ini file: {e.message}") from None
    return parser


# How an [include]'s files are found: an absolute glob pattern → the (path, text) of each file
# it matches, in order. Passed in, so that the converter stays pure (stoker.importing.read_glob).
Include = Callable[[str], list[tuple[str, str]]]


def convert(text: str, file: str, machine: Machine, include: Include | None = None) -> Converted:
    converted = Converted(file=file, format=FORMAT)
    base: dict[str, str | int] = {"host_node_name": machine.hostname}
    base |= {f"ENV_{k}": v for k, v in machine.environ.items()}
    # header → (the file it is in, its options): repeated sections merge, as in supervisord
    sections: dict[str, tuple[str, dict[str, str]]] = {}
    _add_sections(sections, read(text, file), file)
    if include is not None and "include" in sections:
        converted.notes += _follow(sections, base, include)
    groups = _groups(sections)
    daemon_environment: dict[str, str] = {}
    if "supervisord" in sections:
        where, options = sections["supervisord"]
        section = _Section(where, "supervisord", options, base | {"here": os.path.dirname(where)})
        daemon_environment = _daemon_environment(section)
    programs: list[tuple[int, Program]] = []
    for header, (where, options) in sections.items():
        kind, _, name = header.partition(":")
        names = base | {"here": os.path.dirname(where)}
        if kind == "program" and name:
            plain = _Section(where, header, options, names)  # for the numbers the names need
            names |= {
                "program_name": name,
                "group_name": groups.get(name, [name])[0],
                "numprocs": plain.number("numprocs", 1) or 1,
                "numprocs_start": plain.number("numprocs_start", 0) or 0,
            }
            section = _Section(where, header, options, names)
            _, program = found = _program(section, name, daemon_environment)
            if name in groups:
                names_ok = [program_name(g)[0] for g in groups[name]]
                program.set(
                    "groups", names_ok, f"[group:{groups[name][0]}]: `stoker restart {names_ok[0]}:*`"
                )
            if where != file:
                program.source = f"{section.header} in {os.path.relpath(where, os.path.dirname(file))}"
            programs.append(found)
        else:
            converted.notes += _other_section(_Section(where, header, options, names), kind, name, include)
    if any(priority != 999 for priority, _ in programs):
        converted.notes.append(
            "The programs are in supervisord's start order (priority, lowest first); "
            "stoker starts them in file order."
        )
    converted.programs = [p for _, p in sorted(programs, key=lambda item: item[0])]
    return converted


def _add_sections(
    sections: dict[str, tuple[str, dict[str, str]]], parser: configparser.RawConfigParser, file: str
) -> None:
    for header in parser.sections():
        options = dict(parser.items(header))
        if header in sections:
            options = sections[header][1] | options
        sections[header] = (file, options)


def _follow(
    sections: dict[str, tuple[str, dict[str, str]]], base: Mapping[str, str | int], include: Include
) -> list[str]:
    """Read the files of [include] files= into `sections`, as supervisord does: patterns
    separated by spaces, relative to the including file's folder, matches in sorted order; an
    [include] inside an included file is not followed (supervisord does not either)."""
    file, options = sections["include"]
    section = _Section(file, "include", options, {**base, "here": os.path.dirname(file)})
    patterns = (section.text("files") or "").split()
    if not patterns:
        raise section.error("files", "expected one or more file patterns, like conf.d/*.conf")
    notes = []
    for pattern in patterns:
        absolute = os.path.normpath(os.path.join(os.path.dirname(file), pattern))
        matched = include(absolute)
        for path, text in matched:
            parser = read(text, path)
            if parser.has_section("include") and path != file:
                notes.append(
                    f"{path}: its [include] is not followed (supervisord follows only the main file's)."
                )
                parser.remove_section("include")
            _add_sections(sections, parser, path)
        shown = ", ".join(os.path.relpath(p, os.path.dirname(file)) for p, _ in matched)
        notes.append(
            f"[include] {pattern}: read {shown}."
            if matched
            else f"[include] {pattern}: matched no file here."
        )
    sections["include"] = (file, options)  # an included [include] does not replace the main one
    return notes


def _groups(sections: Mapping[str, tuple[str, dict[str, str]]]) -> dict[str, list[str]]:
    """program name → the [group:x] it is in (the first one is its %(group_name)s)."""
    found: dict[str, list[str]] = {}
    for header, (_, options) in sections.items():
        kind, _, group = header.partition(":")
        if kind == "group" and "programs" in options:
            for member in options["programs"].split(","):
                if member.strip():
                    found.setdefault(member.strip(), []).append(group)
    return found


def _raw_environment(section: _Section) -> dict[str, str]:
    """The program's environment= pairs, not yet expanded (so that %(ENV_X)s can be told
    apart; values are expanded one by one, which keeps a comma they bring from splitting)."""
    try:
        return parse_environment(section.raw("environment") or "")
    except ValueError as e:
        raise section.error("environment", str(e)) from None


def _expanded_environment(section: _Section) -> set[str]:
    """The %(ENV_X)s of environment= that are expanded at import (all but X=%(ENV_X)s)."""
    return {
        f"%(ENV_{m})s"
        for name, value in _raw_environment(section).items()
        if value.strip() != f"%(ENV_{name})s"
        for m in _ENV.findall(value)
    }


def _daemon_environment(section: _Section) -> dict[str, str]:
    value = section.text("environment")
    if value is None:
        return {}
    try:
        return parse_environment(value)
    except ValueError as e:
        raise section.error("environment", str(e)) from None


# --------------------------------------------------------------------------------------------
# [program:x]
# --------------------------------------------------------------------------------------------


def _program(section: _Section, original: str, daemon_environment: dict[str, str]) -> tuple[int, Program]:
    """One [program:x]: its priority (for the start order) and the program."""
    name, renamed = program_name(original)
    program = Program(name=name, source=section.header)
    if renamed:
        program.note(renamed)
    command = section.text("command", keep_env=True)
    if command is None or not command.strip():
        raise section.error("command", "missing; expected the command line to run")
    try:
        shlex.split(command)
    except ValueError as e:
        raise section.error("command", f"expected a command line with balanced quotes ({e})") from None
    program.set("command", command)
    read = sorted(set(_ENV.findall(section.raw("command") or "")))
    if read:
        program.set(
            "shell",
            True,
            f"so that {', '.join('$' + v for v in read)} is read from the daemon's environment as "
            "the program starts, as supervisord read %(ENV_…)s when it started",
        )
    _instances(section, program)
    _where_and_who(section, program, daemon_environment)
    _restarts(section, program)
    _stopping(section, program)
    _log(section, program)
    priority = section.number("priority", None)
    if priority is not None:
        program.note(
            f"priority={priority}: supervisord started lower priorities first; stoker starts "
            'programs in file order; to start it only once another runs, depends_on = ["other"].'
        )
    used = sorted(
        {
            f"%(ENV_{m})s"
            for k, v in section.options.items()
            if k not in ("command", "environment")
            for m in _ENV.findall(v)
        }
        | _expanded_environment(section)
    )
    if used:
        program.note(
            f"{', '.join(used)}: expanded with the environment of `stoker import`; check the values "
            "are the ones supervisord had."
        )
    for key, value in section.options.items():
        if key not in _HANDLED:
            text = _PROGRAM_NOTES.get(key, "not a supervisord option stoker knows; left out.")
            program.note(f"{key}={value}: {text}")
    return (999 if priority is None else priority), program


# Options the functions above turn into settings or notes; any other becomes a note of its own.
_HANDLED = frozenset(
    {
        "command", "numprocs", "numprocs_start", "process_name", "directory", "environment", "user",
        "umask", "autostart", "autorestart", "exitcodes", "startsecs", "startretries", "stopsignal",
        "stopwaitsecs", "stopasgroup", "killasgroup", "redirect_stderr", "stdout_logfile",
        "stdout_logfile_maxbytes", "stdout_logfile_backups", "stderr_logfile",
        "stderr_logfile_maxbytes", "stderr_logfile_backups", "priority",
    }
)  # fmt: skip
_PROGRAM_NOTES = {
    "serverurl": "stoker's programs reach the daemon through its socket or [daemon] listen, not XML-RPC.",
    "stdout_capture_maxbytes": "stoker has no capture mode (PROCESS_COMMUNICATION events); left out.",
    "stderr_capture_maxbytes": "stoker has no capture mode (PROCESS_COMMUNICATION events); left out.",
    "stdout_events_enabled": "stoker has no event listeners; follow output with `stoker logs NAME -f`.",
    "stderr_events_enabled": "stoker has no event listeners; follow output with `stoker logs NAME -f`.",
    "stdout_syslog": "stoker writes log files; pipe `stoker logs NAME -f` to logger(1) for syslog.",
    "stderr_syslog": "stoker writes log files; pipe `stoker logs NAME -f` to logger(1) for syslog.",
}


def _instances(section: _Section, program: Program) -> None:
    numprocs = section.number("numprocs", 1)
    if numprocs is not None and numprocs != 1:
        program.set("instances", numprocs, f"numprocs={numprocs}")
    start = section.number("numprocs_start", 0)
    if start:
        program.note(
            f"numprocs_start={start}: stoker numbers instances from 0 ({INSTANCE} is 0, 1, …); "
            f"add {start} in the program if the numbers matter."
        )
    process_name = section.raw("process_name")
    if process_name not in (None, "%(program_name)s"):
        program.note(
            f"process_name={process_name}: stoker names the instances {program.name}:0 … "
            f"{program.name}:N-1 (`stoker status {program.name}`)."
        )
    for key in ("command", "environment", "directory"):
        padded = loses_padding(section.raw(key) or "", section.names)
        if padded:
            program.note(
                f"{key}: {padded} is written {INSTANCE}, without the zero padding (stoker has no "
                "padded form; 10 or more instances have numbers of two digits)."
            )


def _where_and_who(section: _Section, program: Program, daemon_environment: dict[str, str]) -> None:
    directory = section.text("directory")
    if directory is not None:
        program.set("directory", directory)
    else:
        program.note(
            "no directory=: supervisord ran it in its own working directory; stoker runs it in "
            "this file's folder (set directory to change that)."
        )
    environment = dict(daemon_environment)
    inherited = []
    for name, value in _raw_environment(section).items():
        if value.strip() == f"%(ENV_{name})s":  # X=%(ENV_X)s: the daemon's own X, which programs inherit
            environment.pop(name, None)
            inherited.append(name)
        else:
            environment[name] = expand(value, section.names, lambda p: section.error("environment", p))
    if environment:
        program.set(
            "environment", environment, "and [supervisord] environment=" if daemon_environment else ""
        )
    if inherited:
        program.note(
            f"environment {', '.join(f'{n}=%(ENV_{n})s' for n in inherited)}: left out: a program "
            "inherits the daemon's environment, so it gets the value the daemon has when it starts."
        )
    user = section.text("user")
    if user is not None:
        program.set("user", user.strip())
    umask = section.raw("umask")
    if umask is not None:
        if not re.fullmatch(r"0?[0-7]{1,3}", umask.strip()):
            raise section.error("umask", f"expected an octal umask like 022, got {quoted(umask)}")
        program.set("umask", umask.strip().rjust(3, "0"))


def _restarts(section: _Section, program: Program) -> None:
    autostart = section.boolean("autostart")
    if autostart is not None:
        program.set("autostart", autostart)
    autorestart = section.raw("autorestart")
    try:
        policy = restart_policy("unexpected" if autorestart is None else autorestart)
    except ValueError as e:
        raise section.error("autorestart", str(e)) from None
    why = (
        "supervisord's default, autorestart=unexpected"
        if autorestart is None
        else f"autorestart={autorestart}"
    )
    program.set("restart", policy, why)
    if section.raw("exitcodes") is not None:
        try:
            program.set("success_exit_codes", exit_codes(section.raw("exitcodes") or ""))
        except ValueError as e:
            raise section.error("exitcodes", str(e)) from None
    startsecs = section.number("startsecs", 0)
    if startsecs is not None:
        program.set("start_seconds", seconds(startsecs), f"startsecs={startsecs}")
    retries = section.number("startretries", 0)
    if retries is None:
        program.set("max_restarts", 3, "supervisord's default startretries=3; 0 = never give up")
    elif retries == 0:
        program.set("max_restarts", 1, "startretries=0; stoker retries at least once (0 = never give up)")
    else:
        program.set("max_restarts", retries, f"startretries={retries}")


def _stopping(section: _Section, program: Program) -> None:
    stopsignal = section.raw("stopsignal")
    if stopsignal is not None:
        try:
            parse_signal(stopsignal)
        except ValueError as e:
            raise section.error("stopsignal", str(e)) from None
        word = stopsignal.strip().upper()
        program.set("stop_signal", word.removeprefix("SIG"))
    stopwaitsecs = section.number("stopwaitsecs", 0)
    if stopwaitsecs is not None:
        program.set("stop_timeout", seconds(stopwaitsecs), f"stopwaitsecs={stopwaitsecs}")
    for key in ("stopasgroup", "killasgroup"):
        if section.boolean(key) is not None:
            program.note(
                f"{key}={section.raw(key)}: stoker always signals the whole process group "
                "(children included); nothing to set."
            )


def _log(section: _Section, program: Program) -> None:
    """redirect_stderr, stdout_logfile, stderr_logfile and their _maxbytes, _backups →
    ``log = {…}``: AUTO is stoker's default place, NONE is nowhere (/dev/null)."""
    redirected = bool(section.boolean("redirect_stderr"))
    # both streams to one file: the lines interleaved in it, as stoker's merge writes them
    out, err = section.raw("stdout_logfile"), section.raw("stderr_logfile")
    one_file = out is not None and out.strip() == (err or "").strip() and out.strip().upper() not in _NO_FILE
    merged = redirected or one_file
    log: dict[str, Value] = {"stderr": "merge" if merged else "separate"}
    maxbytes = section.raw("stdout_logfile_maxbytes")
    if maxbytes is not None:
        try:
            size = parse_size(maxbytes, where="")
        except InvalidValue:
            raise section.error(
                "stdout_logfile_maxbytes", f'expected a size like "50MB", got {quoted(maxbytes)}'
            ) from None
        if size == 0:  # never rotated: as a stream (/dev/stdout) is not, whatever max_size says
            if (section.raw("stdout_logfile") or "").strip() not in STREAMS:
                program.note(
                    "stdout_logfile_maxbytes=0: supervisord never rotated this log; stoker always "
                    "rotates, so set log.max_size as large as you need."
                )
        else:
            log["max_size"] = size if maxbytes.strip().isdigit() else maxbytes.strip()
    backups = section.number("stdout_logfile_backups", 0)
    if backups is not None:
        log["keep"] = backups
    if not merged:
        for suffix in ("maxbytes", "backups"):
            mine, theirs = section.raw(f"stderr_logfile_{suffix}"), section.raw(f"stdout_logfile_{suffix}")
            if mine is not None and mine != theirs:
                program.note(
                    f"stderr_logfile_{suffix}={mine}: stoker rotates a program's two logs alike, "
                    "by the log.max_size and log.keep above."
                )
    instances = section.number("numprocs", 1) or 1
    for stream, key in (("stdout", "file"), ("stderr", "stderr_file")):
        option = f"{stream}_logfile"
        value = section.raw(option)
        if value is None or value.strip().upper() == "AUTO" or (stream == "stderr" and merged):
            continue  # AUTO: a file supervisord named itself; stoker's default place does as well
        if value.strip().upper() == "NONE":
            log[key] = "/dev/null"
            continue
        path = (section.text(option) or "").strip()
        if path in STREAMS:
            log[key] = path
            continue
        if instances > 1 and INSTANCE not in path:
            root, extension = os.path.splitext(path)
            path = f"{root}.{INSTANCE}{extension}"
            program.note(
                f"{option}={value}: one file per instance here ({os.path.basename(path)}): each "
                "instance writes and rotates its own."
            )
        log[key] = path
    why = (
        "redirect_stderr=true"
        if redirected
        else "stdout_logfile = stderr_logfile: one file"
        if merged
        else "as supervisord: stderr in a file of its own"
    )
    program.set("log", log, why)


# --------------------------------------------------------------------------------------------
# Every other section
# --------------------------------------------------------------------------------------------

_DAEMON = {
    "logfile": "stoker's own log goes to stderr under `stoker up` (the journal under systemd) or "
    "<state_dir>/stoker.log with `stoker up -d`.",
    "logfile_maxbytes": "stoker's own log is small; under systemd the journal rotates it.",
    "logfile_backups": "stoker's own log is small; under systemd the journal rotates it.",
    "loglevel": "stoker logs state changes and errors; there is no level to set.",
    "pidfile": "stoker writes <state_dir>/stoker.pid ([daemon] state_dir, default .stoker beside this file).",
    "nodaemon": "`stoker up` runs in the foreground; `stoker up -d` detaches.",
    "silent": "`stoker up -d` writes nothing to the terminal once it has started.",
    "minfds": "raise the limit where stoker starts: LimitNOFILE= in the unit `stoker systemd` prints.",
    "minprocs": "raise the limit where stoker starts: LimitNPROC= in the unit `stoker systemd` prints.",
    "nocleanup": "stoker keeps rotated logs by each program's log.keep.",
    "childlogdir": "program logs go to <state_dir>/logs ([daemon] state_dir).",
    "user": "run stoker itself as this user (User= in the unit `stoker systemd` prints).",
    "directory": "stoker's programs run in this file's folder unless they set directory.",
    "umask": "programs inherit stoker's umask (UMask= in a systemd unit), or set umask per program.",
    "identifier": "stoker is identified by its config file and [daemon] node.",
    "strip_ansi": "stoker keeps output as written.",
    "environment": "added to every program's environment below, as supervisord did.",
}
_OTHER_SECTIONS = {
    "unix_http_server": "stoker always listens on <state_dir>/stoker.sock (mode 0600, so only its user "
    "may use it); the CLI finds it through the config.",
    "supervisorctl": "the `stoker` CLI finds the daemon through the config (-c FILE, $STOKER_CONFIG or "
    "./stoker.toml): nothing to set.",
    "rpcinterface": "stoker's control interface is its HTTP API (/api/v1, JSON) and the `stoker` CLI.",
    "ctlplugin": "stoker's CLI has no plugins; its HTTP API (/api/v1) can be scripted instead.",
}


def _other_section(section: _Section, kind: str, name: str, include: Include | None = None) -> list[str]:
    options = section.options
    listing = ", ".join(f"{k}={'***' if k == 'password' else v}" for k, v in options.items())
    shown = f"{section.header} {listing}".rstrip()
    if kind == "supervisord":
        return [
            f"[supervisord] {k}={v}: {_DAEMON.get(k, 'no stoker equivalent; left out.')}"
            for k, v in options.items()
        ]
    if kind == "inet_http_server":
        port = options.get("port", "127.0.0.1:9001")
        text = (
            f"{shown}: stoker serves its HTTP API and dashboard on TCP with [daemon] "
            f'listen = "{port.strip()}"'
        )
        if "username" in options or "password" in options:
            text += (
                '; instead of a username and password it takes a token: [daemon] token = "env:STOKER_TOKEN"'
            )
        return [text + "."]
    if kind == "include":
        if include is not None:
            return []  # followed: its own notes say what was read
        files = section.text("files") or ""
        return [
            f"[include] files={files}: stoker reads one file; convert each included file with "
            "`stoker import FILE` and add its programs to this one."
        ]
    if kind == "group":
        group = program_name(name)[0]
        text = (
            f'{shown}: each of its programs has groups = ["{group}"]; `stoker start|stop|restart {group}:*`'
        )
        if "priority" in options:
            text += "; stoker starts programs in file order (priority is not used)"
        return [text + "."]
    if kind == "eventlistener":
        command = options.get("command", "")
        text = (
            f"[eventlistener:{name}] command={command}: stoker has no event listeners (supervisord's "
            "stdin protocol). Its HTTP API streams every state change at GET /api/v1/events "
            "(server-sent events): a program can follow that stream instead."
        )
        if re.search(r"PROCESS_STATE_(EXITED|FATAL)", options.get("events", "")):
            # the container idiom: a listener that kills supervisord when the main program ends
            text += (
                " If it stopped supervisord when a program ended (the container idiom), set "
                "stop_daemon_on_exit = true on that program instead."
            )
        return [text]
    if kind == "fcgi-program":
        return [
            f"{shown}: stoker does not open a socket for a program; run the FastCGI server as a "
            "program that binds its own socket."
        ]
    if kind in _OTHER_SECTIONS:
        return [f"{shown}: {_OTHER_SECTIONS[kind]}"]
    return [f"{shown}: not a supervisord section stoker knows; left out."]
