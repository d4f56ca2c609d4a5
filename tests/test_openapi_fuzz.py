"""schemathesis against the daemon's own OpenAPI document: no 5xx, and every response (status,
content type, headers, body, server-sent events) as the document says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import Stoker

PY = sys.executable
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def test_api_conforms_to_its_openapi_document(stoker: Stoker, unused_tcp_port: int) -> None:
    st = Path(PY).with_name("st")
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{unused_tcp_port}"
        token = "t0ken"

        [programs.web]
        command = ["sleep", "300"]
        instances = 2
        start_seconds = 0
        stop_timeout = "1s"

        [tasks.echo]
        command = ["echo", "{{text}}"]
        max_attempts = 2
        backoff = {{ min = "10ms", max = "10ms" }}

        [tasks.dump]
        call = "json:dumps"
        params = ["obj"]

        [queues.default]
        concurrency = 4

        [schedules.hourly]
        every = "1h"
        task = "echo"
        params = {{ text = "tick" }}
        """
    )
    stoker.up()
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "PYTHONPATH": str(Path(__file__).parent)}
    run = subprocess.run(
        [
            str(st),
            "run",
            f"http://127.0.0.1:{unused_tcp_port}/api/v1/openapi.json",
            "--header",
            "Authorization: Bearer t0ken",
            "--exclude-path",
            "/api/v1/shutdown",  # it would end the run
            "--exclude-path-regex",
            "^/(RPC2|logtail|mainlogtail)",  # supervisord's (shutdown, and endless tails): test_xmlrpc.py
            "--checks",
            CHECKS,
            "--max-time",
            "40",
            "--request-timeout",
            "10",
            "--workers",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=stoker.root,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Traceback" not in stoker.log_text(), stoker.log_text()[-4000:]
