"""What only the PostgreSQL store has: its schema and migrations, its connection errors, several
daemons (stores) on one database at once, and the values PostgreSQL cannot hold as given. The
protocol's contract runs on it in test_store.py."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import psycopg
import pytest

from stoker.jobs.rules import JobState, Next, Outcome
from stoker.store import AttemptEnd, NewJob, SlotRecord, StoreError
from stoker.store.base import started
from stoker.store.postgres import PostgresStore
from stoker.store.postgres_sql import MIGRATIONS

T0 = 1_800_000_000.0


def new(**kw: Any) -> NewJob:
    options: dict[str, Any] = {"task": "t", "queue": "q", "params": {}, "max_attempts": 3, "run_at": T0}
    options.update(kw)
    return NewJob(**options)


@asynccontextmanager
async def nodes(url: str, count: int) -> AsyncIterator[list[PostgresStore]]:
    """`count` stores on one database, as that many daemons would open it (at the same time)."""
    stores = [PostgresStore(url) for _ in range(count)]
    async with AsyncExitStack() as stack:
        for store in stores:
            stack.push_async_callback(store.close)
        await asyncio.gather(*(store.open() for store in stores))
        yield stores


def scalar(url: str, sql: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
        return None if row is None else row[0]


def test_nodes_starting_at_once_migrate_once(postgres_url: str) -> None:
    async def main() -> None:
        async with nodes(postgres_url, 6) as stores:
            [(job, _)] = await stores[0].enqueue([new()], T0)
            assert await stores[5].get(job.id) == job

    asyncio.run(main())
    assert scalar(postgres_url, "SELECT count(*) FROM stoker.schema_version") == 1
    assert scalar(postgres_url, "SELECT version FROM stoker.schema_version") == len(MIGRATIONS)


def test_tables_live_in_their_own_schema(postgres_url: str) -> None:
    """An application's own `jobs` table in the same database is not touched."""
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE public.jobs (id int, payload text)")
        conn.execute("INSERT INTO public.jobs VALUES (1, 'theirs')")

    async def main() -> None:
        async with nodes(postgres_url, 1) as [store]:
            await store.enqueue([new(), new()], T0)

    asyncio.run(main())
    assert scalar(postgres_url, "SELECT count(*) FROM public.jobs") == 1
    assert scalar(postgres_url, "SELECT count(*) FROM stoker.jobs") == 2


def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    asyncio.run(_open_and_close(postgres_url))
    with psycopg.connect(postgres_url) as conn:
        conn.execute("UPDATE stoker.schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer than this stoker"):
        asyncio.run(_open_and_close(postgres_url))


def test_schedule_slots_of_an_older_schema_gain_a_reason(postgres_url: str) -> None:
    """A database from before `reason` keeps its slots; they read with none."""
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE SCHEMA stoker")
        for migration in MIGRATIONS[:-1]:
            conn.execute(migration)
        conn.execute("CREATE TABLE stoker.schema_version (version integer NOT NULL)")
        conn.execute("INSERT INTO stoker.schema_version VALUES (%s)", (len(MIGRATIONS) - 1,))
        conn.execute("INSERT INTO stoker.schedule_slots VALUES ('tick', %s, %s, 'skipped', NULL)", (T0, T0))

    async def main() -> None:
        async with nodes(postgres_url, 1) as [store]:
            assert (await store.last_slots())["tick"] == SlotRecord(T0, "skipped", None, None, T0)
            await store.fire("tick", T0 + 60, None, T0 + 60, "when_file x is absent")
            assert (await store.last_slots())["tick"].reason == "when_file x is absent"

    asyncio.run(main())
    assert scalar(postgres_url, "SELECT version FROM stoker.schema_version") == len(MIGRATIONS)


async def _open_and_close(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    await store.close()


def test_an_unreachable_server_is_named_without_its_password(postgres_server: Any) -> None:
    from conftest import free_port

    url = f"postgresql://app:s3cret-pw@127.0.0.1:{free_port()}/orders"
    with pytest.raises(StoreError) as raised:
        asyncio.run(_open_and_close(url))
    message = str(raised.value)
    assert "database orders on 127.0.0.1" in message and "as app" in message, message
    assert "s3cret-pw" not in message


def test_a_missing_database_is_named(postgres_server: Any) -> None:
    with pytest.raises(StoreError, match=r"database no_such_db on .*does not exist"):
        asyncio.run(_open_and_close(postgres_server.url("no_such_db")))


def test_without_psycopg_the_error_says_what_to_install() -> None:
    """As on a machine where stoker was installed without the postgres extra."""
    program = (
        "import sys; sys.modules['psycopg'] = None\n"  # what an absent package looks like to import
        "from stoker.store import StoreError, open_store\n"
        "try:\n"
        "    open_store('postgresql://app@db/orders', '.')\n"
        "except StoreError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert "pip install 'stoker[postgres]'" in done.stdout, done


def test_nodes_claiming_at_once_never_share_a_job(postgres_url: str) -> None:
    async def main() -> None:
        async with nodes(postgres_url, 3) as stores:
            await stores[0].enqueue([new(params={"n": n}) for n in range(300)], T0)

            async def drain(store: PostgresStore, node: str) -> list[int]:
                mine: list[int] = []
                while claimed := await store.claim("q", 7, T0, node):
                    assert all(j.state is JobState.RUNNING and j.node == node for j in claimed)
                    mine += [j.id for j in claimed]
                return mine

            claimed = await asyncio.gather(*(drain(s, f"node-{i}") for i, s in enumerate(stores)))
        ids = [job_id for per_node in claimed for job_id in per_node]
        assert sorted(ids) == list(range(1, 301))  # every job once: none shared, none left

    asyncio.run(main())


def test_claim_takes_jobs_in_order(postgres_url: str) -> None:
    async def main() -> None:
        async with nodes(postgres_url, 1) as [store]:
            await store.enqueue(
                [new(params={"n": 1}), new(params={"n": 2}, priority=5), new(params={"n": 3}, run_at=T0 - 5),
                 new(params={"n": 4}, run_at=T0 + 1)],
                T0,
            )  # fmt: skip
            first = await store.claim("q", 2, T0, "a")
            rest = await store.claim("q", 5, T0, "a")
            assert [j.params["n"] for j in first] == [2, 3] and [j.params["n"] for j in rest] == [1]
            assert [j.attempt for j in first + rest] == [1, 1, 1]
            assert await store.get(first[0].id) == first[0]

    asyncio.run(main())


def test_a_node_taken_for_dead_claims_nothing_until_it_heartbeats(postgres_url: str) -> None:
    """A claim that reaches the server while its node's heartbeat is `node_timeout` old (sent
    before a partition, delivered after it) must take nothing: the other nodes may be queueing
    that node's jobs again at that very moment, and the node, its fence lifted by a heartbeat
    answered meanwhile, would run what it took beside them (issue 21)."""

    async def main() -> None:
        async with nodes(postgres_url, 1) as [store]:
            await store.join("a", 3.0)
            await store.enqueue([new(), new()], T0)
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute("UPDATE stoker.nodes SET heartbeat_at = heartbeat_at - 10 WHERE name = 'a'")
            assert await store.claim("q", 1, T0, "a") == []
            assert await store.heartbeat("a", 3.0) == []
            assert len(await store.claim("q", 1, T0, "a")) == 1
            assert len(await store.claim("q", 1, T0, "b")) == 1  # a node that never joined: as before

    asyncio.run(main())


def test_a_job_whose_nodes_stopped_answering_is_queued_again_however_often(postgres_url: str) -> None:
    """A node taken for dead by the others may only have been cut off: that is no evidence
    that the job killed it. Found by bench/faults.py (issue 21): a job on three nodes in turn
    that were cut off or killed was failed (`3 times: not run again`), never run to its end.
    A daemon that finds its own jobs running at its start still counts them (`crashed`)."""

    async def main() -> None:
        async with nodes(postgres_url, 1) as [store]:
            [(job, _)] = await store.enqueue([new()], T0)
            for _ in range(5):
                [claimed] = await store.claim("q", 1, T0, "x")
                assert await store.requeue_running("x", T0, "lapsed", crashed=False) == [claimed.id]
            again = await store.get(job.id)
            assert again is not None and again.state is JobState.QUEUED and again.attempt == 0
            for crash in range(3):
                await store.claim("q", 1, T0, "x")
                assert await store.requeue_running("x", T0, "died") == ([] if crash == 2 else [job.id])
            failed = await store.get(job.id)
            assert failed is not None and failed.state is JobState.FAILED

    asyncio.run(main())


def test_join_and_heartbeat_read_the_servers_clock_within_their_round_trip(postgres_url: str) -> None:
    """What a node's view of the cluster's time is measured from (stoker/skew.py): the server's
    clock, read in the join's and each heartbeat's own statement, between two readings of this
    machine's monotonic clock (the same wall clock here: the test and the server share the machine). A node whose
    clock is wrong: tests/test_postgres_skew.py (real daemons under libfaketime)."""

    async def main() -> None:
        async with nodes(postgres_url, 1) as [store]:
            assert store.clock_reading is None
            for step in (store.join("a", 3.0), store.heartbeat("a", 3.0)):
                store.clock_reading = None
                await step
                assert store.clock_reading is not None
                sent, server, received = store.clock_reading  # sent, received: monotonic
                wall = time.time() - time.monotonic()  # the wall clock minus the monotonic, here
                assert sent <= received
                assert sent + wall - 0.05 <= server <= received + wall + 0.05  # one clock; some leeway

    asyncio.run(main())


def test_one_node_wins_a_job_both_read(postgres_url: str) -> None:
    async def main() -> None:
        async with nodes(postgres_url, 2) as [a, b]:
            await a.enqueue([new()], T0)
            [seen_by_a], _ = await a.due("q", 5, T0)
            [seen_by_b], _ = await b.due("q", 5, T0)
            answers = await asyncio.gather(
                a.start(started(seen_by_a, T0, "a")), b.start(started(seen_by_b, T0, "b"))
            )
            [winner] = [job for job in answers if job is not None]
            assert await a.get(winner.id) == winner
            # the loser ends the attempt it never started, as the dispatcher does: no effect
            loser = b if winner.node == "a" else a
            cancelled = AttemptEnd(winner.id, 1, Outcome.CANCELLED, Next(JobState.CANCELLED), T0 + 1)
            assert await loser.finish(winner, cancelled) is None
            assert await a.get(winner.id) == winner
            owner = a if winner.node == "a" else b
            succeeded = AttemptEnd(winner.id, 1, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED), T0 + 2)
            done = await owner.finish(winner, succeeded)
            assert done is not None and done.state is JobState.SUCCEEDED and done.node == winner.node

    asyncio.run(main())


def test_a_slot_fires_once_across_nodes(postgres_url: str) -> None:
    async def main() -> None:
        async with nodes(postgres_url, 3) as stores:
            job = new(schedule="tick", slot=T0)
            answers = await asyncio.gather(*(s.fire("tick", T0, job, T0) for s in stores))
            assert sorted(fired for fired, _ in answers) == [False, False, True]
            assert len(await stores[0].jobs()) == 1
            record = (await stores[1].last_slots())["tick"]
            assert (record.slot, record.outcome) == (T0, "fired")

    asyncio.run(main())


def test_one_live_job_per_key_across_nodes(postgres_url: str) -> None:
    async def main() -> None:
        async with nodes(postgres_url, 3) as stores:
            answers = await asyncio.gather(*(s.enqueue([new(key="invoice-7")], T0) for s in stores))
            jobs = [pair for [pair] in answers]
            assert sorted(created for _, created in jobs) == [False, False, True]
            assert len({job.id for job, _ in jobs}) == 1

    asyncio.run(main())


def test_values_postgresql_cannot_hold_are_stored_as_near_as_it_can(postgres_url: str) -> None:
    """A program's output with NUL bytes, a result with NaN: the end is recorded, not refused."""

    async def main() -> None:
        async with nodes(postgres_url, 1) as [store]:
            [(queued, _)] = await store.enqueue([new(params={"s": "a\x00b"})], T0)
            assert queued.params == {"s": "a\ufffdb"}
            running = await store.start(started(queued, T0, "a"))
            assert running is not None
            done = await store.finish(
                running,
                AttemptEnd(
                    job_id=running.id, attempt=1, outcome=Outcome.SUCCEEDED, next=Next(JobState.SUCCEEDED),
                    finished_at=T0 + 1, output="bin\x00ary", error="e\x00", result={"x": math.nan, "y": [1.5]},
                    has_result=True,
                )
            )  # fmt: skip
            assert done is not None and done.state is JobState.SUCCEEDED
            assert (done.output, done.error, done.result) == (
                "bin\ufffdary",
                "e\ufffd",
                {"x": None, "y": [1.5]},
            )

    asyncio.run(main())


def test_a_server_that_went_away_is_an_error_then_is_reconnected(postgres_server: Any) -> None:
    """On a server of its own: it is stopped as a crash would stop it, then started again."""
    from postgres import fresh_database, run_server

    servers = run_server(postgres_server.bindir)
    server = next(servers)
    try:
        url = fresh_database(server)

        async def main() -> None:
            async with nodes(url, 1) as [store]:
                [(job, _)] = await store.enqueue([new()], T0)
                server.stop()
                with pytest.raises(StoreError, match=r"PostgreSQL \(database t_\w+ on "):
                    await store.enqueue([new()], T0)
                server.start()
                assert await store.get(job.id) == job
                [(again, created)] = await store.enqueue([new()], T0)
                assert created and again.id > job.id

        asyncio.run(main())
    finally:
        servers.close()


def test_a_node_hears_the_jobs_cancels_and_pauses_of_another(postgres_url: str) -> None:
    """Enqueued, retried or fired on one node: the others are told which queue, at once (LISTEN);
    a cancel of a running job: which job; a pause: that pauses changed. A node is not told of
    its own."""

    async def main() -> None:
        async with nodes(postgres_url, 2) as [a, b]:
            heard: dict[str, asyncio.Queue[str | int | None]] = {"a": asyncio.Queue(), "b": asyncio.Queue()}
            for name, store in (("a", a), ("b", b)):
                said = heard[name]

                async def pauses_changed(said: asyncio.Queue[str | int | None] = said) -> None:
                    said.put_nowait("pauses")

                store.subscribe(queued_elsewhere=said.put_nowait, cancel_asked=said.put_nowait,
                                pauses_changed=pauses_changed)  # fmt: skip
            for name in ("a", "b"):  # connected: whatever was said before is unknown
                assert await asyncio.wait_for(heard[name].get(), 10) is None
                assert await asyncio.wait_for(heard[name].get(), 10) == "pauses"

            await a.enqueue([new(queue="mail"), new(queue="mail"), new(queue="build")], T0)
            assert {await asyncio.wait_for(heard["b"].get(), 10) for _ in range(2)} == {"mail", "build"}
            [(job, _)] = await b.enqueue([new(queue="mail", max_attempts=1)], T0)
            assert await asyncio.wait_for(heard["a"].get(), 10) == "mail"
            await b.cancel(job.id, T0)  # queued: cancelled at once, nobody to tell
            await a.retry(job.id, T0)
            assert await asyncio.wait_for(heard["b"].get(), 10) == "mail"
            await b.fire("tick", T0, new(queue="cron", schedule="tick", slot=T0), T0)
            assert await asyncio.wait_for(heard["a"].get(), 10) == "cron"
            [running] = await a.claim("build", 1, T0, "a")
            await b.cancel(running.id, T0)
            assert await asyncio.wait_for(heard["a"].get(), 10) == running.id
            await a.set_paused("mail", True)
            assert await asyncio.wait_for(heard["b"].get(), 10) == "pauses"
            await b.set_schedule_paused("tick", True)
            assert await asyncio.wait_for(heard["a"].get(), 10) == "pauses"
            assert heard["a"].empty() and heard["b"].empty()  # nobody heard itself

    asyncio.run(main())


def add_node(url: str, name: str, host: str, pid: int, silent_for: float) -> None:
    """A node row as another daemon would have left it, its last heartbeat `silent_for` ago."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO stoker.nodes (name, member, host, pid, joined_at, heartbeat_at) VALUES"
            " (%s, 'elsewhere', %s, %s, 0, extract(epoch FROM clock_timestamp()) - %s)",
            (name, host, pid, silent_for),
        )


def test_a_name_held_by_a_live_daemon_is_refused(postgres_url: str) -> None:
    import os
    import socket

    async def main() -> None:
        async with nodes(postgres_url, 1) as [store]:
            add_node(postgres_url, "web-1", "other-host", 4242, silent_for=1)
            add_node(postgres_url, "web-2", "other-host", 4242, silent_for=60)
            add_node(postgres_url, "web-3", socket.gethostname(), os.getppid(), silent_for=1)  # alive here
            with pytest.raises(
                StoreError, match=r"node 'web-1' is already running on other-host \(pid 4242\)"
            ):
                await store.join("web-1", 30)
            await store.join("web-2", 30)  # silent for longer than the timeout: taken over
            with pytest.raises(StoreError, match="node 'web-3' is already running on"):
                await store.join("web-3", 30)
            assert await store.heartbeat("web-2", 30) == []
            await store.leave("web-2")
            assert scalar(postgres_url, "SELECT count(*) FROM stoker.nodes WHERE name = 'web-2'") == 0

    asyncio.run(main())


def test_a_name_left_by_a_daemon_that_died_here_is_taken_at_once(postgres_url: str) -> None:
    import socket

    child = subprocess.Popen(["true"])
    child.wait()  # its pid is free now: a daemon that died on this host

    async def main() -> None:
        async with nodes(postgres_url, 1) as [store]:
            add_node(postgres_url, "web-1", socket.gethostname(), child.pid, silent_for=1)
            await store.join("web-1", 30)
            assert await store.heartbeat("web-1", 30) == []

    asyncio.run(main())


def test_heartbeat_names_the_silent_nodes_that_have_jobs_running(postgres_url: str) -> None:
    async def main() -> None:
        async with nodes(postgres_url, 2) as [a, b]:
            await a.join("a", 30)
            await b.join("b", 30)
            await a.enqueue([new(), new(), new()], T0)
            for node in ("a", "b", "gone"):  # (gone claims while alive: a node taken for dead claims nothing)
                await a.claim("q", 1, T0, node)
            add_node(postgres_url, "gone", "other-host", 4242, silent_for=60)
            add_node(postgres_url, "idle-gone", "other-host", 4343, silent_for=60)
            assert await a.heartbeat("a", 30) == ["gone"]  # not idle-gone: nothing of it runs
            assert await b.heartbeat("b", 30) == ["gone"]
            requeued = await a.requeue_running("gone", T0, "interrupted: its node died")
            assert len(requeued) == 1 and await b.requeue_running("gone", T0, "x") == []
            assert await a.heartbeat("a", 30) == []
            # b is taken for dead and its name taken over: b must not go on as if it held it
            with psycopg.connect(postgres_url) as conn:
                conn.execute("UPDATE stoker.nodes SET member = 'another daemon' WHERE name = 'b'")
            with pytest.raises(StoreError, match="no longer this daemon's"):
                await b.heartbeat("b", 30)

    asyncio.run(main())


def test_an_operation_the_server_refuses_spoils_only_itself(postgres_url: str) -> None:
    """Submitted together, the three run in one transaction; the server refuses the second (a
    priority beyond bigint): it is rolled back and the other two run again without it."""

    async def main() -> None:
        async with nodes(postgres_url, 1) as [store]:
            results = await asyncio.gather(
                store.enqueue([new(params={"n": 1})], T0),
                store.enqueue([new(params={"n": 2}, priority=2**70)], T0),
                store.enqueue([new(params={"n": 3})], T0),
                return_exceptions=True,
            )
            assert isinstance(results[1], psycopg.errors.NumericValueOutOfRange), results[1]
            assert sorted(j.params["n"] for j in await store.jobs()) == [1, 3]

    asyncio.run(main())


def test_singleton_leases_go_to_one_node_lapse_and_are_released(postgres_url: str) -> None:
    """Several nodes asking for one lease at once: exactly one holds it; the others see who.
    It is renewed by its holder, free for another only once lapsed (server clock) or given up;
    a node that leaves gives its leases up; a node whose name was taken renews nothing."""

    def lapse(name: str) -> None:
        with psycopg.connect(postgres_url) as conn:
            conn.execute("UPDATE stoker.leases SET expires_at = expires_at - 1000 WHERE name = %s", (name,))

    async def main() -> None:
        async with nodes(postgres_url, 3) as stores:
            names = ["a", "b", "c"]
            for store, name in zip(stores, names, strict=True):
                await store.join(name, 30)
            answers = await asyncio.gather(
                *(
                    s.renew_leases(n, 30, ["cron", "other"], ["cron"], [])
                    for s, n in zip(stores, names, strict=True)
                )
            )
            holders = {holders["cron"] for holders, _ in answers}
            assert len(holders) == 1 and "other" not in answers[0][0]
            [holder] = holders
            left = answers[names.index(holder)][1]["cron"]
            assert 29 < left <= 30
            a, b, _ = stores
            # the holder renews; the others keep seeing it
            if holder != "a":
                assert (await a.renew_leases("a", 30, ["cron"], ["cron"], []))[0] == {"cron": holder}
            lapse("cron")  # its node stopped renewing: it is anyone's
            taken, _ = await a.renew_leases("a", 30, ["cron"], ["cron"], [])
            assert taken == {"cron": "a"}
            assert (await b.renew_leases("b", 30, ["cron"], ["cron"], []))[0] == {"cron": "a"}
            # given up: another takes it at its next try
            assert (await a.renew_leases("a", 30, ["cron"], [], ["cron"]))[0] == {}
            assert (await b.renew_leases("b", 30, ["cron"], ["cron"], []))[0] == {"cron": "b"}
            await b.leave("b")  # leaving gives every lease up
            assert scalar(postgres_url, "SELECT count(*) FROM stoker.leases") == 0
            # a name taken over by another daemon: no renewing in its name
            with psycopg.connect(postgres_url) as conn:
                conn.execute("UPDATE stoker.nodes SET member = 'another daemon' WHERE name = 'a'")
            with pytest.raises(StoreError, match="no longer this daemon's"):
                await a.renew_leases("a", 30, ["cron"], ["cron"], [])

    asyncio.run(main())


def test_a_node_hears_that_leases_were_given_up(postgres_url: str) -> None:
    async def main() -> None:
        async with nodes(postgres_url, 2) as [a, b]:
            heard = asyncio.Event()
            listening = asyncio.Event()

            async def pauses_changed() -> None:
                listening.set()

            b.subscribe(
                queued_elsewhere=lambda _: None,
                cancel_asked=lambda _: None,
                pauses_changed=pauses_changed,
                leases_released=heard.set,
            )
            await asyncio.wait_for(listening.wait(), 10)
            await a.join("a", 30)
            await a.renew_leases("a", 30, ["cron"], ["cron"], [])
            await a.renew_leases("a", 30, ["cron"], [], ["cron"])
            await asyncio.wait_for(heard.wait(), 10)

    asyncio.run(main())


def test_a_daemon_that_took_a_nodes_name_waits_for_that_nodes_leases_to_lapse(postgres_url: str) -> None:
    """The daemon before it may be alive and cut off, still stopping its copy: its leases are
    its own (by daemon, not by node name) until they lapse."""

    async def main() -> None:
        async with nodes(postgres_url, 2) as [before, after]:
            await before.join("web-1", 30)
            assert (await before.renew_leases("web-1", 30, ["cron"], ["cron"], []))[0] == {"cron": "web-1"}
            with psycopg.connect(postgres_url) as conn:  # silent for longer than the timeout
                conn.execute("UPDATE stoker.nodes SET heartbeat_at = heartbeat_at - 60")
            await after.join("web-1", 30)
            holders, _ = await after.renew_leases("web-1", 30, ["cron"], ["cron"], [])
            assert holders == {"cron": "web-1 (its previous daemon)"}
            with psycopg.connect(postgres_url) as conn:
                conn.execute("UPDATE stoker.leases SET expires_at = expires_at - 1000")
            assert (await after.renew_leases("web-1", 30, ["cron"], ["cron"], []))[0] == {"cron": "web-1"}

    asyncio.run(main())


def test_an_end_and_the_claim_of_the_slot_it_frees_in_one_statement(postgres_url: str) -> None:
    async def main() -> None:
        async with nodes(postgres_url, 2) as [a, b]:
            await a.enqueue([new(params={"n": n}) for n in range(4)], T0)
            [first] = await a.claim("q", 1, T0, "a")
            succeeded = AttemptEnd(
                first.id, 1, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED), T0 + 1, output="ok"
            )
            done, claimed = await a.finish_and_claim(first, succeeded, "q", 2, T0 + 1, "a")
            assert done is not None and done.state is JobState.SUCCEEDED and done.output == "ok"
            assert await a.get(first.id) == done
            assert [(x.number, x.outcome) for x in await a.attempts(first.id)] == [(1, Outcome.SUCCEEDED)]
            assert [j.params["n"] for j in claimed] == [1, 2]
            assert all(j.state is JobState.RUNNING and j.node == "a" and j.attempt == 1 for j in claimed)
            # the claimed jobs are this store's to end; an end of an attempt it did not start
            # (another node's) records nothing, and the claim still happens
            [last] = await b.claim("q", 1, T0, "b")
            foreign = AttemptEnd(last.id, 1, Outcome.SUCCEEDED, Next(JobState.SUCCEEDED), T0 + 2)
            done, more = await a.finish_and_claim(last, foreign, "q", 2, T0 + 2, "a")
            assert done is None and more == [] and (await a.get(last.id)) == last
            for job in claimed:
                end = AttemptEnd(job.id, 1, Outcome.FAILED, Next(JobState.QUEUED, run_at=T0 + 60), T0 + 3)
                done, again = await a.finish_and_claim(job, end, "q", 1, T0 + 3, "a")
                assert done is not None and done.state is JobState.QUEUED and again == []

    asyncio.run(main())
