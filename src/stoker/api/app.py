"""The control API: HTTP/JSON routes over the supervisor (served on the unix socket and TCP)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from stoker.about import __version__
from stoker.api import dashboard, jobs, schemas
from stoker.api import history as history_routes
from stoker.api import nodes as nodes_view
from stoker.api import schedules as schedule_routes
from stoker.api import xmlrpc as supervisord_api
from stoker.api.body_limit import BodyLimit
from stoker.api.common import (
    ApiError,
    api_error_response,
    error_response,
    iso,
    json_response,
    output_event,
    sse,
)
from stoker.api.doors import Doors, from_unix_socket
from stoker.api.enqueue_door import EnqueueDoor
from stoker.api.supervisord_door import basic_password, speaks_supervisord
from stoker.api.usage import CpuMeter
from stoker.runtime import DaemonInfo, Reload
from stoker.signals import parse_signal
from stoker.store import StoreError
from stoker.supervise.instance import Instance
from stoker.supervise.logs import LogFile, tail
from stoker.supervise.supervisor import UnknownName
from stoker.views import describe, program_snapshots

__all__ = ["BearerAuth", "DaemonInfo", "Reload", "build_app", "describe", "program_snapshots"]

MAX_TAIL = 100_000
FOLLOW_BUFFER = 1024 * 1024  # bytes a slow follower may lag before it is told it missed output


def _yes(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def build_app(info: DaemonInfo, token: str | None, made: Path | None = None) -> ASGIApp:
    """The API. TCP requests need `token` (None: there is no TCP listen); `made` is the file
    that keeps it when the daemon made it (no [daemon] token), named to a caller without it."""
    sup = info.supervisor
    node = sup.config.daemon.node

    cpu = CpuMeter()  # `cpu` of the program JSON: since the previous look

    def select(name: str) -> list[Instance]:
        try:
            return sup.select([name])
        except UnknownName:
            raise ApiError(404, "not_found", f"no program or instance named {name!r}") from None

    async def status(request: Request) -> Response:
        cfg = sup.config
        return json_response(
            schemas.DaemonStatus(
                version=__version__,
                node=node,
                pid=os.getpid(),
                uptime=round(time.time() - info.started_at, 3),
                started_at=iso(info.started_at) or dt.datetime.now().astimezone(),
                store=cfg.daemon.store_shown,
                config=cfg.path,
                state_dir=cfg.daemon.state_dir,
                programs=len(cfg.programs),
                instances=len(sup.instances),
            )
        )

    async def programs(request: Request) -> Response:
        local = describe(list(sup.instances.values()), node, sup, cpu)
        if not _yes(request.query_params.get("all_nodes")) or info.shared is None:  # SQLite: this node only
            return json_response(local)
        records = await info.shared.nodes(nodes_view.FORGET_AFTER)
        return json_response(nodes_view.all_programs(local, node, records, sup.config.daemon.node_timeout))

    async def nodes(request: Request) -> Response:
        local = describe(list(sup.instances.values()), node, sup)  # counts only: no measuring
        this = schemas.Node(
            name=node,
            local=True,
            alive=True,
            silent_for=None,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            joined_at=iso(info.started_at),
            instances=0,
            states={},
        )
        records = [] if info.shared is None else await info.shared.nodes(nodes_view.FORGET_AFTER)
        return json_response(nodes_view.all_nodes(local, this, records, sup.config.daemon.node_timeout))

    async def program(request: Request) -> Response:
        return json_response(describe(select(request.path_params["name"]), node, sup, cpu))

    async def act(request: Request) -> Response:
        operations: dict[str, Callable[[list[Instance]], Awaitable[None]]] = {
            "start": sup.start_by_hand,
            "stop": sup.stop_by_hand,
            "restart": sup.restart_by_hand,
        }
        action = request.path_params["action"]
        if action not in operations:
            raise ApiError(404, "not_found", f"no action {action!r}: use start, stop or restart")
        instances = select(request.path_params["name"])
        await operations[action](instances)
        return json_response(describe(instances, node, sup, cpu))

    async def send_signal(request: Request) -> Response:
        instances = select(request.path_params["name"])
        try:
            body = msgspec.json.decode(await request.body(), type=schemas.SignalRequest)
            sig = parse_signal(body.signal)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError, RecursionError) as e:
            raise ApiError(400, "bad_request", f'expected {{"signal": "HUP"}}: {e}') from None
        sup.signal(instances, sig)
        return json_response(describe(instances, node, sup, cpu))

    async def logs(request: Request) -> Response:
        instances = select(request.path_params["name"])
        q = request.query_params
        try:
            lines = min(int(q.get("tail", "100")), MAX_TAIL)
        except ValueError:
            raise ApiError(400, "bad_request", "tail must be a whole number") from None
        stream = q.get("stream", "out")
        if stream not in ("out", "err"):
            raise ApiError(400, "bad_request", 'stream must be "out" or "err"')
        sinks: list[tuple[str, LogFile]] = []
        for inst in instances:
            sink = inst.stderr_log if stream == "err" else inst.stdout_log
            if sink is not None:
                sinks.append((inst.name, sink))
        prefix = len(sinks) > 1
        text = b"".join(  # a stream (log.file = "/dev/stdout") has nothing to read back
            _prefixed(name, tail(s.path, lines), prefix) for name, s in sinks if s.readable
        )
        if q.get("follow") not in ("1", "true", "yes"):
            return Response(text, media_type="text/plain; charset=utf-8")
        return StreamingResponse(_follow(text, sinks, prefix), media_type="text/event-stream")

    async def reload(request: Request) -> Response:
        from stoker.config import ConfigError

        if info.reload is None:
            raise ApiError(503, "unavailable", "the daemon is still starting")
        if not _yes(request.query_params.get("progress")):
            try:
                return json_response(await info.reload(None))
            except ConfigError as e:
                raise ApiError(422, "invalid_config", f"{e} (nothing was changed)") from None
        # progress=1: server-sent events, each instance it stops as it stops, then the changes.
        # The reload runs as a task of its own, so a caller who leaves does not cut it short.
        said: asyncio.Queue[bytes | None] = asyncio.Queue()
        applying = asyncio.create_task(info.reload(lambda event: said.put_nowait(sse(event))))
        applying.add_done_callback(lambda _: said.put_nowait(None))
        first = await said.get()
        if first is None:  # over before it stopped anything: perhaps refused (422, as without progress)
            try:
                applying.result()
            except ConfigError as e:
                raise ApiError(422, "invalid_config", f"{e} (nothing was changed)") from None

        async def stream(item: bytes | None) -> AsyncIterator[bytes]:
            while item is not None:
                yield item
                item = await said.get()
            if (failed := applying.exception()) is not None:  # the file was valid: not a 422
                error = {"code": "reload_failed", "message": str(failed) or type(failed).__name__}
                yield sse({"type": "error", "error": error})
            else:
                yield sse({"type": "reloaded", "changes": applying.result()})

        return StreamingResponse(stream(first), media_type="text/event-stream")

    async def shutdown(request: Request) -> Response:
        info.request_shutdown()
        return json_response(schemas.Accepted(True, "shutting down"), 202)

    from stoker.api.metrics import CONTENT_TYPE, Metrics

    observed = Metrics(sup, lambda: info.dispatcher)
    info.events.listen(observed.observe)

    async def metrics(request: Request) -> Response:
        return Response(await observed.render(), media_type=CONTENT_TYPE)

    async def openapi(request: Request) -> Response:
        from stoker.api.openapi import with_tasks

        return json_response(with_tasks(info.dispatcher.config.tasks if info.dispatcher else {}))

    routes = [
        Route("/api/v1/status", status),
        Route("/api/v1/programs", programs),
        Route("/api/v1/nodes", nodes),
        Route("/api/v1/programs/{name}", program),
        Route("/api/v1/programs/{name}/logs", logs),
        Route("/api/v1/programs/{name}/signal", send_signal, methods=["POST"]),
        Route("/api/v1/programs/{name}/{action:str}", act, methods=["POST"]),
        Route("/api/v1/reload", reload, methods=["POST"]),
        Route("/api/v1/shutdown", shutdown, methods=["POST"]),
        Route("/api/v1/openapi.json", openapi),
        Route("/metrics", metrics),
        *jobs.routes(lambda: info.dispatcher, info.events, sup.log_dir.as_posix()),
        *schedule_routes.routes(lambda: info.scheduler),
        *history_routes.routes(info.history),
        *supervisord_api.routes(info),  # /RPC2, /logtail, /mainlogtail: supervisorctl's
        *dashboard.routes(),
    ]

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return api_error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    async def on_store_error(request: Request, exc: Exception) -> Response:
        # The database refused (disk full, file gone): nothing was accepted; say so and why.
        return error_response(503, "store_unavailable", str(exc))

    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error, StoreError: on_store_error},
    )
    enqueue = next(
        r for r in routes if isinstance(r, Route) and r.path == "/api/v1/jobs" and "POST" in (r.methods or ())
    )
    return Doors(BearerAuth(BodyLimit(EnqueueDoor(app, enqueue.endpoint)), token, made))


def _prefixed(name: str, data: bytes, prefix: bool) -> bytes:
    if not prefix or not data:
        return data
    head = name.encode() + b" | "
    lines = data.splitlines(keepends=True)
    return b"".join(head + line for line in lines)


async def _follow(initial: bytes, sinks: list[tuple[str, LogFile]], prefix: bool) -> AsyncIterator[bytes]:
    """Server-sent events: each event's data is JSON {"name", "text"} (text may hold newlines)."""
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()  # bounded by `held`, in bytes
    missed = held = 0
    listeners = []

    def make_listener(name: str) -> Callable[[bytes], None]:
        def listener(data: bytes) -> None:
            nonlocal missed, held
            if held + len(data) > FOLLOW_BUFFER:
                missed += len(data)
            else:
                held += len(data)
                queue.put_nowait((name, data))

        return listener

    for name, sink in sinks:
        listener = make_listener(name)
        listeners.append((sink, listener))
        sink.add_listener(listener)
    try:
        if initial:
            yield output_event("", initial)
        while True:
            name, data = await queue.get()
            held -= len(data)
            if missed:
                yield output_event("", f"[stoker] {missed} bytes skipped: reader too slow\n".encode())
                missed = 0
            yield output_event(name, _prefixed(name, data, prefix))
    finally:
        for sink, listener in listeners:
            sink.remove_listener(listener)


class BearerAuth:
    """TCP clients must send `Authorization: Bearer TOKEN` (supervisorctl and its kin, on
    supervisord's paths: basic auth with the token as the password, see supervisord_door.py);
    the unix socket trusts its file mode.

    The dashboard's own files are the exception: a browser cannot add a header to the request
    that opens a page, and they hold no data (the page asks for the token, then sends it with
    every API call).
    """

    def __init__(self, app: ASGIApp, token: str | None, made: Path | None = None) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.refusal = "send Authorization: Bearer TOKEN"
        if made is not None:  # loopback only: [daemon] token is required elsewhere
            self.refusal += f" (no [daemon] token is set: the daemon made one, in {made})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.token is not None
            and not from_unix_socket(scope)
            and not dashboard.is_public(scope)
        ):
            header = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, given = header.partition(b" ")
            if scheme.lower() == b"basic" and speaks_supervisord(scope["path"]):  # supervisorctl's
                scheme, given = b"bearer", basic_password(given)  # the token as the password
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                response = error_response(401, "unauthorized", self.refusal)
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
