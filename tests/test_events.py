"""The event bus's fan-out: one encoding per event for all who share it, batches of what piled
up, and the `lagged` notice when a slow subscriber lost some (events.py; issue 24, finding 8);
and its bounds: by count in-process, by bytes for API listeners (issue 24, finding 2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker import events
from stoker.events import BUFFER, EventBus, Subscription

calls: list[dict[str, Any]] = []


def encode(event: dict[str, Any]) -> bytes:
    calls.append(event)
    return json.dumps(event).encode() + b"\n"


def test_an_event_is_encoded_once_for_all_its_listeners() -> None:
    async def main() -> None:
        bus = EventBus()
        calls.clear()
        with contextlib.ExitStack() as stack:
            a = stack.enter_context(bus.subscribe(encode=encode))
            b = stack.enter_context(bus.subscribe(encode=encode))
            evens = stack.enter_context(bus.subscribe(lambda e: e["n"] % 2 == 0, encode=encode))
            raw = stack.enter_context(bus.subscribe())
            others = [stack.enter_context(bus.subscribe(encode=encode)) for _ in range(1000)]
            for n in range(10):
                bus.publish({"n": n})
            assert len(calls) == 10  # not 10 × 1,003
            wanted = [encode({"n": n}) for n in range(10)]
            assert await anext(a.batches()) == wanted
            assert await anext(b.batches()) == wanted
            assert await anext(evens.batches()) == wanted[::2]
            assert await anext(raw.batches()) == [{"n": n} for n in range(10)]  # as published
            assert all(s.queue.qsize() == 10 for s in others)

    asyncio.run(main())


@given(st.lists(st.integers(0, 2 * events.BUFFER), min_size=1, max_size=4))
def test_batches_lose_nothing_but_what_overflowed_and_say_so(bursts: list[int]) -> None:
    """Each burst is published while the subscriber is not reading; each batch then holds all
    that the buffer kept, in order, after a `lagged` event counting the rest."""

    async def main() -> None:
        bus = EventBus()
        n = 0
        with bus.subscribe(encode=encode) as subscription:
            batches = subscription.batches()
            for burst in bursts:
                first = n
                for _ in range(burst):
                    bus.publish({"n": n})
                    n += 1
                if burst == 0:
                    continue
                batch = await anext(batches)
                kept = min(burst, events.BUFFER)
                expected = [encode({"n": i}) for i in range(first, first + kept)]
                if burst > kept:
                    expected.insert(0, encode({"type": "lagged", "missed": burst - kept}))
                assert batch == expected
                assert subscription.queue.empty() and subscription.lagged == 0

    asyncio.run(main())


class Blob:
    """An encoded event whose length is its "size" (what a byte budget counts)."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event

    def __len__(self) -> int:
        return int(self.event.get("size", 1))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Blob) and other.event == self.event

    __hash__ = None  # type: ignore[assignment]


def taken(sub: Subscription) -> list[dict[str, Any]]:
    """What the subscriber's iteration yields now (as events), without waiting for more."""

    async def run() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        iterator = sub.__aiter__()
        while True:
            try:
                item = await asyncio.wait_for(anext(iterator), 0.01)
            except (TimeoutError, StopAsyncIteration):
                return out
            out.append(item.event if isinstance(item, Blob) else item)

    return asyncio.run(run())


def test_an_in_process_subscriber_loses_events_and_is_told_how_many() -> None:
    bus = EventBus()
    with bus.subscribe() as sub:
        for n in range(BUFFER + 5):
            bus.publish({"n": n})
        got = taken(sub)
    assert got[0] == {"type": "lagged", "missed": 5}  # said as soon as it takes the next
    assert got[1:] == [{"n": n} for n in range(BUFFER)]  # and it goes on


def test_a_listener_over_its_byte_budget_is_dropped_with_a_last_lagged_event() -> None:
    bus = EventBus()
    with bus.subscribe(encode=Blob, budget=100) as sub:
        for n in range(3):
            bus.publish({"n": n, "size": 30})
        assert sub.held == 90
        bus.publish({"n": 3, "size": 30})  # 120 > 100: dropped, everything it held let go
        assert sub.dropped and sub.held == 0 and sub.queue.qsize() == 1
        bus.publish({"n": 4, "size": 1})  # not even a small one afterwards
        assert taken(sub) == [{"type": "lagged", "missed": 4}]  # and then its iteration ends


def test_a_dropped_listener_read_in_batches_ends_with_its_lagged_batch() -> None:
    async def main() -> list[list[Any]]:
        bus = EventBus()
        with bus.subscribe(encode=Blob, budget=50) as sub:
            batches = sub.batches()
            bus.publish({"n": 0, "size": 30})
            first = await anext(batches)
            bus.publish({"n": 1, "size": 30})
            bus.publish({"n": 2, "size": 30})  # 60 > 50
            rest = [batch async for batch in batches]
        return [first, *rest]

    assert asyncio.run(main()) == [
        [Blob({"n": 0, "size": 30})],
        [Blob({"type": "lagged", "missed": 2})],
    ]


def test_a_listener_that_keeps_up_is_never_dropped() -> None:
    bus = EventBus()

    async def run() -> int:
        got = 0
        with bus.subscribe(encode=Blob, budget=100) as sub:
            iterator = sub.__aiter__()
            for n in range(50):  # 1,500 bytes in all, never more than 30 held
                bus.publish({"n": n, "size": 30})
                item = await anext(iterator)
                assert item.event["n"] == n
                got += 1
            assert sub.held == 0 and not sub.dropped
        return got

    assert asyncio.run(run()) == 50


def test_a_budget_needs_an_encoding() -> None:
    with pytest.raises(ValueError):
        Subscription(budget=10)


@given(
    steps=st.lists(st.one_of(st.integers(1, 60), st.just(-1)), max_size=60),
    budget=st.integers(1, 150),
)
def test_what_a_listener_holds_stays_within_its_budget(steps: list[int], budget: int) -> None:
    """publish (a size) or take (-1), in any order: it holds at most its budget, gets what was
    published in order until the first publish that would pass the budget, then only `lagged`."""

    async def run() -> None:
        bus = EventBus()
        with bus.subscribe(encode=Blob, budget=budget) as sub:
            iterator = sub.__aiter__()
            queued: list[int] = []  # sizes a model of it holds
            n = 0
            dropped = False
            missed = 0
            for step in steps:
                if step >= 0:
                    bus.publish({"n": n, "size": step})
                    if not dropped and sum(queued) + step > budget:
                        dropped, missed = True, len(queued) + 1
                        queued = []
                    elif not dropped:
                        queued.append(step)
                    n += 1
                elif queued or dropped:
                    item = await asyncio.wait_for(anext(iterator), 1)
                    if dropped:
                        assert item == Blob({"type": "lagged", "missed": missed})
                        with pytest.raises(StopAsyncIteration):
                            await anext(iterator)
                        return
                    assert len(item) == queued.pop(0)
                assert sub.held == sum(queued) <= budget
                assert sub.dropped == dropped

    asyncio.run(run())


def test_a_budgeted_listeners_batches_stop_past_batch_bytes() -> None:
    async def main() -> list[int]:
        bus = EventBus()
        with bus.subscribe(encode=Blob, budget=events.BUDGET) as sub:
            for n in range(10):
                bus.publish({"n": n, "size": 30 * 1024})
            sizes = []
            batches = sub.batches()
            while sub.queue.qsize():
                sizes.append(len(await anext(batches)))
            assert sub.held == 0
        return sizes

    assert events.BATCH == 64 * 1024
    assert asyncio.run(main()) == [3, 3, 3, 1]  # each batch ends once past 64 KB
