"""Which instances an operator stopped by hand, kept on disk so a daemon restart honours it.

`stoker stop mailer` means "keep it stopped" until someone says `stoker start mailer` (or
restart): a reboot or `stoker down && stoker up` must not bring it back. The file is the
state dir's `stopped.json`, replaced atomically on each change; this node's own fact, so it
lives beside the node's logs rather than in a store that a cluster shares.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator

from stoker import names

log = logging.getLogger("stoker")

FILE_NAME = names.STOPPED


class Holds:
    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, FILE_NAME)
        self._names = self._read()

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names))

    def hold(self, names: Iterable[str]) -> None:
        self._update(self._names | set(names))

    def release(self, names: Iterable[str]) -> None:
        self._update(self._names - set(names))

    def keep_only(self, names: Iterable[str]) -> None:
        """Forget instances that no longer exist (their program left the config, or shrank)."""
        self._update(self._names & set(names))

    def _update(self, names: set[str]) -> None:
        if names == self._names:
            return
        self._names = names
        tmp = f"{self.path}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # left by a crash: O_CREAT would keep its mode
        # 0600 whatever the umask: the state dir's files are the daemon's alone
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            json.dump({"stopped_by_hand": sorted(names)}, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _read(self) -> set[str]:
        try:
            with open(os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), encoding="utf-8") as f:
                data = json.load(f)
            names = data["stopped_by_hand"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError("stopped_by_hand is not a list of names")
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, KeyError, TypeError) as e:
            # A damaged file must not keep the daemon down; starting everything is the safe side.
            log.warning("%s: ignored (%s): programs stopped by hand before will start", self.path, e)
            return set()
        return set(names)
