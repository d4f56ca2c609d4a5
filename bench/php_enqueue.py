#!/usr/bin/env python3
"""Benchmark enqueueing from PHP (clients/php) against the Python client, on one daemon.

Usage: .venv/bin/python bench/php_enqueue.py [--quick] [--keep]

One daemon, one paused queue (nothing runs). Times `enqueue` calls, one job per call over the
unix socket, from the PHP client (one kept-alive connection), the PHP client opening a new
connection per call (what keep-alive saves) and the Python client (its own connection per
call, as it always does), with each client's own CPU time per call; and `GET /api/v1/status`
from both (no database write: the transport's share). Each client is one process for the
whole run; they take turns of 50 calls (each mode going first in turn), so a slow spell of
this shared machine weighs on all of them alike; each figure is over all the turns.
Prints a Markdown table and writes bench/.work/php-enqueue-results.json. See bench/README.md.
Needs php-cli 8.1+; standard library + psutil + stoker otherwise.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as common  # bench/run.py: the daemon helpers, the sweep, the marker

ROOT = common.ROOT
RESULTS = common.WORK / "php-enqueue-results.json"
CLIENT = ROOT / "clients" / "php" / "autoload.php"
# What is timed: enqueue from PHP (kept-alive), from PHP opening a connection per call, from
# Python; and GET /api/v1/status from PHP and from Python (no database write: the transport).
MODES = ("php", "php-reconnect", "python", "php-status", "python-status")
BLOCK = 50  # calls per turn: the clients take turns this often
BLOCKS = 60  # turns of each mode (--quick: 10)
WARMUP = 50
log = common.log
BenchError = common.BenchError

# A worker: one Client, kept for the whole run. Each line "MODE N" on stdin: N calls, timed;
# answers one JSON line {"seconds", "cpu", "ids"}: wall time, the process's own CPU time
# (user + system) over them, and the ids of the jobs made.
PHP_WORKER = r"""<?php
declare(strict_types=1);
require $argv[1];
$client = new \Stoker\Client($argv[2]);
$cpu = static function (): float {
    $u = getrusage();
    return $u['ru_utime.tv_sec'] + $u['ru_utime.tv_usec'] / 1e6
        + $u['ru_stime.tv_sec'] + $u['ru_stime.tv_usec'] / 1e6;
};
while (($line = fgets(STDIN)) !== false) {
    [$mode, $n] = explode(' ', trim($line));
    $ids = [];
    $cpu0 = $cpu();
    $start = hrtime(true);
    for ($i = 0; $i < (int)$n; $i++) {
        if ($mode === 'status') {
            $client->status();
            continue;
        }
        $ids[] = $client->enqueue('noop')['id'];
        if ($mode === 'reconnect') {
            $client->close();
        }
    }
    $seconds = (hrtime(true) - $start) / 1e9;
    echo json_encode(['seconds' => $seconds, 'cpu' => $cpu() - $cpu0, 'ids' => $ids]), "\n";
}
"""

PY_WORKER = """
import json, sys, time
from stoker.client import Client
client = Client(config=sys.argv[1])
for line in sys.stdin:
    mode, n = line.split()
    ids = []
    cpu, t = time.process_time(), time.perf_counter()
    for _ in range(int(n)):
        if mode == "status":
            client.status()
        else:
            ids.append(client.enqueue("noop")["id"])
    took = time.perf_counter() - t
    print(json.dumps({"seconds": took, "cpu": time.process_time() - cpu, "ids": ids}), flush=True)
"""


def php_version(php: str) -> str:
    out = common.run([php, "-r", "echo PHP_VERSION;"]).stdout.strip()
    major, minor = (int(x) for x in out.split(".")[:2])
    if (major, minor) < (8, 1):
        raise common.Unavailable(f"php {out}: the client needs 8.1 or later")
    return out


class Worker:
    """A client process that runs blocks of calls on demand (see PHP_WORKER)."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            env=common.base_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.said: str | None = None

    def calls(self, mode: str, n: int) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{mode} {n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"a client worker ended: {self.stop()}")
        got: dict[str, Any] = json.loads(line)
        return got

    def stop(self) -> str:
        """Close its stdin (it ends); returns what it said on stderr. Once is enough."""
        if self.said is None:
            with suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            assert self.proc.stderr is not None
            self.said = self.proc.stderr.read().strip()
        return self.said


def table(totals: dict[str, dict[str, float]], calls: int) -> str:
    rate = {m: totals[m]["calls"] / totals[m]["seconds"] for m in MODES}
    cpu = {m: totals[m]["cpu"] * 1e6 / totals[m]["calls"] for m in MODES}
    rows = [
        "| metric | PHP client | Python client | PHP/Python |",
        "|---|---|---|---|",
        f"| enqueue, one job per call ({calls:,} calls each; PHP: one kept-alive connection)"
        f" | {rate['php']:.0f} jobs/s | {rate['python']:.0f} jobs/s | {rate['php'] / rate['python']:.2f}× |",
        f"| client CPU per enqueue call (user + system) | {cpu['php']:.0f} µs | {cpu['python']:.0f} µs"
        f" | {cpu['php'] / cpu['python']:.2f}× |",
        f"| (info) `GET /api/v1/status`, one per call (no database write) | {rate['php-status']:.0f}/s"
        f" | {rate['python-status']:.0f}/s | {rate['php-status'] / rate['python-status']:.2f}× |",
        f"| (info) PHP enqueue, a new connection per call | {rate['php-reconnect']:.0f} jobs/s |"
        f" | {rate['php-reconnect'] / rate['python']:.2f}× |",
        f"| (info) client CPU per enqueue call, PHP with a new connection per call"
        f" | {cpu['php-reconnect']:.0f} µs | | {cpu['php-reconnect'] / cpu['python']:.2f}× |",
    ]
    return "\n".join(rows)


def main() -> int:
    args, _ = common.parse_args(
        __doc__ or "",
        MODES,
        "10 turns instead of 60 (about 15 s)",
        "keep the temp dir (config, daemon log)",
    )
    php = shutil.which("php")
    if php is None:
        print("php is not installed (apt-get install php-cli): nothing to compare", file=sys.stderr)
        return 2
    blocks = 10 if args.quick else BLOCKS
    meta: dict[str, Any] = {
        "run_id": common.RUN_ID,
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "loadavg_at_start": os.getloadavg(),
        },
        "params": {"block": BLOCK, "blocks": blocks, "warmup_calls": WARMUP},
        "versions": {},
        "unavailable": {},
        "leftovers": {},
    }
    totals = {m: {"calls": 0.0, "seconds": 0.0, "cpu": 0.0} for m in MODES}
    per_block: dict[str, list[float]] = {m: [] for m in MODES}
    session = common.Session()
    tool = common.Stoker()
    workers: list[Worker] = []
    started = time.monotonic()
    failed = False
    try:
        meta["versions"]["stoker"] = tool.prepare()
        meta["versions"]["php"] = php_version(php)
        d = session.fresh_dir("php-enqueue")
        config = d / "stoker.toml"
        config.write_text(
            '[daemon]\nstate_dir = ".stoker"\n\n[tasks.noop]\ncommand = ["true"]\n\n'
            "[queues.default]\nconcurrency = 2\n"
        )
        script = d / "worker.php"
        script.write_text(PHP_WORKER)
        with session.deployment(tool, d) as deployment:
            common.launch(tool, deployment)
            common.run([*tool.exe, "-c", str(config), "queue", "pause", "default"])
            php_worker = Worker([php, str(script), str(CLIENT), str(config)])
            py_worker = Worker([sys.executable, "-c", PY_WORKER, str(config)])
            workers += [php_worker, py_worker]
            how = {
                "php": (php_worker, "enqueue"),
                "php-reconnect": (php_worker, "reconnect"),
                "python": (py_worker, "enqueue"),
                "php-status": (php_worker, "status"),
                "python-status": (py_worker, "status"),
            }
            for worker, mode in how.values():
                worker.calls(mode, WARMUP)
            ids: set[int] = set()
            made = len(MODES[:3]) * WARMUP
            log(f"{blocks} turns of {BLOCK} calls for each of {', '.join(MODES)}")
            for number in range(blocks):
                turn = number % len(MODES)  # each goes first in turn: no order effect
                for name in MODES[turn:] + MODES[:turn]:
                    worker, mode = how[name]
                    got = worker.calls(mode, BLOCK)
                    totals[name]["calls"] += BLOCK
                    totals[name]["seconds"] += got["seconds"]
                    totals[name]["cpu"] += got["cpu"]
                    per_block[name].append(BLOCK / got["seconds"])
                    ids.update(got["ids"])
                    made += len(got["ids"])
                if (number + 1) % 10 == 0:
                    log(f"  {number + 1} of {blocks} turns")
            for worker in workers:
                if err := worker.stop():
                    raise BenchError(f"a client worker said: {err}")
            queued = json.loads(common.run([*tool.exe, "-c", str(config), "queues", "--json"]).stdout)
            timed = blocks * BLOCK * 3
            if len(ids) != timed or made != timed + 3 * WARMUP or queued[0]["queued"] != made:
                raise BenchError(f"{queued[0]['queued']} jobs queued, {len(ids)} ids, {made} made: some lost")
    except (BenchError, common.Unavailable, OSError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
        failed = True
        log(f"failed: {type(e).__name__}: {e}")
        meta["error"] = str(e)
    except KeyboardInterrupt:
        failed = True
        log("interrupted; stopping everything")
        meta["error"] = "interrupted"
    finally:
        for worker in workers:
            worker.stop()
        common.end_of_run(session, args.keep or failed, meta)
    meta["seconds"] = time.monotonic() - started
    meta["machine"]["loadavg_at_end"] = os.getloadavg()
    if failed:
        return 1
    report = table(totals, blocks * BLOCK)
    print(report)
    for name in MODES:
        q = statistics.quantiles(per_block[name], n=10)
        print(f"{name}: calls/s per turn of {BLOCK}: p10 {q[0]:.0f}, median {q[4]:.0f}, p90 {q[8]:.0f}")
    results = {"totals": totals, "per_block_rates": per_block}
    common.write_results(RESULTS, meta, results, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
