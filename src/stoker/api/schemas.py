"""The JSON shapes of the HTTP API (and of `--json`), as msgspec types.

The same types encode responses, decode requests and generate the OpenAPI document, so the
document cannot drift from what the daemon really sends.
"""

from __future__ import annotations

import datetime as dt

import msgspec


class ProgramInstance(msgspec.Struct, kw_only=True):
    name: str
    program: str
    instance: int
    state: str  # stopped starting running backoff stopping exited fatal
    pid: int | None
    exit_code: int | None
    restarts: int
    started_at: dt.datetime | None
    uptime: float | None
    memory: int | None
    node: str
    error: str | None


class DaemonStatus(msgspec.Struct, kw_only=True):
    version: str
    node: str
    pid: int
    uptime: float
    started_at: dt.datetime
    store: str
    config: str
    state_dir: str
    programs: int
    instances: int


class SignalRequest(msgspec.Struct, forbid_unknown_fields=True):
    signal: str | int


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class Accepted(msgspec.Struct):
    ok: bool
    message: str
