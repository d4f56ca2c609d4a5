"""What `stoker check` warns about in a config it accepts: what will likely fail once the daemon
runs it, but that the config cannot refuse (the machine may yet change before `stoker up`).

Seen often in imported configs: a command whose executable is not found on the PATH the daemon
will give it (a virtualenv's gunicorn, a node installed by nvm in a login shell), an env_file
that cannot be read (yet), and a config that defines nothing to run. Pure but for `which` and
the env_file reads.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping

from stoker import envfile
from stoker.config import SCHEDULE_TASK_PREFIX, Config
from stoker.supervise.environment import DEFAULT_PATH, kept_when_clean

# which(name, path) → the executable's path, or None: shutil.which's signature
Which = Callable[[str, str], str | None]


def _which(name: str, path: str) -> str | None:
    return shutil.which(name, path=path)


def warnings(config: Config, environ: Mapping[str, str], which: Which = _which) -> list[str]:
    """Each warning as one line: ``[programs.web] command: …``. `environ` is the environment
    the daemon will have (that of `stoker check`, run where `stoker up` will be)."""
    said = []
    runs = [(f"programs.{name}", p.command, p.shell, p.environment, p.inherit_environment, p.directory)
            for name, p in config.programs.items()]  # fmt: skip
    for name, task in config.tasks.items():
        if task.command is not None:
            runs.append(
                (
                    _table(name),
                    task.command,
                    False,
                    task.environment,
                    task.inherit_environment,
                    task.directory,
                )
            )
    for table, command, shell, environment, inherit, directory in runs:
        problem = _missing(command, shell, _path(environment, environ, inherit), directory, which)
        if problem:
            said.append(f"[{table}] command: {problem}")
    files = [(f"programs.{n}", p.env_file) for n, p in config.programs.items()]
    files += [(_table(n), t.env_file) for n, t in config.tasks.items()]
    for table, path in files:
        if path is not None:
            try:
                envfile.read(path)
            except envfile.EnvFileError as e:  # not an error yet: the deploy may write it later
                said.append(f"[{table}] env_file: {e}; each start will fail until it can be read")
    if not config.programs and not config.tasks and not config.schedules:
        said.append(
            "defines nothing to run: add a [programs.NAME] (kept running), [tasks.NAME] (run as jobs) "
            "or [schedules.NAME] table"
        )
    return said


def _table(task: str) -> str:
    """Where the user wrote a task: [tasks.NAME], or the schedule whose inline command it is."""
    if task.startswith(SCHEDULE_TASK_PREFIX):
        return f"schedules.{task.removeprefix(SCHEDULE_TASK_PREFIX)}"
    return f"tasks.{task}"


def _path(environment: Mapping[str, str], environ: Mapping[str, str], inherit: bool) -> str:
    """The PATH a child gets: its own environment's, else the daemon's (kept by a clean
    environment too), else the default a clean environment gets."""
    if "PATH" in environment:
        return environment["PATH"].replace("{instance}", "0")
    if "PATH" in environ and (inherit or kept_when_clean("PATH")):
        return environ["PATH"]
    return DEFAULT_PATH


def _missing(command: tuple[str, ...], shell: bool, path: str, directory: str, which: Which) -> str | None:
    """Why `command`'s executable will not be found, or None (also when it cannot be told: a
    shell line, a {param} in the name)."""
    if shell or not command:
        return None
    executable = command[0].replace("{instance}", "0")
    if "{" in executable or "$" in executable:
        return None
    if "/" in executable:
        full = os.path.join(directory, executable)
        if os.path.isfile(full) and os.access(full, os.X_OK):
            return None
        return f'"{executable}" is not an executable file (from {directory})'
    if which(executable, path) is not None:
        return None
    return f'"{executable}" is not found on the PATH the daemon will use ({path})'
