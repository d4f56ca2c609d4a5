"""How stoker looks through supervisord's XML-RPC API (version 3.0): names, states, faults,
process info, and the byte windows of its log reads. Pure: plain values in, plain values out;
the route (api/xmlrpc.py) does the IO.

Names. A program is a process group; each of its instances is a process of the group:
- a program with one instance is the process `mailer` of the group `mailer`, shown `mailer`,
  as supervisord shows a `[program:mailer]` with numprocs = 1 (`mailer:mailer` works too);
- a program with N > 1 instances has the processes `0` … `N-1`, shown `mailer:0` … `mailer:N-1`:
  stoker's own instance names. `mailer:*` (and `mailer:`) is the whole group.
- A one-instance program also answers to its stoker name `mailer:0`.
Listings are in supervisord's order: groups by name, then processes (here by instance number,
which is the name order supervisord's zero-padded `%(process_num)02d` names give).
"""

from __future__ import annotations

import datetime as dt
import enum
import shlex
import time
import xmlrpc.client
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

API_VERSION = "3.0"
# What supervisord's getSupervisorVersion answers; clients (Cesi, the Datadog check) only show it.
SUPERVISOR_VERSION = "4.2.5"


class Faults(enum.IntEnum):
    """supervisord's fault codes (supervisor/xmlrpc.py); a fault's text begins with the name."""

    UNKNOWN_METHOD = 1
    INCORRECT_PARAMETERS = 2
    BAD_ARGUMENTS = 3
    SIGNATURE_UNSUPPORTED = 4
    SHUTDOWN_STATE = 6
    BAD_NAME = 10
    BAD_SIGNAL = 11
    NO_FILE = 20
    NOT_EXECUTABLE = 21
    FAILED = 30
    ABNORMAL_TERMINATION = 40
    SPAWN_ERROR = 50
    ALREADY_STARTED = 60
    NOT_RUNNING = 70
    SUCCESS = 80
    ALREADY_ADDED = 90
    STILL_RUNNING = 91
    CANT_REREAD = 92


class RpcFault(Exception):
    """A fault to answer: `text` is supervisord's, "BAD_NAME: mailer" (the name alone without
    `extra`), which clients print and some parse."""

    def __init__(self, code: Faults, extra: object = None) -> None:
        self.code = code
        self.text = code.name if extra is None else f"{code.name}: {extra}"
        super().__init__(self.text)


class ProcessStates(enum.IntEnum):
    STOPPED = 0
    STARTING = 10
    RUNNING = 20
    BACKOFF = 30
    STOPPING = 40
    EXITED = 100
    FATAL = 200
    UNKNOWN = 1000


# stoker's states (supervise/state.py) are supervisord's, one for one.
STATES: Mapping[str, ProcessStates] = {
    "stopped": ProcessStates.STOPPED,
    "starting": ProcessStates.STARTING,
    "running": ProcessStates.RUNNING,
    "backoff": ProcessStates.BACKOFF,
    "stopping": ProcessStates.STOPPING,
    "exited": ProcessStates.EXITED,
    "fatal": ProcessStates.FATAL,
}

# supervisord's groupings of states (supervisor/states.py)
RUNNING_STATES = frozenset({ProcessStates.RUNNING, ProcessStates.BACKOFF, ProcessStates.STARTING})
STOPPED_STATES = frozenset(
    {ProcessStates.STOPPED, ProcessStates.EXITED, ProcessStates.FATAL, ProcessStates.UNKNOWN}
)
SIGNALLABLE_STATES = frozenset({ProcessStates.RUNNING, ProcessStates.STARTING, ProcessStates.STOPPING})


def process_state(state: str) -> ProcessStates:
    """supervisord's state for a stoker state (UNKNOWN for one it does not know)."""
    return STATES.get(state, ProcessStates.UNKNOWN)


class SupervisorStates(enum.IntEnum):
    FATAL = 2
    RUNNING = 1
    RESTARTING = 0
    SHUTDOWN = -1


# names ---------------------------------------------------------------------------------------


def process_name(program: str, instance: int, instances: int) -> str:
    """The process name of an instance within its group (see the module's docstring)."""
    return program if instances == 1 else str(instance)


def make_namespec(group: str, name: str) -> str:
    """How supervisorctl shows a process: `name` when it is its group's name, else group:name."""
    return name if group == name else f"{group}:{name}"


def split_namespec(spec: str) -> tuple[str, str | None]:
    """(group, process name), None for a whole group (`group:*`, `group:`); a bare name is a
    process of the group of the same name, as in supervisord."""
    group, colon, name = spec.partition(":")
    if not colon:
        return spec, spec
    return group, None if name in ("", "*") else name


def resolve(spec: str, programs: Mapping[str, int]) -> tuple[str, int | None]:
    """(program, instance), or (program, None) for a whole group; RpcFault(BAD_NAME, spec) if
    `spec` names nothing. `programs`: each program's number of instances."""
    group, name = split_namespec(spec)
    count = programs.get(group)
    if count is None:
        raise RpcFault(Faults.BAD_NAME, spec)
    if name is None:
        return group, None
    for index in range(count):
        if name == process_name(group, index, count):
            return group, index
    if count == 1 and name == "0":  # stoker's own name for the one instance
        return group, 0
    raise RpcFault(Faults.BAD_NAME, spec)


def lexical(programs: Mapping[str, int]) -> list[tuple[str, int]]:
    """Every (program, instance), in the order supervisord lists processes."""
    return [(group, index) for group in sorted(programs) for index in range(programs[group])]


# process info --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What getProcessInfo needs of one instance, as plain values (wall-clock seconds)."""

    program: str
    instance: int
    instances: int
    state: str  # stoker's
    pid: int | None
    started: float | None  # its latest spawn
    stopped: float | None  # its latest process's end
    error: str | None  # stoker's: why the last start failed, why it gave up
    exit_code: int | None  # None: killed by a signal, or never ended
    exit_signal: int | None
    stdout_logfile: str
    stderr_logfile: str  # "" when stderr is merged into stdout's log


def process_info(s: Snapshot, now: float) -> dict[str, Any]:
    """supervisord's process info struct, field for field."""
    state = process_state(s.state)
    start = capped_int(s.started or 0)
    info: dict[str, Any] = {
        "name": process_name(s.program, s.instance, s.instances),
        "group": s.program,
        "start": start,
        "stop": capped_int(s.stopped or 0) if start else 0,
        "now": capped_int(now),
        "state": int(state),
        "statename": state.name,
        "spawnerr": s.error or "",
        "exitstatus": exit_status(s.exit_code, s.exit_signal),
        "logfile": s.stdout_logfile,  # supervisord's alias of stdout_logfile
        "stdout_logfile": s.stdout_logfile,
        "stderr_logfile": s.stderr_logfile,
        "pid": s.pid or 0,
    }
    info["description"] = description(info)
    return info


def exit_status(code: int | None, signal: int | None) -> int:
    """supervisord's exitstatus: the exit code; -1 for death by a signal; 0 before any end."""
    if code is not None:
        return code
    return -1 if signal is not None else 0


def description(info: Mapping[str, Any]) -> str:
    """supervisorctl's status column, as supervisord words it (rpcinterface's
    _interpretProcessInfo): the uptime of a running process, the error of one in backoff or
    fatal, the time of the stop of one at rest (in the daemon's local time)."""
    state = info["state"]
    if state == ProcessStates.RUNNING:
        start = dt.datetime(*time.gmtime(info["start"])[:6])
        now = dt.datetime(*time.gmtime(info["now"])[:6])
        uptime = max(now - start, dt.timedelta(0))  # (the clock set back)
        return f"pid {info['pid']}, uptime {uptime}"
    if state in (ProcessStates.FATAL, ProcessStates.BACKOFF):
        return info["spawnerr"] or f'unknown error (try "tail {info["name"]}")'
    if state in (ProcessStates.STOPPED, ProcessStates.EXITED):
        if not info["start"]:
            return "Not started"
        return dt.datetime(*time.localtime(info["stop"])[:6]).strftime("%b %d %I:%M %p")
    return ""


MAXINT = 2**31 - 1
MININT = -(2**31)


def capped_int(value: float) -> int:
    """An XML-RPC <int> (32 bits): times saturate in 2038, as supervisord's do."""
    return max(MININT, min(MAXINT, int(value)))


def result(group: str, name: str, fault: RpcFault | None) -> dict[str, Any]:
    """One entry of a group operation's answer (startProcessGroup, stopAllProcesses…)."""
    if fault is None:
        return {"name": name, "group": group, "status": int(Faults.SUCCESS), "description": "OK"}
    return {"name": name, "group": group, "status": int(fault.code), "description": fault.text}


def start_outcome(state: str, waited: bool) -> Faults | None:
    """How startProcess ends (None: started), from the instance's state once the start settled
    (`waited`) or at once: supervisord answers SPAWN_ERROR for a process that could not be
    spawned or died before its startsecs (backoff, fatal), ABNORMAL_TERMINATION for one that
    left `starting` another way (exited with a success code, stopped meanwhile)."""
    code = process_state(state)
    if code in (ProcessStates.BACKOFF, ProcessStates.FATAL):
        return Faults.SPAWN_ERROR
    if not waited or code is ProcessStates.RUNNING:
        return None
    if code is ProcessStates.STARTING:  # still held back (depends_on) when the wait ended
        return Faults.SPAWN_ERROR
    return Faults.ABNORMAL_TERMINATION


# config info (supervisorctl avail) -------------------------------------------------------------

PRIORITY = 999  # supervisord's default; stoker orders by depends_on instead


def config_info(
    program: Any, instance: int, inuse: bool, stdout_logfile: str, stderr_logfile: str
) -> dict[str, Any]:
    """getAllConfigInfo's struct for one instance of a ProgramConfig; supervisord's settings
    that stoker has no counterpart for take supervisord's defaults (None as "none")."""
    restart = {"always": True, "never": False}.get(program.restart, "unexpected")
    spec = program.spec(instance)
    return {
        "autostart": program.autostart,
        "autorestart": restart,
        "directory": spec.directory,
        "uid": program.user if program.user is not None else "none",
        "command": shlex.join(spec.argv),
        "exitcodes": list(program.success_exit_codes),
        "group": program.name,
        "group_prio": PRIORITY,
        "inuse": inuse,
        "killasgroup": True,  # stoker signals the whole process group, always
        "name": process_name(program.name, instance, program.instances),
        "process_prio": PRIORITY,
        "redirect_stderr": not stderr_logfile,
        "startretries": program.max_restarts,
        "startsecs": capped_int(program.start_seconds),
        "stdout_capture_maxbytes": 0,
        "stdout_events_enabled": False,
        "stdout_logfile": stdout_logfile,
        "stdout_logfile_backups": program.log.keep,
        "stdout_logfile_maxbytes": capped_int(program.log.max_size),
        "stdout_syslog": False,
        "stopsignal": int(program.stop_signal),
        "stopwaitsecs": capped_int(program.stop_timeout),
        "stderr_capture_maxbytes": 0,
        "stderr_events_enabled": False,
        "stderr_logfile": stderr_logfile or "none",
        "stderr_logfile_backups": program.log.keep if stderr_logfile else 0,
        "stderr_logfile_maxbytes": capped_int(program.log.max_size) if stderr_logfile else 0,
        "stderr_syslog": False,
        "serverurl": "auto",
    }


# log windows -----------------------------------------------------------------------------------


def read_window(size: int, offset: int, length: int) -> tuple[int, int]:
    """(position, bytes to read) for readLog/readProcessStdoutLog(offset, length) of a file of
    `size` bytes (supervisor.options.readFile): a negative offset reads the last -offset bytes
    (length must be 0); length 0 reads to the end. BAD_ARGUMENTS otherwise."""
    if offset < 0:
        if length:
            raise RpcFault(Faults.BAD_ARGUMENTS)
        position = max(0, size + offset)
        return position, min(-offset, size - position)
    if length < 0:
        raise RpcFault(Faults.BAD_ARGUMENTS)
    available = max(0, size - offset)
    return offset, available if length == 0 else min(length, available)


def tail_window(size: int, offset: int, length: int) -> tuple[int, int, int, bool]:
    """(position, bytes to read, next offset, overflow) for tailProcessStdoutLog(offset, length)
    (supervisor.options.tailFile): at most `length` bytes from `offset`; if the file has grown
    past offset + length, the last `length` bytes and overflow. The next offset is the size."""
    overflow = False
    if size > offset + length:
        overflow = True
        offset = size - 1
    if offset + length > size:
        if offset > size - 1:
            length = 0
        offset = size - length
    offset = max(offset, 0)
    length = max(length, 0)
    return offset, length, size, overflow


def xml_text(data: bytes) -> str:
    """Log bytes as a string XML can carry: UTF-8 (undecodable bytes replaced), and the control
    characters XML 1.0 forbids (an ANSI colour's ESC, a NUL) replaced by U+FFFD, where
    supervisord sends them raw and its own client then fails to parse the answer."""
    text = data.decode("utf-8", "replace")
    if text.isprintable():
        return text
    return text.translate(_NOT_XML)


_NOT_XML = {c: "\ufffd" for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF)}


def marshal(value: Any) -> bytes:
    """An XML-RPC answer: `value`, or a fault. A CR in a string is sent as a character
    reference: XML parsers turn a raw one into LF (a progress bar's line would move)."""
    if isinstance(value, RpcFault):
        body = xmlrpc.client.dumps(xmlrpc.client.Fault(int(value.code), value.text))
    else:
        body = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=False)
    return body.replace("\r", "&#13;").encode()  # (the markup has none: only values do)
