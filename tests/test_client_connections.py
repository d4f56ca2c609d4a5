"""The Python client keeps its connection to the daemon between calls (issue 20): one
connection for many requests, shared safely by threads, replaced when the daemon closed it,
and a daemon that is down is still told plainly."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from conftest import Stoker

from stoker.client import Client, NotRunning

CONFIG = """
[tasks.work]
command = ["true"]
queue = "work"
[queues.work]
concurrency = 1
"""


def _daemon(stoker: Stoker) -> Client:
    stoker.write(CONFIG)
    stoker.up()
    client = Client(socket_path=stoker.state_dir / "stoker.sock", timeout=30)
    client.pause("work")  # nothing runs: the jobs stay queued for counting
    return client


def test_one_connection_carries_many_calls(stoker: Stoker) -> None:
    client = _daemon(stoker)
    assert client._pool is not None
    [first] = client._pool.idle
    ids = [client.enqueue("work").id for _ in range(30)]
    assert len(set(ids)) == 30
    assert client._pool.idle == [first]  # the same connection, back in the pool each time
    assert client.jobs(queue="work", limit=100)[0].id == max(ids)
    assert client._pool.idle == [first]  # a listing (a chunked or long answer) leaves it reusable
    client.close()
    assert client._pool.idle == []
    assert client.job(ids[0]).state == "queued"  # a closed client opens a connection again


def test_threads_share_one_client(stoker: Stoker) -> None:
    client = _daemon(stoker)
    got: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def produce() -> None:
        try:
            for _ in range(25):
                job_id = client.enqueue("work").id
                with lock:
                    got.append(job_id)
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=produce) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(got) == len(set(got)) == 200
    assert next(q for q in client.queues() if q.name == "work").queued == 200
    assert client._pool is not None and 1 <= len(client._pool.idle) <= 8


def test_a_restarted_daemon_is_reached_again_and_a_stopped_one_is_not_running(stoker: Stoker) -> None:
    client = _daemon(stoker)
    before = client.enqueue("work").id
    assert client._pool is not None and len(client._pool.idle) == 1
    assert stoker.terminate() == 0
    with pytest.raises(NotRunning):  # the kept connection is dead, and so is the daemon
        client.enqueue("work")
    stoker.up()
    after = client.enqueue("work")  # a new connection, the request sent once
    assert after.id > before
    assert [j.id for j in client.jobs(queue="work")] == [after.id, before]


def test_a_connection_the_daemon_closed_is_replaced(stoker: Stoker, tmp_path: Path) -> None:
    client = _daemon(stoker)
    assert client._pool is not None
    [conn] = client._pool.idle
    # what the daemon's keep-alive timeout does to an idle connection, from the other end
    import socket

    conn.sock.shutdown(socket.SHUT_WR)
    job = client.enqueue("work")
    assert client._pool.idle and client._pool.idle[0] is not conn
    assert [j.id for j in client.jobs(queue="work")] == [job.id]  # sent once, queued once


def test_a_forked_child_opens_its_own_connection(stoker: Stoker) -> None:
    """gunicorn --preload, PHP-FPM's way for Python: a Client made before fork() is used in
    the children. A child must not speak on the parent's socket (each would read the other's
    answers): it opens its own, and the parent's stays as it was."""
    client = _daemon(stoker)
    assert client._pool is not None
    [mine] = client._pool.idle
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the job it queued, or why not, and leave at once
        os.close(read)
        try:
            job_id = client.enqueue("work").id
            fresh = client._pool.idle and client._pool.idle[0] is not mine
            os.write(write, f"{job_id} {'fresh' if fresh else 'shared'}".encode())
        except BaseException as e:
            os.write(write, f"error {e!r}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(pid, 0)
    child_job, how = said.split(" ", 1)
    assert how == "fresh", said
    assert client._pool.idle == [mine]
    assert client.enqueue("work").id > int(child_job)
    assert client._pool.idle == [mine]  # the parent's connection, still good
