"""This daemon as one node of several sharing a store (PostgreSQL): its name, its heartbeat,
and the re-queueing of the jobs of nodes that stopped answering.

At start the node takes its name (`join`: refused while another live daemon holds it, since
two daemons under one name would re-queue each other's jobs). Then it heartbeats every third
of `node_timeout`, by the database server's clock (the machines' clocks need not agree), and
after each heartbeat re-queues, as interrupted attempts, the running jobs of any node silent
for longer than `node_timeout`. Every live node does this; the store locks the rows, so one of
them re-queues and the others find nothing left. A node that was only cut off, not dead, finds
the ends of those attempts refused (they were queued again: jobs are at-least-once).

This wakes the daemon every `node_timeout / 3` seconds: a node that others may take for dead
cannot stay silent. A daemon on SQLite runs none of it. The leases of singleton programs are
renewed at the same pace by daemon/singletons.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from stoker.store import Store, StoreError

if TYPE_CHECKING:
    from stoker.jobs.dispatcher import Dispatcher
    from stoker.schedule.scheduler import Scheduler

log = logging.getLogger("stoker")


@runtime_checkable
class SharedStore(Protocol):
    """What a store that several daemons share offers beyond the Store protocol."""

    def subscribe(
        self,
        *,
        queued_elsewhere: Callable[[str | None], None],
        cancel_asked: Callable[[int], None],
        pauses_changed: Callable[[], Awaitable[None]],
        leases_released: Callable[[], None] | None = None,
    ) -> None: ...

    async def join(self, node: str, timeout: float) -> None: ...

    async def heartbeat(self, node: str, timeout: float) -> list[str]: ...

    async def leave(self, node: str) -> None: ...

    async def renew_leases(
        self, node: str, lease: float, names: Sequence[str], want: Sequence[str], drop: Sequence[str]
    ) -> tuple[dict[str, str], dict[str, float]]: ...


async def keep_alive(
    shared: SharedStore,
    store: Store,
    node: str,
    timeout: float,
    *,
    reason: str,
    requeued: Callable[[], None],
) -> None:
    """Heartbeat until cancelled; re-queue the jobs of lapsed nodes (recorded with `reason`),
    then call `requeued()` (this node does not hear its own re-queueing)."""
    while True:
        try:
            for other in await shared.heartbeat(node, timeout):
                ids = await store.requeue_running(other, time.time(), reason)
                if ids:
                    shown = ", ".join(map(str, ids[:20]))
                    log.warning("cluster: node %s has not answered for %ss; its %d running job(s) are "
                                "queued again: %s", other, timeout, len(ids), shown)  # fmt: skip
                    requeued()
        except StoreError as e:  # the next heartbeat is another chance
            log.error("cluster: heartbeat of node %s failed: %s", node, e)
        await asyncio.sleep(timeout / 3)


def listen(
    shared: SharedStore,
    store: Store,
    dispatcher: Dispatcher,
    scheduler: Scheduler | None,
    leases_released: Callable[[], None] | None = None,
) -> None:
    """Hear the other nodes: their jobs, their cancels, their pauses, the singleton leases they
    give up (`SharedStore.subscribe`)."""

    async def pauses_changed() -> None:  # the store has them all: apply what it holds
        dispatcher.apply_paused(await store.paused_queues())
        if scheduler is not None:
            scheduler.apply_paused(await store.paused_schedules())

    shared.subscribe(
        queued_elsewhere=dispatcher.queued_elsewhere,
        cancel_asked=dispatcher.cancel_asked,
        pauses_changed=pauses_changed,
        leases_released=leases_released,
    )
