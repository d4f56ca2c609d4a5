"""The queued-job examples (examples/mail-spool, examples/apk-builds) run as their READMEs say.

Each example is copied to the test's temp dir, with short durations and a free port.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, need, wait_for

from stoker.client import Client

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLIENT = Path(__file__).resolve().parent.parent / "clients" / "php"
FINISHED = ("succeeded", "failed", "cancelled")

MAIL_BACKOFF = 'backoff = { min = "1s", max = "10s" }'
APK_LISTEN = 'listen = "127.0.0.1:9190"'
APK_STEP = 'BUILD_STEP_SECONDS = "0.5"'


def _copy(stoker: Stoker, name: str, replace: dict[str, str] | None = None) -> Path:
    """Copy examples/NAME (without anything a local run left) and point the fixture at it; the
    PHP client beside it, where the example's scripts find it (../../clients/php)."""
    folder = stoker.root / "examples" / name
    left = shutil.ignore_patterns(".stoker", "outbox", "builds", "vendor", "composer.lock")
    shutil.copytree(EXAMPLES / name, folder, ignore=left)
    shutil.copytree(CLIENT, stoker.root / "clients" / "php", ignore=shutil.ignore_patterns("tests", "vendor"))
    config = folder / "stoker.toml"
    text = config.read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"{old!r} is not in {name}/stoker.toml any more"
        text = text.replace(old, new)
    config.write_text(text)
    stoker.config = config
    stoker.state_dir = folder / ".stoker"
    return folder


def _finished(stoker: Stoker, job_id: int, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job = stoker.client.job(job_id)
        return job if job["state"] in FINISHED else None

    result: dict[str, Any] = wait_for(
        check, timeout, f"job {job_id} to finish; log:\n{stoker.log_text()[-3000:]}"
    )
    return result


def _attempts(job: dict[str, Any]) -> list[tuple[int, str, int | None]]:
    return [(a["number"], a["outcome"], a["exit_code"]) for a in job["attempts"]]


def _php_env() -> dict[str, str]:
    """The test's environment without anything that would point the PHP scripts elsewhere."""
    return {k: v for k, v in os.environ.items() if k not in ("STOKER_URL", "STOKER_TOKEN")}


@pytest.mark.parametrize("name", ["mail-spool", "apk-builds"])
def test_job_example_configs_are_valid(stoker: Stoker, name: str) -> None:
    _copy(stoker, name)
    result = stoker.cli("check")
    assert result.returncode == 0, result.stderr


# mail-spool -------------------------------------------------------------------------------


def test_mail_spool_retries_a_mail_at_most_3_times(stoker: Stoker) -> None:
    need("php")
    folder = _copy(stoker, "mail-spool", {MAIL_BACKOFF: 'backoff = { min = "50ms", max = "100ms" }'})
    stoker.up()

    def enqueue(to: str, subject: str) -> int:
        result = stoker.cli("enqueue", "send_mail", f"to={to}", f"subject={subject}", "--json")
        assert result.returncode == 0, result.stderr
        job = json.loads(result.stdout)
        assert job["state"] == "queued" and job["max_attempts"] == 3
        return int(job["id"])

    # A subject a shell would choke on arrives as one literal argument; it may begin with "-"
    # (allow_option: send_mail.php has no options), a recipient may not.
    good = enqueue("ann@example.com", '-10% on your order #1042; $(reboot) "now"')
    refused = stoker.cli("enqueue", "send_mail", "to=--help", "subject=x")
    assert refused.returncode == 2 and "'to' must not begin with '-'" in refused.stderr, refused.stderr
    flaky = enqueue("flaky.bob@example.com", "Greylisted twice")
    bounce = enqueue("bounce@example.com", "Never arrives")

    done = _finished(stoker, good)
    assert done["state"] == "succeeded" and done["attempt"] == 1
    assert _attempts(done) == [(1, "succeeded", 0)]
    assert "SMTP 250" in done["output"]

    done = _finished(stoker, flaky)
    assert done["state"] == "succeeded" and done["attempt"] == 3, done
    assert _attempts(done) == [(1, "failed", 75), (2, "failed", 75), (3, "succeeded", 0)]
    log = stoker.cli("logs", f"job:{flaky}").stdout
    assert log.count("SMTP 451 4.7.1 temporary failure: greylisted") == 2 and "SMTP 250" in log

    done = _finished(stoker, bounce)
    assert done["state"] == "failed" and done["attempt"] == 3, done
    assert _attempts(done) == [(1, "failed", 75), (2, "failed", 75), (3, "failed", 75)]
    assert done["error"].startswith("exited with code 75: ") and "over quota" in done["error"]
    assert "SMTP 451 4.2.2 temporary failure: mailbox <bounce@example.com> is over quota" in done["output"]
    log = stoker.cli("logs", f"job:{bounce}").stdout
    assert log.count("SMTP 451 4.2.2") == 3

    failed = stoker.json("jobs", "--state", "failed")
    assert [j["id"] for j in failed] == [bounce]
    text = stoker.cli("job", str(bounce))
    assert text.returncode == 0, text.stderr
    assert re.search(r"^state +failed$", text.stdout, re.M) and re.search(
        r"^attempt +3 of 3$", text.stdout, re.M
    )
    for n in (1, 2, 3):
        assert re.search(
            rf"^  {n}\. .* failed, exit code 75: exited with code 75: .*over quota", text.stdout, re.M
        )
    assert "over quota" in text.stdout.split("output:", 1)[1]
    assert stoker.cli("job", str(bounce), "--wait").returncode == 1

    # The outbox holds exactly the delivered mails, one file per job.
    outbox = folder / "outbox"
    assert sorted(p.name for p in outbox.iterdir()) == sorted([f"{good}.eml", f"{flaky}.eml"])
    mail = (outbox / f"{good}.eml").read_bytes().decode()
    assert "To: ann@example.com\r\n" in mail
    assert 'Subject: -10% on your order #1042; $(reboot) "now"\r\n' in mail
    assert "To: flaky.bob@example.com\r\n" in (outbox / f"{flaky}.eml").read_bytes().decode()


# apk-builds -------------------------------------------------------------------------------


def _apk_builds(stoker: Stoker, port: int) -> Path:
    return _copy(
        stoker,
        "apk-builds",
        {APK_LISTEN: f'listen = "127.0.0.1:{port}"', APK_STEP: 'BUILD_STEP_SECONDS = "0.2"'},
    )


def _post_job(port: int, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST /api/v1/jobs over TCP, as a web app would; the HTTP status and the job."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        conn.request("POST", "/api/v1/jobs", json.dumps(body), headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _peak(history: Path) -> int:
    """The most builds running at once, from build.sh's start/end lines."""
    running = peak = 0
    for line in history.read_text().splitlines():
        event = line.split()[2]
        assert event in ("start", "end"), line
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    assert running == 0
    return peak


def test_apk_builds_two_at_once_with_dedup(stoker: Stoker, unused_tcp_port: int) -> None:
    folder = _apk_builds(stoker, unused_tcp_port)
    stoker.up()
    # Paused, so that all four wait and the duplicates below meet live jobs.
    stoker.cli("queue", "pause", "build").check_returncode()
    token = (folder / ".stoker" / "token").read_text().strip()  # made: the example sets none
    packages = ["com.example.shop", "com.example.chat", "com.example.broken", "com.example.maps"]
    ids = {}
    for package in packages:
        status, job = _post_job(
            unused_tcp_port, token, {"task": "build_apk", "params": {"package": package}, "key": package}
        )
        assert status == 201 and job["state"] == "queued", job
        ids[package] = job["id"]

    # The same package again: the live job, not a new one (HTTP 200), by TCP and by the CLI.
    body = {"task": "build_apk", "params": {"package": "com.example.chat"}, "key": "com.example.chat"}
    status, job = _post_job(unused_tcp_port, token, body)
    assert status == 200 and job["id"] == ids["com.example.chat"]
    again = stoker.json("enqueue", "build_apk", "package=com.example.maps", "--key", "com.example.maps")
    assert again["id"] == ids["com.example.maps"]
    # The package's pattern in stoker.toml: refused before anything is stored.
    for bad in ("--help", "../../etc/passwd", "com", ""):
        refused = stoker.cli("enqueue", "build_apk", f"package={bad}")
        assert refused.returncode == 2 and "'package'" in refused.stderr, refused.stderr
    assert len(stoker.json("jobs")) == len(ids)
    assert not (folder / "builds").exists(), "a build started in a paused queue"

    stoker.cli("queue", "resume", "build").check_returncode()
    client = Client(url=f"http://127.0.0.1:{unused_tcp_port}", token=token, timeout=30)
    jobs = {package: client.wait(job_id, timeout=30) for package, job_id in ids.items()}

    assert {p: j.state for p, j in jobs.items()} == {
        "com.example.shop": "succeeded",
        "com.example.chat": "succeeded",
        "com.example.broken": "failed",
        "com.example.maps": "succeeded",
    }
    broken = jobs["com.example.broken"]
    assert broken.error.startswith("exited with code 1: ") and broken.attempt == 1
    assert "Unresolved reference: billingClient" in broken.output and "BUILD FAILED" in broken.output
    assert "BUILD SUCCESSFUL: builds/com.example.shop.apk" in jobs["com.example.shop"].output
    builds = folder / "builds"
    assert sorted(p.name for p in builds.glob("*.apk")) == [
        "com.example.chat.apk",
        "com.example.maps.apk",
        "com.example.shop.apk",
    ]
    history = builds / "history.log"
    assert history.read_text().count(" start ") == 4  # the duplicates built nothing
    assert _peak(history) == 2
    assert len(client.jobs(task="build_apk")) == 4


def _submit(folder: Path, package: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["php", "submit.php", package],
        cwd=folder,
        env=_php_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _states(stdout: str, job_id: str) -> list[str]:
    """The states submit.php printed, in order."""
    pattern = rf"^job {job_id}: (queued|running|succeeded|failed|cancelled)\b"
    return [m.group(1) for m in re.finditer(pattern, stdout, re.M)]


def test_apk_submit_php_follows_a_build(stoker: Stoker, unused_tcp_port: int) -> None:
    need("php")
    folder = _apk_builds(stoker, unused_tcp_port)
    stoker.up()
    good, bad = _submit(folder, "com.example.shop"), _submit(folder, "com.example.broken")
    try:
        out, err = good.communicate(timeout=30)
        assert good.returncode == 0, (out, err)
        first = re.match(r"job (\d+): build of com\.example\.shop submitted\n", out)
        assert first, out
        states = _states(out, first.group(1))
        assert states[0] == "queued" and states[-1] == "succeeded", out
        assert states == sorted(states, key=["queued", "running", "succeeded"].index), out
        assert "BUILD SUCCESSFUL: builds/com.example.shop.apk" in out
        assert (folder / "builds" / "com.example.shop.apk").exists()

        out, err = bad.communicate(timeout=30)
        assert bad.returncode == 1, (out, err)
        first = re.match(r"job (\d+): build of com\.example\.broken submitted\n", out)
        assert first, out
        assert _states(out, first.group(1))[-1] == "failed", out
        assert "exited with code 1" in err and "Unresolved reference" in err
    finally:
        for proc in (good, bad):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    usage = subprocess.run(["php", "submit.php"], cwd=folder, env=_php_env(), capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: php submit.php PACKAGE" in usage.stderr
    refused = subprocess.run(
        ["php", "submit.php", "../../etc/passwd"], cwd=folder, env=_php_env(), capture_output=True, text=True
    )
    assert refused.returncode == 2 and "not an Android package name" in refused.stderr


def test_apk_submit_php_over_tcp_follows_a_live_build(stoker: Stoker, unused_tcp_port: int) -> None:
    """STOKER_URL and STOKER_TOKEN: the TCP listener instead of the socket; and a package whose
    build is live already is followed, not built twice."""
    need("php")
    folder = _apk_builds(stoker, unused_tcp_port)
    stoker.up()
    stoker.cli("queue", "pause", "build").check_returncode()
    live = stoker.json("enqueue", "build_apk", "package=com.example.maps", "--key", "com.example.maps")
    token = (folder / ".stoker" / "token").read_text().strip()
    env = {**_php_env(), "STOKER_URL": f"http://127.0.0.1:{unused_tcp_port}", "STOKER_TOKEN": token}
    follower = subprocess.Popen(
        ["php", "submit.php", "com.example.maps"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()
        assert first == f"job {live['id']}: a build of com.example.maps is already queued; following it\n"
        stoker.cli("queue", "resume", "build").check_returncode()
        out, err = follower.communicate(timeout=30)
        assert follower.returncode == 0, (out, err)
        assert _states(out, str(live["id"]))[-1] == "succeeded", out
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert len(stoker.json("jobs")) == 1
    env["STOKER_TOKEN"] = "wrong"
    refused = subprocess.run(
        ["php", "submit.php", "com.example.maps"], cwd=folder, env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "submit.php: send Authorization: Bearer TOKEN" in refused.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _web(port: int, method: str, target: str, form: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if form is not None else {}
        body = urllib.parse.urlencode(form) if form is not None else None
        conn.request(method, target, body, headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _web_answers(port: int) -> bool:
    try:
        return _web(port, "GET", "/")[0] == 200
    except OSError:
        return False


def test_apk_index_page_submits_and_polls(stoker: Stoker, unused_tcp_port: int) -> None:
    need("php")
    folder = _apk_builds(stoker, unused_tcp_port)
    stoker.up()
    web_port = _free_port()
    server = subprocess.Popen(
        ["php", "-S", f"127.0.0.1:{web_port}", "index.php"],
        cwd=folder,
        env=_php_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _web_answers(web_port), what="php -S to answer")
        status, page = _web(web_port, "GET", "/")
        assert "<form>" in page and "fetch(" in page

        status, text = _web(web_port, "POST", "/?action=submit", {"package": "com.example.web"})
        assert status == 200, text
        job = json.loads(text)
        assert job["state"] == "queued" and not job["finished"]

        def poll() -> dict[str, Any] | None:
            status, text = _web(web_port, "GET", f"/?action=status&id={job['id']}")
            assert status == 200, text
            current: dict[str, Any] = json.loads(text)
            return current if current["finished"] else None

        done = wait_for(poll, timeout=30, what="the build to finish")
        assert done["state"] == "succeeded" and "BUILD SUCCESSFUL" in done["output"]
        assert set(done) == {
            "id", "state", "attempt", "max_attempts", "error", "output", "started_at", "finished_at", "finished"
        }  # fmt: skip

        status, text = _web(web_port, "POST", "/?action=submit", {"package": "rm -rf /"})
        assert status == 422 and "not an Android package name" in json.loads(text)["problem"]
        status, text = _web(web_port, "GET", "/?action=status&id=9999")
        assert status == 404 and json.loads(text)["problem"]
    finally:
        server.terminate()
        server.wait(10)
