"""What a reload tells its caller while it applies: each instance it stops, as it stops.

A reload that removes programs, shrinks them or restarts changed ones waits for those instances
to stop, up to each one's `stop_timeout` (then SIGKILL). Told nothing, the person who typed
`stoker reload` stares at a silent terminal for that long; told "stopping mailer:0 (up to
10s)…", they know what it waits for and how long it may. The events go to
`POST /api/v1/reload?progress=1` as server-sent events, and from there to the CLI's stderr.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stoker.supervise.instance import Instance
from stoker.supervise.state import State
from stoker.supervise.supervisor import RESTING

Event = dict[str, Any]


class StopReporter:
    """A supervisor listener for the length of one reload: of the instances of `programs`,
    says `stopping` (with its stop_timeout) when one begins to stop, `stopped` when it has, and
    `started` when the successor of one that stopped runs (a changed program restarts one
    instance at a time, and the reload waits for each)."""

    def __init__(self, programs: set[str], say: Callable[[Event], None]) -> None:
        self.programs = programs
        self.say = say
        self._stopping: set[str] = set()
        self._stopped: set[str] = set()

    def __call__(self, inst: Instance) -> None:
        if inst.spec.program not in self.programs:
            return
        name, state = inst.name, inst.state
        if state is State.STOPPING and name not in self._stopping:
            self._stopping.add(name)
            self.say({"type": "stopping", "name": name, "stop_timeout": inst.program.stop_timeout})
        elif state in RESTING and name in self._stopping:
            self._stopping.discard(name)
            self._stopped.add(name)
            self.say({"type": "stopped", "name": name})
        elif state is State.RUNNING and name in self._stopped:
            self._stopped.discard(name)
            self.say({"type": "started", "name": name})
