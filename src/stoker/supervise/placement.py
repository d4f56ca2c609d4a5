"""Where a program may run: `nodes = [...]` placement and `singleton = true` leases. Pure.

Placement is a glob match of `[daemon] node` against the program's `nodes` patterns.

A singleton program runs only on the node that holds its lease: a row in the shared store
(PostgreSQL) with a holder and an expiry by the database server's clock, taken when it is
free or lapsed and renewed every `node_timeout / 3`, with the heartbeat. The lease lasts
`node_timeout`. The other nodes keep the program stopped and take the lease once it lapses.

Fencing. A holder that cannot renew (the store is down, or this node is cut off from it) must
have stopped its copy before the lease can lapse and another node start one. It counts from
the moment it *sent* its last successful renewal (the server stamped the expiry later than
that, so the lease lasts at least until `sent + lease` on this node's monotonic clock):
- at `FENCE_STOP` of the lease it stops the program (stop signal);
- at `FENCE_KILL` of the lease whatever is left of it is SIGKILLed, whatever its stop_timeout.
The margin that remains (a sixth of the lease) absorbs the kill and the clocks' rates. Two
renewals (at 1/3 and 2/3) must fail before the stop, so one failed round trip is harmless.
What this cannot fence: a daemon that is frozen (SIGSTOP, a paused VM) cannot act on its timer;
its programs keep running while it is frozen, and another node may start the singleton.

`LeaseBook` holds what this node last learnt from the store and answers, for a clock value,
which node runs each singleton as far as this node may act on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

FENCE_STOP = 2 / 3  # of the lease, since the last renewal was sent: stop our copy
FENCE_KILL = 5 / 6  # of the lease: SIGKILL what is left of it
RETRY_FRACTION = 1 / 6  # of the lease: the next try after a failed renewal (sooner than the period)
EXPIRY_SLACK = 0.05  # seconds after another holder's lease lapses before we try to take it


def placed_here(patterns: Sequence[str], node: str) -> bool:
    """Whether `node` may run a program with `nodes = patterns` (no patterns: every node)."""
    return not patterns or any(fnmatchcase(node, pattern) for pattern in patterns)


def not_placed_reason(patterns: Sequence[str], node: str) -> str:
    shown = ", ".join(f'"{p}"' for p in patterns)
    return f"not placed on node {node} (nodes = [{shown}])"


@dataclass(frozen=True, slots=True)
class Renewal:
    """What one successful round trip to the store answered."""

    sent_at: float  # this node's monotonic clock when the request left
    holders: Mapping[str, str]  # program → node, for the leases that are live (not lapsed)
    remaining: Mapping[str, float]  # program → seconds its live lease has left, server clock


class LeaseBook:
    """This node's knowledge of the singleton leases; all times on its monotonic clock."""

    def __init__(self, node: str, lease: float) -> None:
        self.node = node
        self.lease = lease
        self.holders: dict[str, str] = {}
        self.known: frozenset[str] = frozenset()  # programs the last renewal answered for
        self.renewed_at: float | None = None  # when the last successful renewal was sent
        self.lapse_at: dict[str, float] = {}  # others' leases: when each lapses, roughly
        self.error: str | None = None  # why the last renewal failed (None: it did not)

    # what the store said ----------------------------------------------------------------

    def renewed(self, renewal: Renewal, asked: Iterable[str], now: float) -> None:
        """A renewal that asked about `asked` answered (at `now`)."""
        self.holders = dict(renewal.holders)
        self.known = frozenset(asked)
        self.renewed_at = renewal.sent_at
        self.error = None
        remaining = renewal.remaining.items()
        self.lapse_at = {name: now + left for name, left in remaining if renewal.holders[name] != self.node}

    def failed(self, error: str) -> None:
        """A renewal failed: nothing is known to have changed; the fence runs on time."""
        self.error = error

    # what follows -------------------------------------------------------------------------

    def fenced(self, now: float) -> bool:
        """Whether too long has passed since the last successful renewal to keep running."""
        return self.renewed_at is None or now >= self.renewed_at + FENCE_STOP * self.lease

    def mine(self, program: str, now: float) -> bool:
        """Whether this node holds the lease of `program` and may run it now."""
        return self.holders.get(program) == self.node and not self.fenced(now)

    def decided(self, program: str) -> bool:
        """Whether the store has been asked about `program` since it became a singleton (a
        program a reload just made one keeps running until the first answer: no copy is
        stopped on a node that may well get the lease)."""
        return program in self.known

    def reason(self, program: str, now: float) -> str | None:
        """Why this node does not run `program` (a singleton placed here), or None if it may."""
        if self.mine(program, now):
            return None
        holder = self.holders.get(program)
        if holder == self.node:  # held, but not renewed for too long
            assert self.renewed_at is not None
            ago = now - self.renewed_at
            why = f": {self.error}" if self.error else ""
            return f"singleton: lease not renewed for {ago:.1f}s{why}; stopped so another node may take it"
        if self.renewed_at is None and self.error:
            return f"singleton: waiting for its lease (the store did not answer: {self.error})"
        if holder is not None:
            return f"singleton: runs on {holder}"
        return "singleton: waiting for its lease"

    def holder(self, program: str, now: float) -> str | None:
        """The node that runs `program`, as far as this node knows (itself only while fenced off
        from nobody)."""
        holder = self.holders.get(program)
        if holder == self.node and self.fenced(now):
            return None
        return holder

    def fence_times(self) -> tuple[float, float] | None:
        """(stop at, kill at) for the copies this node runs, if it holds any lease."""
        if self.renewed_at is None or self.node not in self.holders.values():
            return None
        return self.renewed_at + FENCE_STOP * self.lease, self.renewed_at + FENCE_KILL * self.lease

    def next_renewal(self, now: float, wanted: Iterable[str]) -> float:
        """When to renew next: a third of the lease after the last try (sooner after a failure),
        or just after the lease of another holder that this node wants lapses."""
        period = self.lease / 3 if self.error is None else self.lease * RETRY_FRACTION
        at = now + period
        for name in wanted:
            lapse = self.lapse_at.get(name)
            if lapse is not None and self.holders.get(name) != self.node:
                at = min(at, max(now, lapse + EXPIRY_SLACK))
        return at


def releasable(book: LeaseBook, wanted: Iterable[str], resting: Iterable[str]) -> list[str]:
    """Leases this node holds but no longer wants, whose copies here have all stopped: only
    then may another node start the program."""
    keep, done = set(wanted), set(resting)
    return sorted(name for name, holder in book.holders.items() if holder == book.node and name not in keep
                  and name in done)  # fmt: skip
