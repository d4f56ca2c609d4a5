"""A node's view of the cluster's time: the offset between the database server's clock and
this machine's wall clock, measured at each heartbeat, applied only past a threshold.

On a shared store (PostgreSQL) heartbeats, leases and "taken for dead" use the server's clock;
a job's `run_at`, `created_at`, its starts and ends, and a schedule's slots are wall times a
node writes and compares. A node whose clock is off by S would hold back (ahead) or pick up
late (behind) by S the jobs it queues, and fire its schedules S early. So the node reads the
server's clock in the join's and each heartbeat's own statement, takes the local midpoint of
the round trip (on the monotonic clock) as the moment it was read (`estimate`), carries the
server's clock on the monotonic one from there, and uses `time.time() + offset` as its "now"
everywhere it meets the shared store (`NodeClock`, passed down as a callable).

The offset is applied only past `THRESHOLD` (hysteresis: it stays applied until it falls under
`RELEASE`), so on one machine, on SQLite, or in a well-synchronised cluster it is exactly 0
and nothing changes. Pure: `estimate` and `applied` take numbers and return numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["BOUND", "MAX_TRIP", "RELEASE", "THRESHOLD", "NodeClock", "applied", "describe", "estimate"]

THRESHOLD = 0.5  # seconds: a clock off by more than this is corrected
RELEASE = 0.25  # seconds: a corrected clock stays corrected until it is off by less than this
MAX_TRIP = 1.0  # seconds: a reading whose round trip took longer is kept only if it is the first
# How far `NodeClock()` may be from the server's clock, once it has had a reading whose round
# trip took at most MAX_TRIP: the threshold (an offset within it is not applied) plus half the
# round trip (the estimate's error).
BOUND = THRESHOLD + MAX_TRIP / 2


def estimate(sent: float, server: float, received: float) -> float:
    """The server's clock minus this machine's (whichever clock `sent` and `received` read):
    `server` read between the two, taken as read at their midpoint. Its error is at most half
    the round trip."""
    return server - (sent + received) / 2


def applied(current: float, measured: float, threshold: float = THRESHOLD, release: float = RELEASE) -> float:
    """The offset to use, from the one in use (`current`, 0 when none) and the one just
    `measured`: `measured` past `threshold`, or past `release` while one is in use; else 0."""
    if abs(measured) > threshold or (current != 0 and abs(measured) > release):
        return measured
    return 0.0


def describe(node: str, offset: float) -> str:
    """The line logged when a node's clock is found off (`offset`: server minus node)."""
    way = "behind" if offset > 0 else "ahead of"
    return f"node {node}: clock {abs(offset):.1f} s {way} the database server; using the server's time"


class NodeClock:
    """This node's "now" on the shared store: `clock()` is `wall() + offset`. The daemon owns
    one and passes it (a callable) to the dispatcher, the scheduler and the API; the join and
    each heartbeat feed it (`observe`).

    The server's clock is carried between heartbeats on the monotonic clock (`anchor`: the
    server's minus the monotonic, at the last reading), so a jump of this machine's wall clock
    (stepped by hand, a VM restored) is seen at the next `clock()`, not at the next heartbeat;
    what the monotonic clock cannot follow is a jump of the server's own clock, seen at the
    next heartbeat."""

    def __init__(
        self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.wall, self.monotonic = wall, monotonic
        self.offset = 0.0  # applied: the server's clock minus this one's, or 0
        self.anchor: float | None = None  # the server's clock minus the monotonic one, or None
        self.reported = False  # whether the last word logged was "off" (`observe`)

    def __call__(self) -> float:
        wall = self.wall()
        if self.anchor is not None:
            self.offset = applied(self.offset, self.monotonic() + self.anchor - wall)
        return wall + self.offset

    def observe(self, sent: float, server: float, received: float) -> bool:
        """One reading of the server's clock, between `sent` and `received` (monotonic; a round
        trip longer than MAX_TRIP is used only if there is no other, its error being half). True
        when this node's clock was just found off, or back in step (`offset` says which): log it."""
        if self.anchor is None or received - sent <= MAX_TRIP:  # (a slow one: carry the last)
            self.anchor = estimate(sent, server, received)
        self()
        off = self.offset != 0
        changed, self.reported = off != self.reported, off
        return changed
