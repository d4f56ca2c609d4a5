"""Terminal escapes from programs and jobs do not reach the operator's terminal raw: a real
daemon, a program whose sd_notify STATUS= and output hold ESC sequences, jobs whose output,
error, result and params hold them; the CLI's stdout checked byte by byte."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest
from conftest import Stoker, wait_for

from stoker.cli import context as cli_module

PY = sys.executable
# a window title, a bell, clear screen, a C1 CSI (8-bit ESC [), a right-to-left override
EVIL = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil"
EVIL_BYTES = EVIL.encode() + b" \xff\xfe not UTF-8\r\n"
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\u009b31m\\u202eevil"

PROGRAM = f"""
import os, socket, sys, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.sendto(("READY=1\\nSTATUS=" + {EVIL!r}).encode(), os.environ["NOTIFY_SOCKET"])
sys.stdout.buffer.write({EVIL_BYTES!r})
sys.stdout.flush()
while True:
    time.sleep(3600)
"""
SPEW = f"""
import sys
sys.stdout.buffer.write({EVIL_BYTES!r})
sys.exit(3)
"""
TASKS = f"""
EVIL = {EVIL!r}
def boom(**params):
    print(EVIL)
    raise RuntimeError(EVIL + "\\nsecond line")
def fine(**params):
    return EVIL
"""


def cli(stoker: Stoker, *args: str) -> bytes:
    """The CLI's stdout as bytes, as a terminal would receive them (it must succeed)."""
    result = subprocess.run(
        [PY, "-m", "stoker", "-c", str(stoker.config), *args],
        capture_output=True,
        cwd=stoker.root,
        timeout=60,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.stdout


def assert_inert(out: bytes) -> str:
    """Valid UTF-8 without a control character a terminal acts on (tab and newline kept, a
    carriage return only before a newline), no C1 control, no bidi override."""
    text = out.decode()
    for i, ch in enumerate(text):
        code = ord(ch)
        if ch == "\r":
            assert text[i + 1 : i + 2] == "\n", f"a bare CR at {i}: {text!r}"
        elif ch not in "\t\n":
            assert code >= 0x20 and not 0x7F <= code <= 0x9F, f"{code:#x} at {i}: {text!r}"
            assert not (0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069), f"{code:#x}: {text!r}"
    return text


def start(stoker: Stoker) -> None:
    (stoker.root / "evil.py").write_text(PROGRAM)
    (stoker.root / "spew.py").write_text(SPEW)
    (stoker.root / "evil_tasks.py").write_text(TASKS)
    stoker.write(
        f"""
        [programs.evil]
        command = ["{PY}", "evil.py"]
        start_seconds = 0
        ready = "notify"
        log = {{ timestamps = false, markers = false }}  # the program's bytes only (compared below)
        [tasks.spew]
        command = ["{PY}", "spew.py"]
        max_attempts = 1
        [tasks.boom]
        call = "evil_tasks:boom"
        params = ["note"]
        max_attempts = 1
        [tasks.fine]
        call = "evil_tasks:fine"
        """
    )
    stoker.up()
    stoker.wait_state("evil:0", "running", status_text=EVIL)


def finished(stoker: Stoker, task: str, **params: Any) -> dict[str, Any]:
    job = stoker.client.enqueue(task, params)
    return dict(stoker.client.wait(job.id, timeout=30))


def test_status_shows_status_text_escaped(stoker: Stoker) -> None:
    start(stoker)
    out = assert_inert(cli(stoker, "status"))
    assert SHOWN in out
    assert len(out.splitlines()) == 2  # the header and one row
    assert assert_inert(cli(stoker, "status", "evil")) == out


def test_program_logs_escaped_and_raw(stoker: Stoker) -> None:
    start(stoker)
    out = assert_inert(cli(stoker, "logs", "evil"))
    assert out == SHOWN + " \\xff\\xfe not UTF-8\r\n"
    assert cli(stoker, "logs", "evil", "--raw") == EVIL_BYTES


def test_program_logs_followed_escaped(stoker: Stoker) -> None:
    start(stoker)
    proc = subprocess.Popen(
        [PY, "-m", "stoker", "-c", str(stoker.config), "logs", "evil", "-f"], stdout=subprocess.PIPE
    )
    got = bytearray()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [got.extend(chunk) for chunk in iter(proc.stdout.read1, b"")])
    reader.start()
    try:
        wait_for(lambda: got.endswith(b"UTF-8\r\n"), what=f"the followed line; so far {bytes(got)!r}")
    finally:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: the CLI leaves quietly
        assert proc.wait(10) == 0
        reader.join(10)
    # followed output arrives as text (the daemon decoded it): bytes not UTF-8 are U+FFFD
    assert assert_inert(bytes(got)) == SHOWN + " \ufffd\ufffd not UTF-8\r\n"


def jobs(stoker: Stoker) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A call job that printed EVIL and failed with it, a command job whose output is
    EVIL_BYTES (its error quotes it), a call job whose result is EVIL."""
    failed = finished(stoker, "boom", note=EVIL)
    assert failed["state"] == "failed" and EVIL in failed["error"]
    spewed = finished(stoker, "spew")
    assert spewed["state"] == "failed" and EVIL in spewed["error"]
    fine = finished(stoker, "fine")
    assert fine["result"] == EVIL
    return failed, spewed, fine


def test_jobs_listing_escaped_one_line_a_job(stoker: Stoker) -> None:
    start(stoker)
    jobs(stoker)
    listing = assert_inert(cli(stoker, "jobs"))
    assert f"RuntimeError: {SHOWN}\n" in listing
    assert len(listing.splitlines()) == 4  # the header, one line a job


def test_job_error_params_result_and_output_escaped(stoker: Stoker) -> None:
    start(stoker)
    failed, spewed, fine = jobs(stoker)
    shown = assert_inert(cli(stoker, "job", str(failed["id"])))
    assert f"error      RuntimeError: {SHOWN}\n" in shown
    assert f"1. {failed['started_at'][:19].replace('T', ' ')}  failed: RuntimeError: {SHOWN}\n" in shown
    # params as JSON that reads back to the value: json.dumps escaped C0, the rest \\uHHHH
    params = next(line for line in shown.splitlines() if line.startswith("params"))
    assert json.loads(params.split(None, 1)[1]) == {"note": EVIL}
    assert "output:\n" + SHOWN + "\nTraceback" in shown
    result = next(line for line in assert_inert(cli(stoker, "job", str(fine["id"]))).splitlines()
                  if line.startswith("result"))  # fmt: skip
    assert json.loads(result.split(None, 1)[1]) == EVIL
    # the job JSON's output is text (the daemon decoded it): bytes not UTF-8 arrive as U+FFFD
    shown = assert_inert(cli(stoker, "job", str(spewed["id"])))
    assert shown.endswith("output:\n" + SHOWN + " \ufffd\ufffd not UTF-8\r\n")


def test_job_logs_escaped_and_raw(stoker: Stoker) -> None:
    start(stoker)
    failed, spewed, _ = jobs(stoker)
    assert assert_inert(cli(stoker, "logs", f"job:{spewed['id']}")) == SHOWN + " \\xff\\xfe not UTF-8\r\n"
    assert cli(stoker, "logs", f"job:{spewed['id']}", "--raw") == EVIL_BYTES
    logged = assert_inert(cli(stoker, "logs", f"job:{failed['id']}"))  # its print, the traceback
    assert logged.startswith(SHOWN + "\n") and logged.endswith(f"RuntimeError: {SHOWN}\nsecond line\n")
    # followed: a finished job's tail, then the end (as text, like the job's JSON)
    followed = assert_inert(cli(stoker, "logs", f"job:{spewed['id']}", "-f"))
    assert followed == SHOWN + " \ufffd\ufffd not UTF-8\r\n"
    raw = cli(stoker, "logs", f"job:{spewed['id']}", "-f", "--raw")
    assert raw == EVIL.encode() + " \ufffd\ufffd not UTF-8\r\n".encode()


def test_json_stays_exact_and_inert(stoker: Stoker) -> None:
    """--json is for programs: the exact text, which JSON's escapes (ASCII only) keep inert."""
    start(stoker)
    failed = finished(stoker, "boom", note=EVIL)
    out = cli(stoker, "status", "--json")
    assert_inert(out)
    assert json.loads(out)[0]["status_text"] == EVIL
    out = cli(stoker, "job", str(failed["id"]), "--json")
    assert_inert(out)
    job = json.loads(out)
    assert job["params"] == {"note": EVIL} and job["error"].startswith(f"RuntimeError: {EVIL}\n")
    assert job["output"].startswith(EVIL + "\nTraceback")


def test_an_error_message_is_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """`stoker: …` errors quote the daemon's messages, which may quote a caller's text."""
    with pytest.raises(SystemExit) as exited:
        cli_module.fail(f"the daemon said: {EVIL}\nsecond line", cli_module.EXIT_FAILED)
    assert exited.value.code == cli_module.EXIT_FAILED
    assert capsys.readouterr().err == f"stoker: the daemon said: {SHOWN}\nsecond line\n"
