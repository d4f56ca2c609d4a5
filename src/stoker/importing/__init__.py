"""`stoker import`: a supervisord ini, a pm2 ecosystem file, a Procfile or a crontab → stoker.toml.

Each format has its own module that turns text into :class:`~stoker.importing.model.Converted`
(programs, settings, notes); :mod:`~stoker.importing.toml_writer` writes that as commented
TOML. All of it is pure: text in, text out; only :func:`read` touches the disk.
"""

from __future__ import annotations

import os
import re

from stoker.importing import crontab, pm2, procfile, supervisord, toml_writer
from stoker.importing.model import InputError, Machine

__all__ = ["FORMATS", "STDIN", "InputError", "Machine", "convert", "detect_format", "read", "read_glob"]

FORMATS = ("supervisord", "pm2", "procfile", "crontab", "system-crontab")
STDIN = "<stdin>"  # the file name of text read from standard input (`stoker import -`)
_JAVASCRIPT = (".js", ".cjs", ".mjs")
# Any of supervisord's section headers: a file of only [group:x] or [fcgi-program:x] sections
# starts with "[" too, and must not be taken for a JSON array.
_SUPERVISORD_SECTION = (
    r"^\s*\[(program|group|fcgi-program|eventlistener|rpcinterface|ctlplugin):[^\]\n]+\]"
    r"|^\s*\[(supervisord|include|unix_http_server|inet_http_server|supervisorctl)\]"
)


def detect_format(file: str, text: str) -> str:
    """The format of `file`, by its name, else by what it holds. InputError when unsure."""
    base = os.path.basename(file)
    extension = os.path.splitext(base)[1].lower()
    if base == "Procfile" or base.startswith("Procfile."):
        return "procfile"
    if base == "crontab" or os.path.basename(os.path.dirname(file)) == "cron.d":
        return "crontab"
    if extension in (".conf", ".ini"):
        return "supervisord"
    if extension in (".json", ".json5", ".yml", ".yaml", *_JAVASCRIPT):
        return "pm2"
    if re.search(_SUPERVISORD_SECTION, text, re.MULTILINE):
        return "supervisord"
    if text.lstrip().startswith(("{", "[")) or "module.exports" in text:
        return "pm2"
    if crontab.looks_like_crontab(text):
        return "crontab"
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if lines and all(re.match(r"[A-Za-z0-9_-]+\s*:\s*\S", line) for line in lines):
        return "procfile"
    raise InputError(
        file,
        None,
        None,
        "cannot tell its format from its name or contents; expected a supervisord .conf/.ini, "
        "a pm2 ecosystem .json/.js/.yml, a Procfile or a crontab "
        "(or say which with --format supervisord|pm2|procfile|crontab)",
    )


def convert(
    text: str,
    file: str,
    *,
    format: str | None = None,
    machine: Machine | None = None,
    follow: bool = True,
    env: str | None = None,
) -> str:
    """The stoker.toml for `text`, read from `file` (an absolute path: supervisord's
    %(here)s is its folder). InputError for anything that cannot be converted. `follow`:
    read the files a supervisord [include] names (from the disk). `env`: pm2's ``--env NAME``."""
    machine = machine or Machine.this_one()
    chosen = format or detect_format(file, text)
    if env is not None and chosen != "pm2":
        raise InputError(
            file, None, None, f"--env {env}: only a pm2 ecosystem file has environments (env_NAME)"
        )
    if chosen == "supervisord":
        converted = supervisord.convert(text, file, machine, include=read_glob if follow else None)
    elif chosen == "pm2":
        extension = os.path.splitext(file)[1].lower()
        javascript = extension in _JAVASCRIPT or (
            extension not in (".json", ".json5", *pm2.YAML) and not text.lstrip().startswith(("{", "["))
        )
        converted = pm2.convert(pm2.load(text, file, javascript=javascript), file, machine, env=env)
    elif chosen == "procfile":
        converted = procfile.convert(text, file)
    elif chosen in ("crontab", "system-crontab"):
        # "crontab" tells the user column from the path and contents; "system-crontab" says it
        # is there (an /etc/cron.d file piped through standard input, say)
        converted = crontab.convert(text, file, system=True if chosen == "system-crontab" else None)
    else:
        raise ValueError(f"unknown format {chosen!r}; expected one of {', '.join(FORMATS)}")
    output = toml_writer.render(converted)
    _check(output, file)
    return output


def _check(output: str, file: str) -> None:
    """What we print must pass `stoker check` where it will likely live (beside `file`, or in
    the current folder for standard input); a value the converters let through but the config
    refuses is still said plainly."""
    from stoker.config import ConfigError, parse_config

    folder = os.getcwd() if file == STDIN else os.path.dirname(file)
    try:
        parse_config(output, os.path.join(folder, "stoker.toml"))
    except ConfigError as e:
        problem = str(e).split(": ", 1)[-1]
        raise InputError(
            file, None, None, f"converted, but the result does not pass stoker check: {problem}"
        ) from None


def read_glob(pattern: str) -> list[tuple[str, str]]:
    """The (path, text) of each file an absolute glob pattern matches, sorted (supervisord's
    order); InputError naming a match that cannot be read."""
    import glob

    return [(path, read(path)) for path in sorted(glob.glob(pattern)) if not os.path.isdir(path)]


def read(path: str) -> str:
    """The file's text; InputError naming it when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(path, None, None, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, None, None, "is a directory, not a file to import") from None
    except OSError as e:
        raise InputError(path, None, None, f"cannot read: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(path, None, None, f"not UTF-8 text (bad byte at offset {e.start})") from None
