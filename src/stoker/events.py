"""State changes, published to whoever listens (`/api/v1/events`, `stoker job --wait`).

Publishing never blocks and never grows without bound: each subscriber has a bounded queue, and
one that falls behind loses events and is told so with a `lagged` event (it should re-read what
it shows), instead of slowing the daemon down.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

BUFFER = 1000


class Subscription:
    def __init__(self, where: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(BUFFER)
        self.lagged = 0
        self.where = where

    def offer(self, event: dict[str, Any]) -> None:
        if self.where is not None and not self.where(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged += 1

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            event = await self.queue.get()
            if self.lagged:
                yield {"type": "lagged", "missed": self.lagged}
                self.lagged = 0
            yield event


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def publish(self, event: dict[str, Any]) -> None:
        for listener in self._listeners:
            listener(event)
        for subscriber in self._subscribers:
            subscriber.offer(event)

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call `listener(event)` with every event, synchronously, for the daemon's life (for
        in-process observers such as /metrics: they must be quick and must not raise)."""
        self._listeners.append(listener)

    @contextmanager
    def subscribe(self, where: Callable[[dict[str, Any]], bool] | None = None) -> Iterator[Subscription]:
        """Events from now on (only those `where` accepts: a waiter on one job is not woken for
        every other job's)."""
        subscription = Subscription(where)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
