"""Where things are: the config file, and the daemon's state dir, found cheaply.

Commands that only talk to a running daemon (`status`, `start`, `logs` …) need nothing from the
config but the socket's place. Decoding the whole config would import msgspec and friends and
cost more than the request itself, and even `tomllib` costs ~10 ms of a ~60 ms budget, so
`[daemon] state_dir` is read here by a line scan that accepts only the plain, unambiguous
spellings; anything else falls back to `tomllib`, and anything odd sends the caller to the full
loader, which explains the problem properly. This module imports no pathlib and no typing at
run time for the same reason.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

CONFIG_FILENAME = "stoker.toml"
CONFIG_ENV_VAR = "STOKER_CONFIG"
DEFAULT_STATE_DIR = ".stoker"


def config_file(explicit: str | None = None) -> str:
    """The config file the CLI should use: ``-c FILE``, else ``$STOKER_CONFIG``, else
    ``./stoker.toml``; absolute (``~`` expanded) and not checked for existence, so the caller
    can report a missing file with the path it looked for."""
    chosen = explicit or os.environ.get(CONFIG_ENV_VAR) or CONFIG_FILENAME
    return os.path.abspath(os.path.expanduser(chosen))


def find_config_path(explicit: str | None = None) -> Path:
    """`config_file` as a Path."""
    from pathlib import Path

    return Path(config_file(explicit))


def resolve_relative(directory: str, value: str) -> str:
    """Paths in the config are relative to the config file's folder, never to the cwd."""
    return os.path.normpath(os.path.join(directory, value))


def quick_state_dir(config_path: str) -> str | None:
    """`[daemon] state_dir` of this config, resolved; None when the file needs the full loader."""
    try:
        with open(config_path, "rb") as f:
            text = f.read().decode()
    except (OSError, UnicodeDecodeError):
        return None
    value = scan_state_dir(text)
    if value is _UNSURE:
        value = _parse_state_dir(text)
    if not isinstance(value, str) or not value or "\0" in value:
        return None
    return resolve_relative(os.path.dirname(config_path), value)


_UNSURE = object()


def scan_state_dir(text: str) -> str | object:
    """`[daemon] state_dir` read without a TOML parser, or `_UNSURE`.

    Sure only in the two common cases: the key is absent (the text never says ``state_dir``
    and has no escapes or multi-line strings that could spell it otherwise), or it appears once,
    as ``state_dir = "plain"`` (or ``'plain'``) under a ``[daemon]`` header. Must agree with
    tomllib whenever it is sure; tests hold it to that.
    """
    if "\\" in text or '"""' in text or "'''" in text:
        return _UNSURE
    if text.count("state_dir") == 0:
        return DEFAULT_STATE_DIR
    if text.count("state_dir") > 1:
        return _UNSURE
    table = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            header, sep, rest = stripped.partition("]")
            if not sep or rest.strip()[:1] not in ("", "#") or stripped.startswith("[["):
                return _UNSURE
            table = header[1:].strip()
        elif stripped.startswith("state_dir"):
            return _plain_value(stripped[len("state_dir") :]) if table == "daemon" else _UNSURE
    return _UNSURE


def _plain_value(after_key: str) -> str | object:
    """The string in ``= "value"  # comment``, when it is that simple."""
    rest = after_key.lstrip()
    if not rest.startswith("="):
        return _UNSURE
    rest = rest[1:].lstrip()
    quote = rest[:1]
    if quote not in ('"', "'"):
        return _UNSURE
    value, sep, tail = rest[1:].partition(quote)
    if not sep or tail.strip()[:1] not in ("", "#") or any(c < " " or c in "\"'\x7f" for c in value):
        return _UNSURE
    return value


def _parse_state_dir(text: str) -> object:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
    daemon = data.get("daemon", {})
    return daemon.get("state_dir", DEFAULT_STATE_DIR) if isinstance(daemon, dict) else None
