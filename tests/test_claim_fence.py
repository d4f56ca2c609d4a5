"""A claim whose answer comes back after its node was fenced starts nothing (a clean CI run's
fault test found one job run on two nodes at once: a claim sent over a lossy link was
recorded, the others took the node for dead and queued the job again, another node began it,
the node's heartbeat was answered again, and only then did the claim's answer arrive).

The dispatcher runs in this process on a real PostgreSQL store; the claim's answer is held up
as a lossy link holds it (the store answers, the answer waits), and the fence and its lifting
are JobFence's calls (daemon/cluster.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from config_helpers import load
from conftest import wait_for_async

from stoker.jobs.dispatcher import FENCED_MEANWHILE, LAPSED, Dispatcher
from stoker.jobstates import Outcome
from stoker.store import Job, NewJob
from stoker.store.postgres import PostgresStore

DEADLINE = 30.0


@pytest.mark.parametrize("taken_by_another", [False, True], ids=["left", "taken-by-another-node"])
def test_a_claim_answered_after_a_fence_runs_nothing(
    tmp_path: Path, postgres_url: str, taken_by_another: bool
) -> None:
    """Whether another node took the job meanwhile (it runs there, untouched by this node's
    interrupted end) or not (it is queued again, and runs here once)."""
    runs = tmp_path / "runs"
    config = load(
        tmp_path,
        f"""
        [daemon]
        store = "{postgres_url}"
        node = "n1"
        state_dir = "{tmp_path / "state"}"
        [tasks.mark]
        command = ["sh", "-c", "echo ran >> {runs}"]
        """,
    )

    async def main() -> None:
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            await store.join("n1", config.daemon.node_timeout)
            dispatcher = Dispatcher(config, store, shared=store)
            await dispatcher.start()
            held = asyncio.Event()  # the first claim's answer is in, and held
            release = asyncio.Event()
            claim = store.claim

            async def slow_claim(queue: str, limit: int, now: float, node: str) -> list[Job]:
                jobs = await claim(queue, limit, now, node)
                if jobs and not release.is_set():
                    held.set()
                    await release.wait()
                return jobs

            store.claim = slow_claim  # type: ignore[method-assign]
            running = asyncio.create_task(dispatcher.run())
            try:
                await fenced_across_a_claim(store, dispatcher, held, release)
            finally:
                release.set()
                await dispatcher.shutdown(5.0)
                await running
        finally:
            await store.close()

    async def fenced_across_a_claim(
        store: PostgresStore, dispatcher: Dispatcher, held: asyncio.Event, release: asyncio.Event
    ) -> None:
        [(job, _)] = await store.enqueue(
            [NewJob(task="mark", queue="default", params={}, max_attempts=3, run_at=time.time())], time.time()
        )
        dispatcher.queued(job)
        await asyncio.wait_for(held.wait(), DEADLINE)
        assert (await store.get(job.id)).state == "running"  # type: ignore[union-attr]
        dispatcher.fence("fenced: no heartbeat answered (a test)", 10.0)
        if taken_by_another:  # n1 taken for dead: its jobs queued again, n2 claims this one
            other = PostgresStore(postgres_url)
            await other.open()
            try:
                await other.join("n2", config.daemon.node_timeout)
                assert await other.requeue_running("n1", time.time(), LAPSED) == [job.id]
                [taken] = await other.claim("default", 1, time.time(), "n2")
            finally:
                await other.close()
        dispatcher.unfence()
        release.set()
        if taken_by_another:
            await wait_for_async(
                lambda: not dispatcher.running, DEADLINE, "the held claim's attempt to end on n1"
            )
            now = await store.get(job.id)
            assert now is not None and (now.state, now.node, now.attempt) == ("running", "n2", 1)
            assert now.started_at == taken.started_at
            attempts = await store.attempts(job.id)
            assert [(a.outcome, a.error, a.node) for a in attempts] == [(Outcome.INTERRUPTED, LAPSED, "n1")]
            return

        async def succeeded() -> Job | None:
            got = await store.get(job.id)
            return got if got is not None and got.state == "succeeded" else None

        done = await wait_for_async(succeeded, DEADLINE, "the job to run again and succeed")
        assert isinstance(done, Job) and done.attempt == 1
        attempts = await store.attempts(job.id)
        assert [(a.outcome, a.error) for a in attempts] == [
            (Outcome.INTERRUPTED, FENCED_MEANWHILE),
            (Outcome.SUCCEEDED, None),
        ]

    asyncio.run(main())
    # the claim held across the fence started nothing: the job ran once here, or not at all
    assert (runs.read_text() if runs.exists() else "") == ("" if taken_by_another else "ran\n")
