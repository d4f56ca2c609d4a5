"""The [schedules.NAME] tables: every/cron, a task or an inline command, when_file, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_helpers import error, load

from stoker.config import internal_queues, internal_tasks

# --------------------------------------------------------------------------------------------
# [schedules.*]
# --------------------------------------------------------------------------------------------


def test_schedules_with_a_task_or_an_inline_command(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [daemon]
        timezone = "Europe/Berlin"
        [tasks.notify]
        command = ["php", "notify.php", "{channel}"]
        [schedules.gray_notify]
        every = "30m"
        task = "notify"
        params = { channel = "android" }
        [schedules.cleanup]
        cron = "0 3 * * *"
        command = "php cleanup.php"
        timeout = "10m"
        overlap = "allow"
        catch_up = "latest"
        jitter = "5s"
        """,
    )
    gray = config.schedules["gray_notify"]
    assert (gray.every, gray.cron, gray.task, gray.params) == (1800.0, None, "notify", {"channel": "android"})
    cleanup = config.schedules["cleanup"]
    assert cleanup.cron == "0 3 * * *" and cleanup.timezone == "Europe/Berlin"  # the daemon's zone
    assert (cleanup.overlap, cleanup.catch_up, cleanup.jitter) == ("allow", "latest", 5.0)
    inline = config.tasks["schedule.cleanup"]
    assert inline.command == ("php", "cleanup.php") and inline.timeout == 600
    assert inline.queue == "schedule.cleanup" and config.queues["schedule.cleanup"].concurrency == 64
    assert cleanup.inline and not gray.inline
    assert gray.when_file is None and gray.when_path is None


def test_when_file_is_kept_as_written_and_resolved_against_the_config(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [schedules.gray]
        every = "30m"
        command = "php notify.php"
        when_file = " flags/gray_release "
        [schedules.abs]
        every = "30m"
        command = "true"
        when_file = "/run/app/enabled"
        """,
    )
    gray, absolute = config.schedules["gray"], config.schedules["abs"]
    assert gray.when_file == "flags/gray_release"  # as the messages show it
    assert gray.when_path == str(tmp_path / "flags" / "gray_release")  # whatever the cwd
    assert (absolute.when_file, absolute.when_path) == ("/run/app/enabled", "/run/app/enabled")


def test_internal_names_are_an_inline_commands_task_and_its_own_queue(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [tasks.notify]
        command = ["echo", "hi"]
        [schedules.own]
        every = "1m"
        command = "true"
        [schedules.shared]
        every = "1m"
        command = "true"
        queue = "default"
        [schedules.listed]
        every = "1m"
        task = "notify"
        """,
    )
    assert internal_tasks(config) == {"schedule.own": "own", "schedule.shared": "shared"}
    assert internal_queues(config) == {"schedule.own": "own"}  # "default" is notify's too
    assert set(config.queues) == {"default", "schedule.own"}


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        ('every = "1m"\ncron = "* * * * *"\ncommand = "x"', None, "exactly one of every or cron"),
        ('command = "x"', None, "exactly one of every or cron"),
        ('every = "1m"', None, "exactly one of task"),
        ('every = "soon"\ncommand = "x"', "every", "duration"),
        ('cron = "61 * * * *"\ncommand = "x"', "cron", "bad minute"),
        ('cron = "* * * * *"\ntimezone = "Mars/Base"\ncommand = "x"', "timezone", "time zone"),
        ('every = "1m"\ntimezone = "UTC"\ncommand = "x"', "timezone", "only a cron schedule"),
        ('every = "1m"\ntask = "ghost"', "task", "no task 'ghost'"),
        ('every = "1m"\ntask = "t"', "params", "needs parameter(s) 'x'"),
        ('every = "1m"\ntask = "t"\nparams = { x = "1" }\ntimeout = "1s"', "timeout", "belongs to the task"),
        ('every = "1m"\ncommand = "x"\noverlap = "maybe"', "overlap", "skip"),
        ('every = "1m"\ncommand = "x"\ncatch_up = "all"', "catch_up", "latest"),
        ('every = "1m"\ncommand = "x"\nwhen = "now"', "when", "unknown key"),
        ('every = "1m"\ncommand = "x"\nwhen_file = ""', "when_file", "a non-empty path"),
        ('every = "1m"\ncommand = "x"\nwhen_file = "  "', "when_file", "a non-empty path"),
        ('every = "1m"\ncommand = "x"\nwhen_file = 1', "when_file", "a path"),
    ],
)
def test_schedule_errors_name_the_key(tmp_path: Path, body: str, key: str | None, expected: str) -> None:
    err = error(tmp_path, f'[tasks.t]\ncommand = ["echo", "{{x}}"]\n[schedules.s]\n{body}\n')
    assert err.table == "schedules.s" and err.key == key, str(err)
    assert expected in str(err)
