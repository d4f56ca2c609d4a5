"""The control API over the unix socket and TCP, and program logs through the daemon."""

from __future__ import annotations

import http.client
import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, output_of, wait_for

from stoker.client import Client, ClientError

PY = sys.executable


def _tcp(port: int, method: str, path: str, token: str | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def test_tcp_requires_the_token(stoker: Stoker, unused_tcp_port: int) -> None:
    (stoker.root / "token").write_text("s3cret\n")
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{unused_tcp_port}"
        token = "file:token"
        [programs.sleeper]
        command = "sleep 1000"
        """
    )
    stoker.up()
    status, body = _tcp(unused_tcp_port, "GET", "/api/v1/programs")
    assert status == 401
    assert json.loads(body)["error"]["code"] == "unauthorized"
    status, _ = _tcp(unused_tcp_port, "GET", "/api/v1/programs", token="wrong")
    assert status == 401
    status, body = _tcp(unused_tcp_port, "GET", "/api/v1/programs", token="s3cret")
    assert status == 200
    assert json.loads(body)[0]["name"] == "sleeper:0"
    # The same through the Python client over TCP.
    client = Client(url=f"http://127.0.0.1:{unused_tcp_port}", token="s3cret")
    assert client.status()["node"]
    # The unix socket needs no token: its file mode is the door.
    assert stoker.client.status()["pid"] == stoker.daemon.pid  # type: ignore[union-attr]


def test_loopback_without_a_token_gets_one_made_and_kept(stoker: Stoker, unused_tcp_port: int) -> None:
    """127.0.0.1 is open to every user of the machine: with no [daemon] token the daemon makes
    one (0600 in the state dir), names it, and asks for it like any other."""
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{unused_tcp_port}"
        [programs.sleeper]
        command = "sleep 1000"
        """
    )
    result = stoker.cli("up", "-d")
    assert result.returncode == 0, result.stderr
    made = stoker.state_dir / "token"
    assert f"http://127.0.0.1:{unused_tcp_port}/ (its token is in {made})" in result.stdout
    try:
        assert made.stat().st_mode & 0o777 == 0o600
        token = made.read_text().strip()
        assert len(token) >= 40  # 256 random bits
        status, body = _tcp(unused_tcp_port, "GET", "/api/v1/status")
        assert status == 401
        assert json.loads(body)["error"]["message"] == (
            f"send Authorization: Bearer TOKEN (no [daemon] token is set: the daemon made one, in {made})"
        )
        status, body = _tcp(unused_tcp_port, "GET", "/api/v1/status", token=token)
        assert status == 200 and json.loads(body)["pid"] == stoker.client.status()["pid"]
        assert stoker.cli("down").returncode == 0
        # the next start keeps it: clients given it go on working
        assert stoker.cli("up", "-d").returncode == 0
        assert made.read_text().strip() == token
        assert _tcp(unused_tcp_port, "GET", "/api/v1/status", token=token)[0] == 200
    finally:
        stoker.cli("down")


def test_an_empty_token_file_is_made_again(stoker: Stoker, unused_tcp_port: int) -> None:
    stoker.write(f'[daemon]\nlisten = "127.0.0.1:{unused_tcp_port}"\n')
    stoker.state_dir.mkdir(mode=0o700)
    (stoker.state_dir / "token").write_text("")  # a crash while it was written
    (stoker.state_dir / "token").chmod(0o644)
    stoker.up()
    token = (stoker.state_dir / "token").read_text().strip()
    assert len(token) >= 40 and (stoker.state_dir / "token").stat().st_mode & 0o777 == 0o600
    assert _tcp(unused_tcp_port, "GET", "/api/v1/status", token=token)[0] == 200
    assert "(its token is in " in stoker.log_text()


def test_a_token_in_the_config_makes_no_file(stoker: Stoker, unused_tcp_port: int) -> None:
    stoker.write(f'[daemon]\nlisten = "127.0.0.1:{unused_tcp_port}"\ntoken = "s3cret"\n')
    result = stoker.cli("up", "-d")
    try:
        assert result.returncode == 0 and f"http://127.0.0.1:{unused_tcp_port}/\n" in result.stdout
        assert not (stoker.state_dir / "token").exists()
        status, body = _tcp(unused_tcp_port, "GET", "/api/v1/status")
        assert status == 401 and json.loads(body)["error"]["message"] == "send Authorization: Bearer TOKEN"
    finally:
        stoker.cli("down")


def test_non_loopback_listen_without_token_is_refused(stoker: Stoker) -> None:
    stoker.write(
        """
        [daemon]
        listen = "0.0.0.0:9100"
        [programs.sleeper]
        command = "sleep 1000"
        """
    )
    result = stoker.cli("up")
    assert result.returncode == 2
    assert "token" in result.stderr and "listen" in result.stderr


def test_a_short_token_off_loopback_is_refused_by_check_and_up(stoker: Stoker) -> None:
    stoker.write(
        """
        [daemon]
        listen = "0.0.0.0:9100"
        token = "x"
        [programs.sleeper]
        command = "sleep 1000"
        """
    )
    for command in ("check", "up"):
        result = stoker.cli(command)
        assert result.returncode == 2, result
        assert f"{stoker.config}: [daemon] token: 1 character is too few to guard" in result.stderr
        assert "at least 16" in result.stderr


def test_errors_are_json(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.sleeper]
        command = "sleep 1000"
        """
    )
    stoker.up()
    client = stoker.client
    with pytest.raises(ClientError) as e:
        client.programs("nosuch")
    assert e.value.status == 404 and e.value.code == "not_found"
    with pytest.raises(ClientError) as e:
        client.request("GET", "/api/v1/nothing-here")
    assert e.value.status == 404
    with pytest.raises(ClientError) as e:
        client.request("POST", "/api/v1/programs/sleeper/explode")
    assert e.value.status == 404
    with pytest.raises(ClientError) as e:
        client.request("POST", "/api/v1/programs/sleeper/signal", {"signal": "NOPE"})
    assert e.value.status == 400
    good = stoker.config.read_text()
    stoker.config.write_text(good + "\n[programs.halfway]\n")  # no command
    with pytest.raises(ClientError) as e:
        client.request("POST", "/api/v1/reload")
    assert e.value.status == 422 and e.value.code == "invalid_config" and "halfway" in str(e.value)
    stoker.config.write_text(good)


def test_openapi_document_lists_every_route(stoker: Stoker) -> None:
    stoker.write(
        """
        [programs.sleeper]
        command = "sleep 1000"
        """
    )
    stoker.up()
    doc = stoker.client.request("GET", "/api/v1/openapi.json")
    assert doc["openapi"].startswith("3.")
    from stoker.api.app import DaemonInfo, build_app
    from stoker.config import load_config
    from stoker.supervise.supervisor import Supervisor

    async def served_paths() -> set[str]:
        info = DaemonInfo(Supervisor(load_config(stoker.config)), 0.0, lambda: None)
        app: Any = build_app(info, None)
        while not hasattr(app, "routes"):  # through the middleware (auth, body limit) to Starlette
            app = app.app
        return {route.path.replace(":int", "").replace(":str", "") for route in app.routes}

    import asyncio

    served = asyncio.run(served_paths())
    documented = set(doc["paths"])
    missing = {p for p in served if p not in documented and not _covered(p, documented)}
    assert not missing, f"routes missing from the OpenAPI document: {missing}"
    instance = doc["components"]["schemas"]["ProgramInstance"]
    assert set(instance["required"]) >= {
        "name",
        "state",
        "pid",
        "restarts",
        "memory",
        "node",
        "error",
    }


def test_logs_tail_and_follow(stoker: Stoker) -> None:
    (stoker.root / "ticker.py").write_text(
        "import sys, time\n"
        "for i in range(10):\n"
        "    print(f'line {i}', flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "i = 10\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
        "    print(f'line {i}', flush=True)\n"
        "    i += 1\n"
    )
    stoker.write(
        f"""
        [programs.ticker]
        command = ["{PY}", "ticker.py"]
        start_seconds = 0
        """
    )
    stoker.up()
    tail = wait_for(lambda: (out := stoker.cli("logs", "ticker", "-n", "3").stdout).count("\n") == 3 and out)
    numbers = [int(line.split()[1]) for line in output_of(tail).splitlines() if line.startswith("line ")]
    assert numbers == sorted(numbers) and len(numbers) >= 2
    assert "to stderr" in stoker.cli("logs", "ticker", "-n", "1000").stdout  # merged by default

    # follow: new lines keep arriving on the CLI's stdout.
    proc = subprocess.Popen(
        [PY, "-m", "stoker", "-c", str(stoker.config), "logs", "ticker", "-f", "-n", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        seen: list[int] = []
        wait_for(lambda: _collect(lines, seen) and len(seen) >= 5, what="5 followed lines")
        assert seen == list(range(seen[0], seen[0] + len(seen)))  # consecutive, none doubled
    finally:
        proc.terminate()
        proc.wait(10)


def _collect(lines: queue.Queue[str], seen: list[int]) -> bool:
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return True
        line = output_of(line)
        if line.startswith("line "):
            seen.append(int(line.split()[1]))


def test_log_rotation_keeps_every_line_once(stoker: Stoker) -> None:
    (stoker.root / "flood.py").write_text(
        "import sys, time\n"
        "out = sys.stdout\n"
        "for i in range(20000):\n"
        "    out.write(f'{i:06d} ' + 'x' * 50 + '\\n')\n"
        "out.flush()\n"
        "print('done', flush=True)\n"
        "time.sleep(1000)\n"
    )
    stoker.write(
        f"""
        [programs.flood]
        command = ["{PY}", "flood.py"]
        start_seconds = 0
        log = {{ max_size = "64KB", keep = 100 }}
        """
    )
    stoker.up()
    log = stoker.state_dir / "logs" / "flood.0.log"

    def finished() -> bool:
        # The daemon renames the live file while it rotates, so it can vanish between looks.
        try:
            return log.read_text().endswith(" done\n")  # (after its timestamp)
        except FileNotFoundError:
            return False

    wait_for(finished, what="the flood to finish")
    files = [*sorted(log.parent.glob("flood.0.log.*"), key=lambda p: -int(p.suffix[1:])), log]
    assert len(files) > 10
    for f in files[:-1]:
        assert f.stat().st_size <= 64 * 1024
        assert f.read_bytes().endswith(b"\n")
    text = output_of("".join(f.read_text() for f in files))
    lines = text.splitlines()
    assert lines[-1] == "done"
    assert [int(line.split()[0]) for line in lines[:-1]] == list(range(20000))


def test_separate_stderr(stoker: Stoker) -> None:
    stoker.write(
        f"""
        [programs.split]
        command = ["{PY}", "-c", "import sys, time; print('out', flush=True); print('err', file=sys.stderr, flush=True); time.sleep(1000)"]
        start_seconds = 0
        log = {{ stderr = "separate" }}
        """
    )
    stoker.up()
    wait_for(lambda: output_of(stoker.cli("logs", "split").stdout) == "out\n", what="stdout")
    wait_for(lambda: output_of(stoker.cli("logs", "split", "--stderr").stdout) == "err\n", what="stderr")
    assert output_of(Path(stoker.state_dir / "logs" / "split.0.err.log").read_text()) == "err\n"


def _covered(path: str, documented: set[str]) -> bool:
    """`/programs/{name}/{action}` is documented as one path per action."""
    prefix = path.rsplit("/", 1)[0]
    return path.endswith("{action}") and any(d.startswith(prefix + "/") for d in documented)


def test_out_of_range_times_and_ids_are_refused_not_stored(stoker: Stoker) -> None:
    stoker.write('[tasks.t]\ncommand = ["true"]\n')
    stoker.up()
    client = stoker.client
    for body, says in [
        ({"task": "t", "delay": 5.6e16}, "delay: it would end after the year 9000"),
        ({"task": "t", "run_at": "9999-12-31T23:59:59+00:00"}, "run_at: between 1970"),
        ({"task": "t", "run_at": "0001-01-01T00:00:00+00:00"}, "run_at: between 1970"),
    ]:
        try:
            client.request("POST", "/api/v1/jobs", body)
        except ClientError as e:
            assert (e.status, e.code) == (422, "invalid") and says in str(e), e
        else:
            raise AssertionError(f"accepted {body}")
    assert client.request("GET", "/api/v1/jobs") == []  # nothing stored, listings still work
    for path in ("/api/v1/jobs/99999999999999999999", "/api/v1/jobs/99999999999999999999/retry"):
        try:
            client.request("POST" if path.endswith("retry") else "GET", path)
        except ClientError as e:
            assert (e.status, e.code) == (404, "not_found"), e
        else:
            raise AssertionError(f"{path} answered")
    assert client.request("GET", "/api/v1/jobs?before=99999999999999999999") == []
