"""Typed task parameters through real daemons: every door (HTTP, CLI, Python Client, a batch,
schedules, `stoker check`) refuses the same values, names the parameter, and stores nothing;
accepted values reach the child's argv byte for byte."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stoker.client import ClientError

# A child that records its argv (after the output folder) as hex of its bytes, in OUT/JOB_ID.
RECORD = (
    "import json, os, sys; "
    "open(os.path.join(sys.argv[1], os.environ['STOKER_JOB_ID']), 'w')"
    ".write(json.dumps([os.fsencode(a).hex() for a in sys.argv[2:]]))"
)


def config(root: Path, port: int | None = None, extra: str = "") -> str:
    out = root / "argv"
    out.mkdir(exist_ok=True)
    listen = f'[daemon]\nlisten = "127.0.0.1:{port}"\ntoken = "{TOKEN}"\n' if port else ""
    return f"""
{listen}
[tasks.build]
command = [{json.dumps(sys.executable)}, "-c", {json.dumps(RECORD)}, {json.dumps(str(out))},
           "{{package}}", "--channel={{channel}}", "{{count}}"]
[tasks.build.params.package]
pattern = "^[a-z][a-z0-9_.]{{1,100}}$"
description = "the package name"
[tasks.build.params.channel]
choices = ["android", "ios"]
default = "android"
[tasks.build.params.count]
type = "int"
min = 1
max = 50

[tasks.echo]
command = [{json.dumps(sys.executable)}, "-c", {json.dumps(RECORD)}, {json.dumps(str(out))}, "{{value}}"]

[tasks.ls]
command = ["ls", "{{dir}}"]

[tasks.mail]
call = "json:dumps"
[tasks.mail.params.obj]
pattern = ".+@.+"
[tasks.mail.params.indent]
type = "int"
required = false

[queues.default]
concurrency = 4
{extra}
"""


def argv_of(root: Path, job_id: int) -> list[bytes]:
    return [bytes.fromhex(h) for h in json.loads((root / "argv" / str(job_id)).read_text())]


def job_ids(s: Stoker) -> list[int]:
    return [j["id"] for j in s.client.jobs(limit=1000)]


TOKEN = "typed-params-test-token"  # every TCP request needs one (docs/security.md)


def http(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_every_door_refuses_and_stores_nothing(stoker: Stoker, unused_tcp_port: int) -> None:
    stoker.write(config(stoker.root, unused_tcp_port))
    stoker.up()
    port = unused_tcp_port
    before = job_ids(stoker)

    # HTTP: 422, the error names the parameter
    cases = [
        ({"package": "--upload-pack=touch /tmp/pwned", "count": 1}, "package", "does not match"),
        ({"package": "com.x", "count": 0}, "count", "1 or more"),
        ({"package": "com.x", "count": 5, "channel": "web"}, "channel", "one of"),
        ({"package": "", "count": 5}, "package", "empty"),
        ({"package": "com.x\u0000", "count": 5}, "package", "NUL"),
        ({"count": 5}, "package", "needs parameter"),
    ]
    for params, name, words in cases:
        status, body = http(port, "POST", "/api/v1/jobs", {"task": "build", "params": params})
        assert status == 422, body
        assert body["error"]["code"] == "invalid_params" and body["error"]["param"] == name, body
        assert words in body["error"]["message"] and repr(name) in body["error"]["message"]
    status, body = http(port, "POST", "/api/v1/jobs", {"task": "ls", "params": {"dir": "--version"}})
    assert status == 422 and body["error"]["param"] == "dir", body
    assert "must not begin with '-'" in body["error"]["message"]
    # a whole batch is refused for one bad item, which is named
    status, body = http(
        port,
        "POST",
        "/api/v1/jobs/batch",
        {"task": "build", "params": [{"package": "com.a", "count": 1}, {"package": "com.b", "count": 99}]},
    )
    assert status == 422 and body["error"]["index"] == 1 and body["error"]["param"] == "count", body
    assert body["error"]["message"].startswith("params[1]: ")

    # CLI: exit 2, the message names the parameter
    run = stoker.cli("enqueue", "ls", "dir=--version")
    assert run.returncode == 2 and "'dir' must not begin with '-'" in run.stderr, run.stderr
    run = stoker.cli("enqueue", "build", "package=com.x", "count=five")
    assert run.returncode == 2 and "'count' must be a whole number" in run.stderr, run.stderr

    # Python Client, and enqueue_many
    with pytest.raises(ClientError) as caught:
        stoker.client.enqueue("build", package="com.x", count=5, channel="-x")
    assert (caught.value.status, caught.value.param) == (422, "channel")
    with pytest.raises(ClientError) as caught:
        stoker.client.enqueue_many(
            "build", [{"package": "com.a", "count": 1}] * 3 + [{"package": "A", "count": 1}]
        )
    assert (caught.value.status, caught.value.param, caught.value.index) == (422, "package", 3)
    assert "params[3]" in str(caught.value)
    with pytest.raises(ClientError) as caught:
        stoker.client.enqueue("mail", obj="nobody")
    assert caught.value.param == "obj"

    assert job_ids(stoker) == before  # nothing was stored

    # what fits is queued, typed values converted and defaults filled in
    run = stoker.cli("enqueue", "build", "package=com.example", "count=5", "--wait", "--json")
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    assert job["state"] == "succeeded" and job["params"] == {
        "package": "com.example",
        "count": 5,
        "channel": "android",
    }
    assert argv_of(stoker.root, job["id"]) == [b"com.example", b"--channel=android", b"5"]
    job = stoker.client.wait(stoker.client.enqueue("mail", obj="a@b.example", indent="2")["id"], timeout=30)
    assert job["state"] == "succeeded" and job["result"] == '"a@b.example"', job


def test_tasks_listing(stoker: Stoker, unused_tcp_port: int) -> None:
    stoker.write(config(stoker.root, unused_tcp_port))
    stoker.up()
    listed = {t["name"]: t for t in stoker.json("tasks")}
    status, over_http = http(unused_tcp_port, "GET", "/api/v1/tasks")
    assert status == 200 and {t["name"]: t for t in over_http} == listed
    build = listed["build"]
    assert (build["required"], build["optional"], build["open_ended"]) == (
        ["package", "count"],
        ["channel"],
        False,
    )
    assert build["params"] == [
        {
            "name": "package",
            "type": "string",
            "required": True,
            "default": None,
            "choices": None,
            "pattern": "^[a-z][a-z0-9_.]{1,100}$",
            "min": None,
            "max": None,
            "max_length": 4096,
            "description": "the package name",
            "allow_option": False,
            "extra": False,
        },
        {
            "name": "channel",
            "type": "string",
            "required": False,
            "default": "android",
            "choices": ["android", "ios"],
            "pattern": None,
            "min": None,
            "max": None,
            "max_length": 4096,
            "description": None,
            "allow_option": False,
            "extra": False,
        },
        {
            "name": "count",
            "type": "int",
            "required": True,
            "default": None,
            "choices": None,
            "pattern": None,
            "min": 1,
            "max": 50,
            "max_length": None,
            "description": None,
            "allow_option": False,
            "extra": False,
        },
    ]
    assert [p["name"] for p in listed["ls"]["params"]] == ["dir"]
    assert [(p["name"], p["required"]) for p in listed["mail"]["params"]] == [
        ("obj", True),
        ("indent", False),
    ]
    text = stoker.cli("tasks")
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if x.startswith("build "))
    assert "package (string, pattern ^[a-z][a-z0-9_.]{1,100}$)" in line
    assert 'channel (android|ios, default "android")' in line and "count (int 1..50)" in line
    # the OpenAPI document: a JSON Schema per task
    status, doc = http(unused_tcp_port, "GET", "/api/v1/openapi.json")
    schema = doc["components"]["schemas"]["TaskParams.build"]
    assert schema["required"] == ["package", "count"] and schema["additionalProperties"] is False
    assert schema["properties"]["count"] == {"type": "integer", "minimum": 1, "maximum": 50}
    assert schema["properties"]["package"]["not"] == {"pattern": "^-"}


ARG = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40
)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(ARG, min_size=4, max_size=8))
def test_accepted_values_arrive_byte_for_byte(stoker: Stoker, values: list[str]) -> None:
    """Generated values through a real daemon: refused ones (a leading '-') are refused, every
    other one reaches the child's argv exactly (one batch per example, one job per value)."""
    if stoker.daemon is None:
        stoker.write(config(stoker.root))
        stoker.up()
    client = stoker.client
    accepted = [v for v in values if not v.startswith("-")]
    for value in values:
        if value.startswith("-"):
            with pytest.raises(ClientError) as caught:
                client.enqueue("echo", value=value)
            assert caught.value.param == "value"
    ids = client.enqueue_many("echo", [{"value": v} for v in accepted])
    for job_id, value in zip(ids, accepted, strict=True):
        job = client.wait(job_id, timeout=60)
        assert job["state"] == "succeeded", job
        assert argv_of(stoker.root, job_id) == [value.encode()]


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("[tasks.x]\ncommand = ['echo', '{p']", "command", "unbalanced brace"),
        (
            "[tasks.x]\ncommand = ['echo', '{p}']\n[tasks.x.params.p]\npattern = '(['",
            "params.p.pattern",
            "regular expression",
        ),
        (
            "[tasks.x]\ncommand = ['echo', '{n}']\n[tasks.x.params.n]\ntype = 'int'\nmax = 3\ndefault = 4",
            "params.n.default",
            "3 or less",
        ),
        (
            "[tasks.x]\ncommand = ['echo', '{p}']\n[tasks.x.params.q]\ntype = 'int'",
            "params.q",
            "never uses {q}",
        ),
        (
            "[schedules.s]\nevery = '1h'\ntask = 'build'\nparams = { package = 'com.x', count = 99 }",
            "params",
            "'count' must be 50 or less",
        ),
        (
            "[schedules.s]\nevery = '1h'\ntask = 'ls'\nparams = { dir = '-la' }",
            "params",
            "'dir' must not begin with '-'",
        ),
    ],
)
def test_config_errors(stoker: Stoker, extra: str, key: str, words: str) -> None:
    stoker.write(config(stoker.root, extra=extra))
    run = stoker.cli("check")
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"] {key}: " in run.stderr and words in run.stderr, run.stderr


def test_schedule_params_are_stored_typed(stoker: Stoker) -> None:
    stoker.write(
        config(
            stoker.root,
            extra="[schedules.nightly]\nevery = '1d'\ntask = 'build'\nparams = { package = 'com.n', count = '7' }",
        )
    )
    stoker.up()
    job = stoker.client.schedule_action("nightly", "run")
    assert job["params"] == {"package": "com.n", "count": 7, "channel": "android"}
    wait_for(lambda: stoker.client.job(job["id"])["state"] == "succeeded", what="the scheduled job")
    assert argv_of(stoker.root, job["id"]) == [b"com.n", b"--channel=android", b"7"]


def test_a_reload_that_tightens_the_rules_covers_queued_jobs(stoker: Stoker) -> None:
    task = '[tasks.t]\ncommand = ["echo", "{v}"]\n[queues.default]\nconcurrency = 1\n'
    stoker.write(task)
    stoker.up()
    stoker.client.pause("default")
    job = stoker.client.enqueue("t", v="abc")
    stoker.write(task + '[tasks.t.params.v]\npattern = "[0-9]+"\n')
    assert stoker.cli("reload").returncode == 0
    stoker.client.resume("default")
    done = stoker.client.wait(job["id"], timeout=30)
    assert done["state"] == "failed" and "does not match the pattern" in done["error"], done
