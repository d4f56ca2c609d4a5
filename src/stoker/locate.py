"""Where things are: the config file, and the daemon's state dir, found cheaply.

Commands that only talk to a running daemon (`status`, `start`, `logs` …) need nothing from the
config but the socket's place. Decoding the whole config would import msgspec and friends and
cost more than the request itself, so they read just `[daemon] state_dir` here; anything
unexpected sends the caller to the full loader, which explains the problem properly.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

CONFIG_FILENAME = "stoker.toml"
CONFIG_ENV_VAR = "STOKER_CONFIG"
DEFAULT_STATE_DIR = ".stoker"


def find_config_path(explicit: str | None = None) -> Path:
    """The config file the CLI should use: ``-c FILE``, else ``$STOKER_CONFIG``, else
    ``./stoker.toml``; returned absolute (``~`` expanded) and not checked for existence, so the
    caller can report a missing file with the path it looked for."""
    chosen = explicit or os.environ.get(CONFIG_ENV_VAR) or CONFIG_FILENAME
    return Path(os.path.abspath(os.path.expanduser(chosen)))


def resolve_relative(directory: str, value: str) -> str:
    """Paths in the config are relative to the config file's folder, never to the cwd."""
    return os.path.normpath(os.path.join(directory, value))


def quick_state_dir(config_path: Path) -> Path | None:
    """`[daemon] state_dir` of this config, resolved; None when the file needs the full loader."""
    try:
        with open(config_path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    daemon = data.get("daemon", {})
    value = daemon.get("state_dir", DEFAULT_STATE_DIR) if isinstance(daemon, dict) else None
    if not isinstance(value, str) or not value or "\0" in value:
        return None
    return Path(resolve_relative(str(config_path.parent), value))
