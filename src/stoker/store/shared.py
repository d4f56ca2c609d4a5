"""What a store that several daemons share (PostgreSQL) offers beyond the Store protocol:
claims that skip the rows other nodes are claiming, node heartbeats, the singleton leases and
the cluster view's rows. It sits beside the Store protocol (base.py) because these are the
store's capabilities; daemon/cluster.py and daemon/singletons.py drive them, and the
dispatcher claims through them when the daemon hands it a shared store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from stoker.store.base import AttemptEnd, Job, NodeRecord


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

    async def claim(self, queue: str, limit: int, now: float, node: str) -> list[Job]:
        """Start up to `limit` due jobs of `queue` on `node` at once; rows another node is
        claiming at that moment are skipped, not waited for."""
        ...

    def finish_and_claim(
        self, job: Job, end: AttemptEnd, queue: str, limit: int, now: float, node: str
    ) -> asyncio.Future[tuple[Job | None, list[Job]]]:
        """`Store.finish(job, end)` and `claim(queue, limit, now, node)` at once."""
        ...

    async def join(self, node: str, timeout: float) -> None: ...

    async def heartbeat(self, node: str, timeout: float) -> list[str]:
        """Also sets `clock_reading`: the server's clock, read within the heartbeat's round
        trip, between two readings of this machine's monotonic clock (stoker/skew.py)."""
        ...

    clock_reading: tuple[float, float, float] | None

    async def leave(self, node: str) -> None: ...

    async def publish(self, node: str, programs: bytes, version: str) -> None: ...

    async def nodes(self, forget: float) -> list[NodeRecord]: ...

    async def renew_leases(
        self, node: str, lease: float, names: Sequence[str], want: Sequence[str], drop: Sequence[str]
    ) -> tuple[dict[str, str], dict[str, float]]: ...
