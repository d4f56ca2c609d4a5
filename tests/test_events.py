"""The event bus: bounded subscribers, by count (in-process) or by bytes (API listeners)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker.events import BUFFER, EventBus, Subscription


def size_of(event: dict[str, Any]) -> int:
    return int(event["size"])


def taken(sub: Subscription) -> list[dict[str, Any]]:
    """What the subscriber's iteration yields now, without waiting for more."""

    async def run() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        iterator = sub.__aiter__()
        while True:
            try:
                out.append(await asyncio.wait_for(anext(iterator), 0.01))
            except (TimeoutError, StopAsyncIteration):
                return out

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
    with bus.subscribe(budget=100, measure=size_of) as sub:
        for n in range(3):
            bus.publish({"n": n, "size": 30})
        assert sub.held == 90
        bus.publish({"n": 3, "size": 30})  # 120 > 100: dropped, everything it held let go
        assert sub.dropped and sub.held == 0 and sub.queue.qsize() == 1
        bus.publish({"n": 4, "size": 1})  # not even a small one afterwards
        assert taken(sub) == [{"type": "lagged", "missed": 4}]  # and then its iteration ends


def test_a_listener_that_keeps_up_is_never_dropped() -> None:
    bus = EventBus()

    async def run() -> int:
        got = 0
        with bus.subscribe(budget=100, measure=size_of) as sub:
            iterator = sub.__aiter__()
            for n in range(50):  # 1,500 bytes in all, never more than 30 held
                bus.publish({"n": n, "size": 30})
                event = await anext(iterator)
                assert event["n"] == n
                got += 1
            assert sub.held == 0 and not sub.dropped
        return got

    assert asyncio.run(run()) == 50


def test_each_event_is_measured_once_for_all_listeners_that_measure_alike() -> None:
    bus = EventBus()
    calls: list[int] = []

    def measure(event: dict[str, Any]) -> int:
        calls.append(event["n"])
        return 10

    with (
        bus.subscribe(budget=1000, measure=measure),
        bus.subscribe(budget=1000, measure=measure),
        bus.subscribe(where=lambda e: False, budget=1000, measure=measure),
    ):
        bus.publish({"n": 1})
        bus.publish({"n": 2})
    assert calls == [1, 2]


def test_a_budget_and_a_measure_come_together() -> None:
    with pytest.raises(ValueError):
        Subscription(budget=10)
    with pytest.raises(ValueError):
        Subscription(measure=size_of)


@given(
    steps=st.lists(st.one_of(st.integers(0, 60), st.just(-1)), max_size=60),
    budget=st.integers(1, 150),
)
def test_what_a_listener_holds_stays_within_its_budget(steps: list[int], budget: int) -> None:
    """publish (a size) or take (-1), in any order: it holds at most its budget, gets what was
    published in order until the first publish that would pass the budget, then only `lagged`."""

    async def run() -> None:
        bus = EventBus()
        with bus.subscribe(budget=budget, measure=size_of) as sub:
            iterator = sub.__aiter__()
            queued: list[int] = []  # sizes a model of it holds
            n = 0
            dropped = False
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
                    try:
                        event = await asyncio.wait_for(anext(iterator), 1)
                    except StopAsyncIteration:
                        assert dropped
                        return
                    if dropped and not queued:
                        assert event == {"type": "lagged", "missed": missed}
                        with pytest.raises(StopAsyncIteration):
                            await anext(iterator)
                        return
                    assert event["size"] == queued.pop(0)
                assert sub.held == sum(queued) <= budget
                assert sub.dropped == dropped

    asyncio.run(run())
