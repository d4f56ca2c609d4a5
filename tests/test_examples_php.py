"""The PHP recipes (docs/recipes-php.md) run as documented, with php-cli: Laravel's queue
workers and scheduler, a Symfony Messenger consumer that exits on purpose after its time
limit, and mail-spool's enqueue.php on the PHP client.

examples/laravel and examples/symfony hold stand-ins for `artisan` and `bin/console`; the
stoker.toml beside them is what a user writes for the real app. Each example is copied to the
test's temp dir, with short durations.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, need, wait_for

from stoker.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _copy(
    stoker: Stoker, name: str, replace: dict[str, str] | None = None, config: str = "stoker.toml"
) -> Path:
    """Copy examples/NAME (and the PHP client, where the scripts find it) and point the fixture
    at its config, with `replace` applied to it."""
    folder = stoker.root / "examples" / name
    left = shutil.ignore_patterns(".stoker", "outbox", "storage", "var", "vendor", "composer.lock")
    shutil.copytree(EXAMPLES / name, folder, ignore=left)
    shutil.copytree(
        ROOT / "clients" / "php",
        stoker.root / "clients" / "php",
        ignore=shutil.ignore_patterns("tests", "vendor"),
    )
    path = folder / config
    text = path.read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"{old!r} is not in {name}/{config} any more"
        text = text.replace(old, new)
    path.write_text(text)
    stoker.config = path
    stoker.state_dir = folder / ".stoker"
    return folder


def _php(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STOKER_URL", "STOKER_TOKEN")}
    return subprocess.run(["php", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def _logs(stoker: Stoker, name: str) -> str:
    result = stoker.cli("logs", name, "-n", "1000")
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("name", "config"),
    [("laravel", "stoker.toml"), ("laravel", "stoker-schedules.toml"), ("symfony", "stoker.toml")],
)
def test_php_recipe_configs_are_valid(stoker: Stoker, name: str, config: str) -> None:
    _copy(stoker, name, config=config)
    result = stoker.cli("check")
    assert result.returncode == 0, result.stderr


def test_laravel_queue_workers_and_scheduler(stoker: Stoker) -> None:
    need("php")
    folder = _copy(stoker, "laravel", {"instances = 4": "instances = 2", "--sleep=3": "--sleep=0.2"})
    stoker.up()
    workers = ["queue-worker:0", "queue-worker:1"]
    for name in workers:
        stoker.wait_state(name, "running")
    for n in range(4):
        assert _php(folder, "artisan", "app:dispatch", f"SendInvoice{n}").returncode == 0

    def processed() -> set[str]:
        text = "".join(_logs(stoker, name) for name in workers)
        return set(re.findall(r"processed (SendInvoice\d)", text))

    wait_for(lambda: processed() == {f"SendInvoice{n}" for n in range(4)}, 30, "the 4 jobs to be processed")
    assert not list((folder / "storage" / "queue").iterdir())  # each job taken once, and done

    # The scheduler's minute, now: schedule:run runs what is due (inspire, every minute) and exits.
    job = stoker.json("schedule", "run", "scheduler")
    done = stoker.client.wait(job["id"], timeout=30)
    assert done.state == "succeeded", done
    assert "Running ['artisan' inspire]" in done.output and "Leonardo da Vinci" in done.output

    # stoker stop: SIGTERM; each worker finishes what it has in hand and exits 0.
    stoker.json("stop", "queue-worker")
    for name in workers:
        assert f"worker {name[-1]}: stopped gracefully" in _logs(stoker, name)
        row = stoker.programs()[name]
        assert row["state"] == "stopped" and row["error"] is None, row


def test_laravel_worker_max_time_is_restarted_at_once(stoker: Stoker) -> None:
    need("php")
    _copy(
        stoker,
        "laravel",
        {"instances = 4": "instances = 1", "--max-time=3600": "--max-time=2", "--sleep=3": "--sleep=0.2"},
    )
    stoker.up()
    row = wait_for(
        lambda: (r := stoker.programs()["queue-worker:0"])["restarts"] >= 1 and r["state"] == "running" and r,
        30,
        "a restart after --max-time",
    )
    assert row["error"] is None
    assert "--max-time reached, exiting" in _logs(stoker, "queue-worker:0")


def test_symfony_consumer_exits_on_purpose_and_is_restarted(stoker: Stoker) -> None:
    """messenger:consume --time-limit exits 0 on purpose; stoker starts it again at once every
    time: no backoff, no crash loop, never fatal."""
    need("php")
    folder = _copy(
        stoker,
        "symfony",
        {
            "--time-limit=3600": "--time-limit=2",
            'start_seconds = "5s"': 'start_seconds = "1s"',
            'stable_seconds = "1m"': 'stable_seconds = "1s"',
            "instances = 2": "instances = 1",
        },
    )
    stoker.up()
    stoker.wait_state("messenger:0", "running")
    assert _php(folder, "bin/console", "app:send", "OrderShipped").returncode == 0
    wait_for(lambda: "handled OrderShipped" in _logs(stoker, "messenger:0"), 30, "the message")

    seen: list[dict[str, Any]] = []

    def restarted_three_times() -> bool:
        row = stoker.programs()["messenger:0"]
        seen.append(row)
        return bool(row["restarts"] >= 3 and row["state"] == "running")

    wait_for(restarted_three_times, 60, "three planned exits and restarts")
    assert all(r["state"] in ("starting", "running") for r in seen), [r["state"] for r in seen]
    assert all(r["crash_loop"] is None and r["error"] is None for r in seen)
    assert _logs(stoker, "messenger:0").count("stopped: time limit of 2s reached") >= 3

    stoker.json("stop", "messenger")
    assert "stopped: received a stop signal" in _logs(stoker, "messenger:0")


def test_mail_spool_enqueue_php(stoker: Stoker) -> None:
    need("php")
    folder = _copy(
        stoker,
        "mail-spool",
        {'backoff = { min = "1s", max = "10s" }': 'backoff = { min = "50ms", max = "100ms" }'},
    )
    stoker.up()
    queued = _php(folder, "enqueue.php", "ann@example.com", "Your order #1042")
    assert queued.returncode == 0, queued.stderr
    match = re.fullmatch(r"job (\d+): mail to ann@example.com queued\n", queued.stdout)
    assert match, queued.stdout
    done = stoker.client.wait(int(match.group(1)), timeout=30)
    assert done.state == "succeeded" and done.params == {
        "to": "ann@example.com",
        "subject": "Your order #1042",
    }

    flaky = _php(folder, "enqueue.php", "flaky.bob@example.com", "Greylisted", "Hello Bob", "--wait")
    assert flaky.returncode == 0, flaky.stderr
    assert re.search(r"^job (\d+): sent after 3 attempt\(s\)$", flaky.stdout, re.M), flaky.stdout
    sent = (folder / "outbox").iterdir()
    assert any("Hello Bob" in p.read_bytes().decode() for p in sent)

    bounce = _php(folder, "enqueue.php", "bounce@example.com", "Never", "--wait")
    assert bounce.returncode == 1, bounce.stdout + bounce.stderr
    assert re.search(r"failed after 3 attempt\(s\): exited with code 75", bounce.stderr), bounce.stderr

    refused = _php(folder, "enqueue.php", "--help", "x")
    assert refused.returncode == 2 and "'to' must not begin with '-'" in refused.stderr, refused.stderr
    usage = _php(folder, "enqueue.php")
    assert usage.returncode == 2 and "usage: php enqueue.php TO SUBJECT" in usage.stderr


def test_recipes_page_shows_the_examples_and_valid_configs(tmp_path: Path) -> None:
    """docs/recipes-php.md: each example config appears whole, and every full TOML block (not
    marked `<!-- fragment -->`) is a config stoker takes."""
    page = (ROOT / "docs" / "recipes-php.md").read_text()
    for example in ("laravel/stoker.toml", "laravel/stoker-schedules.toml", "symfony/stoker.toml"):
        assert (EXAMPLES / example).read_text() in page, example
    blocks = re.findall(r"(<!-- fragment -->\n)?```toml\n(.*?)```", page, re.S)
    assert len([b for b in blocks if not b[0]]) == 3
    for fragment, text in blocks:
        if not fragment:
            parse_config(text, str(tmp_path / "stoker.toml"))
        else:  # a fragment still reads as TOML
            tomllib.loads(text)
