"""supervisord's XML-RPC API (3.0) at /RPC2, and its log tails (/logtail, /mainlogtail): so that
supervisorctl, Ansible's supervisorctl module, Cesi and the supervisord checks of Datadog or
Netdata work against stoker by changing the server URL.

The names, states and shapes are in supervisord_map.py (pure); this is the shell that reads the
supervisor, acts, and marshals with the standard library's xmlrpc.client. The doors let XML and
basic auth through for these paths only (supervisord_door.py).

`reloadConfig` reads the file and remembers it without applying anything; `addProcessGroup` and
`removeProcessGroup` apply it one program at a time, through the daemon's reload (a diff: every
other program keeps its processes). That is what `supervisorctl reread` / `update` / `add` /
`remove` expect. Tasks, queues, schedules and webhooks changed in the file wait for
`stoker reload`.

Length: supervisord's whole XML-RPC surface (about 40 methods), each a short adapter over the
supervisor; the mapping itself is pure and lives in supervisord_map.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import stat
import time
import xmlrpc.client
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from stoker.about import __version__
from stoker.api.supervisord_map import (
    API_VERSION,
    RUNNING_STATES,
    SIGNALLABLE_STATES,
    STOPPED_STATES,
    Faults,
    RpcFault,
    Snapshot,
    SupervisorStates,
    config_info,
    lexical,
    make_namespec,
    marshal,
    process_info,
    process_name,
    process_state,
    read_window,
    resolve,
    result,
    start_outcome,
    tail_window,
    xml_text,
)
from stoker.signals import parse_signal
from stoker.supervise.instance import Instance, log_path

if TYPE_CHECKING:
    from stoker.config import Config, ProgramConfig
    from stoker.runtime import DaemonInfo

log = logging.getLogger("stoker")

TAIL_F_HEAD = 1024  # bytes of the log a tail -f begins with (supervisord's)
FOLLOW_BUFFER = 1024 * 1024  # bytes a slow follower may lag before it is told it missed output

Method = Callable[..., Awaitable[Any]]


def routes(info: DaemonInfo) -> list[Route]:
    api = SupervisordApi(info)
    return [
        Route("/RPC2", api.handle, methods=["POST"]),
        Route("/logtail/{spec}", api.logtail),
        Route("/logtail/{spec}/{channel}", api.logtail),
        Route("/mainlogtail", api.mainlogtail),
    ]


class SupervisordApi:
    """The methods of supervisord's `supervisor` and `system` namespaces over one daemon."""

    def __init__(self, info: DaemonInfo) -> None:
        self.info = info
        self.sup = info.supervisor
        self.mood = SupervisorStates.RUNNING
        self.pending: Config | None = None  # the file as the last reloadConfig read it
        self.ended: dict[str, float] = {}  # instance → when its latest process ended (wall clock)
        self.pids: dict[str, int] = {}  # instance → its process, while it has one
        self.sup.subscribe(self._note_end)
        self.methods: dict[str, Method] = {}
        for attr in dir(self):
            namespace, _, name = attr.partition("_")
            if namespace in ("supervisor", "system") and name and not name.startswith("_"):
                self.methods[f"{namespace}.{name}"] = getattr(self, attr)
        # supervisord's older names, still called by some clients
        for alias, target in ALIASES.items():
            self.methods[alias] = self.methods[target]

    def _note_end(self, inst: Instance) -> None:
        """Note when an instance's process ends (supervisord's laststop): its pid goes."""
        if inst.pid is None and self.pids.pop(inst.name, None) is not None:
            self.ended[inst.name] = time.time()
        elif inst.pid is not None:
            self.pids[inst.name] = inst.pid

    # the HTTP side -------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        try:
            params, method = xmlrpc.client.loads(await request.body())
        except Exception:  # (expat's and xmlrpc.client's errors: any malformed call)
            return Response("XML-RPC request data is invalid", 400, media_type="text/plain")
        if not method:
            return Response("XML-RPC request data has no method name", 400, media_type="text/plain")
        try:
            value = await self.call(method, params)
        except RpcFault as fault:
            value = fault
        try:
            body = marshal(value)
        except (TypeError, OverflowError) as e:  # (a value XML-RPC cannot carry: a bug of ours)
            log.exception("XML-RPC %s: cannot marshal its answer", method)
            body = marshal(RpcFault(Faults.FAILED, f"{type(e).__name__}: {e}"))
        return Response(body, media_type="text/xml")

    async def call(self, method: str, params: tuple[Any, ...]) -> Any:
        func = self.methods.get(method)
        if func is None:
            raise RpcFault(Faults.UNKNOWN_METHOD)
        try:
            inspect.signature(func).bind(*params)
        except TypeError:
            raise RpcFault(Faults.INCORRECT_PARAMETERS) from None
        if method.startswith("supervisor.") and self._mood() < SupervisorStates.RUNNING:
            raise RpcFault(Faults.SHUTDOWN_STATE)
        return await func(*params)

    def _mood(self) -> SupervisorStates:
        """supervisord's state of the daemon: SHUTDOWN from the moment it began to stop (asked
        here, by `stoker down` or a signal), RESTARTING during supervisor.restart."""
        return SupervisorStates.SHUTDOWN if self.sup.is_closing else self.mood

    async def logtail(self, request: Request) -> Response:
        """supervisorctl tail -f: the last KB of the log, then what is written to it."""
        spec, channel = request.path_params["spec"], request.path_params.get("channel", "stdout")
        try:
            inst = self._process(spec)
        except RpcFault:
            return Response("Not Found", 404, media_type="text/plain")
        sink = inst.stderr_log if channel == "stderr" else inst.stdout_log if channel == "stdout" else None
        if sink is None or not sink.path.exists():
            return Response("Not Found", 404, media_type="text/plain")
        follower = _Follower(sink.path)
        return _streaming(follower.stream(sink.add_listener, sink.remove_listener))

    async def mainlogtail(self, request: Request) -> Response:
        """supervisorctl maintail -f: the daemon's log, followed."""
        path = _main_log()
        if path is None:
            return Response("Not Found", 404, media_type="text/plain")
        follower = _Follower(path)
        handler = _LogForwarder(follower.put)
        logger = logging.getLogger("stoker")
        attach, detach = (lambda _: logger.addHandler(handler)), (lambda _: logger.removeHandler(handler))
        return _streaming(follower.stream(attach, detach))

    # names ---------------------------------------------------------------------------------

    def _counts(self) -> dict[str, int]:
        return {name: p.instances for name, p in self.sup.config.programs.items()}

    def _instance(self, program: str, index: int) -> Instance:
        return self.sup.instances[f"{program}:{index}"]

    def _group(self, program: str) -> list[Instance]:
        count = self.sup.config.programs[program].instances
        return [self._instance(program, i) for i in range(count)]

    def _process(self, spec: str) -> Instance:
        """The one instance `spec` names (BAD_NAME for none, or a whole group)."""
        program, index = resolve(_text(spec), self._counts())
        if index is None:
            raise RpcFault(Faults.BAD_NAME, spec)
        return self._instance(program, index)

    def _snapshot(self, inst: Instance) -> Snapshot:
        m = inst.machine
        return Snapshot(
            program=inst.spec.program,
            instance=inst.spec.instance,
            instances=inst.program.instances,
            state=str(m.state),
            pid=m.pid,
            started=inst.started_wall,
            stopped=self.ended.get(inst.name),
            error=m.error,
            exit_code=m.exit_code,
            exit_signal=m.exit_signal,
            stdout_logfile=str(inst.stdout_log.path),
            stderr_logfile=str(inst.stderr_log.path) if inst.stderr_log is not None else "",
        )

    # supervisor.*: the daemon ---------------------------------------------------------------

    async def supervisor_getAPIVersion(self) -> str:
        """Return the version of the RPC API used by supervisord

        @return string version id
        """
        return API_VERSION

    async def supervisor_getSupervisorVersion(self) -> str:
        """Return the version of the supervisor package in use by supervisord (stoker's)

        @return string version id
        """
        return __version__

    async def supervisor_getIdentification(self) -> str:
        """Return identifying string of supervisord (stoker's node name)

        @return string identifier identifying string
        """
        return self.sup.config.daemon.node

    async def supervisor_getState(self) -> dict[str, Any]:
        """Return current state of supervisord as a struct

        @return struct A struct with keys int statecode, string statename
        """
        mood = self._mood()
        return {"statecode": int(mood), "statename": mood.name}

    async def supervisor_getPID(self) -> int:
        """Return the PID of supervisord

        @return int PID
        """
        return os.getpid()

    async def supervisor_readLog(self, offset: int, length: int) -> str:
        """Read length bytes from the main log starting at offset

        @param int offset         offset to start reading from.
        @param int length         number of bytes to read from the log.
        @return string result     Bytes of log
        """
        path = _main_log()
        if path is None:
            raise RpcFault(Faults.NO_FILE)
        return await asyncio.to_thread(_read, path, _int(offset), _int(length))

    async def supervisor_shutdown(self) -> bool:
        """Shut down the supervisor process

        @return boolean result always returns True unless error
        """
        self.mood = SupervisorStates.SHUTDOWN
        self.info.request_shutdown()
        return True

    async def supervisor_restart(self) -> bool:
        """Restart the supervisor process: every program stopped, the config file read again,
        the autostart programs started (the daemon itself keeps its pid). Answers once done.

        @return boolean result  always return True unless error
        """
        from stoker.config import ConfigError

        self.mood = SupervisorStates.RESTARTING
        try:
            await self.sup.stop(list(self.sup.instances.values()))
            if self.info.reload is not None:
                try:
                    await self.info.reload(None)
                except ConfigError as e:
                    log.error("restart: the config is not valid, kept the running one: %s", e)
            self.pending = None
            self.sup.autostart()
        finally:
            self.mood = SupervisorStates.RUNNING
        return True

    # supervisor.*: config ------------------------------------------------------------------

    async def supervisor_reloadConfig(self) -> list[list[list[str]]]:
        """Reload the configuration (read it; apply nothing: see addProcessGroup).

        @return array result  [[added, changed, removed]]
        """
        from stoker.config import ConfigError, load_config
        from stoker.reload import diff

        try:
            new = await asyncio.to_thread(load_config, self.sup.config.path)
        except ConfigError as e:
            raise RpcFault(Faults.CANT_REREAD, e) from None
        self.pending = new
        changes = diff(self.sup.config, new)
        changed = [*changes.changed, *changes.resized, *changes.placement]
        return [[changes.added, list(dict.fromkeys(changed)), changes.removed]]

    async def supervisor_addProcessGroup(self, name: str) -> bool:
        """Update the config for a running process from config file.

        @param string name         name of process group to add
        @return boolean result     true if successful
        """
        pending = self.pending if self.pending is not None else self.sup.config
        program = pending.programs.get(_text(name))
        if program is None:
            raise RpcFault(Faults.BAD_NAME, name)
        if name in self.sup.config.programs:
            raise RpcFault(Faults.ALREADY_ADDED, name)
        # (a variable the file now reads a secret from, a webhook URL, is hidden from the new one too)
        await self._apply({**self.sup.config.programs, name: program}, pending.env_secrets)
        return True

    async def supervisor_removeProcessGroup(self, name: str) -> bool:
        """Remove a stopped process from the active configuration.

        @param string name         name of process group to remove
        @return boolean result     Indicates whether the removal was successful
        """
        if _text(name) not in self.sup.config.programs:
            raise RpcFault(Faults.BAD_NAME, name)
        if any(process_state(str(i.state)) not in STOPPED_STATES for i in self._group(name)):
            raise RpcFault(Faults.STILL_RUNNING, name)
        await self._apply({n: p for n, p in self.sup.config.programs.items() if n != name})
        return True

    async def _apply(self, programs: dict[str, ProgramConfig], secrets: frozenset[str] = frozenset()) -> None:
        """Reload into the running config with these programs (a diff: the others untouched)."""
        if self.info.reload is None:
            raise RpcFault(Faults.FAILED, "the daemon is still starting")
        running = self.sup.config
        new = msgspec.structs.replace(running, programs=programs, env_secrets=running.env_secrets | secrets)
        await self.info.reload(None, new)

    async def supervisor_getAllConfigInfo(self) -> list[dict[str, Any]]:
        """Get info about all available process configurations. Each struct
        represents a single process (i.e. groups get flattened).

        @return array result  An array of process config info structs
        """
        # As supervisord: the programs of the file as last read, each "in use" if its group is
        # active (one removed from the file but still active is not listed)
        programs = (self.pending if self.pending is not None else self.sup.config).programs
        active = self.sup.config.programs
        out = []
        for group, index in lexical({n: p.instances for n, p in programs.items()}):
            program = programs[group]
            spec = program.spec(index)
            stdout = log_path(self.sup.log_dir, spec)
            stderr = None if program.log.stderr == "merge" else log_path(self.sup.log_dir, spec, "err")
            if group in active and (inst := self.sup.instances.get(spec.name)) is not None:
                stdout, stderr = inst.stdout_log.path, inst.stderr_log.path if inst.stderr_log else None
            out.append(config_info(program, index, group in active, str(stdout), str(stderr or "")))
        return sorted(out, key=lambda row: row["name"])  # by process name alone, as supervisord

    # supervisor.*: processes ---------------------------------------------------------------

    async def supervisor_getProcessInfo(self, name: str) -> dict[str, Any]:
        """Get info about a process named name

        @param string name The name of the process (or 'group:name')
        @return struct result     A structure containing data about the process
        """
        return process_info(self._snapshot(self._process(name)), time.time())

    async def supervisor_getAllProcessInfo(self) -> list[dict[str, Any]]:
        """Get info about all processes

        @return array result  An array of process status results
        """
        now = time.time()
        return [
            process_info(self._snapshot(self._instance(group, index)), now)
            for group, index in lexical(self._counts())
        ]

    async def supervisor_startProcess(self, name: str, wait: bool = True) -> Any:
        """Start a process

        @param string name Process name (or ``group:name``, or ``group:*``)
        @param boolean wait Wait for process to be fully started
        @return boolean result     Always true unless error
        """
        program, index = resolve(_text(name), self._counts())
        if index is None:  # (a group: its answer, as supervisord's)
            return await self.supervisor_startProcessGroup(program, wait)
        inst = self._instance(program, index)
        _check_command(inst)
        if process_state(str(inst.state)) in RUNNING_STATES:
            raise RpcFault(Faults.ALREADY_STARTED, name)
        await self.sup.start_by_hand([inst], wait=bool(wait))
        if (fault := start_outcome(str(inst.state), waited=bool(wait))) is not None:
            raise RpcFault(fault, name)
        return True

    async def _start_many(self, instances: list[Instance], wait: bool) -> list[dict[str, Any]]:
        """Start those of `instances` that are not running (supervisord's make_allfunc)."""
        faults: dict[str, RpcFault | None] = {}
        starting = []
        for inst in instances:
            if process_state(str(inst.state)) in RUNNING_STATES:
                continue
            try:
                _check_command(inst)
            except RpcFault as fault:
                faults[inst.name] = fault
                continue
            faults[inst.name] = None
            starting.append(inst)
        await self.sup.start_by_hand(starting, wait=bool(wait))
        for inst in starting:
            if (code := start_outcome(str(inst.state), waited=bool(wait))) is not None:
                faults[inst.name] = RpcFault(code, _namespec(inst))
        return [_result(inst, faults[inst.name]) for inst in instances if inst.name in faults]

    async def supervisor_startProcessGroup(self, name: str, wait: bool = True) -> list[dict[str, Any]]:
        """Start all processes in the group named 'name'

        @param string name     The group name
        @param boolean wait    Wait for each process to be fully started
        @return array result   An array of process status info structs
        """
        if _text(name) not in self.sup.config.programs:
            raise RpcFault(Faults.BAD_NAME, name)
        return await self._start_many(self._group(name), wait)

    async def supervisor_startAllProcesses(self, wait: bool = True) -> list[dict[str, Any]]:
        """Start all processes listed in the configuration file

        @param boolean wait    Wait for each process to be fully started
        @return array result   An array of process status info structs
        """
        return await self._start_many(list(self.sup.instances.values()), wait)

    async def supervisor_stopProcess(self, name: str, wait: bool = True) -> Any:
        """Stop a process named by name

        @param string name  The name of the process to stop (or 'group:name')
        @param boolean wait        Wait for the process to be fully stopped
        @return boolean result     Always return True unless error
        """
        program, index = resolve(_text(name), self._counts())
        if index is None:  # (a group: its answer, as supervisord's)
            return await self.supervisor_stopProcessGroup(program, wait)
        inst = self._instance(program, index)
        if process_state(str(inst.state)) not in RUNNING_STATES:
            raise RpcFault(Faults.NOT_RUNNING, name)
        await self._stop([inst], wait)
        return True

    async def _stop(self, instances: list[Instance], wait: bool) -> None:
        """Stop by hand (they stay stopped across daemon restarts, as `stoker stop`): in
        dependency order when waiting, else every stop signal at once."""
        if wait:
            await self.sup.stop_by_hand(instances)
            return
        self.sup.holds.hold(inst.name for inst in instances)
        for inst in instances:
            inst.stop()

    async def _stop_many(self, instances: list[Instance], wait: bool) -> list[dict[str, Any]]:
        running = [i for i in instances if process_state(str(i.state)) in RUNNING_STATES]
        await self._stop(running, wait)
        return [_result(inst, None) for inst in running]

    async def supervisor_stopProcessGroup(self, name: str, wait: bool = True) -> list[dict[str, Any]]:
        """Stop all processes in the process group named 'name'

        @param string name     The group name
        @param boolean wait    Wait for each process to be fully stopped
        @return array result   An array of process status info structs
        """
        if _text(name) not in self.sup.config.programs:
            raise RpcFault(Faults.BAD_NAME, name)
        return await self._stop_many(self._group(name), wait)

    async def supervisor_stopAllProcesses(self, wait: bool = True) -> list[dict[str, Any]]:
        """Stop all processes in the process list

        @param  boolean wait   Wait for each process to be fully stopped
        @return array result   An array of process status info structs
        """
        return await self._stop_many(list(self.sup.instances.values()), wait)

    async def supervisor_signalProcess(self, name: str, signal: str) -> Any:
        """Send an arbitrary UNIX signal to the process named by name

        @param string name    Name of the process to signal (or 'group:name')
        @param string signal  Signal to send, as name ('HUP') or number ('1')
        @return boolean
        """
        program, index = resolve(_text(name), self._counts())
        if index is None:  # (a group: its answer, as supervisord's)
            return await self.supervisor_signalProcessGroup(program, signal)
        self._signal(self._instance(program, index), name, signal)
        return True

    def _signal(self, inst: Instance, name: str, signal: str | int) -> None:
        try:
            number = parse_signal(signal)
        except (ValueError, TypeError):
            raise RpcFault(Faults.BAD_SIGNAL, signal) from None
        if process_state(str(inst.state)) not in SIGNALLABLE_STATES:
            raise RpcFault(Faults.NOT_RUNNING, name)
        if not inst.send_signal(number):
            raise RpcFault(Faults.FAILED, f"attempted to send {name} sig {signal} but it wasn't running")

    def _signal_many(self, instances: list[Instance], signal: str | int) -> list[dict[str, Any]]:
        out = []
        for inst in instances:
            if process_state(str(inst.state)) not in SIGNALLABLE_STATES:
                continue
            fault = None
            try:
                self._signal(inst, _namespec(inst), signal)
            except RpcFault as e:
                fault = e
            out.append(_result(inst, fault))
        return out

    async def supervisor_signalProcessGroup(self, name: str, signal: str) -> list[dict[str, Any]]:
        """Send a signal to all processes in the group named 'name'

        @param string name    The group name
        @param string signal  Signal to send, as name ('HUP') or number ('1')
        @return array
        """
        if _text(name) not in self.sup.config.programs:
            raise RpcFault(Faults.BAD_NAME, name)
        return self._signal_many(self._group(name), signal)

    async def supervisor_signalAllProcesses(self, signal: str) -> list[dict[str, Any]]:
        """Send a signal to all processes in the process list

        @param string signal  Signal to send, as name ('HUP') or number ('1')
        @return array         An array of process status info structs
        """
        return self._signal_many(list(self.sup.instances.values()), signal)

    # supervisor.*: process logs -------------------------------------------------------------

    def _log_path(self, name: str, channel: str) -> Path | None:
        inst = self._process(name)
        sink = inst.stdout_log if channel == "stdout" else inst.stderr_log
        return None if sink is None else sink.path

    async def _read_log(self, name: str, offset: int, length: int, channel: str) -> str:
        path = self._log_path(name, channel)
        if path is None or not path.exists():
            raise RpcFault(Faults.NO_FILE, path)
        return await asyncio.to_thread(_read, path, _int(offset), _int(length))

    async def supervisor_readProcessStdoutLog(self, name: str, offset: int, length: int) -> str:
        """Read length bytes from name's stdout log starting at offset

        @param string name        the name of the process (or 'group:name')
        @param int offset         offset to start reading from.
        @param int length         number of bytes to read from the log.
        @return string result     Bytes of log
        """
        return await self._read_log(name, offset, length, "stdout")

    async def supervisor_readProcessStderrLog(self, name: str, offset: int, length: int) -> str:
        """Read length bytes from name's stderr log starting at offset

        @param string name        the name of the process (or 'group:name')
        @param int offset         offset to start reading from.
        @param int length         number of bytes to read from the log.
        @return string result     Bytes of log
        """
        return await self._read_log(name, offset, length, "stderr")

    async def _tail_log(self, name: str, offset: int, length: int, channel: str) -> list[Any]:
        path = self._log_path(name, channel)
        if path is None or not path.exists():
            return ["", 0, False]
        return await asyncio.to_thread(_tail, path, _int(offset), _int(length))

    async def supervisor_tailProcessStdoutLog(self, name: str, offset: int, length: int) -> list[Any]:
        """Tail the stdout log: (length) bytes from (offset), or the last (length) bytes and
        overflow if the log has grown past offset + length; the offset returned is the size.

        @param string name         the name of the process (or 'group:name')
        @param int offset          offset to start reading from
        @param int length          maximum number of bytes to return
        @return array result       [string bytes, int offset, bool overflow]
        """
        return await self._tail_log(name, offset, length, "stdout")

    async def supervisor_tailProcessStderrLog(self, name: str, offset: int, length: int) -> list[Any]:
        """Tail the stderr log: (length) bytes from (offset), or the last (length) bytes and
        overflow if the log has grown past offset + length; the offset returned is the size.

        @param string name         the name of the process (or 'group:name')
        @param int offset          offset to start reading from
        @param int length          maximum number of bytes to return
        @return array result       [string bytes, int offset, bool overflow]
        """
        return await self._tail_log(name, offset, length, "stderr")

    async def supervisor_clearProcessLogs(self, name: str) -> bool:
        """Clear the stdout and stderr logs for the named process and reopen them.

        @param string name   The name of the process (or 'group:name')
        @return boolean result      Always True unless error
        """
        _clear(self._process(name), name)
        return True

    async def supervisor_clearAllProcessLogs(self) -> list[dict[str, Any]]:
        """Clear all process log files

        @return array result   An array of process status info structs
        """
        out = []
        for inst in self.sup.instances.values():
            fault = None
            try:
                _clear(inst, _namespec(inst))
            except RpcFault as e:
                fault = e
            out.append(_result(inst, fault))
        return out

    # system.* --------------------------------------------------------------------------------

    async def system_listMethods(self) -> list[str]:
        """Return an array listing the available method names

        @return array result  An array of method names available (strings).
        """
        return sorted(self.methods)

    async def system_methodHelp(self, name: str) -> str:
        """Return a string showing the method's documentation

        @param string name   The name of the method.
        @return string result The documentation for the method name.
        """
        func = self.methods.get(_text(name))
        if func is None:
            raise RpcFault(Faults.SIGNATURE_UNSUPPORTED)
        return func.__doc__ or ""

    async def system_methodSignature(self, name: str) -> list[str]:
        """Return an array describing the method signature in the form [rtype, ptype, ptype...]

        @param string name  The name of the method.
        @return array result  The result.
        """
        func = self.methods.get(_text(name))
        if func is None:
            raise RpcFault(Faults.SIGNATURE_UNSUPPORTED)
        returns, params = None, []
        for line in (func.__doc__ or "").splitlines():
            tag, _, rest = line.strip().partition(" ")
            kind = rest.split()[0] if rest.split() else ""
            if tag == "@return":
                returns = kind
            elif tag == "@param":
                params.append(kind)
        if returns is None:
            raise RpcFault(Faults.SIGNATURE_UNSUPPORTED)
        return [returns, *params]

    async def system_multicall(self, calls: list[Any]) -> list[Any]:
        """Process an array of calls, and return an array of results. Calls are structs
        {'methodName': string, 'params': array}; each result is the call's value, or a struct
        {'faultCode': int, 'faultString': string} (as supervisord answers).

        @param array calls  An array of call requests
        @return array result  An array of results
        """
        if not isinstance(calls, list):
            raise RpcFault(Faults.INCORRECT_PARAMETERS)
        results: list[Any] = []
        for call in calls:
            try:
                if not isinstance(call, dict) or not call.get("methodName"):
                    raise RpcFault(Faults.INCORRECT_PARAMETERS, "No methodName")
                if call["methodName"] == "system.multicall":
                    raise RpcFault(Faults.INCORRECT_PARAMETERS, "Recursive system.multicall forbidden")
                params = call.get("params", [])
                if not isinstance(params, list):
                    raise RpcFault(Faults.INCORRECT_PARAMETERS)
                results.append(await self.call(call["methodName"], tuple(params)))
            except RpcFault as fault:
                results.append({"faultCode": int(fault.code), "faultString": fault.text})
        return results


# supervisord's older method names (before 3.0), kept by supervisord
ALIASES = {
    "supervisor.getVersion": "supervisor.getAPIVersion",
    "supervisor.readMainLog": "supervisor.readLog",
    "supervisor.readProcessLog": "supervisor.readProcessStdoutLog",
    "supervisor.tailProcessLog": "supervisor.tailProcessStdoutLog",
    "supervisor.clearProcessLog": "supervisor.clearProcessLogs",
}


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise RpcFault(Faults.INCORRECT_PARAMETERS, f"expected a string, got {value!r}")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RpcFault(Faults.INCORRECT_PARAMETERS, f"expected an int, got {value!r}")
    return value


def _namespec(inst: Instance) -> str:
    return make_namespec(inst.spec.program, process_name(inst.spec.program, inst.spec.instance,
                                                         inst.program.instances))  # fmt: skip


def _result(inst: Instance, fault: RpcFault | None) -> dict[str, Any]:
    name = process_name(inst.spec.program, inst.spec.instance, inst.program.instances)
    return result(inst.spec.program, name, fault)


def _check_command(inst: Instance) -> None:
    """supervisord's check before a spawn: NO_FILE for a command that is not there,
    NOT_EXECUTABLE for one that cannot be run (searched on the program's PATH)."""
    command = inst.spec.argv[0]
    if "/" in command:
        candidates = [os.path.normpath(os.path.join(inst.spec.directory, command))]
    else:
        path = inst.spec.environment.get("PATH", os.environ.get("PATH", os.defpath))
        candidates = [os.path.join(folder or ".", command) for folder in path.split(os.pathsep)]
    for found in candidates:
        try:
            st = os.stat(found)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            raise RpcFault(Faults.NOT_EXECUTABLE, f"command at {found!r} is a directory")
        if not os.access(found, os.X_OK):
            raise RpcFault(Faults.NOT_EXECUTABLE, f"command at {found!r} is not executable")
        return
    raise RpcFault(Faults.NO_FILE, f"can't find command {command!r}")


def _clear(inst: Instance, name: str) -> None:
    try:
        inst.stdout_log.clear()
        if inst.stderr_log is not None:
            inst.stderr_log.clear()
    except OSError:
        raise RpcFault(Faults.FAILED, name) from None


def _read(path: Path, offset: int, length: int) -> str:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            position, count = read_window(size, offset, length)
            f.seek(position)
            return xml_text(f.read(count))
    except OSError:
        raise RpcFault(Faults.FAILED) from None


def _tail(path: Path, offset: int, length: int) -> list[Any]:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            position, count, after, overflow = tail_window(size, offset, length)
            f.seek(position)
            return [xml_text(f.read(count)), after, overflow]
    except OSError:
        return ["", offset, False]


def _read_last(path: Path, count: int) -> bytes:
    with contextlib.suppress(OSError), open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - count))
        return f.read(count)
    return b""


def _main_log() -> Path | None:
    """The daemon's log: the file its stderr goes to (`stoker up -d`: state_dir/stoker.log; a
    foreground daemon's redirect), or None (a terminal, the journal's socket)."""
    try:
        if not stat.S_ISREG(os.fstat(2).st_mode):
            return None
        return Path(os.readlink("/proc/self/fd/2"))  # (Linux; elsewhere: OSError)
    except OSError:
        return None


Hook = Callable[[Callable[[bytes], None]], None]  # (un)registers a listener of written bytes


class _Follower:
    """A followed log: its last KB, then the chunks written to it, bounded in bytes (a reader
    that lags more is told what it missed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.held = self.missed = 0

    def put(self, data: bytes) -> None:
        if self.held + len(data) > FOLLOW_BUFFER:
            self.missed += len(data)
            return
        self.held += len(data)
        self.queue.put_nowait(data)

    async def stream(self, attach: Hook, detach: Hook) -> AsyncIterator[bytes]:
        """Attached (and the head read) only once the answer streams, with no await between the
        two: each byte once, and nothing left attached for a caller that went before it began."""
        attach(self.put)
        try:
            head = _read_last(self.path, TAIL_F_HEAD)
            if head:
                yield head
            while True:
                data = await self.queue.get()
                self.held -= len(data)
                if self.missed:
                    yield f"[stoker] {self.missed} bytes skipped: reader too slow\n".encode()
                    self.missed = 0
                yield data
        finally:
            detach(self.put)


class _LogForwarder(logging.Handler):
    """Hands each record of the daemon's log, formatted as its log file has it, to `put`."""

    def __init__(self, put: Callable[[bytes], None]) -> None:
        super().__init__()
        self.put = put
        handlers = logging.getLogger("stoker").handlers
        if handlers and handlers[0].formatter is not None:
            self.setFormatter(handlers[0].formatter)

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.put((self.format(record) + "\n").encode("utf-8", "replace"))


def _streaming(body: AsyncIterator[bytes]) -> StreamingResponse:
    # no Content-Length: chunked, as supervisord's tail -f; X-Accel-Buffering: not held by nginx
    return StreamingResponse(body, media_type="text/plain;charset=utf-8", headers={"X-Accel-Buffering": "no"})
