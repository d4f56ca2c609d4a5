"""supervisord's XML-RPC API (api/xmlrpc.py) against a real daemon, through the standard
library's xmlrpc.client: every method, every fault code it can answer, and the doors (basic
auth with the token, text/xml on /RPC2 only)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, free_port, pid_alive, wait_for
from supervisor.xmlrpc import SupervisorTransport

from stoker import __version__

CONFIG = """
[daemon]
listen = "127.0.0.1:{port}"
token = "s3cret"
node = "box-1"

[programs.web]
command = "sleep 1000"
start_seconds = "0.2s"

[programs.worker]
command = ["sh", "-c", "echo out-{{instance}}; echo err-{{instance}} >&2; exec sleep 1000"]
instances = 2
start_seconds = "0.2s"
log = {{ stderr = "separate", timestamps = false, markers = false }}  # the bytes as written

[programs.flaky]
command = ["sh", "-c", "exit 3"]
autostart = false
start_seconds = "1s"
backoff = {{ min = "30s", max = "30s" }}

[programs.once]
command = "true"
autostart = false
restart = "never"
start_seconds = "5s"

[programs.missing]
command = "/nonexistent/bin/prog"
autostart = false

[programs.noexec]
command = "./script.sh"
autostart = false
"""


def proxy_for(stoker: Stoker) -> Any:
    """A client over the unix socket, with supervisorctl's own transport."""
    url = f"unix://{stoker.state_dir / 'stoker.sock'}"
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(None, None, url))


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def rpc(stoker: Stoker, port: int) -> Iterator[Any]:
    (stoker.root / "script.sh").write_text("echo hi\n")  # not executable
    stoker.write(CONFIG.format(port=port))
    stoker.up()
    for name in ("web:0", "worker:0", "worker:1"):
        stoker.wait_state(name, "running")
    yield proxy_for(stoker).supervisor


def fault_of(call: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(xmlrpc.client.Fault) as caught:
        call(*args)
    return caught.value.faultCode, caught.value.faultString


# -- the daemon ----------------------------------------------------------------------------------


def test_daemon_methods(stoker: Stoker, rpc: Any) -> None:
    assert rpc.getAPIVersion() == "3.0"
    assert rpc.getVersion() == "3.0"  # the name before 3.0, which supervisorctl still calls
    assert rpc.getSupervisorVersion() == __version__
    assert rpc.getIdentification() == "box-1"
    assert rpc.getState() == {"statecode": 1, "statename": "RUNNING"}
    assert stoker.daemon is not None
    assert rpc.getPID() == stoker.daemon.pid


def test_read_the_daemons_log(stoker: Stoker, rpc: Any) -> None:
    text = rpc.readLog(-4000, 0)
    assert "ready" in text and "stoker[" in text
    assert text == stoker.log_text()[-4000:]
    assert rpc.readLog(0, 10) == stoker.log_text()[:10]
    assert fault_of(rpc.readLog, -10, 5) == (3, "BAD_ARGUMENTS")


def test_system_namespace(stoker: Stoker, rpc: Any) -> None:
    system = proxy_for(stoker).system
    methods = system.listMethods()
    assert methods == sorted(methods)
    for name in (
        "supervisor.getAllProcessInfo",
        "supervisor.startProcess",
        "supervisor.reloadConfig",
        "supervisor.tailProcessStderrLog",
        "system.multicall",
        "system.methodSignature",
    ):
        assert name in methods
    assert "supervisor._stop" not in methods and not any("__" in m for m in methods)
    assert system.methodSignature("supervisor.startProcess") == ["boolean", "string", "boolean"]
    assert system.methodSignature("supervisor.getAllProcessInfo") == ["array"]
    assert "@param string name" in system.methodHelp("supervisor.stopProcess")
    assert fault_of(system.methodHelp, "supervisor.nope") == (4, "SIGNATURE_UNSUPPORTED")
    assert fault_of(system.methodSignature, "nope") == (4, "SIGNATURE_UNSUPPORTED")
    assert fault_of(rpc.nope) == (1, "UNKNOWN_METHOD")
    assert fault_of(proxy_for(stoker).getState) == (1, "UNKNOWN_METHOD")  # no namespace
    assert fault_of(rpc.getProcessInfo) == (2, "INCORRECT_PARAMETERS")  # too few
    assert fault_of(rpc.getPID, 1) == (2, "INCORRECT_PARAMETERS")  # too many
    assert fault_of(rpc.getProcessInfo, 7)[0] == 2  # not a string


def test_multicall(stoker: Stoker, rpc: Any) -> None:
    system = proxy_for(stoker).system
    results = system.multicall(
        [
            {"methodName": "supervisor.getAPIVersion", "params": []},
            {"methodName": "supervisor.getProcessInfo", "params": ["nope"]},
            {"methodName": "supervisor.getProcessInfo", "params": ["web"]},
            {"methodName": "system.multicall", "params": [[]]},
            {"params": []},
        ]
    )
    assert results[0] == "3.0"  # the value itself, as supervisord answers (not [value])
    assert results[1] == {"faultCode": 10, "faultString": "BAD_NAME: nope"}
    assert results[2]["name"] == "web"
    assert results[3] == {
        "faultCode": 2,
        "faultString": "INCORRECT_PARAMETERS: Recursive system.multicall forbidden",
    }
    assert results[4] == {"faultCode": 2, "faultString": "INCORRECT_PARAMETERS: No methodName"}


# -- process info --------------------------------------------------------------------------------


def test_process_info(stoker: Stoker, rpc: Any) -> None:
    infos = rpc.getAllProcessInfo()
    names = [(i["group"], i["name"]) for i in infos]
    assert names == [
        ("flaky", "flaky"),
        ("missing", "missing"),
        ("noexec", "noexec"),
        ("once", "once"),
        ("web", "web"),
        ("worker", "0"),
        ("worker", "1"),
    ]
    web = rpc.getProcessInfo("web")
    row = stoker.programs()["web:0"]
    assert web["pid"] == row["pid"]
    assert (web["state"], web["statename"]) == (20, "RUNNING")
    assert web["description"].startswith(f"pid {row['pid']}, uptime 0:00:")
    assert web["stdout_logfile"] == web["logfile"] == str(stoker.state_dir / "logs" / "web.0.log")
    assert web["stderr_logfile"] == ""  # merged into stdout's
    assert web["start"] <= web["now"] and web["stop"] == 0
    assert (web["spawnerr"], web["exitstatus"]) == ("", 0)
    worker = rpc.getProcessInfo("worker:1")
    assert worker["stderr_logfile"] == str(stoker.state_dir / "logs" / "worker.1.err.log")
    assert rpc.getProcessInfo("web:0") == rpc.getProcessInfo("web") | {
        "now": rpc.getProcessInfo("web")["now"]
    }
    never = rpc.getProcessInfo("once")
    assert (never["statename"], never["description"], never["pid"], never["start"]) == (
        "STOPPED",
        "Not started",
        0,
        0,
    )
    for bad in ("nope", "web:*", "worker", "worker:2"):
        assert fault_of(rpc.getProcessInfo, bad) == (10, f"BAD_NAME: {bad}")


# -- start, stop, signal -------------------------------------------------------------------------


def test_stop_and_start_one(stoker: Stoker, rpc: Any) -> None:
    pid = rpc.getProcessInfo("web")["pid"]
    assert rpc.stopProcess("web") is True
    info = rpc.getProcessInfo("web")
    assert info["statename"] == "STOPPED" and not pid_alive(pid)
    assert info["stop"] >= info["start"] > 0
    assert info["exitstatus"] == -1  # killed by SIGTERM
    assert stoker.programs()["web:0"]["stopped_by_hand"] is True  # as `stoker stop`: it stays stopped
    assert fault_of(rpc.stopProcess, "web") == (70, "NOT_RUNNING: web")
    assert rpc.startProcess("web") is True
    assert rpc.getProcessInfo("web")["statename"] == "RUNNING"  # wait=True: running once it returns
    assert stoker.programs()["web:0"]["stopped_by_hand"] is False
    assert fault_of(rpc.startProcess, "web") == (60, "ALREADY_STARTED: web")
    assert fault_of(rpc.startProcess, "nope") == (10, "BAD_NAME: nope")
    assert fault_of(rpc.stopProcess, "nope:*") == (10, "BAD_NAME: nope:*")


def test_start_faults(stoker: Stoker, rpc: Any) -> None:
    assert fault_of(rpc.startProcess, "missing") == (
        20,
        "NO_FILE: can't find command '/nonexistent/bin/prog'",
    )
    code, text = fault_of(rpc.startProcess, "noexec")
    assert (code, text) == (21, f"NOT_EXECUTABLE: command at '{stoker.root / 'script.sh'}' is not executable")
    assert fault_of(rpc.startProcess, "flaky") == (50, "SPAWN_ERROR: flaky")  # died before start_seconds
    info = rpc.getProcessInfo("flaky")
    assert info["statename"] == "BACKOFF"
    assert info["description"] == info["spawnerr"] and info["spawnerr"].startswith("exited with code 3")
    assert fault_of(rpc.startProcess, "flaky") == (60, "ALREADY_STARTED: flaky")  # backoff counts as started
    assert rpc.stopProcess("flaky") is True
    # exited, with a success code, before start_seconds, and restart = "never"
    assert fault_of(rpc.startProcess, "once") == (40, "ABNORMAL_TERMINATION: once")
    assert rpc.getProcessInfo("once")["statename"] == "EXITED"


def test_start_without_waiting(stoker: Stoker, rpc: Any) -> None:
    rpc.stopProcess("web")
    assert rpc.startProcess("web", False) is True
    assert rpc.getProcessInfo("web")["statename"] in ("STARTING", "RUNNING")
    stoker.wait_state("web:0", "running")
    assert rpc.stopProcess("web", False) is True
    stoker.wait_state("web:0", "stopped")


def test_groups(stoker: Stoker, rpc: Any) -> None:
    ok = [{"name": n, "group": "worker", "status": 80, "description": "OK"} for n in ("0", "1")]
    assert rpc.stopProcessGroup("worker") == ok
    assert [i["statename"] for i in rpc.getAllProcessInfo() if i["group"] == "worker"] == ["STOPPED"] * 2
    assert rpc.stopProcessGroup("worker") == []  # none running: nothing to stop
    assert rpc.startProcessGroup("worker") == ok
    assert rpc.stopProcess("worker:*") == ok  # a group by its namespec: the group's answer
    assert rpc.startProcess("worker:") == ok
    assert fault_of(rpc.startProcessGroup, "nope") == (10, "BAD_NAME: nope")
    assert fault_of(rpc.stopProcessGroup, "worker:0") == (10, "BAD_NAME: worker:0")
    rpc.stopProcess("worker:1")
    assert rpc.startProcessGroup("worker", False) == ok[1:]


def test_all_processes(stoker: Stoker, rpc: Any) -> None:
    stopped = rpc.stopAllProcesses()
    assert [(r["group"], r["name"], r["status"]) for r in stopped] == [
        ("web", "web", 80),
        ("worker", "0", 80),
        ("worker", "1", 80),
    ]
    assert {i["statename"] for i in rpc.getAllProcessInfo()} == {"STOPPED"}
    started = rpc.startAllProcesses()
    assert {(r["group"], r["status"], r["description"]) for r in started} == {
        ("web", 80, "OK"),
        ("worker", 80, "OK"),
        ("flaky", 50, "SPAWN_ERROR: flaky"),
        ("once", 40, "ABNORMAL_TERMINATION: once"),
        ("missing", 20, "NO_FILE: can't find command '/nonexistent/bin/prog'"),
        ("noexec", 21, f"NOT_EXECUTABLE: command at '{stoker.root / 'script.sh'}' is not executable"),
    }
    assert len(started) == 7
    rpc.stopProcess("flaky")


def test_signals(stoker: Stoker, rpc: Any) -> None:
    pid = rpc.getProcessInfo("web")["pid"]
    assert rpc.signalProcess("web", "HUP") is True
    wait_for(lambda: rpc.getProcessInfo("web")["pid"] not in (0, pid), what="web restarted after its HUP")
    assert rpc.signalProcess("web", str(int(signal.SIGCONT))) is True  # a number, as a string
    assert fault_of(rpc.signalProcess, "web", "NOPE") == (11, "BAD_SIGNAL: NOPE")
    assert fault_of(rpc.signalProcess, "once", "HUP") == (70, "NOT_RUNNING: once")
    assert fault_of(rpc.signalProcess, "nope", "HUP") == (10, "BAD_NAME: nope")
    ok = [{"name": n, "group": "worker", "status": 80, "description": "OK"} for n in ("0", "1")]
    assert rpc.signalProcessGroup("worker", "CONT") == ok
    assert rpc.signalProcess("worker:*", "CONT") == ok
    bad = [
        {"name": n, "group": "worker", "status": 11, "description": "BAD_SIGNAL: NOPE"} for n in ("0", "1")
    ]
    assert rpc.signalProcessGroup("worker", "NOPE") == bad
    assert fault_of(rpc.signalProcessGroup, "nope", "HUP") == (10, "BAD_NAME: nope")
    assert [(r["group"], r["name"]) for r in rpc.signalAllProcesses("CONT")] == [
        ("web", "web"),
        ("worker", "0"),
        ("worker", "1"),
    ]


def test_signal_with_no_process_fails(stoker: Stoker, port: int) -> None:
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{port}"
        token = "s3cret"
        [programs.db]
        command = "sleep 1000"
        autostart = false
        [programs.app]
        command = "sleep 1000"
        depends_on = ["db"]
        """
    )
    stoker.up()
    rpc = proxy_for(stoker).supervisor
    assert rpc.getProcessInfo("app")["statename"] == "STARTING"  # waiting for db: no process yet
    assert fault_of(rpc.signalProcess, "app", "HUP") == (
        30,
        "FAILED: attempted to send app sig HUP but it wasn't running",
    )


# -- logs ----------------------------------------------------------------------------------------


def test_process_logs(stoker: Stoker, rpc: Any) -> None:
    wait_for(lambda: rpc.readProcessStdoutLog("worker:1", 0, 0) == "out-1\n", what="worker:1's output")
    assert rpc.readProcessStderrLog("worker:1", 0, 0) == "err-1\n"
    assert rpc.readProcessLog("worker:1", -3, 0) == "-1\n"  # the name before 3.0
    assert rpc.readProcessStdoutLog("worker:1", 1, 2) == "ut"
    assert fault_of(rpc.readProcessStdoutLog, "worker:1", -3, 2) == (3, "BAD_ARGUMENTS")
    assert fault_of(rpc.readProcessStdoutLog, "worker:1", 0, -2) == (3, "BAD_ARGUMENTS")
    assert fault_of(rpc.readProcessStderrLog, "web", 0, 0) == (20, "NO_FILE")  # merged: no stderr log
    assert fault_of(rpc.readProcessStdoutLog, "worker:*", 0, 0) == (10, "BAD_NAME: worker:*")
    assert rpc.tailProcessStdoutLog("worker:0", 0, 100) == ["out-0\n", 6, False]
    assert rpc.tailProcessStdoutLog("worker:0", 0, 3) == ["-0\n", 6, True]
    assert rpc.tailProcessStderrLog("worker:0", 6, 100) == ["", 6, False]
    assert rpc.tailProcessStderrLog("web", 0, 100) == ["", 0, False]  # no such log: nothing, as supervisord
    assert fault_of(rpc.tailProcessStdoutLog, "nope", 0, 100) == (10, "BAD_NAME: nope")
    assert rpc.clearProcessLogs("worker:0") is True
    assert rpc.readProcessStdoutLog("worker:0", 0, 0) == ""
    assert rpc.readProcessStderrLog("worker:0", 0, 0) == ""
    assert fault_of(rpc.clearProcessLogs, "nope") == (10, "BAD_NAME: nope")
    results = rpc.clearAllProcessLogs()
    assert len(results) == 7 and {r["status"] for r in results} == {80}
    assert rpc.readProcessStdoutLog("worker:1", 0, 0) == ""


def test_a_log_with_escapes_and_carriage_returns(stoker: Stoker, port: int) -> None:
    stoker.write(
        """
        [programs.colour]
        command = ["printf", "\\\\033[31mred\\\\033[0m 10%%\\\\r20%%\\\\n"]
        log = { timestamps = false, markers = false }
        restart = "never"
        start_seconds = 0
        """
    )
    stoker.up()
    stoker.wait_state("colour:0", "exited")
    assert (
        proxy_for(stoker).supervisor.readProcessStdoutLog("colour", 0, 0)
        == "\ufffd[31mred\ufffd[0m 10%\r20%\n"
    )


# -- config --------------------------------------------------------------------------------------


def test_reread_add_remove(stoker: Stoker, rpc: Any, port: int) -> None:
    web_pid = rpc.getProcessInfo("web")["pid"]
    text = CONFIG.format(port=port).replace("instances = 2", "instances = 3")
    text = text.replace(
        "[programs.once]",
        '[programs.extra]\ncommand = "sleep 1000"\nstart_seconds = "0.2s"\n\n[programs.once]',
    )
    text = text.replace('[programs.missing]\ncommand = "/nonexistent/bin/prog"\nautostart = false\n', "")
    stoker.write(text)
    assert rpc.reloadConfig() == [[["extra"], ["worker"], ["missing"]]]
    assert rpc.getProcessInfo("worker:1")["statename"] == "RUNNING"  # read, not applied
    assert fault_of(rpc.getProcessInfo, "extra") == (10, "BAD_NAME: extra")
    infos = {(i["group"], i["name"]): i for i in rpc.getAllConfigInfo()}
    assert infos["extra", "extra"]["inuse"] is False and infos["web", "web"]["inuse"] is True
    assert infos["worker", "2"]["inuse"] is True  # the file's processes; its group is in use
    assert ("missing", "missing") not in infos  # gone from the file: not listed, as supervisord

    assert rpc.addProcessGroup("extra") is True
    assert fault_of(rpc.addProcessGroup, "extra") == (90, "ALREADY_ADDED: extra")
    assert fault_of(rpc.addProcessGroup, "nope") == (10, "BAD_NAME: nope")
    stoker.wait_state("extra:0", "running")

    assert fault_of(rpc.removeProcessGroup, "worker") == (91, "STILL_RUNNING: worker")
    rpc.stopProcessGroup("worker")
    assert rpc.removeProcessGroup("worker") is True
    assert rpc.addProcessGroup("worker") is True
    for i in range(3):
        stoker.wait_state(f"worker:{i}", "running")
    assert rpc.removeProcessGroup("missing") is True
    assert fault_of(rpc.removeProcessGroup, "missing") == (10, "BAD_NAME: missing")
    assert rpc.reloadConfig() == [[[], [], []]]
    assert rpc.getProcessInfo("web")["pid"] == web_pid  # untouched all along

    (stoker.config).write_text("[programs.web]\ncommand = 3\n")
    code, text = fault_of(rpc.reloadConfig)
    assert code == 92 and text.startswith("CANT_REREAD: ") and "command" in text
    assert rpc.getProcessInfo("web")["pid"] == web_pid


def test_restart(stoker: Stoker, rpc: Any, port: int) -> None:
    before = {i["name"]: i["pid"] for i in rpc.getAllProcessInfo() if i["pid"]}
    rpc.stopProcess("worker:1")  # stopped by hand: stays stopped, as across a daemon restart
    stoker.write(CONFIG.format(port=port) + '\n[programs.late]\ncommand = "sleep 1000"\n')
    assert rpc.restart() is True
    after = {(i["group"], i["name"]): i for i in rpc.getAllProcessInfo()}
    assert stoker.daemon is not None and rpc.getPID() == stoker.daemon.pid
    assert after["web", "web"]["pid"] not in (0, before["web"])
    assert after["worker", "1"]["statename"] == "STOPPED"
    assert ("late", "late") in after
    stoker.wait_state("late:0", "running")
    assert rpc.getState() == {"statecode": 1, "statename": "RUNNING"}


def test_shutdown(stoker: Stoker, rpc: Any) -> None:
    system = proxy_for(stoker).system
    results = system.multicall(
        [
            {"methodName": "supervisor.shutdown", "params": []},
            {"methodName": "supervisor.getState", "params": []},
        ]
    )
    assert results == [True, {"faultCode": 6, "faultString": "SHUTDOWN_STATE"}]
    assert stoker.daemon is not None
    assert stoker.daemon.wait(30) == 0


# -- the doors -----------------------------------------------------------------------------------


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


CALL = xmlrpc.client.dumps((), "supervisor.getAPIVersion").encode()


def test_tcp_takes_the_token_as_basic_password_or_bearer(stoker: Stoker, rpc: Any, port: int) -> None:
    for user in ("any", "admin", ""):
        proxy = xmlrpc.client.ServerProxy(f"http://{user}:s3cret@127.0.0.1:{port}/RPC2")
        assert proxy.supervisor.getAPIVersion() == "3.0"
    for url in (f"http://any:wrong@127.0.0.1:{port}/RPC2", f"http://127.0.0.1:{port}/RPC2"):
        with pytest.raises(xmlrpc.client.ProtocolError) as caught:
            xmlrpc.client.ServerProxy(url).supervisor.getAPIVersion()
        assert caught.value.errcode == 401
        headers = {k.lower(): v for k, v in caught.value.headers.items()}
        assert headers["www-authenticate"] == "Bearer"  # which no browser prompts for
    status, body = post(port, "/RPC2", CALL, {"Content-Type": "text/xml", "Authorization": "Bearer s3cret"})
    assert status == 200 and xmlrpc.client.loads(body)[0] == ("3.0",)


def test_basic_auth_only_for_supervisords_paths(stoker: Stoker, rpc: Any, port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/api/v1/status", headers={"Authorization": "Basic YW55OnMzY3JldA=="})  # any:s3cret
    assert conn.getresponse().status == 401
    conn.close()


def test_rpc2_takes_xml_only(stoker: Stoker, rpc: Any, port: int) -> None:
    auth = {"Authorization": "Bearer s3cret"}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/json", ""):
        status, body = post(port, "/RPC2", CALL, {**auth, "Content-Type": content_type})
        assert status == 415, content_type
        assert "text/xml" in json.loads(body)["error"]["message"]
    assert post(port, "/RPC2", CALL, {**auth, "Content-Type": "application/xml; charset=utf-8"})[0] == 200
    # every other door still wants JSON
    assert post(port, "/api/v1/reload", b"<x/>", {**auth, "Content-Type": "text/xml"})[0] == 415
    # and a page of another site is refused here too, whatever it sends
    cross = {**auth, "Content-Type": "text/xml", "Origin": "http://evil.example"}
    assert post(port, "/RPC2", CALL, cross)[0] == 403
    assert (
        post(port, "/RPC2", CALL, {**auth, "Content-Type": "text/xml", "Sec-Fetch-Site": "cross-site"})[0]
        == 403
    )


def test_malformed_calls(stoker: Stoker, rpc: Any, port: int) -> None:
    auth = {"Authorization": "Bearer s3cret", "Content-Type": "text/xml"}
    assert post(port, "/RPC2", b"<methodCall><methodName>", auth)[0] == 400
    assert post(port, "/RPC2", b"<methodCall></methodCall>", auth)[0] == 400
    assert post(port, "/RPC2", b"", auth)[0] == 400


def test_unix_socket_needs_no_auth(stoker: Stoker, rpc: Any) -> None:
    assert os.stat(stoker.state_dir / "stoker.sock").st_mode & 0o777 == 0o600
    assert rpc.getAPIVersion() == "3.0"  # (the fixture's proxy sends no credentials)


def test_a_follower_is_attached_only_while_it_streams(tmp_path: Path) -> None:
    """A tail -f whose caller left before its answer began leaves no listener on the log."""
    import asyncio

    from stoker.api.xmlrpc import _Follower

    log = tmp_path / "x.log"
    log.write_bytes(b"a" * 2000)
    attached: list[Any] = []

    async def scenario() -> None:
        follower = _Follower(log)
        stream = follower.stream(attached.append, attached.remove)
        assert attached == []  # made, not begun: nothing attached
        assert await anext(stream) == b"a" * 1024  # the last KB
        assert attached == [follower.put]
        follower.put(b"more\n")
        assert await anext(stream) == b"more\n"
        await stream.aclose()
        assert attached == []

    asyncio.run(scenario())


def test_a_daemon_stopping_is_in_shutdown_state(stoker: Stoker) -> None:
    """From SIGTERM on (not only a shutdown asked through XML-RPC), supervisor.* says so."""
    stoker.write(
        """
        [programs.stubborn]
        command = ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 1 & wait $!; done"]
        log = { timestamps = false, markers = false }
        start_seconds = 0
        stop_timeout = "3s"
        """
    )
    stoker.up()
    stoker.wait_state("stubborn:0", "running")
    rpc = proxy_for(stoker).supervisor
    wait_for(lambda: rpc.readProcessStdoutLog("stubborn", 0, 0) == "up\n", what="the trap in place")
    assert stoker.daemon is not None
    stoker.daemon.send_signal(signal.SIGTERM)  # it waits for stubborn (3 s, then SIGKILL)

    def shutting_down() -> bool:
        try:
            rpc.getState()
        except xmlrpc.client.Fault as e:
            return (e.faultCode, e.faultString) == (6, "SHUTDOWN_STATE")
        return False

    wait_for(shutting_down, what="SHUTDOWN_STATE")
    assert proxy_for(stoker).system.listMethods()  # (system.* still answers)
    assert stoker.daemon.wait(30) == 0


def test_an_added_program_does_not_see_a_secret_the_file_now_reads(
    stoker: Stoker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_URL", "https://hooks.example.com/s3cret")  # the daemon's environment
    stoker.write('[programs.web]\ncommand = "sleep 1000"\n')
    stoker.up()
    stoker.write(
        """
        [programs.web]
        command = "sleep 1000"

        [programs.peek]
        command = ["sh", "-c", "env; exec sleep 1000"]

        [notify.ops]
        url = "env:HOOK_URL"
        """
    )
    rpc = proxy_for(stoker).supervisor
    assert rpc.reloadConfig() == [[["peek"], [], []]]
    assert rpc.addProcessGroup("peek") is True

    def environment() -> str | None:  # (the log's first line is the run's marker: wait for env's)
        text: str = rpc.readProcessStdoutLog("peek", 0, 0)
        return text if "STOKER_PROGRAM=" in text else None

    text = wait_for(environment, what="peek's environment")
    assert "STOKER_PROGRAM=peek" in text and "HOOK_URL" not in text
