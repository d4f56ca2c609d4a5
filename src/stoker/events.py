"""State changes, published to whoever listens (`/api/v1/events`, `stoker job --wait`).

Publishing never blocks and never grows without bound: each subscriber has a bounded queue, and
one that falls behind loses events and is told so with a `lagged` event (it should re-read what
it shows), instead of slowing the daemon down.

A thousand listeners cost what one does, or nearly (issue 24): an event is encoded once for all
the subscribers that share an `encode` function (not once per listener), and a listener takes
what has piled up in one go (`batches`), one write for many events instead of one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

BUFFER = 1000


Encode = Callable[[dict[str, Any]], Any]


class Subscription:
    def __init__(
        self, where: Callable[[dict[str, Any]], bool] | None = None, encode: Encode | None = None
    ) -> None:
        # events, or what `encode` made of them
        self.queue: asyncio.Queue[Any] = asyncio.Queue(BUFFER)
        self.lagged = 0
        self.where = where
        self.encode = encode

    def offer(self, event: dict[str, Any], encoded: dict[Encode, Any] | None = None) -> None:
        """Queue `event` (`encoded`: what each encode function made of it so far, shared by the
        subscribers of one publish)."""
        if self.where is not None and not self.where(event):
            return
        item: Any = event
        if self.encode is not None:
            if encoded is None:
                encoded = {}
            item = encoded.get(self.encode)
            if item is None:
                item = encoded[self.encode] = self.encode(event)
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.lagged += 1

    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            event = await self.queue.get()
            if self.lagged:
                yield self._missed()
            yield event

    async def batches(self) -> AsyncIterator[list[Any]]:
        """What has come since the last batch, oldest first, as soon as there is something (a
        `lagged` event first when some were lost: encoded, if this subscription encodes)."""
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            if self.lagged:
                batch.insert(0, self._missed())
            yield batch

    def _missed(self) -> Any:
        """The `lagged` event for what was lost since it was last said (encoded, if this
        subscription encodes)."""
        lagged = {"type": "lagged", "missed": self.lagged}
        self.lagged = 0
        return lagged if self.encode is None else self.encode(lagged)


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def publish(self, event: dict[str, Any]) -> None:
        for listener in self._listeners:
            listener(event)
        encoded: dict[Encode, Any] = {}
        for subscriber in self._subscribers:
            subscriber.offer(event, encoded)

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call `listener(event)` with every event, synchronously, for the daemon's life (for
        in-process observers such as /metrics: they must be quick and must not raise)."""
        self._listeners.append(listener)

    @contextmanager
    def subscribe(
        self, where: Callable[[dict[str, Any]], bool] | None = None, encode: Encode | None = None
    ) -> Iterator[Subscription]:
        """Events from now on (only those `where` accepts: a waiter on one job is not woken for
        every other job's), each as `encode(event)` if given (a module-level function: the
        subscribers that share it share each event's encoding)."""
        subscription = Subscription(where, encode)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
