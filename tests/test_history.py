"""The pure history (stoker.history): slots, kinds, quantiles, the caps, against a naive model."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from stoker.history import (
    COARSE,
    FINE,
    GROUPS,
    QUANTILE_ERROR,
    RANGES,
    History,
    bucket,
    bucket_value,
    budget,
    quantile,
    series_names,
)

T0 = 1_700_000_000.0  # a multiple of 10 and of 120


def nan_to_none(values: list[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


def test_a_count_lands_in_its_slot_and_empty_slots_since_the_start_are_zero() -> None:
    history = History(T0)
    history.add("queues", "mail", "succeeded", 1, T0 + 25)
    history.add("queues", "mail", "succeeded", 1, T0 + 29)
    history.add("queues", "mail", "succeeded", 1, T0 + 31)
    out = history.window("1h", T0 + 45)
    assert out["step"] == 10 and len(out["times"]) == 360
    assert out["times"][-1] == T0 + 40
    points = nan_to_none(out["queues"]["mail"]["succeeded"])
    # slots T0 … T0+40: 0, 0, 2, 1, 0 (the open one); before the history began: nothing
    assert points[-5:] == [0, 0, 2, 1, 0]
    assert points[-6] is None
    assert nan_to_none(out["queues"]["mail"]["depth"])[-5:] == [None] * 5


def test_gauges_peak_and_mean_and_the_coarse_ranges() -> None:
    history = History(T0)
    for t, memory, cpu in [(1, 100, 10), (5, 300, 30), (12, 200, 50)]:
        history.add("programs", "web", "memory", memory, T0 + t)
        history.add("programs", "web", "cpu", cpu, T0 + t)
    fine = history.window("1h", T0 + 15)["programs"]["web"]
    assert nan_to_none(fine["memory"])[-2:] == [300, 200]
    assert nan_to_none(fine["cpu"])[-2:] == [20, 50]
    for range_, n in [("6h", 180), ("24h", 720)]:
        coarse = history.window(range_, T0 + 15)
        assert coarse["step"] == 120 and len(coarse["times"]) == n
        assert nan_to_none(coarse["programs"]["web"]["memory"])[-1] == 300
        assert nan_to_none(coarse["programs"]["web"]["cpu"])[-1] == 30


def test_a_gap_longer_than_the_ring_forgets_everything_before_it() -> None:
    history = History(T0)
    history.add("queues", "q", "enqueued", 5, T0)
    later = T0 + 2 * 3600
    history.add("queues", "q", "enqueued", 1, later)
    fine = history.window("1h", later)["queues"]["q"]["enqueued"]
    assert fine == [0.0] * 359 + [1.0]
    coarse = history.window("24h", later)["queues"]["q"]["enqueued"]
    assert sum(v for v in coarse if not math.isnan(v)) == 6


def test_a_clock_that_goes_back_counts_in_the_open_slot() -> None:
    history = History(T0)
    history.add("queues", "q", "started", 1, T0 + 50)
    history.add("queues", "q", "started", 1, T0 + 20)
    assert history.window("1h", T0 + 50)["queues"]["q"]["started"][-1] == 2


def test_quantiles_of_wait_and_run_times() -> None:
    history = History(T0)
    for i in range(1, 101):
        history.add("queues", "q", "wait", i / 100, T0 + 1)
    q = history.window("1h", T0 + 5)["queues"]["q"]
    assert 0.5 / QUANTILE_ERROR <= q["wait_p50"][-1] <= 0.5 * QUANTILE_ERROR
    assert 0.95 / QUANTILE_ERROR <= q["wait_p95"][-1] <= 0.95 * QUANTILE_ERROR
    assert math.isnan(q["run_p50"][-1])


@given(
    st.lists(st.floats(min_value=0.001, max_value=1e6), min_size=1, max_size=200),
    st.sampled_from([0.5, 0.95]),
)
def test_a_quantile_is_within_its_error_of_the_value_of_its_rank(values: list[float], q: float) -> None:
    counts: dict[int, int] = {}
    for v in values:
        counts[bucket(v)] = counts.get(bucket(v), 0) + 1
    true = sorted(values)[max(1, math.ceil(q * len(values))) - 1]
    estimate = quantile(counts, q)
    slack = 1.000001
    assert true / QUANTILE_ERROR / slack <= estimate <= true * QUANTILE_ERROR * slack


def test_buckets_are_ordered() -> None:
    edges = [bucket(0.0), bucket(0.001), bucket(0.0011), bucket(1.0), bucket(3600.0)]
    assert edges == sorted(edges) and edges[0] == 0
    assert [bucket_value(i) for i in range(5)] == sorted(bucket_value(i) for i in range(5))


events = st.lists(
    st.tuples(st.floats(min_value=0, max_value=3 * 86400), st.integers(min_value=1, max_value=5)),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(events, st.floats(min_value=0, max_value=3600), st.sampled_from(sorted(RANGES)))
def test_counts_match_a_naive_model(steps: list[tuple[float, int]], after: float, range_: str) -> None:
    """Events at increasing times: each range's points are the sums of its slots' events (0 for
    a slot with none since the history began, nothing before it)."""
    history = History(T0)
    t = T0
    seen: list[tuple[float, int]] = []
    for delta, n in steps:
        t += delta
        history.add("queues", "q", "enqueued", n, t)
        seen.append((t, n))
    now = t + after
    if not seen:
        history.add("queues", "q", "enqueued", 0, now)
    out = history.window(range_, now)
    res, n_slots = RANGES[range_]
    first_series_slot = int(T0 // res.step)
    expected: list[float | None] = []
    for start in out["times"]:
        slot = int(start // res.step)
        if slot < first_series_slot:
            expected.append(None)
        else:
            expected.append(float(sum(k for when, k in seen if int(when // res.step) == slot)))
    assert nan_to_none(out["queues"]["q"]["enqueued"]) == expected
    assert len(out["times"]) == n_slots


def test_names_are_capped_and_a_stale_one_gives_way() -> None:
    history = History(T0, max_names=2)
    history.add("programs", "a", "restarts", 1, T0)
    history.add("programs", "b", "restarts", 1, T0 + 1)
    history.add("programs", "c", "restarts", 1, T0 + 2)
    out = history.window("1h", T0 + 3)
    assert sorted(out["programs"]) == ["a", "b"] and out["omitted"] == 1
    day_later = T0 + 86400 + 200
    history.add("programs", "b", "restarts", 1, day_later)
    history.add("programs", "c", "restarts", 1, day_later)  # "a" has seen nothing for a day
    out = history.window("1h", day_later)
    assert sorted(out["programs"]) == ["b", "c"] and out["omitted"] == 0


def test_only_the_names_asked_for() -> None:
    history = History(T0)
    for name in ["a", "b"]:
        history.add("queues", name, "enqueued", 1, T0)
    out = history.window("1h", T0, {"queues": {"b"}})
    assert list(out["queues"]) == ["b"]


def test_the_budget_is_fixed() -> None:
    outputs = sum(len(series_names(g)) * (1 if g == "daemon" else 32) for g in GROUPS)
    assert budget() == outputs * (FINE.slots + COARSE.slots) * 8
    assert budget() < 8 * 1024 * 1024


def test_memory_is_taken_up_front_and_does_not_grow_with_the_jobs() -> None:
    """Every name at the cap, every figure touched: about budget() bytes; then a day of jobs
    (a value every second for every figure) adds nothing that stays."""
    import gc
    import tracemalloc

    tracemalloc.start()
    try:
        base = tracemalloc.take_snapshot()
        history = History(T0)
        for group, figures in GROUPS.items():
            for i in range(1 if group == "daemon" else 32):
                for figure in figures:
                    history.add(group, "daemon" if group == "daemon" else f"n{i}", figure, 1.0, T0)
        gc.collect()
        full = tracemalloc.get_traced_memory()[0]
        for second in range(0, 86400, 30):  # (every 30 s: the coarse slots all closed; quick)
            for figure in GROUPS["queues"]:
                history.add("queues", "n0", figure, second % 7 + 0.5, T0 + second)
        gc.collect()
        later = tracemalloc.get_traced_memory()[0]
        del base
    finally:
        tracemalloc.stop()
    assert budget() <= full <= budget() * 1.25
    assert later - full < 64 * 1024
