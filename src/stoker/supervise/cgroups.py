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

from stoker.supervise.limits import KEY, NONE, Limits, oom_kills, v1_files, v2_files

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


def v1_homes(mountinfo: str, proc_cgroup: str) -> dict[str, str]:
    """controller → the directory of the process's own cgroup in that controller's v1 hierarchy
    (a hybrid host's memory, cpu, pids …), for the controllers mounted and seen from here."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" or not controllers or not path or path.endswith(" (deleted)"):
            continue
        for controller in controllers.split(","):
            paths[controller] = path
    homes: dict[str, str] = {}
    for line in mountinfo.splitlines():
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] != "cgroup":
            continue
        point, root = _unescape(fields[4]), _unescape(fields[3]).rstrip("/")
        for controller in tail[2].split(","):
            seen = paths.get(controller)
            if seen is None or controller in homes:
                continue
            path = seen
            if root and path != root and not path.startswith(root + "/"):
                continue  # (another namespace's view)
            relative = path[len(root) :].strip("/")
            homes[controller] = os.path.join(point, relative) if relative else point
    return homes


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


def cpu_seconds(cgroup: str) -> float | None:
    """CPU time (user + system) used by every process that has been in `cgroup`, exited ones
    included: `cpu.stat`'s usage_usec, which cgroup v2 keeps with or without the cpu controller.
    None: the cgroup is gone."""
    try:
        with open(os.path.join(cgroup, "cpu.stat")) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1_000_000
    except (OSError, ValueError):
        return None
    return None


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
    """The daemon's cgroup subtree, where the daemon comes back to after a spawn, and the
    controllers its limits use."""

    def __init__(self, home: str, root: str, v1: dict[str, str] | None = None) -> None:
        self.home = home  # the daemon's own cgroup
        self.root = root  # home/stoker-<hash> (or the daemon's first cgroup's, see open_tree)
        self.origin = home  # the cgroup the daemon started in, where it goes back at close
        self.v1 = dict(v1 or {})  # controller → the daemon's own cgroup in its v1 hierarchy
        self._v2: dict[str, bool] = {}  # controller → on in the tree's v2 cgroups
        self._placed: dict[str, list[tuple[str, str]]] = {}  # v2 cgroup → its v1 (cgroup, home)s
        self._after_spawn: dict[str, list[tuple[str, str]]] = {}  # v2 cgroup → (file, limit)s
        self._unavailable: set[tuple[str, str]] = set()  # (name, controller) already warned of

    def cgroup(
        self,
        name: str,
        owner: tuple[int, int] | None = None,
        job: bool = False,
        limits: Limits = NONE,
    ) -> str:
        """The cgroup `name` in the tree, made if missing, held to `limits`; `owner` (uid, gid):
        its procs files are given to that user, which a worker dropped to it needs to place its
        `job` below."""
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        if job:
            os.makedirs(os.path.join(path, "job"), exist_ok=True)
        if owner is not None:
            for file in ("cgroup.procs", "job/cgroup.procs", "job/cgroup.kill"):
                with contextlib.suppress(FileNotFoundError):
                    os.chown(os.path.join(path, file), *owner)
        self._limit(name, path, limits)
        return path

    def _limit(self, name: str, path: str, limits: Limits) -> None:
        """Write `limits` in v2 where the tree has the controller, else in its v1 hierarchy."""
        placed: list[tuple[str, str]] = []
        after: list[tuple[str, str]] = []
        for controller in limits.controllers():
            if self._v2_has(controller):
                for file, value in v2_files(limits, controller).items():
                    _write(os.path.join(path, file), value)
                    if file in SPAWN_LIFTED:
                        after.append((os.path.join(path, file), value))
                continue
            home = self.v1.get(controller)
            if home is None:
                if (name, controller) not in self._unavailable:
                    self._unavailable.add((name, controller))
                    log.warning(
                        "%s: %s not applied: no %s controller here (neither in cgroup v2 nor a v1 "
                        "hierarchy this daemon may write)",
                        name,
                        KEY[controller],
                        controller,
                    )
                continue
            v1 = os.path.join(home, os.path.basename(self.root), name)
            os.makedirs(v1, exist_ok=True)
            for file, value in v1_files(limits, controller).items():
                _write(os.path.join(v1, file), value)
                if file in SPAWN_LIFTED:
                    after.append((os.path.join(v1, file), value))
            if (v1, home) not in placed:  # (co-mounted controllers, cpu,cpuacct: one cgroup)
                placed.append((v1, home))
        for table, entries in ((self._placed, placed), (self._after_spawn, after)):
            if entries:
                table[path] = entries
            else:
                table.pop(path, None)

    def _v2_has(self, controller: str) -> bool:
        """Whether `controller` is on for the tree's cgroups, turning it on if it can be."""
        if controller not in self._v2:
            self._v2[controller] = _enable(self.root, controller)
        return self._v2[controller]

    @contextlib.contextmanager
    def born_in(self, cgroup: str | None) -> Iterator[None]:
        """Spawn in this block and the child is born in `cgroup` and in the v1 cgroups of its
        limits (None: wherever the daemon is)."""
        if cgroup is None:
            yield
            return
        with contextlib.ExitStack() as back:
            for file, limit in self._after_spawn.get(cgroup, ()):
                _write(file, "max")  # (the daemon's threads would count against it meanwhile)
                back.callback(_write, file, limit)
            _write(os.path.join(cgroup, "cgroup.procs"), "0")
            back.callback(_write, os.path.join(self.home, "cgroup.procs"), "0")
            for v1, home in self._placed.get(cgroup, ()):
                _write(os.path.join(v1, "cgroup.procs"), str(os.getpid()))
                back.callback(_write, os.path.join(home, "cgroup.procs"), str(os.getpid()))
            yield

    def oom_kills(self, cgroup: str) -> int:
        """How many times the kernel's OOM killer acted in `cgroup` (its memory_max)."""
        files = [os.path.join(cgroup, "memory.events")]
        files += [os.path.join(v1, "memory.oom_control") for v1, _ in self._placed.get(cgroup, ())]
        total = 0
        for file in files:
            try:
                with open(file) as f:
                    total += oom_kills(f.read())
            except OSError:
                continue
        return total

    def release(self, cgroup: str) -> bool:
        """Remove `cgroup` (its processes must be gone or killed) and its v1 counterparts;
        False while a process is left."""
        gone = remove(cgroup)
        for v1, _ in self._placed.get(cgroup, ()):
            with contextlib.suppress(OSError):
                os.rmdir(v1)
        if gone:
            self._placed.pop(cgroup, None)
            self._after_spawn.pop(cgroup, None)
        return gone

    def sweep(self) -> None:
        """Kill and remove every cgroup in the tree (a previous daemon's, or ours at exit), and
        the tree's cgroups in the v1 hierarchies of limits."""
        for entry in list(os.scandir(self.root)):
            if entry.is_dir(follow_symlinks=False) and entry.path != self.home:
                kill_and_remove(entry.path)
        self._placed.clear()
        self._after_spawn.clear()
        for home in set(self.v1.values()):
            v1_root = os.path.join(home, os.path.basename(self.root))
            with contextlib.suppress(FileNotFoundError):
                for entry in list(os.scandir(v1_root)):
                    if entry.is_dir(follow_symlinks=False):
                        with contextlib.suppress(OSError):
                            os.rmdir(entry.path)

    def close(self) -> None:
        if self.home != self.origin:  # (out of our own leaf, so the tree can go)
            with contextlib.suppress(OSError):
                _write(os.path.join(self.origin, "cgroup.procs"), "0")
                self.home = self.origin
        self.sweep()
        with contextlib.suppress(OSError):
            os.rmdir(self.root)
        for home in set(self.v1.values()):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(home, os.path.basename(self.root)))


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
    tree = Tree(home, root, v1_homes(mountinfo, proc_cgroup))
    tree.sweep()
    if os.path.exists(os.path.join(home, "cgroup.type")) and _alone_in(home):  # (not the root)
        _move_into_leaf(tree)
    memory = tree._v2_has("memory")
    log.info(
        "cgroups: each program instance and job in its own, under %s (memory controller %s)",
        root,
        "on" if memory else "not available",
    )
    return tree


SPAWN_LIFTED = frozenset({"pids.max"})
"""Limits lifted while the daemon spawns from inside the cgroup and written again as soon as the
child is born (Popen returns once its exec is done, so the program has had at most the first
moments of its life without it): the daemon's own threads would count against `tasks_max`
meanwhile, and the fork would fail."""

DAEMON_LEAF = "daemon"
"""The daemon's own cgroup in its tree, when it moved there (see _move_into_leaf)."""


def _alone_in(cgroup: str) -> bool:
    try:
        with open(os.path.join(cgroup, "cgroup.procs")) as f:
            return f.read().split() == [str(os.getpid())]
    except OSError:
        return False


def _move_into_leaf(tree: Tree) -> None:
    """Move the daemon into a leaf of its tree, and pass the controllers its cgroup has down.

    cgroup v2 lets a cgroup other than the root pass controllers to its children only while no
    process is in it (the "no internal processes" rule), and systemd starts a service in one
    cgroup, its main process in it: so where the daemon is alone in its cgroup (a service's), it
    moves one level down, which frees that cgroup to pass memory, cpu and pids down to the tree
    (memory_max, cpu_weight, tasks_max). Where it is not alone (a login shell's scope), it stays.
    """
    leaf = os.path.join(tree.root, DAEMON_LEAF)
    try:
        os.makedirs(leaf, exist_ok=True)
        _write(os.path.join(leaf, "cgroup.procs"), "0")
    except OSError as e:
        log.info("cgroups: the daemon stays in %s (%s)", tree.origin, e.strerror)
        return
    tree.home = leaf
    try:
        with open(os.path.join(tree.origin, "cgroup.controllers")) as f:
            available = f.read().split()
    except OSError:
        return
    for controller in ("memory", "cpu", "pids"):
        if controller in available:
            with contextlib.suppress(OSError):
                _write(os.path.join(tree.origin, "cgroup.subtree_control"), "+" + controller)


def _enable(root: str, controller: str) -> bool:
    """Turn `controller` on for the tree's cgroups where the daemon's cgroup passes it down;
    whether it is on."""
    try:
        with open(os.path.join(root, "cgroup.controllers")) as f:
            if controller not in f.read().split():
                return False
        _write(os.path.join(root, "cgroup.subtree_control"), "+" + controller)
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
