"""The event bus's fan-out: one encoding per event for all who share it, batches of what piled
up, and the `lagged` notice when a slow subscriber lost some (events.py; issue 24, finding 8)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stoker import events
from stoker.events import EventBus

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
