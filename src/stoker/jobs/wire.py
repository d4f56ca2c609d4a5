"""What the daemon and a pool worker say to each other: the messages, typed, in one place.

The daemon's end is stoker.jobs.pool (`Worker`), the worker's stoker.jobs.worker; both encode and
decode these and nothing else, so a field one side writes is a field the other side reads (they
were two sets of dict keys, kept alike by hand). A frame is a 4-byte big-endian length and the
message's JSON (msgspec: a tenth of json's time per frame, which for a short job is a tenth of
the worker's); `t` names the message's kind, so each side decodes what it may be sent into
the right type at once.

Daemon to worker, on the channel (STOKER_WORKER_FD), in order:

- `Call`: run a Python callable of a `call` task;
- `Command`: run a command task's argv as the worker's child (stoker.jobs.launch);
- `Revoke`: take back a request the worker may not have begun (the rule: stoker.jobs.worker).

Worker to daemon, one answer per request, in the order of the requests:

- `Done`: the attempt's end (`ok`, the call's `result` or `error`, the command's wait `status`
  or `spawn_error`, the last of its `output`, what it `took` and when it `ended`);
- `Revoked`: the request was taken back before the worker began it.

Stops go on a second channel (STOKER_WORKER_STOP_FD): `STOP_FRAME`, job id and signal, which a
running command's wait reads without the requests waking it.

Imported by the worker at its start (`python -P -m stoker.jobs.worker`), so it imports msgspec
and the standard library only, none of the daemon's modules: a worker starts fast and small.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

# Seconds a command's answer may wait on its worker for the answers of the next jobs, so one
# write carries several (stoker.jobs.worker); what the daemon sends ahead fills that wait
# (stoker.jobs.dispatch_core.ahead_for). Both sides' figure, so it lives with the protocol.
LINGER = 0.020
STOP_FRAME = struct.Struct("!qi")  # a stop on a worker's stop channel: job id, signal
HEADER = 4  # bytes of a frame's length


class _Message(msgspec.Struct, tag_field="t", omit_defaults=True):
    pass


class Request(_Message):
    """What every attempt's request carries: its job, its output file (`attempt` and `rerun`
    for the marker line written into it), the directory and the job's own variables."""

    id: int
    output: str
    attempt: int
    rerun: bool
    directory: str
    environment: dict[str, str]


class Call(Request, tag="call"):
    """Run `call` ("module:attribute") with `params` as keyword arguments, in the worker."""

    call: str
    params: dict[str, Any]


class Command(Request, tag="command"):
    """Run `argv` as the worker's child, in a process group of its own."""

    argv: list[str]


class Revoke(_Message, tag="revoke"):
    id: int


class Done(_Message, tag="done"):
    """The end of job `id`'s attempt, as its worker saw it. A call: `ok` and its `result` (the
    JSON the worker made of it: msgspec.Raw on the way out) or its `error`. A command: its wait
    `status` (None: a stop came before it began), or `spawn_error` (errno, strerror, filename),
    or an `error` if it could not begin at all (its output file). `written`: bytes of output it
    wrote (0: none, or not counted); `took`: seconds, by the worker's monotonic clock (how far
    ahead the daemon sends); `ended`: the epoch."""

    id: int
    ok: bool = False
    result: Any = None
    error: str | None = None
    status: int | None = None
    spawn_error: tuple[int | None, str | None, str | None] | None = None
    output: str = ""
    written: int = 0
    took: float | None = None
    ended: float | None = None


class Revoked(_Message, tag="revoked"):
    """Job `id`'s request was taken back before the worker began it: it never ran."""

    id: int


ToWorker = Call | Command | Revoke
Answer = Done | Revoked

_encoder = msgspec.json.Encoder()


def frame(message: _Message) -> bytes:
    """`message` as it goes on the channel: its length, then its JSON."""
    data = _encoder.encode(message)
    return len(data).to_bytes(HEADER, "big") + data


def frames(buffer: bytearray) -> list[bytearray]:
    """The whole frames at the start of `buffer`, taken out of it (a partial one stays)."""
    found = []
    start = 0
    end = len(buffer)
    while end - start >= HEADER:
        size = int.from_bytes(buffer[start : start + HEADER], "big")
        if end - start - HEADER < size:
            break
        found.append(buffer[start + HEADER : start + HEADER + size])
        start += HEADER + size
    if start:
        del buffer[:start]
    return found


to_worker = msgspec.json.Decoder(ToWorker)  # the worker reads these
answer = msgspec.json.Decoder(Answer)  # the daemon reads these

__all__ = [
    "LINGER",
    "STOP_FRAME",
    "Answer",
    "Call",
    "Command",
    "Done",
    "Request",
    "Revoke",
    "Revoked",
    "ToWorker",
    "answer",
    "frame",
    "frames",
    "to_worker",
]
