"""State changes, published to whoever listens (`/api/v1/events`, `stoker job --wait`).

Publishing never blocks and never grows without bound. An in-process subscriber (a waiter, the
notifier) has a queue of BUFFER events; one that falls behind loses events and is told so with
a `lagged` event (it should re-read what it shows). A subscriber with a byte `budget` (an API
listener: what it holds is what it has yet to send, and a client that stops reading would
make it hold everything) is measured in bytes instead: once the events it has not taken pass
its budget it is dropped: its queue is emptied and it gets one last `lagged` event, after which
its iteration ends (a client reconnects and re-reads).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

BUFFER = 1000
#: What an API listener may lag, in bytes of its events as sent, before it is dropped.
BUDGET = 4 * 1024 * 1024

Event = dict[str, Any]
Measure = Callable[[Event], int]


class Subscription:
    def __init__(
        self,
        where: Callable[[Event], bool] | None = None,
        budget: int | None = None,
        measure: Measure | None = None,
    ) -> None:
        if (budget is None) != (measure is None):
            raise ValueError("a budget needs a measure, and a measure a budget")
        # Bounded by BUFFER, or (with a budget) by `held`, the bytes of what it holds.
        self.queue: asyncio.Queue[Event] = asyncio.Queue(BUFFER if budget is None else 0)
        self.lagged = 0
        self.where = where
        self.budget = budget
        self.measure = measure
        self.held = 0
        self.dropped = False
        self._sizes: deque[int] = deque()  # of the queued events, in order

    def offer(self, event: Event, size: Callable[[Measure], int] | None = None) -> None:
        """Queue `event` if wanted. `size(measure)` gives its size by this subscriber's measure
        (the bus computes it once per publish for all who measure alike)."""
        if self.dropped or (self.where is not None and not self.where(event)):
            return
        if self.budget is None or self.measure is None:
            try:
                self.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.lagged += 1
            return
        cost = size(self.measure) if size is not None else self.measure(event)
        if self.held + cost > self.budget:
            self._drop()
            return
        self.held += cost
        self._sizes.append(cost)
        self.queue.put_nowait(event)

    def _drop(self) -> None:
        """Over budget: let go of everything held; what is left to say is that it lagged."""
        missed = self.queue.qsize() + 1
        while not self.queue.empty():
            self.queue.get_nowait()
        self._sizes.clear()
        self.held = 0
        self.dropped = True
        self.queue.put_nowait({"type": "lagged", "missed": missed})

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self.queue.get()
            if self._sizes:
                self.held -= self._sizes.popleft()
            elif self.dropped:  # the last word of a dropped subscriber
                yield event
                return
            if self.lagged:
                yield {"type": "lagged", "missed": self.lagged}
                self.lagged = 0
            yield event


class _Sizes:
    """An event's size by each measure asked for, each computed once (one publish, many
    listeners that measure alike)."""

    def __init__(self, event: Event) -> None:
        self.event = event
        self.known: dict[Measure, int] = {}

    def __call__(self, measure: Measure) -> int:
        size = self.known.get(measure)
        if size is None:
            size = self.known[measure] = measure(self.event)
        return size


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []

    def publish(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)
        sizes = _Sizes(event)
        for subscriber in self._subscribers:
            subscriber.offer(event, sizes)

    def listen(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` with every event, synchronously, for the daemon's life (for
        in-process observers such as /metrics: they must be quick and must not raise)."""
        self._listeners.append(listener)

    @contextmanager
    def subscribe(
        self,
        where: Callable[[Event], bool] | None = None,
        *,
        budget: int | None = None,
        measure: Measure | None = None,
    ) -> Iterator[Subscription]:
        """Events from now on (only those `where` accepts: a waiter on one job is not woken for
        every other job's). With a `budget`, bytes by `measure`, the subscriber is dropped
        when it lags more than that (see the module's docstring)."""
        subscription = Subscription(where, budget, measure)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
