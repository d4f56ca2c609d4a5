"""The leases of singleton programs on a shared store: the thin shell around placement.LeaseBook.

One task renews them every third of `node_timeout` (the lease's length), as the heartbeat
beats, and sooner when there is something to say or learn:
- what this node wants changed (a singleton started or stopped by hand, a reload, a copy that
  has finished stopping and whose lease may now be given up): the supervisor wakes it;
- another node gave leases up (it stopped them by hand, or its daemon is going down): the
  store's LISTEN tells us, and we try to take them at once;
- a lease held by another node is about to lapse (its node died): we try just after.
After each answer the supervisor starts or stops the singletons (`placement_changed`). A timer
fences this node: when the last successful renewal is too old (placement.FENCE_STOP), the
supervisor stops our copies, with a SIGKILL deadline before the lease can lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from stoker.store import StoreError
from stoker.supervise.placement import LeaseBook, Renewal

if TYPE_CHECKING:
    from stoker.store.shared import SharedStore
    from stoker.supervise.supervisor import Supervisor

log = logging.getLogger("stoker")


class LeaseKeeper:
    def __init__(self, shared: SharedStore, supervisor: Supervisor, node: str, lease: float) -> None:
        self.shared = shared
        self.supervisor = supervisor
        self.node = node
        self.book = LeaseBook(node, lease)
        self._wake = asyncio.Event()
        self._fence: asyncio.TimerHandle | None = None
        supervisor.use_leases(self.book, self.wake)

    def wake(self) -> None:
        """Renew now (something changed here or on another node)."""
        self._wake.set()

    async def run(self) -> None:
        """Renew until cancelled (the daemon's store leave() gives the leases up after that)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()
                if not await self._renew():  # no singleton: nothing to renew until a reload adds one
                    await self._wake.wait()
                    continue
                wanted, _ = self.supervisor.lease_needs()
                delay = self.book.next_renewal(loop.time(), wanted) - loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, delay))
        finally:
            if self._fence is not None:
                self._fence.cancel()

    async def _renew(self) -> bool:
        """One round trip to the store, then the supervisor acts on it; False if there was
        nothing to ask (no singleton in the config, no lease held)."""
        loop = asyncio.get_running_loop()
        config = self.supervisor.config
        wanted, drop = self.supervisor.lease_needs()
        # the config's singletons, and any lease still held of a program a reload took away
        names = sorted({name for name, p in config.programs.items() if p.singleton} | set(self.book.holders))
        if not names:
            return False
        sent = loop.time()
        try:
            holders, remaining = await self.shared.renew_leases(
                self.node, self.book.lease, names, sorted(wanted), list(drop)
            )
        except StoreError as e:
            if self.book.error is None:
                held = sorted(n for n, h in self.book.holders.items() if h == self.node)
                log.error("singletons: cannot renew the leases%s: %s",
                          f" of {', '.join(held)}" if held else "", e)  # fmt: skip
            self.book.failed(str(e))
        else:
            if self.book.error is not None:
                log.info("singletons: the store answers again")
            before = dict(self.book.holders)
            self.book.renewed(Renewal(sent, holders, remaining), names, loop.time())
            for name in names:
                if holders.get(name) != before.get(name) and holders.get(name) is not None:
                    log.info("singletons: %s runs on %s", name, holders[name])
        self.supervisor.placement_changed()
        self._arm_fence()
        return True

    def _arm_fence(self) -> None:
        """A timer at the fence of the last successful renewal (after a failed one: the same
        time, still ahead or already acted on)."""
        if self._fence is not None:
            self._fence.cancel()
            self._fence = None
        loop = asyncio.get_running_loop()
        times = self.book.fence_times()
        if times is not None and times[0] > loop.time():
            self._fence = loop.call_at(times[0], self._fenced)

    def _fenced(self) -> None:
        self._fence = None
        loop = asyncio.get_running_loop()
        if not self.book.fenced(loop.time()):  # the loop may run a timer a hair early: not yet
            self._fence = loop.call_later(0.001, self._fenced)
            return
        held = sorted(name for name, holder in self.book.holders.items() if holder == self.node)
        log.warning("singletons: the leases of %s were not renewed in time: stopping them here",
                    ", ".join(held))  # fmt: skip
        self.supervisor.placement_changed()
