"""The floors under an enqueue, measured on this machine (used by bench/jobs.py).

An accepted job is one HTTP exchange over the unix socket plus one durable commit, so no
enqueue one at a time can beat these two, taken on their own:

- `commit_floor`: one row inserted and committed, again and again, into a fresh SQLite file in
  WAL mode with the store's pragmas (`synchronous = FULL`: each commit fdatasyncs the WAL). Its
  rate is the most a lone producer can get from a queue that keeps its promise.
- `http_floor`: one POST with a small JSON body, answered 201 with no work, over one kept-alive
  unix-socket connection to the daemon's own HTTP stack (uvicorn with h11, a starlette route).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

SERVER_PY = r"""
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route


async def nothing(request):
    await request.body()
    return Response(b'{"id":1}', 201, media_type="application/json")


app = Starlette(routes=[Route("/api/v1/jobs", nothing, methods=["POST"])])
uvicorn.run(app, uds=sys.argv[1], http="h11", log_level="warning", access_log=False,
            lifespan="off", date_header=False, server_header=False)
"""


def commit_floor(directory: Path, n: int) -> dict[str, float]:
    """n commits of one row each, as the store makes them; their rate and median time."""
    path = directory / "floor.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, task TEXT, params TEXT)")
        times = []
        begin = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO jobs (task, params) VALUES ('noop', '{}')")
            conn.execute("COMMIT")
            times.append(time.perf_counter() - t)
        total = time.perf_counter() - begin
    finally:
        conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {"rate": n / total, "p50_ms": statistics.median(times) * 1000.0}


def http_floor(directory: Path, n: int, env: dict[str, str]) -> dict[str, float]:
    """n POSTs answered with no work, one after the other on one kept-alive connection."""
    sock_path = str(directory / "floor.sock")
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_PY, sock_path], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock_path):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the floor's HTTP server did not start: {server.stderr!r}")
            time.sleep(0.01)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(sock_path)
        reader = sock.makefile("rb")
        body = b'{"task":"noop","params":{}}'
        request = (
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        times = []
        for _ in range(n + 20):  # 20 warm-up exchanges, not counted
            t = time.perf_counter()
            sock.sendall(request)
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
            times.append(time.perf_counter() - t)
        sock.close()
        times = times[20:]
        return {"rate": n / sum(times), "p50_ms": statistics.median(times) * 1000.0}
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
