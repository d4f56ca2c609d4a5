"""The unix socket's HTTP protocol: uvicorn's httptools one, its answers in one write.

The unix socket carries the CLI, the Python and PHP clients on this machine, and so a web
app's enqueues, one per request. httptools (llhttp, in C) parses a request and writes an answer
for about a third of h11's CPU: per enqueue, the bare HTTP stack's 150 µs become 50–80
(bench/README.md). TCP keeps the h11 protocol with its guard on unfinished request heads
(api/connections.py): the unix socket is its owner's door and needs none.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from stoker.api.connections import OneWrite


class UnixProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # the request's cycle (its task only scheduled yet) answers through OneWrite
        cycle: Any = self.cycle
        if cycle is not None and not isinstance(cycle.transport, OneWrite):
            cycle.transport = OneWrite(self.transport)
