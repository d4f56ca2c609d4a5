"""The cluster under real network faults (issue 21): PostgreSQL and three nodes in network
namespaces of their own (tests/netbench.py), faults from a seeded schedule (tests/faultsched.py),
the history judged by tests/fault_history.py. This is the short, seeded run of `make test` (about a
minute); `make bench-faults` runs the long version (bench/faults.py, every kind, minutes) and
prints its figures; docs/reliability.md says what each run showed.

Run as root (network namespaces): skipped elsewhere, and said so (a failure under CI's
STOKER_TEST_REQUIRE_ALL)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REQUIRE_ALL, wait_for
from fault_history import Report, check
from faultsched import run
from netbench import Cluster, tools_missing
from postgres import binaries

pytestmark = pytest.mark.timeout(600)

SEED = int(os.environ.get("STOKER_FAULTS_SEED", "13"))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    why = tools_missing() or (None if binaries() else "PostgreSQL is not installed")
    if why is not None:
        if REQUIRE_ALL:
            pytest.fail(why)
        pytest.skip(why)
    cluster = Cluster(tmp_path)
    try:
        yield cluster
    finally:
        leftovers = cluster.close()
        assert not leftovers, f"processes survived the daemons: {leftovers}"


def show(report: Report) -> None:
    print(f"\n{report}")


def test_a_seeded_minute_of_faults_loses_nothing_and_runs_nothing_twice_at_once(cluster: Cluster) -> None:
    """The short run of `make test` (about a minute with the case below; `make bench-faults` is
    the long one): a node cut off from the database, a lossy link to it, a daemon killed and
    started again, a daemon's clock jumped ahead or behind, each at least once, in the order
    the seed gives (STOKER_FAULTS_SEED replays it).

    What each kind found when it came in: a node cut off ran its jobs on while the others ran
    them again (4 jobs on two nodes at once, before the job fence: daemon/cluster.py's
    JobFence); a killed daemon's commands outlived it while another node ran them again (the
    worker now stops its command by half the node timeout: stoker.jobs.launch); a lossy link
    held a claim's answer past the node's fence and its lifting, and the job ran on two nodes
    (now such an answer starts nothing: tests/test_claim_fence.py); a skewed clock
    broke nothing the checker holds (leases, heartbeats and the fence use the database
    server's clock and the monotonic clock), and its slots ran early by the skew (issue 21);
    now each node times its jobs and slots by the server's clock (stoker/skew.py): no slot
    starts more than fault_history.EARLY (1 s) before its time (Report.early_slots)."""
    report, _ = run(cluster, SEED, 20, kinds=("cut-db", "lossy", "kill", "skew"), say=print, every_kind=True)
    show(report)
    assert report.accepted > 0 and report.slots > 0 and report.singleton_copies > 0
    assert set(report.faults) == {"cut-db", "lossy", "kill", "skew"}
    assert not report.violations(), "\n".join(report.violations())


@pytest.mark.xfail(
    strict=True,
    reason="not guaranteed, and documented: a daemon frozen (SIGSTOP, a paused VM) for longer than node_timeout "
    "cannot act on its fence, while its programs and jobs run on; the others take its lease and its jobs",
)
def test_a_daemon_paused_past_its_lease_leaves_its_singleton_running_twice(cluster: Cluster) -> None:
    cluster.start()
    holder = wait_for(lambda: singleton_holder(cluster), 30, "the singleton to run")
    node = cluster.nodes[holder]
    paused_at = time.time()
    node.signal(signal.SIGSTOP)
    node.stopped = True
    try:
        wait_for(
            lambda: ticked_elsewhere(cluster, holder, paused_at), 30, "another node to run the singleton"
        )
    finally:
        cluster.heal()
    report = check(cluster.history, [], {}, [])
    assert not report.singleton_overlaps, report.singleton_overlaps


def ticked_elsewhere(cluster: Cluster, holder: str, since: float) -> bool:
    """Whether a node other than `holder` ran the singleton after `since`."""
    ticks = [line.split() for line in cluster.history.read_text().splitlines() if line.startswith("single ")]
    return any(tick[3] != holder and float(tick[5]) > since for tick in ticks)


def singleton_holder(cluster: Cluster) -> str | None:
    """The node of the singleton's latest tick."""
    ticks = [line.split() for line in cluster.history.read_text().splitlines() if line.startswith("single ")]
    return ticks[-1][3] if ticks else None
