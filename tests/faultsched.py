"""The fault scheduler and the run around it: a seeded random sequence of faults injected into a
netbench.Cluster while a client enqueues jobs, then everything healed and the history judged
(tests/fault_history.py). One seed, one sequence of faults: `--seed` replays a run's choices (not its
timings, which the machine decides).

The faults, one at a time, each held for a while and then healed:
- `cut-db`: a node's packets to and from the database dropped (nftables, both ways), for 1.2 to
  2.5 node_timeouts: its heartbeat and its lease renewals go unanswered, the others take it
  for dead, re-queue its jobs, take its singleton;
- `cut-peers`: a node cut from the other nodes only (the database still reachable): nodes talk
  through the database alone, so nothing should change;
- `lossy`: 20–40% of a node's packets to and from the database dropped (TCP turns it into delay);
- `pause`: the daemon SIGSTOPped for 1.5 to 2.5 node_timeouts (a paused VM), then SIGCONT; its
  programs and jobs run on meanwhile;
- `kill`: the daemon SIGKILLed, started again 0.2 to 2 node_timeouts later;
- `skew`: the daemon's wall clock jumped, while it runs, 5 to 120 s ahead or behind the
  machine's (libfaketime, netbench's module docstring), for 2 to 4 node_timeouts, then jumped
  back. Leases, heartbeats and the fence do not read it (the database server's clock, the
  monotonic clock); schedules and the jobs' times are corrected to the server's clock
  (stoker/skew.py): the checker holds every slot's first start to "no earlier than its time
  minus fault_history.EARLY" (1 s; Report.early_slots).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fault_history import Fault, Report, check
from netbench import DB_ADDRESS, Cluster, failover_bound

from stoker.client import ClientError

KINDS = ("cut-db", "cut-peers", "lossy", "pause", "kill", "skew")


class Enqueuer(threading.Thread):
    """Enqueues a `work` job every `every` seconds to a node picked at random (seeded), through
    its unix socket; keeps the ids answered 201. A refusal or a timeout is not an acceptance."""

    def __init__(self, cluster: Cluster, seed: int, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.cluster, self.every = cluster, every
        self.random = random.Random(seed)
        self.accepted: list[int] = []
        self.accepted_at: dict[int, float] = {}  # id → the machine's time just before the request
        self.refused = 0
        self._done = threading.Event()

    def run(self) -> None:
        n = 0
        while not self._done.wait(self.every):
            node = self.cluster.nodes[self.random.choice(sorted(self.cluster.nodes))]
            if not node.alive() or node.stopped:
                continue
            n += 1
            try:
                seconds = round(self.random.uniform(*self.cluster.timing.job_seconds), 2)
                sent = time.time()
                job = node.client.enqueue("work", n=n, seconds=seconds)
            except (ClientError, OSError):
                self.refused += 1
                continue
            self.accepted.append(int(job.id))
            self.accepted_at[int(job.id)] = sent

    def stop(self) -> None:
        self._done.set()
        self.join(30)


@dataclass
class Schedule:
    """The faults a seed chooses: (kind, node, hold seconds, quiet seconds after)."""

    seed: int
    kinds: Sequence[str]
    node_timeout: float
    nodes: Sequence[str]
    random: random.Random = field(init=False)

    # every kind once (in a seeded order) before any is chosen at random: a short run covers them all
    every_kind: bool = False
    pending: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.pending = list(dict.fromkeys(self.kinds)) if self.every_kind else []
        self.random.shuffle(self.pending)

    def next(self) -> tuple[str, str, float, float]:
        kind = self.pending.pop(0) if self.pending else self.random.choice(list(self.kinds))
        node = self.random.choice(list(self.nodes))
        t = self.node_timeout
        hold = {
            "cut-db": (1.2 * t, 2.5 * t),
            "cut-peers": (1.0 * t, 2.0 * t),
            "lossy": (1.0 * t, 2.0 * t),
            "pause": (1.5 * t, 2.5 * t),
            "kill": (0.2 * t, 2.0 * t),
            "skew": (2.0 * t, 4.0 * t),
        }[kind]
        return kind, node, self.random.uniform(*hold), self.random.uniform(0.5 * t, 1.5 * t)


def inject(cluster: Cluster, kind: str, name: str, rng: random.Random) -> Fault:
    """Start the fault; `heal(cluster, fault)` ends it."""
    node, link = cluster.nodes[name], cluster.network.links[name]
    fault = Fault(kind, name, time.time())
    if kind == "cut-db":
        link.cut.add(DB_ADDRESS)
        link.apply()
    elif kind == "cut-peers":
        link.cut.update(cluster.network.address[other] for other in cluster.nodes if other != name)
        link.apply()
    elif kind == "lossy":
        percent = rng.randint(20, 40)
        link.loss[DB_ADDRESS] = percent
        fault.detail = f"{percent}%"
        link.apply()
    elif kind == "pause":
        node.signal(signal.SIGSTOP)
        node.stopped = True
    elif kind == "kill":
        node.kill()
    elif kind == "skew":
        seconds = rng.randint(5, 120) * rng.choice((1, -1))
        node.set_skew(seconds)
        fault.detail, fault.skew = f"{seconds:+d}s", float(seconds)
    else:
        raise ValueError(kind)
    return fault


def heal(cluster: Cluster, fault: Fault) -> None:
    node = cluster.nodes[fault.node]
    if fault.kind == "kill":
        node.start()
    else:
        cluster.heal()
    fault.end = time.time()


def slots_of(cluster: Cluster) -> dict[int, tuple[str, float]]:
    import psycopg

    with psycopg.connect(cluster.local_url, autocommit=True) as conn:
        rows = conn.execute("SELECT id, schedule, slot FROM stoker.jobs WHERE slot IS NOT NULL").fetchall()
    return {int(job): (str(schedule), float(slot)) for job, schedule, slot in rows}


def given_up(cluster: Cluster) -> frozenset[int]:
    """The jobs the store failed by its crash rule (running when their daemon died, three times)."""
    import psycopg

    with psycopg.connect(cluster.local_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id FROM stoker.jobs WHERE state = 'failed' AND error LIKE '%not run again%'"
        )
        return frozenset(int(job) for (job,) in rows.fetchall())


def finished(cluster: Cluster, ids: list[int]) -> Callable[[], bool]:
    """A predicate: every job of `ids` has ended in the store (succeeded, failed or cancelled)."""
    import psycopg

    def check_() -> bool:
        with psycopg.connect(cluster.local_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM stoker.jobs WHERE id = ANY(%s) AND state IN ('queued', 'running')",
                (ids,),
            ).fetchone()
        return row is not None and row[0] == 0

    return check_


def run(
    cluster: Cluster,
    seed: int,
    seconds: float,
    kinds: Sequence[str] = KINDS,
    say: Callable[[str], None] = lambda _: None,
    settle: float = 120.0,
    every_kind: bool = False,
) -> tuple[Report, list[Fault]]:
    """Start the cluster, inject faults for `seconds` (`every_kind`: and until each kind was
    injected once), heal, wait until every accepted job has ended (at most `settle` seconds),
    judge the history."""
    from conftest import wait_for

    cluster.start()
    wait_for(lambda: "single " in cluster.history.read_text(), 30, "the singleton to run")
    schedule = Schedule(seed, kinds, cluster.timing.node_timeout, sorted(cluster.nodes), every_kind)
    enqueuer = Enqueuer(cluster, seed)
    enqueuer.start()
    faults: list[Fault] = []
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end or schedule.pending:
            kind, name, hold, quiet = schedule.next()
            fault = inject(cluster, kind, name, schedule.random)
            faults.append(fault)
            say(f"{fault.start:.3f} {kind} {name} {fault.detail} for {hold:.1f}s")
            time.sleep(hold)  # the fault's length: a choice of the schedule, not a wait for a state
            heal(cluster, fault)
            time.sleep(quiet)
    finally:
        enqueuer.stop()
        cluster.heal()
        for node in cluster.nodes.values():
            if not node.alive():
                node.start()
    say(f"{len(enqueuer.accepted)} accepted, {enqueuer.refused} refused; waiting for them to end")
    wait_for(finished(cluster, enqueuer.accepted), settle, f"the accepted jobs to end\n{cluster.logs()}")
    bound = failover_bound(cluster.timing)
    report = check(
        cluster.history,
        enqueuer.accepted,
        slots_of(cluster),
        faults,
        bound,
        given_up(cluster),
        enqueuer.accepted_at,
    )
    return report, faults
