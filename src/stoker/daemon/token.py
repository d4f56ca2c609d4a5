"""The token of a TCP `listen` whose config sets none: made at the first start, then kept.

Every TCP request needs a token, loopback included: 127.0.0.1 is open to every user of the
machine, and the unix socket (mode 0600) is the door that needs none. A config without
`[daemon] token` (allowed on loopback only) gets one made here, in `<state_dir>/token`
(0600, like the state dir around it), which `stoker up` names.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from stoker import names

FILE = names.TOKEN


class TokenError(Exception):
    """The token file exists but cannot be read: the message says why."""


def token_file(state_dir: str | Path) -> Path:
    return Path(state_dir) / FILE


def made_token(state_dir: str | Path) -> str:
    """The token kept in the state dir; a new one (256 random bits) when there is none yet (or
    the file is empty: a crash while it was written)."""
    path = token_file(state_dir)
    try:
        return _kept(path) or _new(path)
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise TokenError(f"cannot keep the API token in {path}: {reason}") from None


def _kept(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)  # a planted link: ELOOP
    except FileNotFoundError:
        return ""
    with open(fd, encoding="utf-8") as f:
        return f.read().strip()


def _new(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    # Born 0600 (the mode of a new file; an empty old one is truncated, and its mode set too).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)
    return token
