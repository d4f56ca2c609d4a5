"""The OpenAPI 3.1 document of the control API, built from the same msgspec types it encodes."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from stoker import __version__
from stoker.api import schemas

_REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "404": _json(_ref("ErrorBody"), "No such program or instance"),
}
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


@cache
def document() -> dict[str, Any]:
    (_, components) = msgspec.json.schema_components(
        [
            schemas.ProgramInstance,
            schemas.DaemonStatus,
            schemas.SignalRequest,
            schemas.ErrorBody,
            schemas.Accepted,
        ],
        ref_template=_REF,
    )
    paths: dict[str, Any] = {
        "/api/v1/status": {
            "get": {"summary": "The daemon", "responses": {"200": _json(_ref("DaemonStatus"))}}
        },
        "/api/v1/programs": {
            "get": {
                "summary": "Every program instance",
                "responses": {"200": _json({"type": "array", "items": _ref("ProgramInstance")})},
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
                        "description": "text/plain tail; with follow=1 text/event-stream whose "
                        'events carry JSON {"name": instance, "text": output}',
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    "400": _json(_ref("ErrorBody"), "Bad query"),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/reload": {
            "post": {
                "summary": "Re-read the config (not available in this version yet)",
                "responses": {"501": _json(_ref("ErrorBody"), "Not implemented yet")},
            }
        },
        "/api/v1/shutdown": {
            "post": {
                "summary": "Stop every program and then the daemon",
                "responses": {"202": _json(_ref("Accepted"), "Shutting down")},
            }
        },
        "/api/v1/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json({"type": "object"})}}
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
