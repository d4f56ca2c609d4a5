"""The OpenAPI 3.1 document of the control API, built from the same msgspec types it encodes."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import msgspec

from stoker.about import __version__
from stoker.api import schemas
from stoker.jobs.params import json_schema

if TYPE_CHECKING:
    from stoker.config import TaskConfig

_REF = "#/components/schemas/{name}"


_NAMES = {"type": "array", "items": {"type": "string"}}
_DELTA = {  # tasks, queues, schedules or webhooks a reload added, updated, removed
    "type": "object",
    "properties": {"added": _NAMES, "updated": _NAMES, "removed": _NAMES},
    "required": ["added", "updated", "removed"],
}
_RELOAD = {
    "type": "object",
    "properties": {
        "added": _NAMES,
        "removed": _NAMES,
        "changed": _NAMES,
        "resized": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"from": {"type": "integer"}, "to": {"type": "integer"}},
            },
        },
        "unchanged": _NAMES,
        "jobs": _NAMES,
        "needs_restart": _NAMES,
        "notify": _NAMES,
        "placement": _NAMES,
        "tasks": _DELTA,
        "queues": _DELTA,
        "schedules": _DELTA,
        "webhooks": _DELTA,
        "config": {"type": "string", "description": "the file the daemon read (its own)"},
    },
    "required": [
        "added",
        "removed",
        "changed",
        "resized",
        "unchanged",
        "jobs",
        "needs_restart",
        "notify",
        "placement",
        "tasks",
        "queues",
        "schedules",
        "webhooks",
        "config",
    ],
}


# A server-sent event as a client sees it (`event:` defaults to "message"; `data:` is JSON).
_SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "404": _json(_ref("ErrorBody"), "No such program or instance"),
}
# over TCP, a body must say it is JSON (api/doors.py)
_NOT_JSON = {"415": _json(_ref("ErrorBody"), "A body without Content-Type: application/json (TCP)")}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": '"all", a program ("mailer") or one instance ("mailer:0")',
    "schema": {"type": "string"},
}
_INSTANCES = _json({"type": "array", "items": _ref("ProgramInstance")}, "The instances NAME selects")


def _action(summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [_NAME],
            "responses": {"200": _INSTANCES, **_ERRORS},
        }
    }


def with_tasks(tasks: Mapping[str, TaskConfig]) -> dict[str, Any]:
    """The document with a JSON Schema of each task's ``params`` (``TaskParams.NAME``), so a
    client can check a request, or build a form, before it sends it."""
    doc = document()
    found = dict(doc["components"]["schemas"])
    for name, task in tasks.items():
        schema = json_schema(task.params, open_ended=task.open_ended, command=task.command)
        found[f"TaskParams.{name}"] = {"title": f"params of the task {name}", **schema}
    return {**doc, "components": {**doc["components"], "schemas": found}}


@cache
def document() -> dict[str, Any]:
    (_, components) = msgspec.json.schema_components(
        [
            schemas.ProgramInstance,
            schemas.Node,
            schemas.DaemonStatus,
            schemas.SignalRequest,
            schemas.ErrorBody,
            schemas.Accepted,
            schemas.Job,
            schemas.JobDetail,
            schemas.EnqueueRequest,
            schemas.EnqueueManyRequest,
            schemas.Queue,
            schemas.Schedule,
            schemas.ScheduleSlot,
            schemas.Task,
            schemas.History,
        ],
        ref_template=_REF,
    )
    paths: dict[str, Any] = {
        "/api/v1/status": {
            "get": {"summary": "The daemon", "responses": {"200": _json(_ref("DaemonStatus"))}}
        },
        "/api/v1/programs": {
            "get": {
                "summary": "Every program instance; with all_nodes=1, every node's (a shared store)",
                "parameters": [
                    {
                        "name": "all_nodes",
                        "in": "query",
                        "description": "1: this node's instances, then those every other node sharing the "
                        "store last published (node_silent_for, node_lapsed set); on SQLite, this node's",
                        "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
                    }
                ],
                "responses": {
                    "200": _json({"type": "array", "items": _ref("ProgramInstance")}),
                    "503": _json(_ref("ErrorBody"), "all_nodes: the shared store cannot be reached"),
                },
            }
        },
        "/api/v1/nodes": {
            "get": {
                "summary": "The nodes sharing the store: this one first, then the others heard from "
                "within a day (alive, or lapsed: silent for longer than node_timeout)",
                "responses": {
                    "200": _json({"type": "array", "items": _ref("Node")}),
                    "503": _json(_ref("ErrorBody"), "The shared store cannot be reached"),
                },
            }
        },
        "/api/v1/programs/{name}": {
            "get": {
                "summary": "The instances NAME selects",
                "parameters": [_NAME],
                "responses": {"200": _INSTANCES, **_ERRORS},
            }
        },
        "/api/v1/programs/{name}/start": _action("Start; returns once started or failed"),
        "/api/v1/programs/{name}/stop": _action("Stop; returns once stopped"),
        "/api/v1/programs/{name}/restart": _action("Restart; returns once started again"),
        "/api/v1/programs/{name}/signal": {
            "post": {
                "summary": "Send a signal to the process group of each instance",
                "parameters": [_NAME],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SignalRequest")}},
                },
                "responses": {
                    "200": _INSTANCES,
                    "400": _json(_ref("ErrorBody"), "Not a signal"),
                    "413": _json(_ref("ErrorBody"), "A body over 16 MB"),
                    **_NOT_JSON,
                    **_ERRORS,
                },
            }
        },
        "/api/v1/programs/{name}/logs": {
            "get": {
                "summary": "Program output: a tail as text, or followed as server-sent events",
                "parameters": [
                    _NAME,
                    {"name": "tail", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {
                        "name": "follow",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["0", "1"]},
                    },
                    {
                        "name": "stream",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["out", "err"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "text/plain tail (at most its last 1 MB, after a line "
                        '"[stoker] cut: …" when the lines asked for are longer); with follow=1 '
                        'text/event-stream whose events carry JSON {"name": instance, "text": output}',
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "text/event-stream": {"schema": _SSE_EVENT},
                        },
                    },
                    "400": _json(_ref("ErrorBody"), "Bad query"),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/reload": {
            "post": {
                "summary": "Re-read the config file and apply only what changed",
                "parameters": [
                    _query(
                        "progress",
                        {"type": "string", "enum": ["0", "1"]},
                        "1: answer with server-sent events: each instance the reload stops, as it "
                        'stops ({"type": "stopping", "name", "stop_timeout"}, {"type": "stopped", '
                        '"name"}, {"type": "started", "name"} for a restart), then {"type": '
                        '"reloaded", "changes": what changed} or {"type": "error", "error"}',
                    )
                ],
                "responses": {
                    "200": {
                        "description": "What changed; with progress=1 text/event-stream",
                        "content": {
                            "application/json": {"schema": _RELOAD},
                            "text/event-stream": {"schema": _SSE_EVENT},
                        },
                    },
                    "422": _json(_ref("ErrorBody"), "The config is not valid: nothing was changed"),
                },
            }
        },
        "/api/v1/shutdown": {
            "post": {
                "summary": "Stop every program and then the daemon",
                "responses": {"202": _json(_ref("Accepted"), "Shutting down")},
            }
        },
        **_job_paths(),
        **_supervisord_paths(),
        "/api/v1/tasks": {
            "get": {
                "summary": "The tasks of the config and the parameters each takes (the JSON "
                "Schema of a task's params is the component TaskParams.NAME)",
                "responses": {"200": _json({"type": "array", "items": _ref("Task")})},
            }
        },
        "/": {
            "get": {
                "summary": "The dashboard (no token needed for its files; they hold no data)",
                "security": [{}],
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
            }
        },
        "/dashboard/{file}": {
            "get": {
                "summary": "A file of the dashboard (script, style)",
                "security": [{}],
                "parameters": [
                    {"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "The file",
                        "content": {"text/javascript": {}, "text/css": {}, "text/html": {}},
                    },
                    "404": _json(_ref("ErrorBody"), "No such file"),
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json({"type": "object"})}}
        },
        "/metrics": {
            "get": {
                "summary": "Programs, queues, job attempts and schedule lateness in Prometheus' text format",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "stoker control API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }


_ID = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
_JOB_ID = {"name": "id", "in": "path", "required": True, "schema": _ID}
_JOB_ERRORS = {
    "404": _json(_ref("ErrorBody"), "No such job, or no tasks in the config"),
    "409": _json(_ref("ErrorBody"), "Not possible in the job's state"),
}
_BAD_QUERY = {"422": _json(_ref("ErrorBody"), "A query parameter that is not valid")}
_INVALID = {
    "400": _json(_ref("ErrorBody"), "Not JSON"),
    "404": _json(_ref("ErrorBody"), "Unknown task"),
    "413": _json(_ref("ErrorBody"), "A body over 16 MB"),
    "422": _json(_ref("ErrorBody"), "Parameters or options that do not fit the task"),
    **_NOT_JSON,
}
_QUEUES = _json({"type": "array", "items": _ref("Queue")})


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def _job_paths() -> dict[str, Any]:
    states = {"type": "string", "enum": ["", "queued", "running", "succeeded", "failed", "cancelled"]}
    return {
        "/api/v1/jobs": {
            "get": {
                "summary": "Jobs, newest first",
                "parameters": [
                    _query("state", states),
                    _query("queue", {"type": "string"}),
                    _query("task", {"type": "string"}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _query("before", _ID, "an id: jobs older than it (paging)"),
                ],
                "responses": {"200": _json({"type": "array", "items": _ref("Job")}), **_BAD_QUERY},
            },
            "post": {
                "summary": "Queue a job of a task from the config",
                "requestBody": _body("EnqueueRequest"),
                "responses": {
                    "201": _json(_ref("Job"), "Queued"),
                    "200": _json(_ref("Job"), "A live job with the same key already existed: that one"),
                    **_INVALID,
                },
            },
        },
        "/api/v1/jobs/batch": {
            "post": {
                "summary": "Queue many jobs of one task in one transaction",
                "requestBody": _body("EnqueueManyRequest"),
                "responses": {
                    "201": _json({"type": "array", "items": _ref("Job")}, "Queued"),
                    **_INVALID,
                    "413": _json(_ref("ErrorBody"), "Too many jobs in one request, or a body over 16 MB"),
                },
            }
        },
        "/api/v1/jobs/{id}": {
            "get": {
                "summary": "One job with its attempts; wait=S answers once it finished (at most 300 s)",
                "parameters": [_JOB_ID, _query("wait", {"type": "number", "minimum": 0})],
                "responses": {"200": _json(_ref("JobDetail")), **_JOB_ERRORS, **_BAD_QUERY},
            }
        },
        "/api/v1/jobs/{id}/cancel": {
            "post": {
                "summary": "Cancel a queued job, or stop a running one",
                "parameters": [_JOB_ID],
                "responses": {"200": _json(_ref("Job")), **_JOB_ERRORS},
            }
        },
        "/api/v1/jobs/{id}/retry": {
            "post": {
                "summary": "Queue a failed or cancelled job again with fresh attempts",
                "parameters": [_JOB_ID],
                "responses": {"200": _json(_ref("Job")), **_JOB_ERRORS},
            }
        },
        "/api/v1/jobs/{id}/logs": {
            "get": {
                "summary": "The job's output: a tail, or followed as server-sent events until it finished",
                "parameters": [
                    _JOB_ID,
                    _query("tail", {"type": "integer", "minimum": 0}),
                    _query("follow", {"type": "string", "enum": ["0", "1"]}),
                ],
                "responses": {
                    "200": {
                        "description": "text/plain (at most its last 1 MB, after a line "
                        '"[stoker] cut: …" when the lines asked for are longer); with follow=1 '
                        "text/event-stream",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "text/event-stream": {"schema": _SSE_EVENT},
                        },
                    },
                    **_JOB_ERRORS,
                    **_BAD_QUERY,
                },
            }
        },
        "/api/v1/queues": {"get": {"summary": "Queues with their counts", "responses": {"200": _QUEUES}}},
        "/api/v1/history": {
            "get": {
                "summary": "The recent figures of queues, programs, schedules and the daemon, per slot"
                " (10 s slots for 1h, 2 min for 6h and 24h): what the dashboard's charts draw",
                "parameters": [
                    _query("range", {"type": "string", "enum": ["", "1h", "6h", "24h"]}, "default 1h"),
                    _query("queue", {"type": "string"}, "only these queues (comma-separated)"),
                    _query("program", {"type": "string"}, "only these programs (comma-separated)"),
                    _query("schedule", {"type": "string"}, "only these schedules (comma-separated)"),
                ],
                "responses": {
                    "200": _json(_ref("History")),
                    "404": _json(_ref("ErrorBody"), "[daemon] history = false"),
                    **_BAD_QUERY,
                },
            }
        },
        "/api/v1/schedules": {
            "get": {
                "summary": "Schedules: trigger, next run, last run and its result",
                "responses": {"200": _json({"type": "array", "items": _ref("Schedule")})},
            }
        },
        "/api/v1/schedules/{name}/slots": {
            "get": {
                "summary": "The schedule's history: its latest recorded slots, newest first, each with its "
                'job\'s state, or "skipped" and why',
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "how many (default 20)",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": _json({"type": "array", "items": _ref("ScheduleSlot")}),
                    "404": _json(_ref("ErrorBody"), "No such schedule"),
                    **_BAD_QUERY,
                },
            }
        },
        "/api/v1/schedules/{name}/{action}": {
            "post": {
                "summary": "run: queue its job now (201, the job); pause or resume (the schedule; persisted)",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["run", "pause", "resume"]},
                    },
                ],
                "responses": {
                    "201": _json(_ref("Job"), "run: the job it queued"),
                    "200": _json(_ref("Schedule"), "pause, resume: the schedule"),
                    "404": _json(_ref("ErrorBody"), "No such schedule"),
                },
            }
        },
        "/api/v1/queues/{name}/{action}": {
            "post": {
                "summary": "Pause or resume a queue (persisted)",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["pause", "resume"]},
                    },
                ],
                "responses": {"200": _QUEUES, "404": _json(_ref("ErrorBody"), "No such queue")},
            }
        },
        "/api/v1/events": {
            "get": {
                "summary": 'State changes as server-sent events: {"type": "connected"} first, then '
                '{"type": "job", "job": {…}}, {"type": "program", "program": {…}} (memory and cpu '
                'null: not measured for an event), {"type": "queue", "queue", "paused"}, '
                '{"type": "schedule", "schedule", "paused"}, '
                '{"type": "schedule", "schedule", "skipped", "reason"} (a slot its when_file held back), '
                '{"type": "schedule_missed", "schedule", '
                '"reason", "slots", "missed", "in_a_row", "job", "error"}; a listener that falls more than '
                '4 MB behind gets {"type": "lagged", "missed"} as its last event, and the stream ends '
                "(reconnect and read again)",
                "responses": {
                    "200": {
                        "description": "text/event-stream",
                        "content": {"text/event-stream": {"schema": _SSE_EVENT}},
                    }
                },
            }
        },
    }


def _supervisord_paths() -> dict[str, Any]:
    """supervisord's XML-RPC API and log tails, for supervisorctl and its kin (api/xmlrpc.py,
    docs/supervisorctl.md): over TCP they also take the token as basic auth's password."""
    text = {"text/plain": {"schema": {"type": "string"}}}
    tail = {
        "summary": "supervisorctl tail -f: the last KB of the log, then the log as it grows (chunked)",
        "responses": {
            "200": {"description": "The log, followed", "content": text},
            "404": {"description": "No such process, or no such log", "content": text},
        },
    }
    spec = {"in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/RPC2": {
            "post": {
                "summary": "supervisord's XML-RPC API 3.0 (system.listMethods lists the methods)",
                "requestBody": {"required": True, "content": {"text/xml": {"schema": {"type": "string"}}}},
                "responses": {
                    "200": {
                        "description": "The method's answer, or an XML-RPC fault (supervisord's codes)",
                        "content": {"text/xml": {"schema": {"type": "string"}}},
                    },
                    "400": {"description": "Not an XML-RPC call", "content": text},
                    "415": _json(_ref("ErrorBody"), "A body without Content-Type: text/xml (TCP)"),
                },
            }
        },
        "/logtail/{spec}": {
            "get": {**tail, "parameters": [{"name": "spec", **spec, "description": "web, worker:0"}]}
        },
        "/logtail/{spec}/{channel}": {
            "get": {
                **tail,
                "parameters": [
                    {"name": "spec", **spec, "description": "web, worker:0"},
                    {"name": "channel", **spec, "description": "stdout or stderr"},
                ],
            }
        },
        "/mainlogtail": {"get": {**tail, "summary": "supervisorctl maintail -f: the daemon's log, followed"}},
    }
