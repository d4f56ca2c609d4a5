"""All program instances of one daemon, addressed by name: `all`, `mailer`, `mailer:3`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

from stoker.config import Config, ProgramConfig
from stoker.reload import Changes
from stoker.supervise.instance import Instance
from stoker.supervise.state import State

log = logging.getLogger("stoker")

RESTING = frozenset({State.STOPPED, State.EXITED, State.FATAL})
SETTLED_AFTER_START = frozenset({State.RUNNING, State.BACKOFF, State.EXITED, State.FATAL, State.STOPPED})


class UnknownName(LookupError):
    """A NAME that selects no program instance."""


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.log_dir = Path(config.daemon.state_dir) / "logs"
        self.instances: dict[str, Instance] = {}
        self._changed = asyncio.Event()  # set and replaced on every change
        self._listeners: list[Callable[[Instance], None]] = []
        self._base_env = os.environ.copy()
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
        return [inst for inst in self.instances.values() if inst.spec.program == name]

    # changes -------------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Instance], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _instance_changed(self, inst: Instance) -> None:
        for listener in list(self._listeners):
            listener(inst)
        self._changed.set()
        self._changed = asyncio.Event()

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
        for inst in self.instances.values():
            if inst.program.autostart:
                inst.start()

    async def start(self, instances: list[Instance]) -> None:
        for inst in instances:
            inst.start()
        limit = max((i.program.start_seconds for i in instances), default=0) + 5
        await self.wait_until(instances, lambda i: i.state in SETTLED_AFTER_START, limit)

    async def stop(self, instances: list[Instance]) -> None:
        for inst in instances:
            inst.stop()
        await self.wait_until(instances, lambda i: i.state in RESTING, _stop_limit(instances))

    async def restart(self, instances: list[Instance]) -> None:
        for inst in instances:
            inst.restart()
        limit = _stop_limit(instances) + max((i.program.start_seconds for i in instances), default=0)
        await self.wait_until(
            instances,
            lambda i: i.state in SETTLED_AFTER_START and i.state is not State.STOPPED,
            limit + 5,
        )

    async def apply(self, config: Config, changes: Changes) -> None:
        """Bring the instances in line with a reloaded config: stop what was removed, start
        what was added, restart changed programs one instance at a time (each running again
        before the next stops), and leave everything else alone, processes and all."""
        old, self.config = self.instances, config
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
        for name in changes.changed:
            for inst in [i for i in instances.values() if i.spec.program == name and i not in fresh]:
                await self._replace(inst, config.programs[name])
        for inst in fresh:
            if inst.program.autostart:
                inst.start()

    async def _replace(self, inst: Instance, program: ProgramConfig) -> None:
        """One instance of a changed program: stop it, start its successor (unless it was
        stopped, by hand or for lack of autostart: then the successor waits the same way)."""
        was_stopped = inst.state is State.STOPPED
        await self.stop([inst])
        inst.close()
        successor = self._new_instance(program, inst.spec.instance)
        self.instances[successor.name] = successor
        if not was_stopped:
            await self.start([successor])

    def signal(self, instances: list[Instance], sig: int) -> list[str]:
        """Send `sig`; return the names of the instances that had a process to receive it."""
        return [inst.name for inst in instances if inst.send_signal(sig)]

    async def shutdown(self) -> None:
        """Stop everything (stop signal, then SIGKILL at each stop_timeout) and release files."""
        running = [i for i in self.instances.values() if i.state not in RESTING]
        if running:
            log.info("stopping %d program instance(s)", len(running))
        await self.stop(running)
        for inst in self.instances.values():
            if inst.pid is not None:  # pragma: no cover - survived SIGKILL (uninterruptible)
                inst.send_signal(signal.SIGKILL)
            inst.close()


def _kept(inst: Instance, config: Config) -> bool:
    program = config.programs.get(inst.spec.program)
    return program is not None and inst.spec.instance < program.instances


def _stop_limit(instances: list[Instance]) -> float:
    # stop_timeout, then SIGKILL; the kill itself is quick but give the kernel a moment.
    return max((i.program.stop_timeout for i in instances), default=0) + 5
