"""The cluster view: every node publishes its program instances to the shared store; any node
shows all of them (`stoker status --all-nodes`, `GET /api/v1/programs?all_nodes=1`,
`/api/v1/nodes`). Pure parts (api/nodes.py, the publisher's pacing, the CLI's NODE column)
first, then the PostgreSQL store, then real daemons on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import Stoker, wait_for

from stoker.api import nodes as view
from stoker.api import schemas
from stoker.cli.programs import selected
from stoker.cli.render import node_cell
from stoker.daemon.cluster import Publisher
from stoker.store import NodeRecord

# pure: api/nodes.py ------------------------------------------------------------------------------


def instance(name: str, state: str = "running", **kw: Any) -> schemas.ProgramInstance:
    program, _, index = name.partition(":")
    fields: dict[str, Any] = {
        "name": name,
        "program": program,
        "instance": int(index or 0),
        "state": state,
        "pid": 100,
        "exit_code": None,
        "restarts": 0,
        "started_at": None,
        "uptime": 10.0 if state == "running" else None,
        "memory": 2048,
        "node": "elsewhere",
        "error": None,
    }
    fields.update(kw)
    return schemas.ProgramInstance(**fields)


def record(
    name: str, rows: list[schemas.ProgramInstance] | None, silent: float = 1.0, age: float = 2.0
) -> NodeRecord:
    programs = None if rows is None else msgspec.json.encode(rows)
    return NodeRecord(name, "host-" + name, 4242, 1_800_000_000.0, silent, "1.0", programs, age)


def test_another_nodes_uptime_grows_by_its_snapshots_age_and_the_rest_is_as_published() -> None:
    [running, stopped] = view.remote_programs(
        record("web-2", [instance("api:0"), instance("cron:0", "stopped", pid=None)], silent=1.5, age=4.0),
        3.0,
    )
    assert running.uptime == 14.0 and running.memory == 2048 and running.node == "web-2"
    assert stopped.uptime is None
    assert running.node_silent_for == 1.5 and not running.node_lapsed


def test_a_node_silent_past_the_timeout_is_lapsed() -> None:
    [row] = view.remote_programs(record("web-2", [instance("api:0")], silent=45.2), 30.0)
    assert row.node_lapsed and row.node_silent_for == 45.2
    assert node_cell(msgspec.to_builtins(row)) == "web-2 (silent 45s)"
    assert node_cell({"node": "web-1", "node_lapsed": False}) == "web-1"


def test_this_node_shows_its_live_rows_first_then_the_others_by_name() -> None:
    local = [instance("mailer:0", node="web-1", uptime=3.0)]
    records = [
        record("web-3", [instance("c:0")]),
        record("web-1", [instance("stale:0")]),  # its own published snapshot: older than the live rows
        record("web-2", [instance("b:0"), instance("b:1")]),
        record("web-4", None),  # joined, not published yet
    ]
    rows = view.all_programs(local, "web-1", records, 30.0)
    assert [(r.node, r.name) for r in rows] == [("web-1", "mailer:0"), ("web-2", "b:0"), ("web-2", "b:1"),
                                                ("web-3", "c:0")]  # fmt: skip
    assert rows[0].node_silent_for is None


def test_a_snapshot_this_version_cannot_read_shows_no_programs() -> None:
    broken = NodeRecord("web-9", "h", 1, 0.0, 1.0, "9.0", b'[{"name": 3}]', 1.0)
    assert view.remote_programs(broken, 30.0) == []


def test_nodes_lists_this_one_first_with_counts_then_the_others() -> None:
    this = schemas.Node(name="web-1", local=True, alive=True, silent_for=None, host="h", pid=1, version="1",
                        joined_at=None, instances=0, states={})  # fmt: skip
    local = [instance("a:0", node="web-1"), instance("b:0", "fatal", node="web-1")]
    records = [record("web-2", [instance("c:0")], silent=40.0), record("web-1", [])]
    [me, other] = view.all_nodes(local, this, records, 30.0)
    assert me.instances == 2 and me.states == {"fatal": 1, "running": 1}
    assert (
        other.name == "web-2"
        and not other.alive
        and other.silent_for == 40.0
        and other.states == {"running": 1}
    )


def test_names_select_on_every_node() -> None:
    rows = [{"name": "a:0", "program": "a"}, {"name": "a:1", "program": "a"}, {"name": "b:0", "program": "b"}]
    assert selected(rows, []) == rows
    assert selected(rows, ["a:1", "b"]) == rows[1:]
    with pytest.raises(SystemExit):
        selected(rows, ["nope"])


# the publisher's pacing (a fake store) ------------------------------------------------------------


class FakeShared:
    def __init__(self) -> None:
        self.published: list[bytes] = []
        self.arrived = asyncio.Event()

    async def publish(self, node: str, programs: bytes, version: str) -> None:
        self.published.append(programs)
        self.arrived.set()


def test_a_burst_of_changes_is_one_publish_and_a_heartbeat_takes_a_pending_change() -> None:
    async def main() -> None:
        shared = FakeShared()
        states = iter(range(1000))
        measured: list[bool] = []

        async def snapshot(measure: bool) -> bytes:
            measured.append(measure)
            return str(next(states)).encode()

        publisher = Publisher(shared, "web-1", "1.0", snapshot, gap=0.2)  # type: ignore[arg-type]
        task = asyncio.create_task(publisher.run())
        try:
            await publisher.now()  # the heartbeat's: measured
            for _ in range(50):  # a crash loop's burst
                publisher.changed()
            shared.arrived.clear()
            await asyncio.wait_for(shared.arrived.wait(), 5)
            assert len(shared.published) == 2 and measured == [True, False]
            publisher.changed()
            await publisher.now()  # a heartbeat before the gap is over publishes the change
            await asyncio.sleep(0.4)  # past the gap: nothing more is due (this waits for an absence)
            assert len(shared.published) == 3
        finally:
            task.cancel()

    asyncio.run(main())


# the PostgreSQL store ---------------------------------------------------------------------------


def test_the_store_keeps_each_nodes_last_publish_until_it_leaves(postgres_url: str) -> None:
    from test_store_postgres import add_node, nodes

    async def main() -> None:
        async with nodes(postgres_url, 2) as [a, b]:
            await a.join("a", 30)
            await b.join("b", 30)
            assert [(r.name, r.programs) for r in await a.nodes(3600)] == [("a", None), ("b", None)]
            await a.publish("a", b'[{"name": "x:0", "status_text": "nul \\u0000 here"}]', "1.2.3")
            await b.publish("a", b"[]", "9")  # not b's name: nothing
            [mine, theirs] = await b.nodes(3600)
            assert json.loads(mine.programs or b"") == [{"name": "x:0", "status_text": "nul \ufffd here"}]
            assert mine.version == "1.2.3" and mine.published_ago is not None and 0 <= mine.published_ago < 5
            assert theirs.programs is None and 0 <= theirs.silent_for < 5
            await a.leave("a")
            assert [r.name for r in await b.nodes(3600)] == ["b"]
        add_node(postgres_url, "gone", "other-host", 4242, silent_for=7200)
        async with nodes(postgres_url, 1) as [store]:
            assert [r.name for r in await store.nodes(3600)] == ["b"]  # forgotten after an hour here
            [gone] = [r for r in await store.nodes(86400) if r.name == "gone"]
            assert 7190 < gone.silent_for < 7300

    asyncio.run(main())


# real daemons on PostgreSQL -----------------------------------------------------------------------


def node_config(url: str, node: str, programs: str) -> str:
    return f'[daemon]\nstore = "{url}"\nnode = "{node}"\nnode_timeout = "3s"\n' + textwrap.dedent(programs)


def by_node(daemon: Stoker) -> dict[str, dict[str, dict[str, Any]]]:
    """`stoker status --all-nodes --json` as node → instance name → row."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in daemon.json("status", "--all-nodes"):
        out.setdefault(row["node"], {})[row["name"]] = row
    return out


def test_every_node_shows_every_nodes_programs_and_a_killed_one_lapses(
    stoker: Stoker, postgres_url: str, tmp_path: Path
) -> None:
    a, b, c = stoker, Stoker(tmp_path / "b"), Stoker(tmp_path / "c")
    a.write(node_config(postgres_url, "web-a", """
        [programs.api]
        command = "sleep 300"
        instances = 2
        """))  # fmt: skip
    b.root.mkdir()
    b.write(node_config(postgres_url, "web-b", """
        [programs.mailer]
        command = "sleep 300"
        [programs.idle]
        command = "sleep 300"
        autostart = false
        """))  # fmt: skip
    c.root.mkdir()
    c.write(node_config(postgres_url, "web-c", """
        [programs.crasher]
        command = ["sh", "-c", "exit 3"]
        restart = "never"
        """))  # fmt: skip
    try:
        for daemon in (a, b, c):
            daemon.up()
        expected = {
            "web-a": {"api:0": "running", "api:1": "running"},
            "web-b": {"mailer:0": "running", "idle:0": "stopped"},
            "web-c": {"crasher:0": "exited"},
        }

        def sees_all(daemon: Stoker) -> dict[str, dict[str, dict[str, Any]]] | None:
            seen = by_node(daemon)
            states = {node: {name: row["state"] for name, row in rows.items()} for node, rows in seen.items()}
            return seen if states == expected else None

        logs = lambda: "\n".join(d.log_text()[-2000:] for d in (a, b, c))  # noqa: E731
        for daemon in (a, b, c):
            seen = wait_for(lambda d=daemon: sees_all(d), 20, f"every node's programs; logs:\n{logs()}")
        # as c sees them: the others' rows as they published, its own live
        assert seen["web-a"]["api:0"]["pid"] == a.programs()["api:0"]["pid"]
        assert seen["web-c"]["crasher:0"]["node_silent_for"] is None
        assert seen["web-a"]["api:1"]["node_silent_for"] is not None
        assert not any(row["node_lapsed"] for rows in seen.values() for row in rows.values())

        # a change on b reaches a without waiting for a heartbeat
        assert b.cli("start", "idle").returncode == 0
        wait_for(lambda: by_node(a)["web-b"]["idle:0"]["state"] == "running", 10, "a to see idle running")

        table = a.cli("status", "--all-nodes")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split()[:3] == ["NODE", "NAME", "STATE"]
        assert any(line.split()[:3] == ["web-b", "mailer:0", "running"] for line in lines), table.stdout

        nodes = a.client.nodes()
        assert [(n["name"], n["local"], n["alive"]) for n in nodes] == [
            ("web-a", True, True), ("web-b", False, True), ("web-c", False, True)
        ]  # fmt: skip
        assert nodes[1]["states"] == {"running": 2} and nodes[1]["pid"] == b.daemon.pid  # type: ignore[union-attr]

        b.kill()  # SIGKILL: it cannot say goodbye; it lapses once node_timeout (3 s) passes

        def b_lapsed() -> dict[str, dict[str, Any]] | None:
            rows = by_node(c).get("web-b", {})
            return rows if rows and all(r["node_lapsed"] for r in rows.values()) else None

        lapsed = wait_for(b_lapsed, 20, f"web-b to lapse; logs:\n{logs()}")
        assert lapsed["mailer:0"]["state"] == "running"  # its last word, shown as such
        assert all(r["node_silent_for"] > 3 for r in lapsed.values())
        table = c.cli("status", "--all-nodes", "mailer")
        assert table.returncode == 0 and "web-b (silent " in table.stdout, table.stdout
        assert [n["alive"] for n in c.client.nodes() if n["name"] == "web-b"] == [False]
        assert not any(r["node_lapsed"] for r in by_node(c)["web-a"].values())

        assert c.terminate() == 0  # a node that stops leaves the view
        wait_for(lambda: "web-c" not in by_node(a), 10, "web-c to leave the view")
    finally:
        b.cleanup()
        c.cleanup()


def test_on_sqlite_all_nodes_is_this_node(stoker: Stoker) -> None:
    stoker.write("""
        [daemon]
        node = "solo"
        [programs.web]
        command = "sleep 300"
        """)  # fmt: skip
    stoker.up()
    stoker.wait_state("web:0", "running")
    [row] = stoker.json("status", "--all-nodes")
    assert row["node"] == "solo" and row["name"] == "web:0" and row["node_silent_for"] is None
    table = stoker.cli("status", "--all-nodes")
    assert table.stdout.splitlines()[1].split()[:3] == ["solo", "web:0", "running"]
    [node] = stoker.json("nodes")
    assert node["name"] == "solo" and node["local"] and node["states"] == {"running": 1}
    assert stoker.cli("status", "--all-nodes", "nope").returncode == 2
