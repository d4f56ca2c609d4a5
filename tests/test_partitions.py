"""The cluster under real network faults (issue 21): PostgreSQL and three nodes in network
namespaces of their own (tests/netbench.py), faults from a seeded schedule (tests/faultsched.py),
the history judged by tests/history.py. `make bench-faults` runs the long version
(bench/faults.py) and prints its figures; docs/reliability.md says what each run showed.

Run as root (network namespaces): skipped elsewhere, and said so (a failure under CI's
STOKER_TEST_REQUIRE_ALL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REQUIRE_ALL
from faultsched import run
from history import Report
from netbench import Cluster, tools_missing
from postgres import binaries

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

SEED = int(os.environ.get("STOKER_FAULTS_SEED", "21"))


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


def test_a_node_cut_off_from_the_database_loses_nothing_and_runs_nothing_twice_at_once(
    cluster: Cluster,
) -> None:
    report, _ = run(cluster, SEED, 45, kinds=("cut-db",), say=print)
    show(report)
    assert report.accepted > 0 and report.slots > 0 and report.singleton_copies > 1
    assert not report.violations(), "\n".join(report.violations())
