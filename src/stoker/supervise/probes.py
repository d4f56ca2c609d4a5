"""Readiness checks that poll: a TCP connect, an HTTP GET (see readiness.py for the forms).

A check is tried at once, then again with a delay that grows from 50 ms to 1 s: a program that
becomes ready quickly is seen quickly, and a slow one costs one connect a second. (`notify`
does not poll: the program says READY=1, see stoker.sdnotify.)
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request

from stoker.supervise.readiness import ReadyCheck

FIRST_DELAY = 0.05
MAX_DELAY = 1.0
ATTEMPT_TIMEOUT = 2.0

# No proxy from the environment: a health URL on 127.0.0.1 must not go through http_proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


async def until_ready(check: ReadyCheck) -> None:
    """Return once `check` passes; runs until then (cancel the task to give up)."""
    delay = FIRST_DELAY
    while not await passes(check):
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, MAX_DELAY)


async def passes(check: ReadyCheck) -> bool:
    if check.kind == "tcp":
        return await _tcp_connects(check.host, check.port)
    if check.kind == "http":
        return await asyncio.to_thread(_http_ok, check.url)
    raise ValueError(f"{check} is not checked by polling")


async def _tcp_connects(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), ATTEMPT_TIMEOUT)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _http_ok(url: str) -> bool:
    request = urllib.request.Request(url, headers={"User-Agent": "stoker-ready-check"})
    try:
        with _OPENER.open(request, timeout=ATTEMPT_TIMEOUT) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):  # HTTPError (4xx/5xx) is a URLError
        return False
