"""The next jobs of one queue, held in memory so a free slot is filled without a database trip.

The dispatcher reads a page of due jobs from the store (`Store.due`) and keeps them here in the
order they must run; a slot that frees takes the first one at once and marks it running in the
store without waiting for the answer (`Store.start`). A job enqueued or retried through this
daemon is added directly. Pure bookkeeping, no IO: the dispatcher does the reading.

Two races are settled here. A read answers with the store as it was when the read was
submitted, so a job taken (started) or dropped (cancelled) while the read was out may come back
in its answer; `begin_read` starts noting such ids and `end_read` leaves them out. And a job
may arrive twice (added by its enqueue and found by a read): ids are unique here.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from stoker.store import Job

Key = tuple[int, float, int]

# Jobs held at most; beyond, the latest in order are left to a later read. Enough for a burst
# (an enqueue_many of a few thousand) to run without reading back what it has just stored:
# reading a job back and building it again was a tenth of what a short job costs the daemon.
# About 3 MB when full; a queue with a million jobs waiting is still read a page at a time.
CAPACITY = 4096


def order(job: Job) -> Key:
    """Highest priority first, then the earliest run_at, then the oldest: as `Store.due`."""
    return (-job.priority, job.run_at, job.id)


class Ready:
    def __init__(self) -> None:
        self._keys: list[Key] = []
        self._jobs: dict[int, Job] = {}
        # True while this holds every due job the store has for the queue (the last read came
        # back short of its limit and nothing was left out since): no need to read again until
        # time makes a delayed job due or something from outside may have changed.
        self.complete = False
        self._gone_during_read: set[int] | None = None  # while a read is out
        # Whether a read is out: an attribute, not a property, as the dispatcher asks it twice
        # per job (a property's call is ~0.2% of a short job's cost to the daemon).
        self.reading = False
        self._stale_during_read = False

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, job_id: int) -> bool:
        return job_id in self._jobs

    def add(self, job: Job) -> None:
        """A due job queued through this daemon (enqueued, retried)."""
        if job.id in self._jobs:
            return
        bisect.insort(self._keys, order(job))
        self._jobs[job.id] = job
        self._trim()

    def first(self) -> Job:
        """The first job in order, left in place."""
        return self._jobs[self._keys[0][2]]

    def take(self) -> Job:
        """The first job in order, removed (the caller starts it)."""
        key = self._keys.pop(0)
        job = self._jobs.pop(key[2])
        self._note_gone(job.id)
        return job

    def drop(self, job_id: int) -> None:
        """Forget a job (cancelled); fine if it is not here."""
        self._note_gone(job_id)
        job = self._jobs.pop(job_id, None)
        if job is not None:
            self._keys.remove(order(job))

    def stale(self) -> None:
        """The store may hold due jobs this does not know of: read again."""
        self.complete = False
        self._stale_during_read = self.reading  # the read out now may be too early to see them

    def begin_read(self) -> None:
        assert self._gone_during_read is None, "one read at a time"
        self._gone_during_read = set()
        self.reading = True

    def end_read(
        self, jobs: list[Job] | None, limit: int, held: Callable[[int], bool] = lambda _: False
    ) -> None:
        """The answer to the read begun last (None: it failed), `limit` being what it asked;
        jobs `held` elsewhere (sent ahead to a worker, still queued in the store) are left out."""
        gone, self._gone_during_read = self._gone_during_read or set(), None
        self.reading = False
        stale, self._stale_during_read = self._stale_during_read, False
        if jobs is None:
            return
        self.complete = len(jobs) < limit and not stale
        for job in jobs:
            if job.id not in gone and not held(job.id):
                self.add(job)  # if it overflows, complete is False again

    def _note_gone(self, job_id: int) -> None:
        if self._gone_during_read is not None:
            self._gone_during_read.add(job_id)

    def _trim(self) -> None:
        while len(self._keys) > CAPACITY:
            del self._jobs[self._keys.pop()[2]]
            self.complete = False
