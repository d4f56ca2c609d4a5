"""State changes, published to whoever listens (`/api/v1/events`, `stoker job --wait`).

Publishing never blocks and never grows without bound. An in-process subscriber (a waiter, the
notifier) has a queue of BUFFER events; one that falls behind loses events and is told so with
a `lagged` event (it should re-read what it shows), instead of slowing the daemon down.

A subscriber with a byte `budget` (an API listener: what it holds is what it has yet to send,
and a client that stops reading would make it hold everything) is bounded by the bytes of its
encoded events instead (issue 24): once what it has not taken passes its budget it is dropped.
Its queue is emptied and it gets one last `lagged` event, after which its iteration ends (a
client reconnects and re-reads).

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
#: What an API listener may lag, in bytes of its encoded events, before it is dropped.
BUDGET = 4 * 1024 * 1024
#: A budgeted listener's batch ends once past this many bytes (the rest waits for the next).
BATCH = 64 * 1024


Encode = Callable[[dict[str, Any]], Any]


class Subscription:
    def __init__(
        self,
        where: Callable[[dict[str, Any]], bool] | None = None,
        encode: Encode | None = None,
        budget: int | None = None,
    ) -> None:
        if budget is not None and encode is None:
            raise ValueError("a byte budget needs an encode function (its bytes are what it counts)")
        # events, or what `encode` made of them; bounded by BUFFER, or (with a budget) by `held`
        self.queue: asyncio.Queue[Any] = asyncio.Queue(BUFFER if budget is None else 0)
        self.lagged = 0
        self.where = where
        self.encode = encode
        self.budget = budget
        self.held = 0  # bytes of the encoded events queued (with a budget)
        self.dropped = False  # over its budget: all that is left for it is the last `lagged`

    def offer(self, event: dict[str, Any], encoded: dict[Encode, Any] | None = None) -> None:
        """Queue `event` (`encoded`: what each encode function made of it so far, shared by the
        subscribers of one publish)."""
        if self.dropped or (self.where is not None and not self.where(event)):
            return
        item: Any = event
        if self.encode is not None:
            if encoded is None:
                encoded = {}
            item = encoded.get(self.encode)
            if item is None:
                item = encoded[self.encode] = self.encode(event)
        if self.budget is not None:
            if self.held + len(item) > self.budget:
                self._drop()
                return
            self.held += len(item)
            self.queue.put_nowait(item)
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.lagged += 1

    def _drop(self) -> None:
        """Over budget: let go of everything held; what is left to say is that it lagged."""
        assert self.encode is not None
        missed = self.queue.qsize() + 1
        while not self.queue.empty():
            self.queue.get_nowait()
        self.held = 0
        self.dropped = True
        self.queue.put_nowait(self.encode({"type": "lagged", "missed": missed}))

    def _taken(self, item: Any) -> None:
        if self.budget is not None and not self.dropped:
            self.held -= len(item)

    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            event = await self.queue.get()
            if self.dropped:  # its last word (the queue held nothing else)
                yield event
                return
            self._taken(event)
            if self.lagged:
                yield self._missed()
            yield event

    async def batches(self) -> AsyncIterator[list[Any]]:
        """What has come since the last batch, oldest first, as soon as there is something (a
        `lagged` event first when some were lost: encoded, if this subscription encodes). A
        dropped subscription's last batch is its `lagged` event; then the iteration ends."""
        while True:
            batch = [await self.queue.get()]
            if self.dropped:  # (a drop empties the queue: the batch is its last word alone)
                yield batch
                return
            self._taken(batch[0])
            size = len(batch[0]) if self.budget is not None else 0
            # With a budget, a batch stops at BATCH bytes: a batch is joined into one write, a
            # copy per listener, and a listener that stopped reading holds one in its transport.
            while not self.queue.empty() and size < BATCH:
                item = self.queue.get_nowait()
                self._taken(item)
                if self.budget is not None:
                    size += len(item)
                batch.append(item)
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
        self,
        where: Callable[[dict[str, Any]], bool] | None = None,
        encode: Encode | None = None,
        *,
        budget: int | None = None,
    ) -> Iterator[Subscription]:
        """Events from now on (only those `where` accepts: a waiter on one job is not woken for
        every other job's), each as `encode(event)` if given (a module-level function: the
        subscribers that share it share each event's encoding). With a `budget` (bytes of
        the encoded events), it is dropped when it lags by more (see the module's docstring)."""
        subscription = Subscription(where, encode, budget)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
