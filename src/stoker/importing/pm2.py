"""A pm2 ecosystem file (``ecosystem.config.json`` / ``.js`` / ``.cjs``) → programs.

Each entry of ``apps`` becomes a program. pm2's times are milliseconds; its interpreter is
guessed from the script's extension as pm2 does; ``instances: "max"`` becomes this machine's
CPU count (stoker has no "max": the number is written down, with a note). Everything pm2 has
and stoker has not (cluster mode, ``env_production``, ``ignore_watch`` …) becomes a note.

Length: a table of pm2's options, each with its mapping or its note; one option per stanza, read
top to bottom like pm2's own documentation. Nothing in it is shared with other importers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from typing import Any

from stoker.durations import InvalidValue, parse_size
from stoker.importing import js
from stoker.importing.model import (
    Converted,
    InputError,
    Machine,
    Program,
    Setting,
    Value,
    duration_from_ms,
    program_name,
    seconds,
)
from stoker.signals import parse_signal

FORMAT = "pm2"
YAML = (".yml", ".yaml")
DEFAULT_MAX_RESTARTS = 16  # pm2's: unstable restarts (up less than min_uptime) before "errored"
EXP_BACKOFF_CAP = 15.0  # pm2's exp_backoff_restart_delay stops growing at 15 s
# How pm2 picks an interpreter from the script's extension (Common.js, extItps); .py is
# "python" in pm2, which Debian no longer ships: python3 is what such a machine runs.
INTERPRETERS = {
    ".js": "node",
    ".cjs": "node",
    ".mjs": "node",
    ".ts": "ts-node",
    ".tsx": "ts-node",
    ".coffee": "coffee",
    ".ls": "lsc",
    ".py": "python3",
    ".sh": "bash",
    ".rb": "ruby",
    ".php": "php",
    ".pl": "perl",
}


# pm2's documented aliases (lib/API/schema.json): alias → the option it stands for.
ALIASES = {
    "exec": "script",
    "interpreterArgs": "node_args",
    "interpreter_args": "node_args",
    "out": "out_file",
    "output": "out_file",
    "out_log": "out_file",
    "error": "error_file",
    "err": "error_file",
    "err_file": "error_file",
    "err_log": "error_file",
    "log": "log_file",
    "pid": "pid_file",
    "cron": "cron_restart",
    "combine_logs": "merge_logs",
}
# pm2's watcher ignores dot files and folders and node_modules unless ignore_watch is given
# (chokidar's ignored: /[\/\\]\.|node_modules/); as watch_ignore patterns (see ignore_watch).
# What a [schedules.NAME] with an inline command takes of a program's settings.
STREAMS = ("/dev/stdout", "/dev/stderr", "/dev/null")  # stoker.config.programs.STREAMS
SCHEDULE_KEYS = frozenset({"command", "directory", "environment", "user", "group", "stop_timeout"})
DEFAULT_WATCH_IGNORE = [".*", "*/.*", "node_modules", "node_modules/*", "*/node_modules/*"]


def load(text: str, file: str, *, javascript: bool) -> Any:
    """The ecosystem's data: the plain data a .js file exports, YAML, or JSON (JSON5 too: pm2
    reads its .json files with json5, so comments, single quotes and bare keys are allowed)."""
    if javascript:
        try:
            return js.exported(text, file)
        except js.JSError as e:
            message = str(e).replace("./FILE", "./" + os.path.basename(file))
            raise InputError(file, None if e.line is None else f"line {e.line}", None, message) from None
    if os.path.splitext(file)[1].lower() in YAML:
        return _yaml(text, file)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        strict = e
    # The JavaScript data reader reads JSON5's syntax (it is JavaScript's own literal syntax);
    # JSON's error is kept for a file that is neither, as it names the column.
    try:
        return js.data(text)
    except js.JSError:
        raise InputError(
            file, f"line {strict.lineno}", None, f"invalid JSON: {strict.msg} (column {strict.colno})"
        ) from None


def _yaml(text: str, file: str) -> Any:
    try:
        import yaml  # an optional dependency: the yaml extra
    except ImportError:
        raise InputError(
            file, None, None, "reading YAML needs PyYAML: pip install 'stoker[yaml]' (or convert it to JSON)"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = None if mark is None else f"line {mark.line + 1}"
        problem = getattr(e, "problem", None) or str(e)
        raise InputError(file, where, None, f"invalid YAML: {problem}") from None


def convert(data: Any, file: str, machine: Machine, env: str | None = None) -> Converted:
    """`env`: the NAME of ``pm2 start --env NAME``, whose env_NAME is merged into each app's env."""
    converted = Converted(file=file, format=FORMAT)
    apps = _apps(data, file)
    if env is not None:
        named = {k for app in apps if isinstance(app, dict) for k in app if k.startswith("env_")}
        if f"env_{env}" not in named:
            found = ", ".join(sorted(named)) or "none"
            raise InputError(file, None, None, f"--env {env}: no app has env_{env} (found: {found})")
        converted.notes.append(f"--env {env}: each app's env_{env} is merged into its env, as pm2 did.")
    converted.notes.append(
        f"Relative paths (script, cwd) were relative to where pm2 was started; here they are "
        f"relative to this file's folder: keep it beside {os.path.basename(file)}."
    )
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "deploy":
                converted.notes.append(
                    f"deploy ({', '.join(value) if isinstance(value, dict) else 'set'}): stoker does not "
                    "deploy code; after your deploy step has updated it, `stoker reload` applies a "
                    "changed stoker.toml and `stoker restart NAME` restarts a program."
                )
            elif key != "apps":
                converted.notes.append(f"{key} = {_compact(value)}: not a pm2 ecosystem key stoker knows.")
    seen: set[str] = set()
    for index, app in enumerate(apps):
        program = _App(app, index, file, machine, env).program()
        if program.name in seen:
            raise InputError(
                file,
                f"apps[{index}]",
                "name",
                f"expected a name no other app has, got {_compact(program.name)}",
            )
        seen.add(program.name)
        converted.programs.append(program)
    return converted


def _apps(data: Any, file: str) -> list[Any]:
    """pm2 takes ``{apps: [...]}``, ``{apps: {...}}``, a bare list, or one app."""
    if isinstance(data, dict) and "apps" in data:
        apps = data["apps"]
        return apps if isinstance(apps, list) else [apps]
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and "script" in data:
        return [data]
    raise InputError(file, None, None, "expected a pm2 ecosystem: { apps: [ { name, script, … } ] }")


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class _App:
    """One entry of ``apps``, converted option by option into a Program."""

    def __init__(self, app: Any, index: int, file: str, machine: Machine, env: str | None = None) -> None:
        self.file = file
        self.env_name = env
        self.index = index
        self.machine = machine
        if not isinstance(app, dict):
            raise InputError(
                file, f"apps[{index}]", None, f"expected an object {{ name, script, … }}, got {_compact(app)}"
            )
        self.app: dict[str, Any] = dict(app)
        self.where = f"apps[{index}]"
        self.aliases: dict[str, str] = {}  # option → the alias it was written as
        for alias, option in ALIASES.items():
            if alias in self.app and option not in self.app:
                self.app[option] = self.app.pop(alias)
                self.aliases[option] = alias
        script = app.get("script")
        if not isinstance(script, str) or not script.strip():
            raise self.error("script", f"expected the script or program to run, got {_compact(script)}")
        self.script = script.strip()
        original = app.get("name")
        if original is None:  # pm2 names an app after its script
            original = os.path.splitext(os.path.basename(self.script))[0]
        if not isinstance(original, str) or not original.strip():
            raise self.error("name", f"expected a name, got {_compact(original)}")
        self.where = f'apps[{index}] "{original}"'
        name, renamed = program_name(original.strip())
        self.out = Program(name=name, source=f"{self.where} in {os.path.basename(file)}")
        if renamed:
            self.out.note(renamed)
        self.done: set[str] = {"name", "script"}
        self.cron_job: str | None = None  # set by cron_restart(): a schedule, not a program
        self.count = 1  # instances

    def error(self, key: str | None, problem: str) -> InputError:
        return InputError(self.file, self.where, key, problem)

    def get(self, key: str) -> Any:
        self.done.add(key)
        return self.app.get(key)

    def note(self, key: str, text: str) -> None:
        self.out.note(f"{self.aliases.get(key, key)} = {_compact(self.app[key])}: {text}")

    def said(self, key: str) -> str:
        """``key: value`` as the file wrote it (under its alias, if it used one), for a note."""
        return f"{self.aliases.get(key, key)}: {_compact(self.app[key])}"

    def ms(self, key: str) -> float | None:
        value = self.get(key)
        if value is None:
            return None
        try:
            return duration_from_ms(value)
        except ValueError as e:
            raise self.error(key, f"{e}, got {_compact(value)}") from None

    def whole(self, key: str, minimum: int) -> int | None:
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"expected a whole number, {minimum} or more, got {_compact(value)}")
        return value

    def program(self) -> Program:
        command, shell = self.command()
        self.out.set("command", command)
        if shell:
            self.out.set("shell", True)
        directory = self.get("cwd")
        if directory is not None:
            if not isinstance(directory, str) or not directory:
                raise self.error("cwd", f"expected a folder path, got {_compact(directory)}")
            self.out.set("directory", directory)
        instances = self.count = self.instances()
        self.environment(instances)
        self.restarts()
        self.stopping()
        self.memory_and_watch()
        self.logs()
        user, uid = self.get("user"), self.get("uid")  # the same option
        if user is not None or uid is not None:
            self.out.set("user", str(user if user is not None else uid))
        if self.get("gid") is not None:
            self.out.set("group", str(self.app["gid"]))
        self.rest()
        if self.cron_job is not None:
            self.schedule(self.cron_job)
        return self.out

    def schedule(self, cron: str) -> None:
        """autorestart: false + cron_restart is how pm2 runs a cron job: started at those times,
        never restarted in between. In stoker that is a schedule with an inline command (each
        run a job, its output kept with it); a program would run once and never again."""
        out = self.out
        out.table = "schedules"
        shell = out.drop("shell")
        kept = []
        for setting in out.settings:
            if setting.key in SCHEDULE_KEYS:
                kept.append(setting)
            elif setting.key == "log" and isinstance(setting.value, dict) and "file" in setting.value:
                out.note(
                    f"its output went to {setting.value['file']}; here each run's output is kept with its job"
                    f" (`stoker schedule history {out.name}`, then `stoker job ID`)."
                )
            elif setting.key not in ("restart", "max_restarts", "log"):  # a run ends; its output is the job's
                out.note(
                    f"{setting.key} = {_compact(setting.value)}: a program's setting; not in a schedule."
                )
        command = out.get("command")
        if shell is not None and isinstance(command, str):
            kept = [
                Setting("command", shlex.join(["/bin/sh", "-c", command]), "through a shell")
                if s.key == "command"
                else s
                for s in kept
            ]
        out.settings = [
            Setting("cron", cron, f"{self.said('cron_restart')} with autorestart: false: pm2's cron job"),
            *kept,
            Setting("overlap", "replace", "pm2 restarted a run still going at the next time"),
        ]
        out.note(
            f"pm2 also ran it once at `pm2 start`; `stoker schedule run {out.name}` runs it now, "
            f"`stoker schedule history {out.name}` lists its runs."
        )

    # the command ------------------------------------------------------------------------------

    def command(self) -> tuple[str, bool]:
        """``[interpreter, interpreter_args…, script, args…]`` as one string stoker splits back;
        and whether it needs a shell (a script that is a shell command line)."""
        named, older = self.get("interpreter"), self.get("exec_interpreter")  # the same option
        interpreter = named if named is not None else older
        if interpreter is not None and not isinstance(interpreter, str):
            raise self.error("interpreter", f"expected a program name like node, got {_compact(interpreter)}")
        interpreter_args = self.words("interpreter_args") + self.words("node_args")
        args = self.words("args")
        script = [self.script]
        if re.search(r"\s", self.script):
            # pm2 runs a script with spaces ("npm run start") as a command line, through bash -c
            if re.search(r"[$`|&;<>(){}*?~\\]|\[", self.script):
                self.interpreter = "sh"
                self.out.note(
                    f"script = {_compact(self.script)}: pm2 ran it with bash -c; here with /bin/sh -c "
                    "(shell = true): check it needs nothing bash has and sh has not."
                )
                return " ".join([self.script, shlex.join(args)]) if args else self.script, True
            try:
                script = shlex.split(self.script)
            except ValueError as e:
                raise self.error("script", f"expected a command line with balanced quotes ({e})") from None
        if interpreter is None:
            interpreter = INTERPRETERS.get(os.path.splitext(script[0])[1].lower(), "none")
            if interpreter == "python3":
                self.out.note(
                    f"script = {_compact(self.script)}: pm2 ran .py files with python; here python3."
                )
        self.interpreter = interpreter
        argv = [] if interpreter == "none" else [interpreter, *interpreter_args]
        return shlex.join([*argv, *script, *args]), False

    def words(self, key: str) -> list[str]:
        value = self.get(key)
        if value is None:
            return []
        if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            return [str(v) for v in value]
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as e:
                raise self.error(key, f"expected arguments with balanced quotes ({e})") from None
        raise self.error(key, f"expected a string or an array of strings, got {_compact(value)}")

    # instances and environment ----------------------------------------------------------------

    def instances(self) -> int:
        value = self.get("instances")
        count = 1
        cpus = self.machine.cpu_count
        if value in ("max", 0, "0", -1, "-1"):
            count = max(1, cpus - 1) if value in (-1, "-1") else cpus
            self.note(
                "instances",
                f"{'all CPUs but one' if value in (-1, '-1') else 'one per CPU'} in pm2; stoker takes a "
                f"number: this machine has {cpus} CPU(s), so {count}; change it for another machine.",
            )
        elif value is not None:
            count = self.whole("instances", 1) or 1
        if count != 1:
            self.out.set("instances", count)
        mode = self.get("exec_mode")
        ports = (
            "stoker runs independent instances, which cannot share a port unless each binds its own "
            '(e.g. PORT = "300{instance}" in environment) or they use SO_REUSEPORT.'
        )
        if isinstance(mode, str) and mode.startswith("cluster"):
            self.note(
                "exec_mode", f"pm2's cluster mode shared one listening port between node processes; {ports}"
            )
        elif mode not in (None, "fork", "fork_mode"):
            raise self.error("exec_mode", f'expected "fork" or "cluster", got {_compact(mode)}')
        elif mode is None and count > 1 and self.interpreter == "node":
            # pm2 (Common.prepareAppConf) puts a node app with instances in cluster mode
            self.out.note(
                f"instances = {_compact(self.app['instances'])} without exec_mode: pm2 ran this node "
                f"app in cluster mode, its instances sharing one listening port; {ports}"
            )
        return count

    def environment(self, instances: int) -> None:
        env = self.get("env")
        if env is not None and not isinstance(env, dict):
            raise self.error("env", f"expected an object of variables, got {_compact(env)}")
        chosen = f"env_{self.env_name}" if self.env_name is not None else None
        extra = self.get(chosen) if chosen is not None else None
        if extra is not None and not isinstance(extra, dict):
            raise self.error(chosen, f"expected an object of variables, got {_compact(extra)}")
        merged = {**(env or {}), **(extra or {})}
        environment = {
            name: self.env_value(name, value) for name, value in merged.items() if value is not None
        }
        port = self.get("port")
        if port is not None and "PORT" not in environment:
            environment["PORT"] = self.env_value("port", port)
        named = self.get("instance_var")
        if named is not None and not (
            isinstance(named, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", named)
        ):
            raise self.error("instance_var", f"expected an environment variable name, got {_compact(named)}")
        variable = named or "NODE_APP_INSTANCE"
        note = ""
        if (instances > 1 or named) and variable not in environment:
            environment[variable] = "{instance}"
            note = f"{variable}: the instance number, as pm2 set it"
        if named:
            self.note(
                "instance_var",
                f'pm2 gave each instance its number in {named}; here environment {named} = "{{instance}}" '
                "(stoker also sets STOKER_INSTANCE).",
            )
        if extra:
            note = f"and {chosen} (--env {self.env_name})" + (f"; {note}" if note else "")
        if environment:
            self.out.set("environment", environment, note)
        for key in sorted(k for k in self.app if k.startswith("env_") and k != chosen):
            self.done.add(key)
            self.note(
                key,
                f"`pm2 start --env {key[4:]}` added these; stoker has one environment per program: "
                "merge the variables of the environment you deploy into environment above.",
            )

    def env_value(self, name: str, value: Any) -> str:
        if isinstance(value, bool):  # how node turns them into variables
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, str | int | float):
            return str(value)
        raise self.error(f"env.{name}", f"expected a string, number or boolean, got {_compact(value)}")

    # restarting and stopping ------------------------------------------------------------------

    def restarts(self) -> None:
        autorestart = self.get("autorestart")
        codes = self.get("stop_exit_codes")
        if autorestart is not None and not isinstance(autorestart, bool):
            raise self.error("autorestart", f"expected true or false, got {_compact(autorestart)}")
        if autorestart is False:
            self.out.set("restart", "never", "autorestart: false")
        elif codes is not None:
            listed = codes if isinstance(codes, list) else [codes]
            if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in listed):
                raise self.error("stop_exit_codes", f"expected exit codes 0-255, got {_compact(codes)}")
            self.out.set("restart", "on-failure", "stop_exit_codes: these exits are not restarted")
            self.out.set("success_exit_codes", listed)
        elif autorestart is True:
            self.out.set("restart", "always")
        uptime = self.ms("min_uptime")
        if uptime is not None:
            self.out.set("start_seconds", seconds(uptime), f"min_uptime: {_compact(self.app['min_uptime'])}")
        most = self.whole("max_restarts", 0)
        if most is None:
            self.out.set("max_restarts", DEFAULT_MAX_RESTARTS, "pm2's default; 0 = never give up")
        elif most == 0:
            self.out.set(
                "max_restarts", 1, "max_restarts: 0 in pm2; stoker retries at least once (0 = never give up)"
            )
        else:
            self.out.set("max_restarts", most)
        delay, growing = self.ms("restart_delay"), self.ms("exp_backoff_restart_delay")
        if growing:
            top = max(growing, EXP_BACKOFF_CAP)
            self.out.set(
                "backoff",
                {"min": seconds(growing), "max": seconds(top)},
                "exp_backoff_restart_delay, up to pm2's 15s",
            )
        elif delay:
            self.out.set(
                "backoff", {"min": seconds(delay), "max": seconds(max(delay, 60.0))}, "restart_delay"
            )
        if delay:
            self.note(
                "restart_delay",
                "pm2 waited before every restart; stoker restarts a program that had been up at once "
                "and waits (backoff, doubling) only after starts that failed, and in a crash loop.",
            )
        if self.app.get("cron_restart") is not None:
            self.cron_restart()

    def cron_restart(self) -> None:
        from stoker.schedule.triggers import Reboot, TriggerError, parse_cron, zone_named

        value = self.get("cron_restart")
        if not isinstance(value, str):
            raise self.error(
                "cron_restart", f'expected a cron expression like "0 4 * * *", got {_compact(value)}'
            )
        try:
            trigger = parse_cron(value, zone_named("UTC"))
        except TriggerError as e:
            self.note("cron_restart", f"stoker's cron_restart takes a 5-field cron expression: {e}.")
            return
        if isinstance(trigger, Reboot):
            self.note("cron_restart", "a program starts with the daemon anyway.")
            return
        if self.app.get("autorestart") is False:
            self.cron_job = " ".join(value.split())  # pm2's cron job idiom: see schedule()
            return
        self.out.set("cron_restart", " ".join(value.split()), "in [daemon] timezone (default: the system's)")

    def stopping(self) -> None:
        timeout = self.ms("kill_timeout")
        if timeout is not None:
            self.out.set(
                "stop_timeout", seconds(timeout), f"kill_timeout: {_compact(self.app['kill_timeout'])}"
            )
        signal = self.get("kill_signal")
        if signal is not None:
            try:
                parse_signal(signal)
            except ValueError as e:
                raise self.error("kill_signal", str(e)) from None
            self.out.set("stop_signal", str(signal).strip().upper().removeprefix("SIG"))
        if self.get("treekill") is False:
            self.note("treekill", "stoker always signals the whole process group (children included).")

    # memory, watching, logs -------------------------------------------------------------------

    def memory_and_watch(self) -> None:
        limit = self.get("max_memory_restart")
        if limit is not None:
            try:
                size = parse_size(limit, where="")
            except InvalidValue:
                raise self.error(
                    "max_memory_restart", f'expected a size like "300M", got {_compact(limit)}'
                ) from None
            text = limit.strip() if isinstance(limit, str) else ""
            shown: Value = text + "B" if re.fullmatch(r"[\d.]+\s*[KMGkmg]", text) else (text or size)
            self.out.set("max_memory", shown, f"max_memory_restart: {_compact(limit)}")
        watch = self.get("watch")
        cwd = self.app.get("cwd") if isinstance(self.app.get("cwd"), str) else None
        if watch is True:
            paths: list[str] = [cwd or "."]
        elif isinstance(watch, str):
            paths = [watch]
        elif isinstance(watch, list) and all(isinstance(p, str) for p in watch):
            paths = list(watch)
        elif watch in (None, False):
            paths = []
        else:
            raise self.error("watch", f"expected true, a path or an array of paths, got {_compact(watch)}")
        if paths:
            # pm2 reads them from the app's cwd; stoker from the config's folder
            paths = [os.path.join(cwd, p) if cwd and watch is not True else p for p in paths]
            self.out.set("watch", paths, f"watch: {_compact(watch)}")
        ignored = self.get("ignore_watch")
        if ignored is not None:
            self.ignore_watch(ignored)
        elif paths:
            self.out.set(
                "watch_ignore",
                DEFAULT_WATCH_IGNORE,
                "pm2's default without ignore_watch: dot files and folders (.next/cache…), node_modules",
            )
        for key, text in (
            ("watch_delay", "stoker restarts once the changes have settled (300 ms apart); nothing to set."),
            ("watch_options", "stoker watches with inotify; no chokidar options."),
        ):
            if key in self.app:
                self.done.add(key)
                self.note(key, text)

    def ignore_watch(self, ignored: Any) -> None:
        """pm2's ignore_watch (chokidar patterns) → watch_ignore (glob patterns matched against
        the path relative to the config's folder, the file name and the full path): a plain
        name also stands for everything under it."""
        entries = [ignored] if isinstance(ignored, str) else ignored
        if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
            raise self.error(
                "ignore_watch", f"expected a pattern or an array of patterns, got {_compact(ignored)}"
            )
        patterns: list[str] = []
        for entry in entries:
            patterns.append(entry)
            if not re.search(r"[*?\[\\]", entry):
                patterns.append(entry.rstrip("/") + "/*")
        self.out.set("watch_ignore", patterns, "ignore_watch; a folder F is also F/*")

    def logs(self) -> None:
        """out_file / error_file (log_file when neither is set) → log.file / log.stderr_file;
        a path that is not a string (pm2's defaults, in ~/.pm2/logs) is left to stoker's."""
        out, err, combined = self.log_path("out_file"), self.log_path("error_file"), self.log_path("log_file")
        merged = out is not None and out == err
        if out is None and err is None and combined is not None:
            out, merged = combined, True  # pm2 also wrote both streams to this one file
        log: dict[str, Value] = {"stderr": "merge" if merged else "separate"}
        if self.get("disable_logs") is True:
            out = err = "/dev/null"
        if out is not None:
            log["file"] = self.per_instance(out)
        if err is not None and not merged:
            log["stderr_file"] = self.per_instance(err)
        # time: true, or a log_date_format (a day.js format), prefixed each line with the time;
        # log_date_format: false (or "") is how a file says "no timestamps"
        date_format = self.get("log_date_format")
        if self.get("time") is True or (isinstance(date_format, str) and date_format.strip()):
            log["timestamps"] = True
        elif out is None and (date_format is False or date_format == "" or self.get("time") is False):
            log["timestamps"] = False  # said plainly; stoker's own log files have them by default
        why = "out_file = error_file" if merged else "as pm2: stderr in a file of its own"
        self.out.set(
            "log", log, why + ("; timestamps as pm2's time / log_date_format" if "timestamps" in log else "")
        )
        name = self.out.name
        places = {
            "log_file": 'stoker keeps no third, combined file; log.stderr = "merge" interleaves both.',
            "merge_logs": f"each instance writes its own file; `stoker logs {name}` reads them all.",
            "log_date_format": "stoker's timestamps are ISO 8601 (log.timestamps above)."
            if log.get("timestamps")
            else "no timestamps, as in pm2 (a log.file gets none unless log.timestamps = true).",
            "log_type": "stoker writes output as it comes, not JSON lines.",
            "pid_file": "`stoker status --json` shows each instance's pid.",
        }
        for key, text in places.items():
            if key in self.app and not (
                key == "log_file" and log.get("file") == self.per_instance(combined or "")
            ):
                self.done.add(key)
                self.note(key, text)

    def log_path(self, key: str) -> str | None:
        value = self.get(key)
        if value is None or value is False:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a file path, got {_compact(value)}")
        return value.strip()

    def per_instance(self, path: str) -> str:
        """With several instances each writes its own file (pm2 added -ID to the name unless
        merge_logs; stoker's instances each rotate their own file)."""
        if self.count <= 1 or "{instance}" in path or path in STREAMS:
            return path
        root, extension = os.path.splitext(path)
        return f"{root}-{{instance}}{extension}"

    def rest(self) -> None:
        """Every option not converted above, as a note saying what stoker has instead."""
        texts = {
            "wait_ready": 'pm2 waited for process.send("ready"); stoker\'s ready = "tcp:PORT", '
            '"http://…/health" or "notify" (sd_notify READY=1) waits for the app instead.',
            "listen_timeout": "with ready, stoker's ready_timeout is how long to wait for it.",
            "shutdown_with_message": "stoker stops a program with stop_signal (a signal, not a message).",
            "source_map_support": "node option; add --enable-source-maps to the command if needed.",
            "vizion": "stoker does not track git versions.",
            "pmx": "stoker has no pm2 metrics module; see GET /metrics.",
            "automation": "stoker has no pm2 metrics module; see GET /metrics.",
            "namespace": "stoker has no namespaces; name programs accordingly.",
            "increment_var": "set the variable in environment with {instance} instead.",
            "filter_env": "programs get the daemon's environment plus environment; nothing is filtered.",
            "force": "stoker never starts a program twice.",
            "append_env_to_name": "stoker names instances NAME:N.",
            "kill_retry_time": "stoker sends SIGKILL once stop_timeout has passed.",
            "post_update": "run these in your deploy step, then `stoker restart NAME`.",
        }
        for key in self.app:
            if key not in self.done:
                self.note(key, texts.get(key, "not a pm2 option stoker knows; left out."))
