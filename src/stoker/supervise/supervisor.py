"""All program instances of one daemon, addressed by name: `all`, `mailer`, `mailer:3`.

Besides starting and stopping, the supervisor owns what concerns several instances at once:
- `depends_on`: an instance's process starts only while every instance of the programs it
  depends on is running (ready, when they have a readiness check); a stop of several programs
  stops dependents first (stop_order.py), and none of them starts again once it has begun.
- the notify socket (sd_notify): a datagram is routed to the instance whose process tree sent it.
- `max_memory`: one scan of /proc every few seconds for all instances that have a limit.
- `watch`: one file watcher per program that has one.
- what an operator stopped by hand, kept across daemon restarts (holds.py).
- where a program may run: `nodes` placement, and the leases of singletons (placement.py).
  On a shared store the daemon's lease keeper (daemon/singletons.py) renews the leases and
  tells the supervisor (`placement_changed`); without one, every singleton is this node's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

from stoker import names, sdnotify
from stoker.config import Config, ProgramConfig
from stoker.durations import format_size
from stoker.reload import Changes
from stoker.supervise import cgroups
from stoker.supervise.environment import inherited
from stoker.supervise.holds import Holds
from stoker.supervise.instance import Instance
from stoker.supervise.placement import LeaseBook, not_placed_reason, placed_here, releasable
from stoker.supervise.procs import GroupUsage, group_usage
from stoker.supervise.state import State
from stoker.supervise.stop_order import may_stop

log = logging.getLogger("stoker")

RESTING = frozenset({State.STOPPED, State.EXITED, State.FATAL})
SETTLED_AFTER_START = frozenset({State.RUNNING, State.BACKOFF, State.EXITED, State.FATAL, State.STOPPED})
RESTARTABLE = frozenset({State.STARTING, State.RUNNING, State.BACKOFF})
MEMORY_CHECK_SECONDS = 2.0


class UnknownName(LookupError):
    """A NAME that selects no program instance."""


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.log_dir = Path(config.daemon.state_dir) / names.LOGS
        self.instances: dict[str, Instance] = {}
        self._changed = asyncio.Event()  # set and replaced on every change
        self._listeners: list[Callable[[Instance], None]] = []
        # what programs inherit of the daemon's environment: its secrets left out (shared by
        # every instance, brought up to date in place by a reload)
        self._base_env = inherited(os.environ, config)
        self.holds = Holds(config.daemon.state_dir)
        self._notify_address = sdnotify.address_for(config.daemon.state_dir)
        self._notify: sdnotify.Listener | None = None
        self._background: dict[object, asyncio.Task[None]] = {}  # "memory", ("watch", program)
        self._releasing = False
        self._release_again = False
        # singleton leases on a shared store (None: this node is the only one)
        self.leases: LeaseBook | None = None
        self._wake_leases: Callable[[], None] | None = None
        self._lease_needs: tuple[frozenset[str], tuple[str, ...]] | None = None  # what it last heard
        self._closing = False
        for program in config.programs.values():
            for i in range(program.instances):
                inst = self._new_instance(program, i)
                self.instances[inst.name] = inst

    def _new_instance(self, program: ProgramConfig, index: int) -> Instance:
        return Instance(
            program,
            index,
            log_dir=self.log_dir,
            state_dir=self.config.daemon.state_dir,
            on_change=self._instance_changed,
            base_environment=self._base_env,
            gate=self._waiting_for,
            permit=self._permit,
            notify_address=self._notify_address,
        )

    # names ---------------------------------------------------------------------------------

    def select(self, names: Iterable[str]) -> list[Instance]:
        """The instances NAMEs select, in config order, each once; UnknownName if one selects none."""
        chosen: dict[str, Instance] = {}
        for name in names:
            found = self._select_one(name)
            if not found:
                raise UnknownName(name)
            for inst in found:
                chosen[inst.name] = inst
        return [inst for name, inst in self.instances.items() if name in chosen]

    def _select_one(self, name: str) -> list[Instance]:
        if name == "all":
            return list(self.instances.values())
        if name in self.instances:
            return [self.instances[name]]
        if name.endswith(":*"):  # supervisord's GROUP:*: a group's programs, or a program's instances
            group = name[:-2]
            return [
                inst
                for inst in self.instances.values()
                if inst.spec.program == group or group in inst.program.groups
            ]
        return [inst for inst in self.instances.values() if inst.spec.program == name]

    # changes -------------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Instance], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _instance_changed(self, inst: Instance) -> None:
        for listener in list(self._listeners):
            listener(inst)
        self._release_waiting()
        self._changed.set()
        self._changed = asyncio.Event()
        if inst.program.singleton:
            self._leases_may_have_changed()

    # placement and singletons -----------------------------------------------------------------

    def use_leases(self, book: LeaseBook, wake: Callable[[], None]) -> None:
        """Run singletons only where `book` says this node holds the lease; call `wake()` when
        what this node wants of the leases may have changed (see `lease_needs`)."""
        self.leases, self._wake_leases = book, wake

    def _reason(self, program: ProgramConfig) -> str | None:
        """Why this node does not run `program` now, or None if it may."""
        node = self.config.daemon.node
        if not placed_here(program.nodes, node):
            return not_placed_reason(program.nodes, node)
        if program.singleton and self.leases is not None:
            return self.leases.reason(program.name, asyncio.get_running_loop().time())
        return None

    def _permit(self, inst: Instance) -> str | None:
        return "the daemon is stopping" if self._closing else self._reason(inst.program)

    def placement_of(self, inst: Instance) -> str | None:
        """Why this node keeps `inst` stopped, for the operator: the reason it was held back or
        stopped for, or, for one at rest, why it would be held back now."""
        if inst.state in RESTING and not self._closing:
            return self._reason(inst.program)
        return inst.placement

    def holder(self, program: ProgramConfig) -> str | None:
        """The node that runs a singleton (None: nobody, or not known; or not a singleton)."""
        if not program.singleton:
            return None
        if self.leases is None:
            return self.config.daemon.node if placed_here(program.nodes, self.config.daemon.node) else None
        return self.leases.holder(program.name, asyncio.get_running_loop().time())

    def placement_changed(self) -> None:
        """Leases (or the config) changed: start what this node may now run and someone wants,
        stop what it may no longer run (keeping it wanted, so it comes back when it may)."""
        if self._closing:
            return
        fence = self.leases.fence_times() if self.leases is not None else None
        for inst in list(self.instances.values()):
            program = inst.program
            reason = self._reason(program)
            if (
                reason is not None
                and program.singleton
                and self.leases is not None
                and not self.leases.decided(program.name)
                and inst.state not in RESTING
            ):
                continue  # just became a singleton: it runs on until the store has answered
            kill_at = fence[1] if fence is not None and program.singleton else None
            inst.placement_changed(reason, kill_at=kill_at)
        self._leases_may_have_changed()

    def lease_needs(self) -> tuple[frozenset[str], tuple[str, ...]]:
        """(the singletons whose lease this node must take or renew, the leases it holds and
        may give up): it wants a lease while an instance placed here is wanted, and keeps one
        it holds while a copy here has not stopped (a stop by hand takes up to stop_timeout:
        the lease must not lapse under a copy still stopping); it gives one up once neither."""
        wanted = {
            inst.spec.program
            for inst in self.instances.values()
            if inst.wanted
            and not self._closing
            and inst.program.singleton
            and placed_here(inst.program.nodes, self.config.daemon.node)
        }
        if self.leases is None:
            return frozenset(wanted), ()
        busy = {inst.spec.program for inst in self.instances.values() if inst.state not in RESTING}
        held = {name for name, holder in self.leases.holders.items() if holder == self.leases.node}
        keep = frozenset(wanted | (held & busy))
        return keep, tuple(releasable(self.leases, keep, held - busy))

    def _leases_may_have_changed(self) -> None:
        if self._wake_leases is None:
            return
        needs = self.lease_needs()
        if needs != self._lease_needs:
            self._lease_needs = needs
            self._wake_leases()

    # dependencies ----------------------------------------------------------------------------

    def _waiting_for(self, inst: Instance) -> list[str]:
        """The programs `inst` depends on that are not running yet (all their instances)."""
        return [name for name in inst.program.depends_on if not self._program_running(name)]

    def _program_running(self, name: str) -> bool:
        found = [i for i in self.instances.values() if i.spec.program == name]
        return bool(found) and all(i.state is State.RUNNING for i in found)

    def _release_waiting(self) -> None:
        """Let instances whose dependencies just came up spawn (a release changes states, which
        may release more: loop here rather than recurse)."""
        if self._releasing:
            self._release_again = True
            return
        self._releasing = True
        try:
            self._release_again = True
            while self._release_again:
                self._release_again = False
                for inst in list(self.instances.values()):
                    if inst.waiting_for:
                        inst.release()
        finally:
            self._releasing = False

    def _depth(self, program: str) -> int:
        """0 for a program that depends on nothing, else 1 + the deepest dependency."""
        seen: set[str] = set()

        def depth(name: str) -> int:
            config = self.config.programs.get(name)
            if config is None or name in seen:  # (cycles are refused by the config)
                return 0
            seen.add(name)
            return 1 + max((depth(d) for d in config.depends_on), default=-1)

        return depth(program)

    async def wait_until(
        self, instances: list[Instance], done: Callable[[Instance], bool], timeout: float
    ) -> bool:
        """Wait (event-driven) until `done` holds for every instance; False on timeout."""

        async def all_done() -> None:
            while not all(done(i) for i in instances):
                await self._changed.wait()

        try:
            await asyncio.wait_for(all_done(), timeout)
        except TimeoutError:
            return False
        return True

    # operations ----------------------------------------------------------------------------

    def autostart(self) -> None:
        """Start every autostart instance, except those an operator stopped by hand (they stay
        stopped across daemon restarts), and the notify socket, memory checks and watchers."""
        self._sync_background()
        held = [inst.name for inst in self.instances.values() if inst.name in self.holds]
        if held:
            log.info("kept stopped, as stopped by hand: %s", ", ".join(held))
        for inst in self.instances.values():
            if inst.program.autostart and inst.name not in self.holds:
                inst.start()
        self._leases_may_have_changed()

    async def start(self, instances: list[Instance], *, wait: bool = True) -> None:
        """Start `instances`; with `wait`, return once each has settled (running, or a failed
        start) or its start limit has passed."""
        for inst in instances:
            inst.start()
        self._leases_may_have_changed()
        if not wait:
            return
        limit = self._start_limit(instances)
        await self.wait_until(instances, lambda i: i.state in SETTLED_AFTER_START, limit)

    async def stop(self, instances: list[Instance]) -> None:
        """Stop `instances`, dependents before what they depend on: each gets its stop signal
        once no instance among them whose program depends on its program (directly or not) is
        still alive, so one that nothing among them depends on gets it at once. None of them
        starts again from the moment this begins. One that outlives its stop limit (stop_timeout
        and SIGKILL) holds up its dependencies no longer."""
        for inst in instances:
            inst.stop_pending()
        # (an instance's own config: a reload may have removed its program from self.config)
        depends_on = {name: p.depends_on for name, p in self.config.programs.items()}
        depends_on |= {i.spec.program: i.program.depends_on for i in instances}
        loop = asyncio.get_running_loop()
        limits: dict[str, float] = {}  # signalled instance → when it stops holding up its dependencies
        while True:
            now = loop.time()
            alive = [
                i
                for i in instances
                if i.state not in RESTING and (i.name not in limits or now < limits[i.name])
            ]
            programs = {i.spec.program for i in alive}
            free = may_stop(programs, depends_on)
            # (one at rest whose program has nothing alive: no process to order, stopped at once)
            turn = [
                i
                for i in instances
                if i.name not in limits and (i.spec.program in free or i.spec.program not in programs)
            ]
            for inst in turn:
                inst.stop()
                limits[inst.name] = now + _stop_limit([inst])
            if turn:
                self._leases_may_have_changed()
                continue  # (a stop may have ended some at once: look again)
            if not alive:
                return
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(limits.get(i.name, math.inf) for i in alive) - now)

    async def restart(self, instances: list[Instance]) -> None:
        for inst in instances:
            inst.restart()
        self._leases_may_have_changed()
        await self.wait_until(
            instances,
            # (one this node may not run stays stopped: see its placement)
            lambda i: (
                i.state in SETTLED_AFTER_START and (i.state is not State.STOPPED or i.placement is not None)
            ),
            _stop_limit(instances) + self._start_limit(instances),
        )

    # what an operator asks for: remembered across daemon restarts ------------------------------

    async def start_by_hand(self, instances: list[Instance], *, wait: bool = True) -> None:
        self.holds.release(inst.name for inst in instances)
        await self.start(instances, wait=wait)

    async def stop_by_hand(self, instances: list[Instance]) -> None:
        self.holds.hold(inst.name for inst in instances)
        await self.stop(instances)

    async def restart_by_hand(self, instances: list[Instance]) -> None:
        self.holds.release(inst.name for inst in instances)
        await self.restart(instances)

    def _start_limit(self, instances: list[Instance]) -> float:
        """How long a start may take to settle: each level of dependencies may have to come up
        first, and each level may wait for its readiness check."""

        def worst(program: ProgramConfig) -> float:
            return program.start_seconds + (program.ready_timeout if program.ready is not None else 0.0)

        levels = 1 + max((self._depth(i.spec.program) for i in instances), default=0)
        slowest = max((worst(p) for p in self.config.programs.values()), default=0.0)
        return levels * slowest + 5

    async def apply(self, config: Config, changes: Changes) -> None:
        """Bring the instances in line with a reloaded config: stop what was removed, start
        what was added, restart changed programs one instance at a time (each running again
        before the next stops), and leave everything else alone, processes and all."""
        old, self.config = self.instances, config
        base_env = inherited(os.environ, config)  # a webhook's `env:` secret may be new
        if base_env != self._base_env:
            self._base_env.clear()
            self._base_env.update(base_env)
        going = [inst for inst in old.values() if not _kept(inst, config)]
        await self.stop(going)
        for inst in going:
            inst.close()
        gone = {inst.name for inst in going}
        instances: dict[str, Instance] = {}
        fresh: list[Instance] = []
        for program in config.programs.values():
            for index in range(program.instances):
                name = program.spec(index).name
                kept = old.get(name) if name not in gone else None
                if kept is None:
                    kept = self._new_instance(program, index)
                    fresh.append(kept)
                elif program.name not in changes.changed:
                    kept.program = program  # the same processes; only the instance count differs
                instances[name] = kept
        self.instances = instances
        self.holds.keep_only(instances)
        self._sync_background()
        for name in changes.changed:
            for inst in [i for i in instances.values() if i.spec.program == name and i not in fresh]:
                await self._replace(inst, config.programs[name])
        for inst in fresh:
            if inst.program.autostart:
                inst.start()
        self.placement_changed()  # `nodes` or `singleton` may have changed

    async def _replace(self, inst: Instance, program: ProgramConfig) -> None:
        """One instance of a changed program: stop it, start its successor (unless it was
        stopped, by hand or for lack of autostart: then the successor waits the same way)."""
        was_stopped = inst.state is State.STOPPED and not inst.wanted  # (not: waiting for this node)
        await self.stop([inst])
        inst.close()
        successor = self._new_instance(program, inst.spec.instance)
        self.instances[successor.name] = successor
        if not was_stopped:
            await self.start([successor])

    def signal(self, instances: list[Instance], sig: int) -> list[str]:
        """Send `sig`; return the names of the instances that had a process to receive it."""
        return [inst.name for inst in instances if inst.send_signal(sig)]

    # the notify socket, memory checks and file watchers ---------------------------------------

    def _sync_background(self) -> None:
        """Run what the current config needs, and only that: the notify socket (always: it is
        one socket), the memory check (when a program has max_memory), a watcher per program
        with `watch` (restarted when its settings change)."""
        if self._notify is None:
            try:
                self._notify = sdnotify.Listener(self._notify_address, self._on_notify)
            except OSError as e:
                address = self._notify_address
                log.error("notify socket %s: %s (ready = notify and watchdog cannot work)", address, e)
        if self._notify is not None:
            self._notify.allow(sdnotify.users_of(p.user for p in self.config.programs.values()))
        wanted: dict[object, ProgramConfig | None] = {}  # None: the memory check
        if any(p.max_memory for p in self.config.programs.values()):
            wanted["memory"] = None
        for program in self.config.programs.values():
            if program.watch:
                wanted[("watch", program.name, program.watch, program.watch_ignore)] = program
        for key in [k for k in self._background if k not in wanted]:
            self._background.pop(key).cancel()
        for key, watched in wanted.items():
            if key in self._background:
                continue
            if watched is None:
                task = asyncio.create_task(self._check_memory(), name="max_memory")
            else:
                task = asyncio.create_task(self._watch(watched), name=f"watch {watched.name}")
            self._background[key] = task

    def _on_notify(self, pid: int, fields: dict[str, str]) -> None:
        inst = self._instance_of(pid)
        if inst is None:
            log.debug("notify socket: ignored a message from pid %d (not a program's process)", pid)
            return
        inst.notified(fields)

    def _instance_of(self, pid: int) -> Instance | None:
        """The instance whose process tree `pid` belongs to: its leader, its process group, or
        (for a process that left the group) an ancestor."""
        leaders = {i.pid: i for i in self.instances.values() if i.pid is not None}
        if pid in leaders:
            return leaders[pid]
        with contextlib.suppress(OSError):
            group = os.getpgid(pid)
            if group in leaders:
                return leaders[group]
        with contextlib.suppress(psutil.Error):
            for parent in psutil.Process(pid).parents():
                if parent.pid in leaders:
                    return leaders[parent.pid]
        return None

    async def _check_memory(self) -> None:
        while True:
            await asyncio.sleep(MEMORY_CHECK_SECONDS)
            watched = {
                i.pid: i
                for i in self.instances.values()
                if i.program.max_memory and i.state is State.RUNNING and i.pid is not None
            }
            if not watched:
                continue
            usage = await asyncio.to_thread(instance_usage, list(watched.values()))
            for pid, inst in watched.items():
                limit = inst.program.max_memory
                if (
                    limit
                    and pid in usage
                    and usage[pid].memory > limit
                    and inst.pid == pid
                    and inst.state is State.RUNNING
                    and inst.wanted
                ):
                    log.warning(
                        "%s: uses %s, over max_memory %s: restarting it",
                        inst.name,
                        format_size(usage[pid].memory),
                        format_size(limit),
                    )
                    inst.restart()

    async def _watch(self, program: ProgramConfig) -> None:
        from stoker.supervise import watch

        async for paths in watch.changes(
            program.watch,
            state_dir=self.config.daemon.state_dir,
            ignore=program.watch_ignore,
            base=self.config.directory,
        ):
            shown = ", ".join(os.path.relpath(p, self.config.directory) for p in paths[:3])
            more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            log.info("%s: %s changed: restarting it", program.name, shown + more)
            for inst in [i for i in self.instances.values() if i.spec.program == program.name]:
                if restartable(inst):
                    await self.restart([inst])  # one at a time: the others keep serving

    @property
    def is_closing(self) -> bool:
        """Whether the daemon is stopping (`closing()` was called): nothing starts any more."""
        return self._closing

    def closing(self) -> None:
        """The daemon is stopping: nothing starts from here on (a program that exits before its
        turn to stop stays stopped), and no lease is wanted. `shutdown()` stops them."""
        self._closing = True
        for inst in self.instances.values():
            inst.stop_pending()

    async def shutdown(self) -> None:
        """Stop everything (stop signal, then SIGKILL at each stop_timeout) and release files."""
        self.closing()
        for task in self._background.values():
            task.cancel()
        for task in self._background.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        if self._notify is not None:
            self._notify.close()
            self._notify = None
        running = [i for i in self.instances.values() if i.state not in RESTING]
        if running:
            log.info("stopping %d program instance(s)", len(running))
        await self.stop(running)
        for inst in self.instances.values():
            if inst.pid is not None:  # pragma: no cover - survived SIGKILL (uninterruptible)
                inst.send_signal(signal.SIGKILL)
            inst.close()


def restartable(inst: Instance) -> bool:
    """Whether a restart the daemon decides on (watch, cron_restart) applies to `inst`: it is up
    or coming up, and wanted (not one whose stop has begun)."""
    return inst.wanted and inst.state in RESTARTABLE


def _kept(inst: Instance, config: Config) -> bool:
    program = config.programs.get(inst.spec.program)
    return program is not None and inst.spec.instance < program.instances


def _stop_limit(instances: list[Instance]) -> float:
    # stop_timeout, then SIGKILL; the kill itself is quick but give the kernel a moment.
    return max((i.program.stop_timeout for i in instances), default=0) + 5


def instance_usage(instances: Iterable[Instance]) -> dict[int, GroupUsage]:
    """Memory and CPU time of each instance with a process (by main pid): its cgroup's where it
    has one (every descendant, setsid'd or not: what max_memory and memory_max measure), else
    its process group's (stoker.supervise.procs: one pass over /proc for all)."""
    live = {i.pid: i.cgroup for i in instances if i.pid is not None}
    usage = group_usage([pid for pid, cgroup in live.items() if cgroup is None])
    for pid, cgroup in live.items():
        if cgroup is not None:
            memory, cpu = cgroups.memory(cgroup), cgroups.cpu_seconds(cgroup)
            usage[pid] = GroupUsage(memory or 0, cpu or 0.0)
    return usage
