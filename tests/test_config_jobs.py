"""The [tasks.NAME] and [queues.NAME] tables: commands and calls, parameters, limits, queues."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_helpers import error, load

from stoker.config import Backoff

# --------------------------------------------------------------------------------------------
# max_params and max_output
# --------------------------------------------------------------------------------------------


def test_task_size_limits(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[tasks.a]\ncommand = "a"\n[tasks.b]\ncommand = "b"\nmax_params = "1KB"\nmax_output = 4096\n',
    )
    assert (config.tasks["a"].max_params, config.tasks["a"].max_output) == (64 * 1024, 100 * 1024 * 1024)
    assert (config.tasks["b"].max_params, config.tasks["b"].max_output) == (1024, 4096)
    for line, key, says in [
        ('max_params = "0KB"', "max_params", "greater than zero"),
        ('max_params = "big"', "max_params", "a size"),
        ("max_output = 0", "max_output", "greater than zero"),
        ("max_output = true", "max_output", "a size"),
    ]:
        err = error(tmp_path, f'[tasks.a]\ncommand = "a"\n{line}\n')
        assert (err.table, err.key) == ("tasks.a", key) and says in str(err)
    # a schedule's own parameters are held to its task's limit
    err = error(
        tmp_path,
        '[tasks.a]\ncommand = "a {x}"\nmax_params = "20B"\n'
        '[schedules.s]\nevery = "1m"\ntask = "a"\nparams = { x = "way more than twenty bytes" }\n',
    )
    assert err.key == "params" and "max_params of 20B" in str(err)


# --------------------------------------------------------------------------------------------
# [tasks.*] and [queues.*]
# --------------------------------------------------------------------------------------------


def test_task_defaults_and_placeholders(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [tasks.build_apk]
        command = ["ant", "release", "-Dpackage={package}", "{{literal}}", "{flavor}"]
        queue = "build"
        params = ["note", "flavor"]
        [tasks.plain]
        command = "php send.php"
        [queues.build]
        concurrency = 2
        """,
    )
    apk = config.tasks["build_apk"]
    assert apk.command == ("ant", "release", "-Dpackage={package}", "{{literal}}", "{flavor}")
    assert apk.required == ("package", "flavor") and apk.optional == ("note",)
    assert apk.max_attempts == 1 and apk.timeout is None and apk.stop_timeout == 10.0
    assert apk.backoff == Backoff(min=10.0, max=600.0) and apk.directory == str(tmp_path)
    plain = config.tasks["plain"]
    assert plain.command == ("php", "send.php") and plain.queue == "default"
    assert config.queues["build"].concurrency == 2
    assert config.queues["default"].concurrency == 1  # used by a task, declared nowhere


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        ('command = "x"\nmax_attempts = 0', "max_attempts", "1 or more"),
        ('command = "x"\nmax_attempts = "3"', "max_attempts", "1 or more"),
        ('command = "x"\ntimeout = "soon"', "timeout", "duration"),
        ('command = "x"\ntimeout = 0', "timeout", "greater than zero"),
        ('command = "x"\nqueue = "a b"', "queue", "queue name"),
        ('command = "x"\nparams = ["bad-name"]', "params", "parameter names"),
        ('command = "x"\nretries = 3', "retries", "unknown key"),
        (
            'command = "x"\nenvironment = { STOKER_JOB_ID = "1" }',
            "environment.STOKER_JOB_ID",
            "set by stoker",
        ),
        ('command = "x"\nbackoff = { min = "1m", max = "1s" }', "backoff", "min"),
        ("command = []", "command", "non-empty"),
    ],
)
def test_task_errors_name_the_key(tmp_path: Path, body: str, key: str, expected: str) -> None:
    err = error(tmp_path, f"[tasks.t]\n{body}\n")
    assert err.table == "tasks.t" and err.key == key, str(err)
    assert expected in str(err)


def test_task_needs_command_or_call(tmp_path: Path) -> None:
    err = error(tmp_path, "[tasks.t]\nqueue = 'q'\n")
    assert "exactly one of command" in str(err)


def test_bad_queue(tmp_path: Path) -> None:
    err = error(tmp_path, "[queues.q]\nconcurrency = 0\n")
    assert (err.table, err.key) == ("queues.q", "concurrency")
    err = error(tmp_path, "[queues.q]\nsize = 3\n")
    assert err.key == "size"


def test_queue_durability(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[tasks.a]\ncommand = "a"\nqueue = "fast"\n[queues.fast]\ndurability = "relaxed"\n'
        '[queues.safe]\ndurability = "durable"\n',
    )
    assert config.queues["fast"].durability == "relaxed" and not config.queues["fast"].durable
    assert config.queues["safe"].durable
    assert load(tmp_path, "[queues.q]\n").queues["q"].durable  # the default: on disk before the answer


@pytest.mark.parametrize("value", ['"fast"', '"Relaxed"', "true", "1"])
def test_queue_durability_refused(tmp_path: Path, value: str) -> None:
    err = error(tmp_path, f"[queues.q]\ndurability = {value}\n")
    assert (err.table, err.key) == ("queues.q", "durability")
    assert '"durable"' in str(err) and '"relaxed"' in str(err)
