"""A job answered 201 is on disk (issue 20): the daemon SIGKILLed the moment the answer is in,
then started again, still has it; so does every job answered to producers that were enqueueing
together (sharing group commits) when the daemon died."""

from __future__ import annotations

import os
import signal
import threading

from conftest import Stoker

from stoker.client import Client, ClientError

CONFIG = """
[tasks.work]
command = ["true"]
queue = "work"
params = ["n"]
[queues.work]
concurrency = 1
"""


def _client(stoker: Stoker) -> Client:
    return Client(socket_path=stoker.state_dir / "stoker.sock", timeout=30)


def _kill(stoker: Stoker) -> None:
    assert stoker.daemon is not None
    os.kill(stoker.daemon.pid, signal.SIGKILL)
    stoker.daemon.wait(10)


def test_an_answered_job_survives_sigkill_at_once(stoker: Stoker) -> None:
    stoker.write(CONFIG)
    stoker.up()
    client = _client(stoker)
    client.pause("work")  # nothing runs it: it stays queued across the restart
    job = client.enqueue("work", n="1")
    _kill(stoker)  # no time for anything after the answer
    stoker.up()
    again = _client(stoker).job(job.id)
    assert again.state == "queued" and again.params == {"n": "1"}


def test_jobs_answered_to_producers_together_survive_sigkill(stoker: Stoker) -> None:
    stoker.write(CONFIG)
    stoker.up()
    _client(stoker).pause("work")
    answered: list[tuple[int, str]] = []
    lock = threading.Lock()
    enough = threading.Event()

    def produce(me: int) -> None:
        client = _client(stoker)
        for i in range(10_000):
            try:
                job = client.enqueue("work", n=f"{me}-{i}")
            except ClientError:  # the daemon is gone
                return
            with lock:
                answered.append((job.id, f"{me}-{i}"))
                if len(answered) >= 200:
                    enough.set()

    threads = [threading.Thread(target=produce, args=(me,)) for me in range(8)]
    for t in threads:
        t.start()
    try:
        assert enough.wait(120), "the producers did not get 200 answers"
        _kill(stoker)
    finally:
        enough.set()
        for t in threads:
            t.join(60)
    with lock:
        kept = list(answered)
    stoker.up()
    client = _client(stoker)
    stored = {}
    before = None
    while True:  # every job, paged
        page = client.jobs(queue="work", limit=1000, before=before)
        if not page:
            break
        stored.update({j.id: j.params["n"] for j in page})
        before = page[-1].id
    missing = [(job_id, n) for job_id, n in kept if stored.get(job_id) != n]
    assert not missing, f"{len(missing)} of {len(kept)} answered jobs lost: {missing[:5]}"


def test_a_relaxed_queue_loses_nothing_to_the_daemons_death(stoker: Stoker) -> None:
    """relaxed: the commit does not wait for the disk's flush, but it is a commit: the daemon
    SIGKILLed at once (no power cut) keeps the job (the WAL is in the operating system's hands)."""
    stoker.write(CONFIG.replace("concurrency = 1", 'concurrency = 1\ndurability = "relaxed"'))
    stoker.up()
    client = _client(stoker)
    client.pause("work")
    assert [q.durability for q in client.queues() if q.name == "work"] == ["relaxed"]
    ids = [client.enqueue("work", n=str(i)).id for i in range(20)]
    _kill(stoker)
    stoker.up()
    assert [j.id for j in _client(stoker).jobs(queue="work")] == ids[::-1]
