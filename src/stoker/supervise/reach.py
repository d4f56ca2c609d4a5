"""Whether another user can reach a file: to say why a child running as that user could not
start (a pool worker as `user = "nobody"`, when the Python that runs it lives under /root),
where the exit status alone says only "code 126".

Judged from the permission bits, as the kernel judges them for a user without capabilities;
POSIX ACLs are not read, so this explains a failure that happened and never refuses a start.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

SEARCH, READ, EXECUTE = 0o1, 0o4, 0o1  # the bits of one class (owner, group or other)


def allowed(mode: int, owner: int, group: int, uid: int, gids: Iterable[int], want: int) -> bool:
    """Whether `uid` (with the groups `gids`) has every bit of `want` on a file of this mode,
    owner and group: the class that applies is the first that matches (a file's owner gets
    the owner's bits even when the group's or others' would give more)."""
    if uid == 0:
        return True
    if uid == owner:
        bits = (mode >> 6) & 0o7
    elif group in set(gids):
        bits = (mode >> 3) & 0o7
    else:
        bits = mode & 0o7
    return bits & want == want


def blocked(path: str, uid: int, gids: Iterable[int], want: int) -> str | None:
    """The first folder on the way to `path` that `uid` cannot search, or `path` itself if it
    lacks `want`: said as "DIR is mode 0700, owned by uid 0". None when it is all open (or a
    step cannot be examined: then nothing can be said)."""
    gids = tuple(gids)
    parts = os.path.abspath(path).split(os.sep)[1:]
    current = os.sep
    steps = [(os.sep, SEARCH)]
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        steps.append((current, want if i == len(parts) - 1 else SEARCH))
    for step, bits in steps:
        try:
            st = os.stat(step)
        except OSError:
            return None
        if not allowed(st.st_mode, st.st_uid, st.st_gid, uid, gids, bits):
            return f"{step} is mode {stat.S_IMODE(st.st_mode):04o}, owned by uid {st.st_uid}"
    return None


def why_python_unreachable(
    user: str, uid: int, gids: Iterable[int], interpreter: str, needed: Iterable[str]
) -> str | None:
    """Why `user` cannot run `interpreter` (the path, and where its link leads) and read the
    folders `needed` (its standard library, stoker's own), or None."""
    gids = tuple(gids)
    checks = [(interpreter, EXECUTE), (os.path.realpath(interpreter), EXECUTE)]
    checks += [(folder, READ | EXECUTE) for folder in needed]
    for path, want in checks:
        if (reason := blocked(path, uid, gids, want)) is not None:
            return (
                f"the worker cannot run as {user}: {user} cannot reach {path} ({reason});"
                f" run the daemon with a Python that {user} may run, or give {user} access"
            )
    return None
