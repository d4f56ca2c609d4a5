#!/usr/bin/env python3
"""The enqueue rows of bench/jobs.py with one node on PostgreSQL (issue 20).

Usage: .venv/bin/python bench/enqueue_postgres.py [--quick] [--keep]

Starts its own PostgreSQL server with the server's default durability (tests/postgres.py's
harness, as bench/cluster.py does), one stoker daemon on it, and measures: the commit floor
(one row inserted and committed per transaction by psycopg over the unix socket, the server's
`synchronous_commit = on`), then one job per call from one client (durable), one per call into
a relaxed queue (`synchronous_commit = off` for its commits), and one per call from 16 producer
processes at once (the daemon's lane takes what queued up while it was busy: one commit for
them). See bench/README.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import cluster  # bench/cluster.py: the PostgreSQL server for a bench run
import jobs as jobsbench  # bench/jobs.py: the producers
import postgres as pg  # tests/postgres.py
import psycopg
import run as common

RESULTS = common.WORK / "enqueue-postgres-results.json"


def commit_floor(url: str, n: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE floor (id bigserial PRIMARY KEY, task text, params text)")
        t = time.perf_counter()
        for _ in range(n):
            with conn.transaction():
                conn.execute("INSERT INTO floor (task, params) VALUES ('noop', '{}')")
        rate = n / (time.perf_counter() - t)
        conn.execute("DROP TABLE floor")
    return rate


def main() -> int:
    args, _ = common.parse_args(
        __doc__ or "", ("stoker",), "fewer jobs (about 30 s)", "keep the temp dirs (config, logs)"
    )
    n, producers = (300, 1600) if args.quick else (2000, 6400)
    session = common.Session()
    tool = common.Stoker()
    res: dict[str, Any] = {"jobs": n, "producer_jobs": producers}
    failed = False
    try:
        with cluster.postgres_server() as server:
            res["server"] = cluster.server_version(server)
            res["commit_floor_rate"] = commit_floor(pg.fresh_database(server), n)
            common.log(f"PostgreSQL {res['server']}: commit floor {res['commit_floor_rate']:.0f}/s")
            d = session.fresh_dir("stoker-pg-enqueue")
            url = pg.fresh_database(server)
            (d / "stoker.toml").write_text(
                f'[daemon]\nstate_dir = ".stoker"\nstore = {common.toml_str(url)}\n\n'
                '[tasks.noop_cmd]\ncommand = ["true"]\n'
                '[tasks.noop_relaxed]\ncommand = ["true"]\nqueue = "relaxed"\n'
                '[queues.relaxed]\ndurability = "relaxed"\n'
            )
            from stoker.client import Client

            with session.deployment(tool, d) as dep:
                common.launch(tool, dep)
                client = Client(socket_path=d / ".stoker" / "stoker.sock", timeout=120.0)
                client.pause("default")
                client.pause("relaxed")
                for task, key in (("noop_cmd", "single_rate"), ("noop_relaxed", "relaxed_rate")):
                    client.enqueue(task)  # warm-up
                    t = time.perf_counter()
                    for _ in range(n):
                        client.enqueue(task)
                    res[key] = n / (time.perf_counter() - t)
                got = jobsbench.stoker_producers(
                    d / ".stoker" / "stoker.sock", jobsbench.PRODUCERS, producers
                )
                res["producers_rate"] = got["jobs"] / got["seconds"]
            common.log(
                f"stoker on PostgreSQL: {res['single_rate']:.0f}/s one per call"
                f" ({res['single_rate'] / res['commit_floor_rate']:.0%} of the floor),"
                f" {res['producers_rate']:.0f}/s from {jobsbench.PRODUCERS} processes,"
                f" relaxed {res['relaxed_rate']:.0f}/s one per call"
            )
    except (common.BenchError, common.Unavailable, OSError) as e:
        failed = True
        common.log(f"failed: {e}")
        res["error"] = str(e)
    except KeyboardInterrupt:
        failed = True
        res["error"] = "interrupted"
    finally:
        common.sweep("stoker")
        session.close(args.keep or failed)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
