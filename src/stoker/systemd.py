"""`stoker systemd`: a systemd unit that runs the daemon of one config.

The unit lets stoker do the stopping: ``KillMode=mixed`` sends SIGTERM to the daemon alone,
which stops each program with its own stop_signal and stop_timeout and lets running jobs
finish for ``[daemon] shutdown_timeout``; systemd's SIGKILL to whatever is left comes only
after ``TimeoutStopSec``, which is longer than all of that. ``Type=notify``: the daemon says
READY=1 on $NOTIFY_SOCKET once it answers.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import sys

from stoker.config import Config

# Beyond the slowest stop stoker itself allows: time to start the stops and to exit.
STOP_MARGIN = 15


def stoker_command() -> list[str]:
    """An absolute argv that runs this stoker: the console script that is running, else the
    one installed beside this Python, else ``python -m stoker``."""
    if os.path.basename(sys.argv[0]) == "stoker" and os.path.isfile(sys.argv[0]):
        return [os.path.abspath(sys.argv[0])]
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "stoker")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("stoker")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "stoker"]


def unit_name(config: Config) -> str:
    """``stoker-<the config's folder>.service``, in the characters systemd allows."""
    folder = re.sub(r"[^A-Za-z0-9:_.-]+", "-", os.path.basename(config.directory)).strip("-.")
    return f"stoker-{folder}.service" if folder else "stoker.service"


def stop_timeout(config: Config) -> int:
    """Seconds systemd waits for the daemon to exit before it SIGKILLs what is left.

    Programs stop while jobs drain (concurrently), and a job still running at
    shutdown_timeout is then stopped with its task's stop_timeout; adding the two is an
    upper bound that holds for both."""
    slowest = [p.stop_timeout for p in config.programs.values()]
    slowest += [t.stop_timeout for t in config.tasks.values()]
    return math.ceil(config.daemon.shutdown_timeout + max(slowest, default=0)) + STOP_MARGIN


def unit(config: Config, command: list[str], *, user: bool = False, username: str | None = None) -> str:
    """The unit file's text. `command` is the stoker to run (see stoker_command); `user`: a
    unit for `systemctl --user` rather than the system manager; `username` (who asks) shows
    in the comment about running as one user."""
    name = unit_name(config)
    again = shlex.join([*command, "-c", config.path, "systemd", *(["--user"] if user else [])])
    if user:
        place = f"~/.config/systemd/user/{name}"
        manager = "systemctl --user"
        save = f"mkdir -p ~/.config/systemd/user && {again} > {place}"
    else:
        place = f"/etc/systemd/system/{name}"
        manager = "sudo systemctl"
        save = f"{again} | sudo tee {place}"
    exec_start = " ".join(_quote(arg) for arg in [*command, "-c", config.path, "up"])
    lines = [
        f"# {name}: the stoker daemon of {config.path}",
        f"# Save it as {place}:",
        f"#   {save}",
        "# then enable and start it:",
        f"#   {manager} daemon-reload",
        f"#   {manager} enable --now {name}",
    ]
    if user:
        lines += [
            "# and, to keep it running while you are logged out (and start it at boot):",
            f"#   loginctl enable-linger {username or '$USER'}",
        ]
    journal = "journalctl --user" if user else "journalctl"
    lines += [
        f"# `{manager} reload {name}` applies a changed stoker.toml;",
        f"# `{journal} -u {name}` shows the daemon's log.",
        "",
        "[Unit]",
        f"Description=stoker: programs, jobs and schedules of {_escape(config.path)}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "# The daemon says READY=1 on $NOTIFY_SOCKET once it answers on its socket.",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        "# SIGHUP: re-read stoker.toml and apply only what changed (as `stoker reload`).",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=always",
        f"WorkingDirectory={_escape(config.directory)}",
        "# stoker stops its programs itself, gracefully (each one's stop_signal, then SIGKILL",
        "# after its stop_timeout), and lets running jobs finish for [daemon] shutdown_timeout:",
        "# mixed sends SIGTERM to stoker alone; SIGKILL to anything left only after TimeoutStopSec,",
        f"# which is shutdown_timeout ({config.daemon.shutdown_timeout:g}s) + the longest stop_timeout"
        f" + {STOP_MARGIN}s.",
        "KillMode=mixed",
        f"TimeoutStopSec={stop_timeout(config)}",
        "# stoker puts each program and job in a cgroup of its own below its own (so that a child",
        "# that calls setsid() cannot outlive its program): that part of the tree is stoker's.",
        "Delegate=yes",
        "# Uncomment to have systemd restart stoker if it ever stops answering (it pings the watchdog):",
        "# WatchdogSec=60",
    ]
    if not user:
        who = username if username and username != "root" else "www-data"
        lines += [
            "# It runs as root, so that programs with `user = …` can drop to their user. To run",
            "# stoker and every program as one user instead (the config's folder must be theirs):",
            f"# User={who}",
            f"# Group={who}",
        ]
    lines += [
        "",
        "[Install]",
        f"WantedBy={'default.target' if user else 'multi-user.target'}",
    ]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    """systemd expands %-specifiers in most settings: a literal % is %%."""
    return text.replace("%", "%%")


def _quote(arg: str) -> str:
    """One ExecStart argument: quoted when it has spaces or quotes; $ and % doubled so that
    systemd expands neither a variable nor a specifier in it."""
    text = _escape(arg).replace("$", "$$")
    if not text or re.search(r"[\s\"'\\;]", text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text
