"""`stoker top` in a real terminal (tmux): it shows the programs, follows a restart live, and
quits on `q`; without a terminal it prints one plain snapshot."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Stoker, need, wait_for

PY = sys.executable


@pytest.fixture
def daemon(stoker: Stoker) -> Stoker:
    stoker.write(
        f"""
        [programs.web]
        command = "sleep 1000"
        [tasks.bad]
        command = ["{PY}", "-c", "raise SystemExit(3)"]
        queue = "work"
        [queues.work]
        concurrency = 1
        """
    )
    stoker.up()
    stoker.wait_state("web:0", "running")
    return stoker


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[list[str]]:
    """The tmux command on a server of this test's own (its socket in the temp dir)."""
    command = [need("tmux"), "-S", str(tmp_path / "tmux.sock")]
    try:
        yield command
    finally:
        subprocess.run([*command, "kill-server"], capture_output=True)


def pane(tmux: list[str]) -> str:
    return subprocess.run([*tmux, "capture-pane", "-p", "-t", "top"], capture_output=True, text=True).stdout


def test_top_shows_follows_and_quits(daemon: Stoker, tmux: list[str]) -> None:
    bad = daemon.client.enqueue("bad")
    assert daemon.client.wait(bad.id, timeout=30).state == "failed"
    top = f"{PY} -m stoker -c {daemon.config} top"
    started = subprocess.run([*tmux, "new-session", "-d", "-s", "top", "-x", "120", "-y", "40", top])
    assert started.returncode == 0

    def shown(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, pane(tmux), re.M)

    first = wait_for(lambda: shown(r"^web:0\s+running\s+(\d+)"), timeout=30, what="web:0 running in top")
    pid = first.group(1)
    assert shown(r"^work\s+active\s+0\s+0/1") and shown(rf"^{bad.id}\s+bad\s")  # a queue; the failure
    # a restart: top follows it (a new pid) without a key pressed
    daemon.client.request("POST", "/api/v1/programs/web/restart")
    wait_for(
        lambda: (m := shown(r"^web:0\s+running\s+(\d+)")) and m.group(1) != pid,
        timeout=30,
        what="the new pid",
    )
    # q quits (and gives the terminal back: the session, whose only command top was, ends)
    subprocess.run([*tmux, "send-keys", "-t", "top", "q"], check=True)
    wait_for(
        lambda: subprocess.run([*tmux, "has-session", "-t", "top"], capture_output=True).returncode != 0,
        timeout=15,
        what="top to quit",
    )


def test_top_without_a_terminal_prints_a_snapshot(daemon: Stoker) -> None:
    result = daemon.cli("top")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^web:0\s+running\s+\d+", result.stdout, re.M)
    assert "QUEUES" in result.stdout and "LAST FAILURES" in result.stdout
    assert "\x1b" not in result.stdout  # plain text


def test_top_without_a_daemon(stoker: Stoker) -> None:
    stoker.write("[programs.web]\ncommand = 'sleep 1'\n")
    result = stoker.cli("top")
    assert result.returncode == 3 and "not running" in result.stderr


def test_only_top_pays_for_top() -> None:
    """The parser names `top` for every command; what it draws with is imported by `top` alone."""
    code = (
        "import sys, stoker.cli.parser\n"
        "print(','.join(m for m in ('stoker.cli.top_view', 'termios', 'tty', 'select', 'threading')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
