"""The daemon at run time, as the layers above the engines see it: its supervisor, event bus,
dispatcher and scheduler (once there are tasks and schedules), the shared store and the reload.
The daemon (daemon/main.py) makes it and hands it to the API (api/app.py); it lives here, below
both, so that the API's modules need not import the daemon, nor each other, for it (the metrics
were made from it once, and api.app and api.metrics imported each other: they now take the
supervisor and the dispatcher they read).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from stoker.config import Config
from stoker.events import EventBus
from stoker.history import History
from stoker.jobs.dispatcher import Dispatcher
from stoker.schedule.scheduler import Scheduler
from stoker.store.shared import SharedStore
from stoker.supervise.supervisor import Supervisor


class Reload(Protocol):
    """The daemon's reload: `progress`, if any, hears each instance it stops as it stops;
    `config`, if any, is applied instead of the file's (supervisorctl's reread and update)."""

    def __call__(
        self, progress: Callable[[dict[str, Any]], None] | None, config: Config | None = None
    ) -> Coroutine[Any, Any, dict[str, Any]]: ...


@dataclass
class DaemonInfo:
    """The running daemon's parts, as the API reaches them: made by the daemon (daemon/main.py),
    which fills in the dispatcher, the scheduler and the reload as they come."""

    supervisor: Supervisor
    started_at: float  # wall clock
    request_shutdown: Callable[[], None]
    events: EventBus = field(default_factory=EventBus)
    dispatcher: Dispatcher | None = None  # None: no tasks yet (a reload may add the first)
    scheduler: Scheduler | None = None  # None: no schedules yet (a reload may add the first)
    reload: Reload | None = None  # set once the daemon runs
    shared: SharedStore | None = None  # the store other nodes share (PostgreSQL): the cluster view
    history: History | None = None  # None: [daemon] history = false
