"""When a schedule fires: `every` slots and cron expressions, as pure arithmetic on time.

Nothing here reads a clock: callers pass the time (Unix seconds) and get the next slot after it.

- `every = "30m"`: slots are the multiples of the interval counted from the Unix epoch, so every
  node agrees on them and a restart does not shift them (`30m` fires at :00 and :30).
- `cron = "0 3 * * *"`: Debian cron's semantics through cronsim, in the schedule's time zone,
  DST included: a fixed-time job whose time is skipped by a spring-forward runs at the first
  minute after the gap, and one whose time repeats in a fall-back runs once; jobs with a
  wildcard or range in the hour field run in both passes of a repeated hour, as cron does.
  The day-of-month / day-of-week OR rule, names (JAN, MON), steps, and L, W and # where
  cronsim has them; the @hourly … @yearly macros are expanded here; `@reboot` fires once
  per daemon start after a machine boot (the daemon decides; it has no slot).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
REBOOT = "@reboot"


class TriggerError(ValueError):
    """A cron expression, interval or zone that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Every:
    """Slots at the multiples of `seconds` since the Unix epoch."""

    seconds: float

    def __post_init__(self) -> None:
        if not self.seconds >= 0.001:
            raise TriggerError(f"an interval must be at least 1ms, not {self.seconds!r}s")

    def next_after(self, t: float) -> float | None:
        # in whole microseconds: float division would put some slots a hair early or late
        step = round(self.seconds * 1_000_000)
        now = int(t * 1_000_000)
        return (now // step + 1) * step / 1_000_000

    def latest_at_or_before(self, t: float) -> float | None:
        step = round(self.seconds * 1_000_000)
        return (int(t * 1_000_000) // step) * step / 1_000_000

    def describe(self) -> str:
        from stoker.durations import format_duration

        return f"every {format_duration(self.seconds)}"


@dataclass(frozen=True, slots=True)
class Cron:
    """A cron expression in a time zone (its fields as written; macros expanded)."""

    expression: str
    zone: dt.tzinfo

    def next_after(self, t: float) -> float | None:
        """The first fire time strictly after `t`; None if there is none in the next 50 years."""
        start = dt.datetime.fromtimestamp(t, self.zone)
        try:
            return next(CronSim(_expand(self.expression), start)).timestamp()
        except StopIteration:
            return None

    def latest_at_or_before(self, t: float) -> float | None:
        """The last fire time at or before `t` (what a daemon that was down missed last)."""
        start = dt.datetime.fromtimestamp(t + 0.000001, self.zone)  # cronsim's reverse is strict
        try:
            return next(CronSim(_expand(self.expression), start, reverse=True)).timestamp()
        except StopIteration:
            return None

    def describe(self) -> str:
        return f"cron {self.expression}"


@dataclass(frozen=True, slots=True)
class Reboot:
    """`@reboot`: no slots; the daemon fires it once when it starts after a machine boot."""

    def next_after(self, t: float) -> float | None:
        return None

    def latest_at_or_before(self, t: float) -> float | None:
        return None

    def describe(self) -> str:
        return "cron @reboot"


Trigger = Every | Cron | Reboot


def parse_cron(expression: str, zone: dt.tzinfo) -> Cron | Reboot:
    """Check a cron expression; TriggerError names the field that is wrong."""
    text = " ".join(expression.split())
    if text.lower() == REBOOT:
        return Reboot()
    try:
        CronSim(_expand(text), dt.datetime(2000, 1, 1, tzinfo=zone))
    except CronSimError as e:
        raise TriggerError(f"{expression!r} is not a cron expression: {str(e).lower()}") from None
    return Cron(text, zone)


def _expand(expression: str) -> str:
    return MACROS.get(expression.lower(), expression)


def zone_named(name: str | None) -> dt.tzinfo:
    """The zone called `name` ("Europe/Berlin", "UTC"), or the system's zone for None."""
    if name is None:
        return system_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TriggerError(f'unknown time zone {name!r} (use a name like "Europe/Paris" or "UTC")') from None


def system_zone() -> dt.tzinfo:
    """This machine's zone with its DST rules: $TZ, else /etc/localtime (a fixed UTC offset
    would silently drop DST, so it is never used)."""
    name = os.environ.get("TZ", "").removeprefix(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        target = os.path.realpath("/etc/localtime")
        if "/zoneinfo/" in target:
            return ZoneInfo(target.split("/zoneinfo/", 1)[1])
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def fire_times(trigger: Trigger, after: float, count: int, until: float | None = None) -> list[float]:
    """The next `count` fire times after `after` (fewer if the trigger runs out, or if `until`
    is given and comes first: times at or before it)."""
    times: list[float] = []
    t = after
    while len(times) < count:
        nxt = trigger.next_after(t)
        if nxt is None or (until is not None and nxt > until):
            break
        times.append(nxt)
        t = nxt
    return times
