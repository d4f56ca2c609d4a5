"""Containment in cgroup v2: each program instance and each pool worker in a cgroup of its own.

A process group is escaped by any descendant that calls setsid() (or setpgid), which then
outlives its program: a stop, or the main process's exit, kills the group and not it. A cgroup
is not escaped that way: a fork is born in its parent's cgroup and only someone allowed to write
the cgroup tree can move it out; `cgroup.kill` (Linux 5.14) SIGKILLs everything in a cgroup at
once, forks racing with it included. None of this needs a controller (cgroup.procs, cgroup.kill
and cgroup.events work without one), so it works in a hybrid layout too (v2 mounted at
/sys/fs/cgroup/unified beside v1's controllers).

Layout: under the daemon's own cgroup (the `0::` line of /proc/self/cgroup, below the cgroup2
mount of /proc/self/mountinfo), `stoker-<hash of the state dir>/`, holding `program-NAME-N` per
program instance and `worker-N` per pool worker, with `worker-N/job` for the command the worker
runs. Daemons of different state dirs never share a tree; a new daemon of the same state dir
kills and removes what an earlier one left (as kill_orphans does by the environment marker).

Placing a child without a race: a child moved into its cgroup after it started may have forked
already, and that fork, setsid'd, stays outside (measured: `sh -c 'setsid sleep 9 & …'` beat the
daemon's write that followed Popen). Python 3.11 cannot spawn with CLONE_INTO_CGROUP, and a
preexec_fn runs after the credentials are dropped (and costs a full fork). So the spawner steps
into the child's cgroup, spawns (a child is born in its parent's cgroup), and steps back home:
two writes to cgroup.procs, 0.02-0.08 ms. The daemon does this for programs and workers, a worker
for its command jobs (its cgroup's procs files are given to its user for that).

Not available (no cgroup2 mount, a kernel without cgroup.kill, a tree the daemon may not write,
or STOKER_CGROUPS=off in the daemon's environment): no cgroups, and process groups alone, as
before, which a setsid'd descendant escapes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import time
from collections.abc import Iterator

log = logging.getLogger("stoker")

SWITCH = "STOKER_CGROUPS"
"""`off` in the daemon's environment: no cgroups even where they could be used."""

EMPTY_WAIT = 2.0  # seconds a sweep waits for a killed cgroup to empty before it gives up on it


def v2_mount(mountinfo: str) -> tuple[str, str] | None:
    """(mount point, root of the mount within the hierarchy) of the first cgroup2 mount."""
    for line in mountinfo.splitlines():
        before, sep, after = line.partition(" - ")
        if not sep or after.split(" ", 1)[0] != "cgroup2":
            continue
        fields = before.split()
        if len(fields) >= 5:
            return _unescape(fields[4]), _unescape(fields[3])
    return None


def own_path(proc_cgroup: str) -> str | None:
    """The process's cgroup v2 path (from /proc/<pid>/cgroup's `0::` line), or None."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            path = line[3:]
            return None if path.endswith(" (deleted)") else path
    return None


def locate(mountinfo: str, proc_cgroup: str) -> str | None:
    """The directory of the process's own cgroup v2, or None where there is none to see."""
    mount = v2_mount(mountinfo)
    path = own_path(proc_cgroup)
    if mount is None or path is None:
        return None
    point, root = mount
    root = root.rstrip("/")
    if root and path != root and not path.startswith(root + "/"):
        return None  # our cgroup is not below what is mounted (another namespace's view)
    relative = path[len(root) :].strip("/")
    return os.path.join(point, relative) if relative else point


def tree_name(state_dir: str) -> str:
    """The daemon's subtree: one per state dir, so two daemons never kill each other's."""
    return "stoker-" + hashlib.sha256(os.path.abspath(state_dir).encode()).hexdigest()[:12]


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (a space is \\040)."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode()


# the thin IO shell ----------------------------------------------------------------------------


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def populated(cgroup: str) -> bool:
    """Whether a process is left in `cgroup` or below (a cgroup that is gone holds none)."""
    try:
        with open(os.path.join(cgroup, "cgroup.events")) as events:
            return "populated 1" in events.read()
    except FileNotFoundError:
        return False


def kill(cgroup: str) -> None:
    """SIGKILL every process in `cgroup` and below (gone: nothing to do; refused: logged)."""
    try:
        _write(os.path.join(cgroup, "cgroup.kill"), "1")
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("cgroup %s: cannot kill what is in it: %s", cgroup, e.strerror)


def signal_outside_group(cgroup: str, pgid: int, sig: int) -> None:
    """Send `sig` to each process in `cgroup` that is not in process group `pgid` (which the
    caller signals at once with killpg): the ones that left it with setsid or setpgid."""
    try:
        with open(os.path.join(cgroup, "cgroup.procs")) as f:
            pids = [int(pid) for pid in f.read().split()]
    except OSError:  # (gone)
        return
    for pid in pids:
        try:
            if os.getpgid(pid) != pgid:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            continue  # (exited meanwhile)


def remove(cgroup: str) -> bool:
    """rmdir `cgroup` and the cgroups below it; False while a process is left in one."""
    try:
        children = [e.path for e in os.scandir(cgroup) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return True
    if not all([remove(child) for child in children]):
        return False
    try:
        os.rmdir(cgroup)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno == errno.EBUSY:
            return False
        raise
    return True


def memory(cgroup: str) -> int | None:
    """Bytes in use by the processes of `cgroup`: `memory.current` where the memory controller
    is on for it (all it charges: page cache and kernel memory too), else the RSS of each process
    in it, a setsid'd one included. None: the cgroup is gone."""
    try:
        with open(os.path.join(cgroup, "memory.current")) as f:
            return int(f.read())
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(cgroup, "cgroup.procs")) as f:
            pids = f.read().split()
    except OSError:
        return None
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue  # (exited meanwhile)
    return total


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def kill_and_remove(cgroup: str, wait: float = EMPTY_WAIT) -> bool:
    """Kill what is in `cgroup` and remove it, waiting up to `wait` seconds for the killed to
    exit (a SIGKILL is not instant). False (logged) if something is left."""
    kill(cgroup)
    deadline = time.monotonic() + wait
    while not remove(cgroup):
        if time.monotonic() > deadline:
            log.warning("cgroup %s: still populated after a kill; left in place", cgroup)
            return False
        time.sleep(0.01)
    return True


class Tree:
    """The daemon's cgroup subtree and where it comes back to after a spawn."""

    def __init__(self, home: str, root: str) -> None:
        self.home = home  # the daemon's own cgroup
        self.root = root  # home/stoker-<hash>

    def cgroup(self, name: str, owner: tuple[int, int] | None = None, job: bool = False) -> str:
        """The cgroup `name` in the tree, made if missing; `owner` (uid, gid): its procs files
        are given to that user, which a worker dropped to it needs to place its `job` below."""
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        if job:
            os.makedirs(os.path.join(path, "job"), exist_ok=True)
        if owner is not None:
            for file in ("cgroup.procs", "job/cgroup.procs", "job/cgroup.kill"):
                with contextlib.suppress(FileNotFoundError):
                    os.chown(os.path.join(path, file), *owner)
        return path

    def sweep(self) -> None:
        """Kill and remove every cgroup in the tree (a previous daemon's, or ours at exit)."""
        for entry in list(os.scandir(self.root)):
            if entry.is_dir(follow_symlinks=False):
                kill_and_remove(entry.path)

    def close(self) -> None:
        self.sweep()
        with contextlib.suppress(OSError):
            os.rmdir(self.root)


@contextlib.contextmanager
def born_in(cgroup: str | None, home: str | None) -> Iterator[None]:
    """Spawn in this block and the child is born in `cgroup` (None: wherever we are): the calling
    process is in `cgroup` meanwhile and goes back to `home` after."""
    if cgroup is None or home is None:
        yield
        return
    _write(os.path.join(cgroup, "cgroup.procs"), "0")
    try:
        yield
    finally:
        _write(os.path.join(home, "cgroup.procs"), "0")


def open_tree(state_dir: str) -> Tree | None:
    """The daemon's tree, its leftovers from an earlier daemon killed and removed; None (and
    why, logged) where cgroup v2 containment is not available."""
    if os.environ.get(SWITCH, "").lower() in ("off", "0", "no", "false"):
        log.info("cgroups: off (%s), programs and jobs are contained by process group only", SWITCH)
        return None
    try:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
        with open("/proc/self/cgroup") as f:
            proc_cgroup = f.read()
    except OSError:
        return None  # not Linux
    home = locate(mountinfo, proc_cgroup)
    why = None
    root = ""
    if home is None:
        why = "no cgroup v2 mounted"
    else:
        root = os.path.join(home, tree_name(state_dir))
        try:
            os.makedirs(root, exist_ok=True)
            if not os.path.exists(os.path.join(root, "cgroup.kill")):  # (the root cgroup has none)
                why = "no cgroup.kill (Linux 5.14 or later)"
                os.rmdir(root)
            else:
                _write(os.path.join(home, "cgroup.procs"), "0")  # may we move ourselves?
        except OSError as e:
            why = f"{home} is not writable ({e.strerror})"
    if why is not None or home is None:
        log.info("cgroups: not used (%s); programs and jobs are contained by process group only", why)
        return None
    tree = Tree(home, root)
    tree.sweep()
    memory = _enable_memory(root)
    log.info(
        "cgroups: each program instance and job in its own, under %s (memory controller %s)",
        root,
        "on" if memory else "not available",
    )
    return tree


def _enable_memory(root: str) -> bool:
    """Turn the memory controller on for the tree's cgroups where our own cgroup passes it down
    (so max_memory reads memory.current); whether it is on."""
    try:
        with open(os.path.join(root, "cgroup.controllers")) as f:
            if "memory" not in f.read().split():
                return False
        _write(os.path.join(root, "cgroup.subtree_control"), "+memory")
    except OSError:
        return False
    return True


_tree: Tree | None = None


def current() -> Tree | None:
    """The daemon's tree (set by `use`), or None: no cgroups."""
    return _tree


def use(tree: Tree | None) -> None:
    global _tree
    _tree = tree
