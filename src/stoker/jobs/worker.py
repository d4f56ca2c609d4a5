"""A worker of the pool: runs jobs one at a time, in its own process: `call` tasks in its own
interpreter, command tasks as its child (stoker.jobs.launch).

Started by the daemon (`python -m stoker.jobs.worker`) with a socket on the fd named by
STOKER_WORKER_FD. The messages both ways are stoker.jobs.wire's: a request (`Call` or
`Command`) names its job (`id`), the callable and its parameters or the argv, the job's output
file, working directory and environment; its answer (`Done`) says how it ended. A second
socket (STOKER_WORKER_STOP_FD) carries stops: 12-byte frames (job id, signal) that send the
signal to that command's process group while it runs. It is the only one a running command's
wait listens to: requests sent ahead then arrive without waking the worker (a wake-up across
cores costs the sender tens of microseconds on a virtual machine). While a call runs, fds 1
and 2 are its output file, so prints and tracebacks land in the job's output. Imports stay
here (warm) from one job to the next; the daemon replaces a worker after `worker_max_jobs`
calls. Kept free of the daemon's imports: a worker should start fast and stay small.

The daemon may send the next requests while one runs (prefetch: the worker goes on without
waiting for a round trip; they run in the order sent), and may take any back with `Revoke`. The
rule that keeps both sides agreed on whether a job ran: just before it answers a job, the
worker takes in whatever has arrived, answers each revoked request it has not begun with
`Revoked`, and only then sends the answer. So when the daemon reads an answer, the first
request it had sent after that job and not seen answered `Revoked` is running; a revoke that
arrives after its job began is too late and ignored. Each answer also says how long the job
took (`took`, seconds), which tells the daemon how far ahead to send, and when it ended
(`ended`, the epoch).

A command's answer may wait up to LINGER for the answers of the next jobs sent ahead, so that
one write (and one wake-up of the daemon) carries several: it goes at once when fewer than two
jobs are left here to run (so that the daemon sends more before the worker runs dry), and while
a command runs the worker sends what is held as soon as it is due. A call's answer, and those
held before it, go at once: a Python call cannot be interrupted to send them. Nothing is held
by a worker with nothing more to run: a lone job's end is told at once. 20 ms, not 5: with
`true` commands on 2 cores one message then carries ~20 answers, not ~5, and the machine
spends less on waking the daemon than the daemon's CPU alone shows (see
stoker.jobs.dispatcher.ahead_for, which sends enough ahead to fill the wait).
"""

from __future__ import annotations

import collections
import errno
import importlib
import json
import os
import select
import socket
import sys
import time
import traceback
from collections.abc import Awaitable
from typing import Any

import msgspec

from stoker.jobs import wire
from stoker.jobs.launch import Launcher
from stoker.jobs.output import close_output, open_output
from stoker.jobs.wire import LINGER, STOP_FRAME, Call, Command, Done, Revoke, Revoked

MAX_RESULT = 1024 * 1024  # bytes of JSON a result may take in the job record
ANSWERED_KEPT = 256  # jobs answered whose late stops are recognised as moot


def main() -> None:
    fd = int(os.environ.pop("STOKER_WORKER_FD"))
    stop_fd = int(os.environ.pop("STOKER_WORKER_STOP_FD"))
    output_dir = int(os.environ.pop("STOKER_WORKER_OUTPUT_DIR_FD"))  # logs/jobs (see stoker.jobs.output)
    cgroup = os.environ.pop("STOKER_WORKER_CGROUP", None)  # ours, the command's below (stoker.jobs.launch)
    for channel_fd in (fd, stop_fd, output_dir):  # a subprocess the task starts must not hold them open
        os.set_inheritable(channel_fd, False)
    # Appended, after the standard library and the installed packages: the config's folder is
    # there for the tasks' own modules (myapp/), and a select.py or json.py in it must not take
    # the place of the real one in a worker that runs as root. (Started with -P from "/": no
    # other folder is searched first; see stoker.jobs.pool.Pool._spawn.)
    for path in os.environ.pop("STOKER_IMPORT_PATH", "").split(os.pathsep):
        if path and path not in sys.path:
            sys.path.append(path)
    # On a shared store (stoker.jobs.launch): not tied to the daemon, so as to stop a command
    # when the daemon dies; a Python call, run here, dies with it (`_die_with_parent`).
    orphan_stop = os.environ.pop("STOKER_WORKER_ORPHAN_STOP", None)
    parent = os.getppid()
    environment = Environment()
    launcher = Launcher(environment.base, cgroup, None if orphan_stop is None else float(orphan_stop))
    channel = Channel(socket.socket(fileno=fd), socket.socket(fileno=stop_fd))
    quiet = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    while True:
        request = channel.next_request()
        if request is None:
            return  # the daemon closed the channel: leave quietly
        began = time.monotonic()
        command = isinstance(request, Command)
        if isinstance(request, Command):
            answer = _command(request, launcher, channel, output_dir)
        else:
            channel.flush()  # a call may take long: what is held goes first
            if orphan_stop is not None:
                _die_with_parent(parent)
            answer = _run(request, environment, quiet, output_dir)
            if orphan_stop is not None:
                _die_with_parent(None)
            launcher.descriptors_trusted = False  # its code may have opened inheritable ones
        answer.took = time.monotonic() - began
        answer.ended = time.time()
        channel.answer(answer, hold=command)


def _die_with_parent(parent: int | None) -> None:
    """Be SIGKILLed when the daemon dies (its pid `parent`), or no longer (None): the death
    signal a worker on a shared store holds while a Python call runs, as a worker on SQLite
    always does (stoker.supervise.spawn). Gone already: exit now."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL if parent is not None else 0, 0, 0, 0)  # PR_SET_PDEATHSIG
    if parent is not None and os.getppid() != parent:
        os._exit(1)


class Channel:
    """The worker's end of the socket: requests in order, revokes applied as the module says,
    answers held back as it says too (`held`, sent by `flush`)."""

    def __init__(self, sock: socket.socket, stop_sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.pending: collections.deque[Call | Command] = collections.deque()  # not begun yet
        self.revoked: set[int] = set()
        self.stop_sock = stop_sock
        self.stop_buffer = b""
        self.stops: dict[int, int] = {}  # job id -> the signal a stop asks for
        self.answered: dict[int, None] = {}  # the last jobs answered, oldest first (a set in order)
        self.held: list[bytes] = []  # frames not sent yet, in order
        self.held_since = 0.0
        self.closed = False
        # Whether a socket has something to read, asked before a recv that must not wait: a recv
        # that finds nothing raises BlockingIOError, whose making (its message decoded through
        # the locale) takes 1.2 µs where the poll takes 0.35.
        self.request_waiting = select.poll()
        self.request_waiting.register(sock, select.POLLIN)
        self.stop_waiting = select.poll()
        self.stop_waiting.register(stop_sock, select.POLLIN)

    def stop_fd(self) -> int:
        return self.stop_sock.fileno()

    def next_request(self) -> Call | Command | None:
        """The next job to run (blocking while there is none); None once the daemon is gone.
        Begun whatever revokes say: the answer before it (or its arrival at an idle worker)
        told the daemon it would run."""
        if not self.pending:
            self.flush()  # nothing to do until the daemon hears: it may send more
        while not self.pending and not self.closed:
            self._receive(block=True)
        if self.closed:
            return None
        request = self.pending.popleft()
        if request.id in self.answered:  # a later attempt of a job this worker ran (a retry):
            # the earlier attempt's late stops are read (and dropped) first, then the job's id is
            # no longer moot: the stops from now on are this attempt's (a cancel, a timeout).
            # Those late stops are in the socket already: sent before the earlier answer was
            # read, so before this request was sent.
            self.take_in()
            del self.answered[request.id]
        return request

    def answer(self, answer: Done, hold: bool = False) -> None:
        """Send `answer` (revoked requests first); with `hold`, it may wait (LINGER) for company."""
        self._receive(block=False)
        if self.revoked:
            for request in [r for r in self.pending if r.id in self.revoked]:
                self.pending.remove(request)
                self._hold(Revoked(request.id))
            self.revoked.clear()  # the rest name jobs begun already: too late
        self.stops.pop(answer.id, None)
        self.answered[answer.id] = None
        if len(self.answered) > ANSWERED_KEPT:
            del self.answered[next(iter(self.answered))]
        self._hold(answer)
        if not hold or len(self.pending) < 2 or self.flush_in() == 0:
            self.flush()

    def take_in(self) -> None:
        """Read the stops that have arrived (without waiting)."""
        if not self.stop_waiting.poll(0):
            return
        try:
            data = self.stop_sock.recv(1 << 12, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the daemon let go of this worker
            self.closed = True
            self.pending.clear()
            return
        data = self.stop_buffer + data
        whole = len(data) - len(data) % STOP_FRAME.size
        for job_id, sig in STOP_FRAME.iter_unpack(data[:whole]):
            if job_id not in self.answered:  # (a stop that crossed its job's answer is moot)
                self.stops[job_id] = sig
        self.stop_buffer = data[whole:]

    def stop_for(self, job_id: int) -> int | None:
        return self.stops.pop(job_id, None)

    def flush_in(self) -> float | None:
        """Seconds until what is held must be sent (0: now); None: nothing is held."""
        if not self.held:
            return None
        return max(0.0, self.held_since + LINGER - time.monotonic())

    def flush(self) -> None:
        if not self.held:
            return
        data = b"".join(self.held)
        self.held.clear()
        try:
            self.sock.sendall(data)
        except OSError:  # the daemon is gone
            self.closed = True

    def _hold(self, message: Done | Revoked) -> None:
        if not self.held:
            self.held_since = time.monotonic()
        self.held.append(wire.frame(message))

    def _receive(self, block: bool) -> None:
        """Take in what has arrived (waiting for something if `block`)."""
        if not block and not self.request_waiting.poll(0):
            return
        try:
            data = self.sock.recv(1 << 16, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the daemon closed the channel: nothing more is begun, nobody would hear
            self.closed = True
            self.pending.clear()
            return
        self.buffer += data
        for frame in wire.frames(self.buffer):
            message = wire.to_worker.decode(frame)
            if isinstance(message, Revoke):
                self.revoked.add(message.id)
            else:
                self.pending.append(message)


class Environment:
    """os.environ for each job: the worker's own plus the job's variables, nothing left over
    from the job before. Setting a variable costs a putenv, and resetting all of them took half
    of a short job's time; so only what differs from the last job is set, unless that job
    changed os.environ itself (then everything is put back)."""

    def __init__(self) -> None:
        self.base = dict(os.environ)
        self.applied: dict[str, str] = {}  # the job variables in place
        self.snapshot = self._raw()

    @staticmethod
    def _raw() -> dict[bytes, bytes]:
        return dict(getattr(os.environ, "_data", {}))  # CPython: the encoded variables, cheap to copy

    def use(self, variables: dict[str, str]) -> None:
        if self._raw() != self.snapshot or not self.snapshot:  # changed by the job (or no _data)
            os.environ.clear()
            os.environ.update(self.base)
            self.applied = {}
        for name in self.applied.keys() - variables.keys():
            if name in self.base:
                os.environ[name] = self.base[name]
            else:
                del os.environ[name]
        for name, value in variables.items():
            if self.applied.get(name) != value:
                os.environ[name] = value
        self.applied = dict(variables)
        self.snapshot = self._raw()


def _command(request: Command, launcher: Launcher, channel: Channel, output_dir: int) -> Done:
    opened = _open_output(request, output_dir)
    if isinstance(opened, Done):
        return opened
    out, offset = opened
    try:
        answer = launcher.run(request, out, channel)
    finally:
        output, written = close_output(out, request.output, offset, output_dir)
    answer.output = output
    answer.written = written  # (the daemon cuts an output over max_output: stoker.jobs.output.OutputCap)
    return answer


def _open_output(request: Call | Command, output_dir: int) -> tuple[int, int] | Done:
    """The job's output file, or the failed answer that says why it cannot be opened: the job
    fails with the reason, the worker lives on (it used to die, and the job was said to have
    been "killed by SIGTERM")."""
    try:
        return open_output(request.output, request.attempt, request.rerun, time.time(), output_dir)
    except OSError as e:
        reason = "a symbolic link is in its place (not followed)" if e.errno == errno.ELOOP else e.strerror
        return Done(request.id, error=f"cannot open the job's output file {request.output}: {reason}")


def _run(request: Call, environment: Environment, quiet: int, output_dir: int) -> Done:
    opened = _open_output(request, output_dir)
    if isinstance(opened, Done):
        return opened
    out, offset = opened
    answer = _call(request, environment, out)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    answer.output, answer.written = close_output(out, request.output, offset, output_dir)
    return answer


def _call(request: Call, environment: Environment, out: int) -> Done:
    os.dup2(out, 1)
    os.dup2(out, 2)
    environment.use(request.environment)
    try:
        if request.directory != os.getcwd():
            os.chdir(request.directory)
        value = _resolve(request.call)(**request.params)
        if isinstance(value, Awaitable):
            import asyncio  # only now: it is most of a fresh worker's start-up (60 of 75 ms)

            value = asyncio.run(_awaited(value))
        return _result(request.id, value)
    except SystemExit as e:
        if e.code in (None, 0):
            return _result(request.id, None)
        return _failure(request.id, e)
    except BaseException as e:  # the task's own failure, whatever it is, ends only this job
        return _failure(request.id, e)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass


async def _awaited(value: Any) -> Any:
    return await value


_resolved: dict[str, Any] = {}


def _resolve(target: str) -> Any:
    function = _resolved.get(target)
    if function is None:
        function = _resolved[target] = _look_up(target)
    return function


def _look_up(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    if not callable(value):
        raise TypeError(f"{target} is not callable")
    return value


def _result(job_id: int, value: Any) -> Done:
    """The answer of a call that returned `value`: its JSON as json.dumps makes it (the answer
    carries it as it is), or why it cannot be a result."""
    if value is None:  # (most tasks return nothing: None is the answer's default, not sent)
        return Done(job_id, ok=True)
    try:
        encoded = json.dumps(value, allow_nan=False)  # (NaN is not JSON: the daemon would refuse it)
    except (TypeError, ValueError) as e:
        return Done(job_id, error=f"the function returned something that is not JSON: {e}")
    if len(encoded) > MAX_RESULT:
        size = len(encoded)
        return Done(job_id, error=f"the result is {size} bytes of JSON; at most {MAX_RESULT} are kept")
    return Done(job_id, ok=True, result=msgspec.Raw(encoded.encode()))


def _failure(job_id: int, error: BaseException) -> Done:
    tb = error.__traceback__
    if tb is not None and tb.tb_frame.f_code is _call.__code__:
        error = error.with_traceback(tb.tb_next)  # start at the task's code, not ours
    trace = "".join(traceback.format_exception(error))
    sys.stderr.write(trace)  # into the job's output, where a person looks first
    summary = "".join(traceback.format_exception_only(error)).strip()
    return Done(job_id, error=f"{summary}\n\n{trace}")


if __name__ == "__main__":
    main()
