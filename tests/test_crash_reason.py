"""A crash-looping program says why (issue 19): its error ends with its last line of output
(stderr preferred), and while it backs off, when it tries again; in `stoker status` (text and
--json) and the HTTP API. Real programs that really fail: a connection refused by a closed port.
The dashboard's side is in test_dashboard.py; the line's extraction in test_lastline.py."""

from __future__ import annotations

import datetime as dt
import sys

from conftest import Stoker, free_port

PY = sys.executable

# Connects to a port nobody listens on: Python's own traceback, on stderr, ends with the reason.
CONNECT = """
import socket, sys
print("connecting to the queue on port", sys.argv[1], flush=True)
socket.create_connection(("127.0.0.1", int(sys.argv[1])))
"""


def test_a_crash_loop_shows_the_last_line_of_output_and_the_next_try(stoker: Stoker) -> None:
    (stoker.root / "connect.py").write_text(CONNECT)
    port = free_port()
    stoker.write(
        f"""
        [programs.consumer]
        command = ["{PY}", "connect.py", "{port}"]
        start_seconds = "1s"
        backoff = {{ min = "40s", max = "60s" }}
        log = {{ stderr = "separate" }}
        [programs.merged]
        command = ["{PY}", "connect.py", "{port}"]
        start_seconds = "1s"
        backoff = {{ min = "40s", max = "60s" }}
        [programs.quiet]
        command = ["sh", "-c", "echo 'config /etc/app.ini: no such file'; echo; exit 78"]
        start_seconds = "1s"
        backoff = {{ min = "40s", max = "60s" }}
        """
    )
    stoker.up()
    refused = "ConnectionRefusedError: [Errno 111] Connection refused"
    for name in ("consumer:0", "merged:0"):
        row = stoker.wait_state(name, "backoff")
        # stderr's last line, not stdout's "connecting to…" (separate), or of the two merged
        assert row["error"].startswith("exited with code 1 after "), row
        assert row["error"].endswith(f"s: {refused}"), row
        retry_at = dt.datetime.fromisoformat(row["retry_at"])
        assert retry_at.tzinfo is not None
        assert dt.datetime.now(dt.UTC) < retry_at <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)
    # stdout only, its last line blank: the last line that says something
    quiet = stoker.wait_state("quiet:0", "backoff")
    assert quiet["error"].endswith("s: config /etc/app.ini: no such file"), quiet

    # --json: the same shape, extended
    [row] = stoker.json("status", "consumer")
    assert row["error"].endswith(refused) and row["retry_at"] and row["state"] == "backoff"
    # text: the reason and the next try, on the instance's line
    text = stoker.cli("status", "consumer")
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if x.startswith("consumer:0"))
    assert f": {refused}; next try in " in line, line

    # A start by hand is a fresh chance: no error, no next try until it fails again.
    assert stoker.cli("stop", "consumer").returncode == 0
    row = stoker.wait_state("consumer:0", "stopped")
    assert row["retry_at"] is None
