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

The cluster view: each node publishes its program instances (the JSON of GET /api/v1/programs)
to its row in the store, so that any node can show every node's (api/nodes.py). It publishes
with each heartbeat (memory and CPU measured then), and on a change of state, at most once per
PUBLISH_GAP (a crash loop costs a few writes a second, not one per exit). Nothing changes, no
write but the heartbeat's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from stoker.skew import NodeClock, describe
from stoker.store import Store, StoreError
from stoker.store.shared import SharedStore

__all__ = ["PUBLISH_GAP", "JobFence", "Publisher", "SharedStore", "keep_alive", "listen", "read_clock"]

if TYPE_CHECKING:
    from stoker.jobs.dispatcher import Dispatcher
    from stoker.schedule.scheduler import Scheduler

log = logging.getLogger("stoker")


PUBLISH_GAP = 0.5  # seconds between two publishes on change, at least


class Publisher:
    """Publishes this node's program instances: `changed()` on every change of state, `now()`
    with each heartbeat. `snapshot(measure)` encodes the instances (measured: with memory and
    CPU, which costs a pass over /proc, so only the heartbeat's are)."""

    def __init__(
        self,
        shared: SharedStore,
        node: str,
        version: str,
        snapshot: Callable[[bool], Awaitable[bytes]],
        *,
        gap: float = PUBLISH_GAP,
    ) -> None:
        self.shared, self.node, self.version = shared, node, version
        self.snapshot = snapshot
        self.gap = gap
        self._changed = asyncio.Event()
        self._last = -gap  # monotonic time of the last publish

    def changed(self) -> None:
        self._changed.set()

    async def now(self, *, measure: bool = True) -> None:
        self._changed.clear()  # this snapshot holds the change too
        programs = await self.snapshot(measure)
        self._last = time.monotonic()
        await self.shared.publish(self.node, programs, self.version)

    async def run(self) -> None:
        """Until cancelled: publish each burst of changes, one write per `gap` at most."""
        while True:
            await self._changed.wait()
            await asyncio.sleep(max(0.0, self._last + self.gap - time.monotonic()))
            if not self._changed.is_set():  # a heartbeat published it meanwhile
                continue
            await self.now_or_log(measure=False)

    async def now_or_log(self, *, measure: bool = True) -> None:
        """`now()`, and a failure only logged: the view must never stop the heartbeat (the
        other nodes would take this one for dead) nor the daemon."""
        try:
            await self.now(measure=measure)
        except StoreError as e:  # the next heartbeat's publish is the next chance
            log.warning("cluster: publishing the programs of node %s failed: %s", self.node, e)
        except Exception:
            log.exception("cluster: publishing the programs of node %s failed", self.node)


class JobFence:
    """Stops this node's jobs before the other nodes could take it for dead and run them again.

    The others queue a node's running jobs again once its heartbeat is older than `timeout` by
    the store's clock. A heartbeat is recorded no earlier than it was sent, so at 2/3 of
    `timeout` after the last answered heartbeat was sent this node stops its jobs (interrupted
    attempts) and claims none, and at 5/6 it SIGKILLs what is left: the singletons' fence
    (daemon/singletons.py), for jobs. A heartbeat answered again lifts it. The timer runs on
    its own, so a heartbeat that hangs (packets black-holed: no error comes for minutes) fences
    as surely as one that fails. A daemon frozen past `timeout` (SIGSTOP, a paused VM) cannot
    act on it: its jobs run on meanwhile, and may run elsewhere too."""

    def __init__(self, dispatcher: Dispatcher, timeout: float) -> None:
        self.dispatcher, self.timeout = dispatcher, timeout
        self._last: float | None = None  # loop time the last answered heartbeat was sent
        self._timer: asyncio.TimerHandle | None = None

    def answered(self, sent: float) -> None:
        """A heartbeat sent at `sent` (loop time) was recorded."""
        loop = asyncio.get_running_loop()
        self._last = sent
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(sent + self.timeout * 2 / 3, self._fire)
        if loop.time() < sent + self.timeout * 2 / 3:
            self.dispatcher.unfence()

    def _fire(self) -> None:
        self._timer = None
        assert self._last is not None
        loop = asyncio.get_running_loop()
        silent = loop.time() - self._last
        reason = f"fenced: no heartbeat answered for {silent:.1f}s (node_timeout {self.timeout:g}s)"
        self.dispatcher.fence(reason, max(0.0, self._last + self.timeout * 5 / 6 - loop.time()))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def read_clock(shared: SharedStore, clock: NodeClock, node: str) -> None:
    """Feed `clock` the server's clock as the last join or heartbeat read it; log when this
    node's clock is found off, and when it is back in step."""
    if shared.clock_reading is None:
        return
    if clock.observe(*shared.clock_reading):
        if clock.offset != 0:
            log.warning("cluster: %s", describe(node, clock.offset))
        else:
            log.warning("cluster: node %s: clock back in step with the database server", node)


async def keep_alive(
    shared: SharedStore,
    store: Store,
    node: str,
    timeout: float,
    *,
    reason: str,
    requeued: Callable[[], None],
    publisher: Publisher | None = None,
    fence: JobFence | None = None,
    clock: NodeClock | None = None,
) -> None:
    """Heartbeat until cancelled (publishing the programs first, with `publisher`); re-queue the
    jobs of lapsed nodes (recorded with `reason`), then call `requeued()` (this node does not
    hear its own re-queueing). `fence` hears of each answered heartbeat; `clock`, the server's
    clock read with it (stoker/skew.py: logged once when this one is found off). A failed heartbeat is
    tried again after a sixth of `timeout`, not a third."""
    loop = asyncio.get_running_loop()
    now = time.time if clock is None else clock
    try:
        while True:
            if publisher is not None:
                await publisher.now_or_log()
            sent = loop.time()
            try:
                lapsed = await shared.heartbeat(node, timeout)
            except StoreError as e:  # the next heartbeat is another chance
                log.error("cluster: heartbeat of node %s failed: %s", node, e)
                await asyncio.sleep(timeout / 6)
                continue
            if fence is not None:
                fence.answered(sent)
            if clock is not None:
                read_clock(shared, clock, node)
            try:
                for other in lapsed:
                    # (not counted as a crash: a partition stops the answers as a crash does)
                    ids = await store.requeue_running(other, now(), reason, crashed=False)
                    if ids:
                        shown = ", ".join(map(str, ids[:20]))
                        log.warning("cluster: node %s has not answered for %ss; its %d running job(s) are "
                                    "queued again: %s", other, timeout, len(ids), shown)  # fmt: skip
                        requeued()
            except StoreError as e:
                log.error("cluster: queueing the jobs of lapsed nodes again failed: %s", e)
            await asyncio.sleep(timeout / 3)
    finally:
        if fence is not None:
            fence.close()


def listen(
    shared: SharedStore,
    store: Store,
    dispatcher: Dispatcher,
    get_scheduler: Callable[[], Scheduler | None],
    leases_released: Callable[[], None] | None = None,
) -> None:
    """Hear the other nodes: their jobs, their cancels, their pauses, the singleton leases they
    give up (`SharedStore.subscribe`). `get_scheduler()`: the daemon's scheduler, if it has one
    yet (a reload adds one with the first schedule)."""

    async def pauses_changed() -> None:  # the store has them all: apply what it holds
        dispatcher.apply_paused(await store.paused_queues())
        if (scheduler := get_scheduler()) is not None:
            scheduler.apply_paused(await store.paused_schedules())

    shared.subscribe(
        queued_elsewhere=dispatcher.queued_elsewhere,
        cancel_asked=dispatcher.cancel_asked,
        pauses_changed=pauses_changed,
        leases_released=leases_released,
    )
