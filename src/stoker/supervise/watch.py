"""`watch = [...]`: restart a program when files under those paths change (watchfiles: inotify
on Linux, so nothing polls).

Changes are debounced (a save that touches five files, or a `git checkout`, is one restart),
the usual noise is ignored (.git, __pycache__, editor swap files: watchfiles' DefaultFilter),
and so is stoker's own state dir: its logs change all the time, and a program watching "."
must not restart itself forever for writing a log line.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from fnmatch import fnmatch

from watchfiles import Change, DefaultFilter, awatch

DEBOUNCE_MS = 300  # changes this close together make one restart
STEP_MS = 50


class Filter(DefaultFilter):
    """DefaultFilter, the state dir, and the program's `watch_ignore` glob patterns (matched
    against the path relative to the config's folder, the file name, and the full path)."""

    def __init__(self, *, state_dir: str, patterns: Sequence[str], base: str) -> None:
        super().__init__(ignore_paths=[os.path.abspath(state_dir)])
        self._patterns = tuple(patterns)
        self._base = base

    def __call__(self, change: Change, path: str) -> bool:
        if not super().__call__(change, path):
            return False
        relative = os.path.relpath(path, self._base)
        name = os.path.basename(path)
        candidates = (relative, name, path)
        return not any(fnmatch(c, pattern) for pattern in self._patterns for c in candidates)


async def changes(
    paths: Sequence[str], *, state_dir: str, ignore: Sequence[str], base: str
) -> AsyncIterator[list[str]]:
    """Yield the sorted changed paths of each debounced batch, until cancelled."""
    watch_filter = Filter(state_dir=state_dir, patterns=ignore, base=base)
    async for batch in awatch(*paths, watch_filter=watch_filter, debounce=DEBOUNCE_MS, step=STEP_MS):
        yield sorted({path for _, path in batch})
