"""`singleton = true` and `nodes = [...]` with real daemons: on SQLite (one node), and several
daemons on one real PostgreSQL, one of them SIGKILLed, stopped, or cut off from the store.

The singleton under test takes an exclusive flock on a shared file before it says it runs: a
second copy started while the first still lives cannot take it and writes "overlap" instead.
The kernel drops the lock when a copy dies, so the file records any moment of two copies."""

from __future__ import annotations

import contextlib
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import Stoker, marked_pids, pid_alive, wait_for

SINGLE = """\
import fcntl, os, sys, time
node = sys.argv[1]
lock = open("single.lock", "w")
with open("runs.txt", "a") as log:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.write(f"overlap {node} {os.getpid()}\\n")
        sys.exit(3)
    log.write(f"run {node} {os.getpid()}\\n")
time.sleep(3600)
"""


def runs(shared: Path) -> list[tuple[str, str, int]]:
    path = shared / "runs.txt"
    if not path.exists():
        return []
    return [
        (kind, node, int(pid)) for kind, node, pid in (line.split() for line in path.read_text().splitlines())
    ]


def cluster_config(url: str, node: str, shared: Path, timeout: str = "3s", extra: str = "") -> str:
    return textwrap.dedent(
        f"""
        [daemon]
        store = "{url}"
        node = "{node}"
        node_timeout = "{timeout}"
        [programs.single]
        command = ["{sys.executable}", "single.py", "{node}"]
        directory = "{shared}"
        singleton = true
        start_seconds = 0
        stop_timeout = "20s"
        """
    ) + textwrap.dedent(extra)


def row(daemon: Stoker, name: str = "single:0") -> dict[str, Any]:
    return daemon.programs()[name]


def running_on(daemons: dict[str, Stoker]) -> list[str]:
    """The nodes whose daemon says it runs the singleton; also checks, by the processes the
    daemons started, that no two copies live."""
    live = [node for node, d in daemons.items() if d.daemon is not None and d.daemon.poll() is None]
    copies = [pid for node in live for pid in copies_of(daemons[node])]
    assert len(copies) <= 1, f"two copies of the singleton: {copies}"
    return [node for node in live if row(daemons[node])["state"] == "running"]


def copies_of(daemon: Stoker) -> list[int]:
    """The singleton's processes that `daemon` started (and are not zombies)."""
    found = []
    for pid in marked_pids(str(daemon.state_dir)):
        with contextlib.suppress(psutil.Error):
            if "single.py" in psutil.Process(pid).cmdline():
                found.append(pid)
    return found


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "single.py").write_text(SINGLE)
    return folder


@pytest.fixture
def three(stoker: Stoker, tmp_path: Path) -> Iterator[dict[str, Stoker]]:
    daemons = {"a": stoker, "b": Stoker(tmp_path / "b"), "c": Stoker(tmp_path / "c")}
    for daemon in daemons.values():
        daemon.root.mkdir(exist_ok=True)
    try:
        yield daemons
    finally:
        for node in ("b", "c"):
            leftovers = daemons[node].cleanup()
            assert not leftovers, f"processes survived {node}'s daemon: {leftovers}"


def logs(daemons: dict[str, Stoker]) -> str:
    return "\n".join(f"--- {node}:\n{d.log_text()[-4000:]}" for node, d in daemons.items())


# --------------------------------------------------------------------------------------------
# one node (SQLite)
# --------------------------------------------------------------------------------------------


def test_on_sqlite_a_singleton_is_this_nodes_and_nodes_places_programs(stoker: Stoker, shared: Path) -> None:
    stoker.write(
        f"""
        [daemon]
        node = "web-1"
        [programs.single]
        command = ["{sys.executable}", "single.py", "web-1"]
        directory = "{shared}"
        singleton = true
        start_seconds = 0
        [programs.here]
        command = ["sleep", "300"]
        nodes = ["web-*"]
        start_seconds = 0
        [programs.elsewhere]
        command = ["sleep", "301"]
        nodes = ["db-*", "worker-[12]"]
        start_seconds = 0
        """
    )
    stoker.up()
    single = stoker.wait_state("single:0", "running")
    assert (single["singleton"], single["holder"], single["placement"]) == (True, "web-1", None)
    here = stoker.wait_state("here:0", "running")
    assert (here["singleton"], here["holder"], here["placement"]) == (False, None, None)
    elsewhere = row(stoker, "elsewhere:0")
    assert elsewhere["state"] == "stopped" and elsewhere["pid"] is None
    assert elsewhere["placement"] == 'not placed on node web-1 (nodes = ["db-*", "worker-[12]"])'
    # asked to start, it stays stopped, and says why
    started = stoker.cli("start", "elsewhere")
    assert started.returncode == 0, started.stderr
    assert row(stoker, "elsewhere:0")["state"] == "stopped"
    status = stoker.cli("status", "elsewhere")
    assert "not placed on node web-1" in status.stdout, status.stdout
    assert runs(shared) == [("run", "web-1", single["pid"])]


def test_a_reload_places_programs_anew_without_restarting_what_stays(stoker: Stoker, shared: Path) -> None:
    config = """
        [daemon]
        node = "web-1"
        [programs.moving]
        command = ["sleep", "300"]
        start_seconds = 0
        {placement}
        """
    stoker.write(config.format(placement=""))
    stoker.up()
    pid = stoker.wait_state("moving:0", "running")["pid"]
    # a program that becomes a singleton keeps its process (this node is the only one)
    stoker.write(config.format(placement="singleton = true"))
    reloaded = stoker.json("reload")
    assert reloaded["placement"] == ["moving"] and reloaded["changed"] == []
    assert stoker.wait_state("moving:0", "running", holder="web-1")["pid"] == pid
    # placed elsewhere: stopped, with the reason
    stoker.write(config.format(placement='singleton = true\nnodes = ["db-1"]'))
    assert stoker.json("reload")["placement"] == ["moving"]
    stopped = stoker.wait_state("moving:0", "stopped")
    assert stopped["placement"] == 'not placed on node web-1 (nodes = ["db-1"])'
    assert not pid_alive(pid)
    # placed here again: it comes back (it was wanted all along)
    stoker.write(config.format(placement='nodes = ["web-*"]'))
    stoker.json("reload")
    again = stoker.wait_state("moving:0", "running")
    assert again["pid"] != pid and again["placement"] is None


def test_a_program_stopped_by_hand_stays_stopped_when_placed_here_again(stoker: Stoker) -> None:
    config = """
        [daemon]
        node = "web-1"
        [programs.p]
        command = ["sleep", "300"]
        start_seconds = 0
        nodes = ["{pattern}"]
        """
    stoker.write(config.format(pattern="web-1"))
    stoker.up()
    stoker.wait_state("p:0", "running")
    assert stoker.cli("stop", "p").returncode == 0
    stoker.write(config.format(pattern="db-1"))
    stoker.json("reload")
    stoker.write(config.format(pattern="web-*"))
    stoker.json("reload")
    assert row(stoker, "p:0")["state"] == "stopped" and row(stoker, "p:0")["stopped_by_hand"]


# --------------------------------------------------------------------------------------------
# a cluster on PostgreSQL
# --------------------------------------------------------------------------------------------


def test_three_daemons_run_a_singleton_once_before_and_after_its_node_is_killed(
    three: dict[str, Stoker], postgres_url: str, shared: Path
) -> None:
    for node, daemon in three.items():
        daemon.write(cluster_config(postgres_url, node, shared))
    for daemon in three.values():
        daemon.up()
    [first] = wait_for(lambda: running_on(three) or None, 20, f"the singleton to run; {logs(three)}")
    # the others know who runs it, and say so
    for node, daemon in three.items():
        if node != first:
            other = row(daemon)
            assert other["state"] == "stopped" and other["holder"] == first, other
            assert other["placement"] == f"singleton: runs on {first}"
    deadline = time.monotonic() + 3.5  # a lease's length and more: nothing changes meanwhile
    while time.monotonic() < deadline:
        assert running_on(three) == [first]
        time.sleep(0.1)

    killed = three[first]
    killed.kill()  # SIGKILL: its program dies with it (PDEATHSIG)
    wait_for(lambda: not copies_of(killed), 10, "the killed daemon's copy to die")
    died = time.monotonic()
    survivors = {node: d for node, d in three.items() if node != first}
    [second] = wait_for(
        lambda: running_on(survivors) or None, 15, f"another node to take it; {logs(survivors)}"
    )
    took = time.monotonic() - died
    assert second != first
    assert took < 3.0 + 2.0, f"failover took {took:.1f}s for a 3s lease"  # the lease, and a renewal's slack
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert running_on(survivors) == [second]
        time.sleep(0.1)
    started = [(kind, node) for kind, node, _ in runs(shared)]
    assert started == [("run", first), ("run", second)], started  # never an overlap
    assert "singletons: single runs on " + second in survivors[second].log_text()


def test_a_graceful_down_hands_the_singleton_over_at_once(
    three: dict[str, Stoker], postgres_url: str, shared: Path
) -> None:
    """`stoker down` stops the copy, then gives the lease up and tells the others: another node
    starts it well before the lease (20 s here) could have lapsed."""
    two = {"a": three["a"], "b": three["b"]}
    for node, daemon in two.items():
        daemon.write(cluster_config(postgres_url, node, shared, timeout="20s"))
        daemon.up()
    [first] = wait_for(lambda: running_on(two) or None, 20, f"the singleton to run; {logs(two)}")
    other = "b" if first == "a" else "a"
    began = time.monotonic()
    assert two[first].cli("down").returncode == 0
    wait_for(lambda: two[first].daemon.poll() is not None, 30, "the daemon to exit")  # type: ignore[union-attr]
    wait_for(lambda: row(two[other])["state"] == "running", 10, f"{other} to take it; {logs(two)}")
    assert time.monotonic() - began < 10
    assert [(kind, node) for kind, node, _ in runs(shared)] == [("run", first), ("run", other)]


def test_a_singleton_stopped_by_hand_moves_to_another_node(
    three: dict[str, Stoker], postgres_url: str, shared: Path
) -> None:
    """A stop by hand is this node's (like every stop by hand): it gives the lease up once its
    copy has stopped, and another node that wants the program runs it. `stoker start` here
    again waits its turn. The copy here takes longer than the lease (3 s) to stop: the lease is
    renewed meanwhile, so the other node cannot start a second copy before it has gone."""
    two = {"a": three["a"], "b": three["b"]}
    slow = (
        "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: (time.sleep(4), sys.exit(0)))\n"
    )
    (shared / "single.py").write_text(slow + SINGLE)
    for node, daemon in two.items():
        daemon.write(cluster_config(postgres_url, node, shared))
        daemon.up()
    [first] = wait_for(lambda: running_on(two) or None, 20, f"the singleton to run; {logs(two)}")
    other = "b" if first == "a" else "a"
    assert two[first].cli("stop", "single").returncode == 0
    wait_for(lambda: running_on(two) == [other], 10, f"{other} to take it; {logs(two)}")
    here = wait_for(
        lambda: (r := row(two[first]))["holder"] == other and r, 5, "the news at the next renewal"
    )
    assert here["stopped_by_hand"]
    assert f"stopped by hand; singleton: runs on {other}" in two[first].cli("status").stdout
    assert two[first].cli("start", "single").returncode == 0
    assert row(two[first])["state"] == "stopped"  # the lease is the other node's
    assert running_on(two) == [other]
    assert [(kind, node) for kind, node, _ in runs(shared)] == [("run", first), ("run", other)]


def test_a_node_outside_nodes_never_takes_the_lease(
    three: dict[str, Stoker], postgres_url: str, shared: Path
) -> None:
    for node, daemon in three.items():
        config = cluster_config(postgres_url, node, shared)
        daemon.write(config.replace("singleton = true\n", 'singleton = true\nnodes = ["a", "b"]\n'))
        daemon.up()
    [first] = wait_for(lambda: running_on(three) or None, 20, f"the singleton to run; {logs(three)}")
    assert first in ("a", "b")
    assert row(three["c"])["placement"] == 'not placed on node c (nodes = ["a", "b"])'
    three[first].kill()
    others = {node: d for node, d in three.items() if node != first}
    [second] = wait_for(
        lambda: running_on(others) or None, 15, f"the other placed node to take it; {logs(others)}"
    )
    assert second == ({"a", "b"} - {first}).pop()


def test_a_reload_that_makes_a_program_a_singleton_keeps_one_copy(
    three: dict[str, Stoker], postgres_url: str, shared: Path
) -> None:
    two = {"a": three["a"], "b": three["b"]}
    for node, daemon in two.items():
        daemon.write(cluster_config(postgres_url, node, shared).replace("singleton = true\n", "")
                     .replace("single.py", "plain.py"))  # fmt: skip
    (shared / "plain.py").write_text("import time\ntime.sleep(3600)\n")
    pids = {}
    for node, daemon in two.items():
        daemon.up()
        pids[node] = daemon.wait_state("single:0", "running")["pid"]
    for node, daemon in two.items():
        daemon.write(cluster_config(postgres_url, node, shared).replace("single.py", "plain.py"))
        assert daemon.json("reload")["placement"] == ["single"]

    def one_left() -> list[str] | None:
        states = {node: row(d) for node, d in two.items()}
        on = [node for node, r in states.items() if r["state"] == "running"]
        settled = all(r["state"] in ("running", "stopped") for r in states.values())
        return on if settled and len(on) == 1 else None

    [keeper] = wait_for(one_left, 15, f"one copy left; {logs(two)}")
    assert row(two[keeper])["pid"] == pids[keeper]  # the node that got the lease kept its process
    loser = "b" if keeper == "a" else "a"
    assert not pid_alive(pids[loser]) and row(two[loser])["placement"] == f"singleton: runs on {keeper}"


def test_a_holder_cut_off_from_the_store_stops_its_copy_before_the_lease_lapses(
    stoker: Stoker, postgres_server: Any, shared: Path
) -> None:
    """On a server of its own, stopped as a crash would stop it: the holder cannot renew and
    stops the singleton within the lease (2/3 of it: stop signal; 5/6: SIGKILL, whatever the
    program's stop_timeout), so no other node could ever find the lease free while it runs.
    When the server is back, the singleton runs again."""
    from postgres import fresh_database, run_server

    servers = run_server(postgres_server.bindir)
    server = next(servers)
    try:
        url = fresh_database(server)
        # the program ignores SIGTERM: only the fence's SIGKILL can end it in time
        stoker.write(cluster_config(url, "a", shared, timeout="6s"))
        (shared / "single.py").write_text(
            "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + SINGLE
        )
        stoker.up()
        pid = stoker.wait_state("single:0", "running", timeout=20)["pid"]
        server.stop()
        cut = time.monotonic()
        wait_for(lambda: not pid_alive(pid), 10, f"the copy to be stopped; {stoker.log_text()[-3000:]}")
        assert time.monotonic() - cut < 6.0  # within the lease, which was last renewed before the cut
        stopped = stoker.wait_state("single:0", "stopped")
        assert stopped["placement"].startswith("singleton: lease not renewed for"), stopped
        assert stopped["holder"] is None
        assert "still running at its lease's deadline: SIGKILL" in stoker.log_text()
        server.start()
        again = stoker.wait_state("single:0", "running", timeout=20, holder="a")
        assert again["pid"] != pid
        assert stoker.terminate() == 0
    finally:
        servers.close()
