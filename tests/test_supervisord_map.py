"""The pure half of the XML-RPC API (stoker.api.supervisord_map), checked against supervisord's
own code where it has some: the `supervisor` package (a dev dependency) is the oracle for names,
descriptions and log windows."""

from __future__ import annotations

import signal
import string
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from supervisor import options as sv_options
from supervisor import states as sv_states
from supervisor import xmlrpc as sv_xmlrpc
from supervisor.rpcinterface import SupervisorNamespaceRPCInterface

from stoker.api import supervisord_map as m
from stoker.config import Backoff, LogConfig, ProgramConfig
from stoker.supervise.state import State

# -- codes ---------------------------------------------------------------------------------------


def test_fault_codes_are_supervisords() -> None:
    theirs = {k: v for k, v in vars(sv_xmlrpc.Faults).items() if not k.startswith("_")}
    assert {f.name: int(f) for f in m.Faults} == theirs


def test_fault_text_is_supervisords() -> None:
    for code in m.Faults:
        for extra in (None, "mailer", 3):
            ours = m.RpcFault(code, extra)
            theirs = sv_xmlrpc.RPCError(int(code), extra)
            assert (ours.code, ours.text) == (theirs.code, theirs.text)


def test_process_states_are_supervisords() -> None:
    theirs = {k: v for k, v in vars(sv_states.ProcessStates).items() if not k.startswith("_")}
    assert {s.name: int(s) for s in m.ProcessStates} == theirs
    assert set(m.RUNNING_STATES) == set(sv_states.RUNNING_STATES)
    assert set(m.STOPPED_STATES) == set(sv_states.STOPPED_STATES)
    assert set(m.SIGNALLABLE_STATES) == set(sv_states.SIGNALLABLE_STATES)
    theirs = {k: v for k, v in vars(sv_states.SupervisorStates).items() if not k.startswith("_")}
    assert {s.name: int(s) for s in m.SupervisorStates} == theirs


def test_every_stoker_state_maps_to_its_namesake() -> None:
    assert set(m.STATES) == {str(s) for s in State}
    for state in State:
        assert m.process_state(str(state)).name == state.name
    assert m.process_state("no such state") is m.ProcessStates.UNKNOWN


# -- names ---------------------------------------------------------------------------------------

NAME = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=8)
SPEC = st.text(alphabet=string.ascii_letters + string.digits + ":*_", max_size=12)


@given(SPEC)
def test_split_namespec_is_supervisords(spec: str) -> None:
    assert m.split_namespec(spec) == sv_options.split_namespec(spec)


@given(NAME, NAME)
def test_make_namespec_is_supervisords(group: str, name: str) -> None:
    assert m.make_namespec(group, name) == sv_options.make_namespec(group, name)


def test_process_names() -> None:
    assert m.process_name("web", 0, 1) == "web"
    assert [m.process_name("worker", i, 3) for i in range(3)] == ["0", "1", "2"]
    assert m.make_namespec("web", m.process_name("web", 0, 1)) == "web"
    assert m.make_namespec("worker", m.process_name("worker", 2, 3)) == "worker:2"


PROGRAMS = {"web": 1, "worker": 3}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("web", ("web", 0)),
        ("web:web", ("web", 0)),
        ("web:0", ("web", 0)),  # stoker's own name for the one instance
        ("web:*", ("web", None)),
        ("web:", ("web", None)),
        ("worker:0", ("worker", 0)),
        ("worker:2", ("worker", 2)),
        ("worker:*", ("worker", None)),
    ],
)
def test_resolve(spec: str, expected: tuple[str, int | None]) -> None:
    assert m.resolve(spec, PROGRAMS) == expected


@pytest.mark.parametrize(
    "spec", ["nope", "nope:*", "web:1", "web:x", "worker", "worker:3", "worker:worker", ""]
)
def test_resolve_bad_name(spec: str) -> None:
    with pytest.raises(m.RpcFault) as caught:
        m.resolve(spec, PROGRAMS)
    assert caught.value.code is m.Faults.BAD_NAME
    assert caught.value.text == f"BAD_NAME: {spec}"


@given(st.dictionaries(NAME, st.integers(1, 12), max_size=6))
def test_every_listed_process_resolves_to_itself(programs: dict[str, int]) -> None:
    listed = m.lexical(programs)
    assert len(listed) == sum(programs.values())
    assert [g for g, _ in listed] == sorted(g for g, _ in listed)  # groups by name
    for group, index in listed:
        spec = m.make_namespec(group, m.process_name(group, index, programs[group]))
        assert m.resolve(spec, programs) == (group, index)
        assert m.resolve(f"{group}:*", programs) == (group, None)


def test_lexical_orders_instances_by_number() -> None:
    assert m.lexical({"b": 1, "a": 11})[:3] == [("a", 0), ("a", 1), ("a", 2)]
    assert m.lexical({"b": 1, "a": 11})[-1] == ("b", 0)


# -- process info --------------------------------------------------------------------------------


def snapshot(**changes: object) -> m.Snapshot:
    base: dict[str, object] = {
        "program": "web",
        "instance": 0,
        "instances": 1,
        "state": "running",
        "pid": 4242,
        "started": 1_700_000_000.0,
        "stopped": None,
        "error": None,
        "exit_code": None,
        "exit_signal": None,
        "stdout_logfile": "/s/logs/web.0.log",
        "stderr_logfile": "",
    }
    base.update(changes)
    return m.Snapshot(**base)  # type: ignore[arg-type]


def test_process_info_fields() -> None:
    info = m.process_info(snapshot(), 1_700_000_062.5)
    assert info == {
        "name": "web",
        "group": "web",
        "start": 1_700_000_000,
        "stop": 0,
        "now": 1_700_000_062,
        "state": 20,
        "statename": "RUNNING",
        "spawnerr": "",
        "exitstatus": 0,
        "logfile": "/s/logs/web.0.log",
        "stdout_logfile": "/s/logs/web.0.log",
        "stderr_logfile": "",
        "pid": 4242,
        "description": "pid 4242, uptime 0:01:02",
    }


def test_process_info_of_an_instance_of_many() -> None:
    info = m.process_info(snapshot(program="worker", instance=2, instances=3), 1_700_000_000)
    assert (info["name"], info["group"]) == ("2", "worker")


def test_exit_status() -> None:
    assert m.exit_status(None, None) == 0
    assert m.exit_status(3, None) == 3
    assert m.exit_status(None, int(signal.SIGKILL)) == -1


SECONDS = st.integers(0, 2**31 - 1)


@given(
    state=st.sampled_from([str(s) for s in State]),
    start=st.one_of(st.just(0), SECONDS),
    stop=SECONDS,
    now=SECONDS,
    pid=st.integers(0, 2**22),
    spawnerr=st.sampled_from(["", "Exited too quickly", "exited with code 1 after 0.05s"]),
)
def test_description_is_supervisords(
    state: str, start: int, stop: int, now: int, pid: int, spawnerr: str
) -> None:
    info = {
        "name": "web",
        "state": int(m.process_state(state)),
        "start": start,
        "stop": stop,
        "now": now,
        "pid": pid,
        "spawnerr": spawnerr,
    }
    assert m.description(info) == SupervisorNamespaceRPCInterface(None)._interpretProcessInfo(info)


def test_descriptions_in_words() -> None:
    now = time.time()
    running = m.process_info(snapshot(started=now - 3600 * 25 - 61), now)
    assert running["description"].endswith("uptime 1 day, 1:01:01")
    never = m.process_info(snapshot(state="stopped", pid=None, started=None), now)
    assert never["description"] == "Not started"
    assert never["pid"] == 0
    backoff = m.process_info(snapshot(state="backoff", pid=None, error="exited with code 1 after 0.01s"), now)
    assert backoff["description"] == backoff["spawnerr"] == "exited with code 1 after 0.01s"
    fatal = m.process_info(snapshot(state="fatal", pid=None), now)
    assert fatal["description"] == 'unknown error (try "tail web")'
    stopped = m.process_info(snapshot(state="stopped", pid=None, stopped=now), now)
    assert stopped["description"] == time.strftime("%b %d %I:%M %p", time.localtime(now))


def test_times_saturate_like_xmlrpc_ints() -> None:
    assert m.capped_int(2**40) == 2**31 - 1
    assert m.capped_int(-(2**40)) == -(2**31)
    assert m.capped_int(12.9) == 12


def test_group_results() -> None:
    assert m.result("worker", "1", None) == {
        "name": "1",
        "group": "worker",
        "status": 80,
        "description": "OK",
    }
    fault = m.RpcFault(m.Faults.SPAWN_ERROR, "worker:1")
    assert m.result("worker", "1", fault) == {
        "name": "1",
        "group": "worker",
        "status": 50,
        "description": "SPAWN_ERROR: worker:1",
    }


@pytest.mark.parametrize(
    ("state", "waited", "fault"),
    [
        ("running", True, None),
        ("running", False, None),
        ("starting", False, None),
        ("starting", True, m.Faults.SPAWN_ERROR),  # still held back when the wait ended
        ("backoff", True, m.Faults.SPAWN_ERROR),
        ("backoff", False, m.Faults.SPAWN_ERROR),  # the spawn itself failed
        ("fatal", True, m.Faults.SPAWN_ERROR),
        ("exited", True, m.Faults.ABNORMAL_TERMINATION),
        ("stopped", True, m.Faults.ABNORMAL_TERMINATION),
        ("stopping", True, m.Faults.ABNORMAL_TERMINATION),
        ("exited", False, None),
        ("stopped", False, None),
        ("stopping", False, None),
    ],
)
def test_start_outcome(state: str, waited: bool, fault: m.Faults | None) -> None:
    assert m.start_outcome(state, waited) is fault


def test_start_outcome_covers_every_state() -> None:
    for state in State:
        for waited in (True, False):
            m.start_outcome(str(state), waited)  # (no state is left out: no KeyError)


def test_config_info() -> None:
    program = ProgramConfig(
        name="worker",
        command=("php", "artisan", "queue:work", "--name={instance}"),
        instances=2,
        directory="/srv/app",
        restart="on-failure",
        success_exit_codes=(0, 2),
        start_seconds=1.5,
        max_restarts=3,
        stop_signal=int(signal.SIGINT),
        stop_timeout=20.0,
        backoff=Backoff(),
        log=LogConfig(keep=4, max_size=1024),
    )
    info = m.config_info(program, 1, True, "/s/logs/worker.1.log", "")
    assert info["name"] == "1"
    assert info["group"] == "worker"
    assert info["command"] == "php artisan queue:work --name=1"
    assert info["autorestart"] == "unexpected"
    assert info["exitcodes"] == [0, 2]
    assert info["startsecs"] == 1
    assert info["startretries"] == 3
    assert info["stopsignal"] == int(signal.SIGINT)
    assert info["stopwaitsecs"] == 20
    assert info["redirect_stderr"] is True
    assert info["stderr_logfile"] == "none"
    assert info["uid"] == "none"
    assert (info["stdout_logfile_backups"], info["stdout_logfile_maxbytes"]) == (4, 1024)
    assert None not in info.values()  # (XML-RPC has no nil)
    # every key supervisord answers (rpcinterface.getAllConfigInfo)
    assert set(info) == {
        "autostart", "autorestart", "directory", "uid", "command", "exitcodes", "group", "group_prio",
        "inuse", "killasgroup", "name", "process_prio", "redirect_stderr", "startretries", "startsecs",
        "stdout_capture_maxbytes", "stdout_events_enabled", "stdout_logfile", "stdout_logfile_backups",
        "stdout_logfile_maxbytes", "stdout_syslog", "stopsignal", "stopwaitsecs",
        "stderr_capture_maxbytes", "stderr_events_enabled", "stderr_logfile", "stderr_logfile_backups",
        "stderr_logfile_maxbytes", "stderr_syslog", "serverurl",
    }  # fmt: skip


# -- log windows ---------------------------------------------------------------------------------

OFFSETS = st.integers(-3000, 3000)


@given(data=st.binary(max_size=2000), offset=OFFSETS, length=OFFSETS)
def test_read_window_is_supervisords_readfile(tmp_path_factory: pytest.TempPathFactory, data: bytes,
                                              offset: int, length: int) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("log") / "f.log"
    path.write_bytes(data)
    try:
        theirs: bytes | str = sv_options.readFile(str(path), offset, length)
    except ValueError as e:
        theirs = e.args[0]
    try:
        position, count = m.read_window(len(data), offset, length)
        ours: bytes | str = data[position : position + count]
    except m.RpcFault as fault:
        ours = fault.code.name
    assert ours == theirs


# (ASCII: tailFile decodes what it read as UTF-8, and fails on a character it cut in two)
@given(data=st.text(alphabet=string.printable, max_size=2000), offset=st.integers(0, 3000),
       length=st.integers(0, 3000))  # fmt: skip
def test_tail_window_is_supervisords_tailfile(tmp_path_factory: pytest.TempPathFactory, data: str,
                                              offset: int, length: int) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("log") / "f.log"
    text = data.encode()
    path.write_bytes(text)
    theirs = sv_options.tailFile(str(path), offset, length)
    position, count, after, overflow = m.tail_window(len(text), offset, length)
    assert [text[position : position + count].decode(), after, overflow] == theirs


def test_xml_text_keeps_text_and_replaces_what_xml_cannot_carry() -> None:
    assert m.xml_text(b"plain line\n\ttabbed\r\n") == "plain line\n\ttabbed\r\n"
    assert m.xml_text(b"\x1b[31mred\x1b[0m") == "\ufffd[31mred\ufffd[0m"
    assert m.xml_text(b"nul\x00 and \xff") == "nul\ufffd and \ufffd"
    assert m.xml_text("caf\u00e9 \u4e2d".encode()) == "caf\u00e9 \u4e2d"


@given(st.binary(max_size=300))
def test_xml_text_always_marshals(data: bytes) -> None:
    import xmlrpc.client

    text = m.xml_text(data)
    assert xmlrpc.client.loads(m.marshal(text))[0] == (text,)


def test_marshal_a_fault() -> None:
    import xmlrpc.client

    with pytest.raises(xmlrpc.client.Fault) as caught:
        xmlrpc.client.loads(m.marshal(m.RpcFault(m.Faults.BAD_NAME, "web")))
    assert (caught.value.faultCode, caught.value.faultString) == (10, "BAD_NAME: web")


def test_log_clear(tmp_path: Path) -> None:
    from stoker.supervise.logs import LogFile

    log = LogFile(tmp_path / "a.log", max_size=10, keep=2)
    log.write(b"0123456789abcdef\nmore\n")
    assert (tmp_path / "a.log.1").exists()
    log.clear()
    assert (tmp_path / "a.log").read_bytes() == b""
    assert not (tmp_path / "a.log.1").exists()
    log.write(b"next\n")
    assert (tmp_path / "a.log").read_bytes() == b"next\n"
    assert log.size == 5
    log.close()
