"""The daemon's recent history at a bounded cost (issue 19): pure, no IO, no clock of its own.

Figures are kept per queue, per program, per schedule and for the daemon itself, each in two
rings of fixed length (docs/http-api.md, History, says why these two):

- FINE: 10-second slots for the last hour (360 slots);
- COARSE: 2-minute slots for the last day (720 slots).

A figure is one of four kinds, which say how the values seen in a slot become its point:
COUNT (their sum: jobs enqueued, restarts), MEAN (CPU), PEAK (the largest: memory, queue
depth, lateness) and QUANTILES (a p50 and a p95 from a histogram of logarithmic buckets, within
QUANTILE_ERROR of the true values: wait and run times). Recording a value is O(1): it goes into
the open slot of each ring; a slot is closed (its point written) when a value or a read of a
later slot comes. A count's slots in which nothing came are 0; another figure's are null.

Memory is bounded whatever the number of jobs: each name (queue, program, schedule) costs a
fixed number of rings, and at most MAX_NAMES names are kept per group (one that has seen
nothing for a day is let go when a new one needs its place; beyond that, new names are not
kept and counted in `omitted`). See `budget()`.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from enum import Enum
from typing import Any


@dataclass(frozen=True)
class Resolution:
    step: int  # seconds per slot
    slots: int  # slots kept


FINE = Resolution(10, 360)
COARSE = Resolution(120, 720)
TIERS = (FINE, COARSE)
#: range → (its resolution, its number of slots)
RANGES: dict[str, tuple[Resolution, int]] = {"1h": (FINE, 360), "6h": (COARSE, 180), "24h": (COARSE, 720)}
MAX_NAMES = 32


class Kind(Enum):
    COUNT = "count"
    MEAN = "mean"
    PEAK = "peak"
    QUANTILES = "quantiles"


#: each group's figures; a QUANTILES figure NAME gives the series NAME_p50 and NAME_p95
GROUPS: dict[str, dict[str, Kind]] = {
    "queues": {
        "enqueued": Kind.COUNT,
        "started": Kind.COUNT,
        "succeeded": Kind.COUNT,
        "failed": Kind.COUNT,
        "depth": Kind.PEAK,
        "wait": Kind.QUANTILES,
        "run": Kind.QUANTILES,
    },
    "programs": {
        "memory": Kind.PEAK,
        "cpu": Kind.MEAN,
        "running": Kind.MEAN,
        "restarts": Kind.COUNT,
        "changes": Kind.COUNT,
    },
    "schedules": {"lateness": Kind.PEAK, "succeeded": Kind.COUNT, "failed": Kind.COUNT},
    "daemon": {"rss": Kind.PEAK, "cpu": Kind.MEAN},
}
DAEMON = "daemon"  # the daemon group's one name

QUANTILES = (0.5, 0.95)
_LOWEST = 0.001  # seconds: the first bucket's upper edge
_FACTOR = 1.2
_LOG_FACTOR = math.log(_FACTOR)
#: an estimated quantile is within this ratio of a value of the right rank (for values ≥ _LOWEST)
QUANTILE_ERROR = math.sqrt(_FACTOR)
NAN = math.nan


def _outputs(kind: Kind) -> int:
    return len(QUANTILES) if kind is Kind.QUANTILES else 1


def series_names(group: str) -> list[str]:
    names = []
    for figure, kind in GROUPS[group].items():
        if kind is Kind.QUANTILES:
            names += [f"{figure}_p{round(q * 100)}" for q in QUANTILES]
        else:
            names.append(figure)
    return names


def budget(max_names: int = MAX_NAMES) -> int:
    """Bytes of samples held at most (8 per slot; the small objects around them aside)."""
    slots = sum(t.slots for t in TIERS)
    outputs = sum(
        _outputs(kind) * (1 if group == DAEMON else max_names)
        for group, figures in GROUPS.items()
        for kind in figures.values()
    )
    return outputs * slots * 8


def bucket(value: float) -> int:
    """The histogram bucket of a non-negative value."""
    if value <= _LOWEST:
        return 0
    return 1 + int(math.log(value / _LOWEST) / _LOG_FACTOR)


def bucket_value(index: int) -> float:
    """What a bucket stands for: the geometric middle of its edges."""
    if index == 0:
        return _LOWEST
    return _LOWEST * _FACTOR ** (index - 0.5)


def quantile(counts: dict[int, int], q: float) -> float:
    """The q-quantile of a histogram (NaN if empty): the value of the bucket that holds the
    value of rank ceil(q·n) (1-based)."""
    n = sum(counts.values())
    if n == 0:
        return NAN
    rank = max(1, math.ceil(q * n))
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return bucket_value(index)
    raise AssertionError("unreachable")


class _Acc:
    """What came into one open slot."""

    __slots__ = ("counts", "kind", "n", "peak", "total")

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.n = 0
        self.peak = NAN
        self.counts: dict[int, int] = {}

    def add(self, value: float) -> None:
        kind = self.kind
        if kind is Kind.COUNT:
            self.total += value
        elif kind is Kind.PEAK:
            if not value <= self.peak:  # (NaN compares false: the first value)
                self.peak = value
        elif kind is Kind.MEAN:
            self.total += value
            self.n += 1
        else:
            index = bucket(value)
            self.counts[index] = self.counts.get(index, 0) + 1

    def points(self) -> tuple[float, ...]:
        kind = self.kind
        if kind is Kind.COUNT:
            return (self.total,)
        if kind is Kind.PEAK:
            return (self.peak,)
        if kind is Kind.MEAN:
            return (self.total / self.n if self.n else NAN,)
        return tuple(quantile(self.counts, q) for q in QUANTILES)


def _empty(kind: Kind) -> tuple[float, ...]:
    return (0.0,) if kind is Kind.COUNT else (NAN,) * _outputs(kind)


class _Tier:
    """One figure at one resolution: its rings (one per output) and its open slot."""

    __slots__ = ("acc", "kind", "res", "rings", "slot")

    def __init__(self, res: Resolution, kind: Kind, since: int, now: int) -> None:
        self.res, self.kind = res, kind
        self.rings = [array("d", [NAN]) * res.slots for _ in range(_outputs(kind))]
        self.acc = _Acc(kind)
        # slots from `since` (when the history began) to now are the figure's own: 0 for a count
        self.slot = max(since, now - res.slots + 1)
        self._fill(range(self.slot, now))
        self.slot = now

    def _fill(self, slots: range) -> None:
        empty = _empty(self.kind)
        for slot in slots:
            for ring, value in zip(self.rings, empty, strict=True):
                ring[slot % self.res.slots] = value

    def roll(self, slot: int) -> None:
        """Close the open slot if `slot` is later (a clock that went back stays in it)."""
        if slot <= self.slot:
            return
        for ring, value in zip(self.rings, self.acc.points(), strict=True):
            ring[self.slot % self.res.slots] = value
        self._fill(range(max(self.slot + 1, slot - self.res.slots + 1), slot))
        self.slot = slot
        self.acc.reset()

    def window(self, last: int, n: int) -> list[list[float]]:
        """The points of slots last-n+1 … last (n ≤ slots), per output: the open one as far as
        it has come."""
        self.roll(last)
        out: list[list[float]] = [[] for _ in self.rings]
        open_points = self.acc.points()
        for slot in range(last - n + 1, last + 1):
            for i, ring in enumerate(self.rings):
                out[i].append(open_points[i] if slot == self.slot else ring[slot % self.res.slots])
        return out


class _Figures:
    """One name's figures (a queue's, say) at both resolutions."""

    __slots__ = ("seen", "tiers")

    def __init__(self, group: str, since: float, now: float) -> None:
        self.tiers = {
            figure: [_Tier(res, kind, int(since // res.step), int(now // res.step)) for res in TIERS]
            for figure, kind in GROUPS[group].items()
        }
        self.seen = now

    def add(self, figure: str, value: float, now: float) -> None:
        self.seen = now
        for tier in self.tiers[figure]:
            tier.roll(int(now // tier.res.step))
            tier.acc.add(value)


class History:
    def __init__(self, now: float, max_names: int = MAX_NAMES) -> None:
        self.started = now
        self.max_names = max_names
        self.groups: dict[str, dict[str, _Figures]] = {group: {} for group in GROUPS}
        self.omitted: dict[str, set[str]] = {group: set() for group in GROUPS}

    def add(self, group: str, name: str, figure: str, value: float, now: float) -> None:
        """Record `value` of `figure` for `name` of `group` at time `now` (epoch seconds)."""
        figures = self.groups[group].get(name)
        if figures is None:
            figures = self._new(group, name, now)
            if figures is None:
                return
        figures.add(figure, value, now)

    def _new(self, group: str, name: str, now: float) -> _Figures | None:
        names = self.groups[group]
        if len(names) >= self.max_names:
            stale = min(names, key=lambda n: names[n].seen)
            if names[stale].seen > now - RANGES["24h"][0].step * RANGES["24h"][1]:
                if len(self.omitted[group]) < self.max_names:  # (a bounded set too)
                    self.omitted[group].add(name)
                return None
            del names[stale]
        self.omitted[group].discard(name)
        figures = names[name] = _Figures(group, self.started, now)
        return figures

    def window(self, range_: str, now: float, names: dict[str, set[str]] | None = None) -> dict[str, Any]:
        """The points of `range_` (a key of RANGES) up to `now`: `times` (each slot's start, in
        epoch seconds) and, per group and name, its series (NaN where there is no point);
        `names`: only these names of these groups (others in full)."""
        res, n = RANGES[range_]
        last = int(now // res.step)
        out: dict[str, Any] = {
            "range": range_,
            "step": res.step,
            "times": [slot * res.step for slot in range(last - n + 1, last + 1)],
            "omitted": sum(len(o) for o in self.omitted.values()),
        }
        tier_index = TIERS.index(res)
        for group, figures_by_name in self.groups.items():
            wanted = None if names is None else names.get(group)
            series: dict[str, dict[str, list[float]]] = {}
            for name, figures in sorted(figures_by_name.items()):
                if wanted is not None and name not in wanted:
                    continue
                one: dict[str, list[float]] = {}
                for figure, tiers in figures.tiers.items():
                    points = tiers[tier_index].window(last, n)
                    if len(points) == 1:
                        one[figure] = points[0]
                    else:
                        for q, p in zip(QUANTILES, points, strict=True):
                            one[f"{figure}_p{round(q * 100)}"] = p
                series[name] = one
            out[group] = series
        return out
