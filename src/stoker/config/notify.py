"""The ``[notify.NAME]`` tables: webhooks POSTed when something needs a person.

:class:`NotifyConfig` (and its :class:`CrashLoopConfig`) is the validated table;
:func:`build_notify` checks a raw one. The URL and header values may be secrets
(``env:``/``file:``), which ``repr`` never shows.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import msgspec

from stoker.config.errors import Where, check_keys, convert, show
from stoker.config.values import DURATION, Duration, check_duration, resolve_token

NOTIFY_EVENTS = ("program_fatal", "crash_loop", "job_failed", "schedule_missed")


class CrashLoopConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A crash loop (the state machine's: unexpected ends since the last stable run) is worth
    a notification once ``count`` of its ends fell within ``within`` seconds."""

    count: int = 5
    within: float = 300.0


class NotifyConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One ``[notify.NAME]`` webhook: ``events`` are POSTed to ``url`` as JSON.

    ``url`` and the ``headers`` values are resolved (``env:``/``file:`` already read) and may
    hold secrets, so ``repr`` shows only the URL's scheme and host.
    """

    name: str
    url: str
    events: tuple[str, ...] = NOTIFY_EVENTS
    headers: dict[str, str] = {}
    timeout: float = 5.0
    crash_loop: CrashLoopConfig = msgspec.field(default_factory=CrashLoopConfig)

    @property
    def host(self) -> str:
        """``https://hooks.example.com``: what logs may show of the URL."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def __repr__(self) -> str:
        return (
            f"NotifyConfig(name={self.name!r}, url='{self.host}/***', events={self.events!r}, "
            f"headers={ {k: '***' for k in self.headers}!r}, timeout={self.timeout!r}, "
            f"crash_loop={self.crash_loop!r})"
        )


_NOTIFY_EXPECTED: dict[str, str] = {
    "url": 'an http:// or https:// URL, "env:NAME" or "file:PATH"',
    "events": "an array of event names: " + ", ".join(f'"{e}"' for e in NOTIFY_EVENTS),
    "headers": 'a table of header values, like { Authorization = "env:HOOK_TOKEN" }',
    "timeout": DURATION,
    "crash_loop": 'a table like { count = 5, within = "5m" }',
    "crash_loop.count": "a whole number, 1 or more (unexpected exits that make a crash loop)",
    "crash_loop.within": DURATION,
}


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)
_FIXED_HEADERS = frozenset({"content-length", "host", "transfer-encoding", "connection"})


class _RawCrashLoop(msgspec.Struct, forbid_unknown_fields=True):
    count: int = 5
    within: Duration = "5m"


class _RawNotify(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    events: list[str] = msgspec.field(default_factory=lambda: list(NOTIFY_EVENTS))
    headers: dict[str, str] = {}
    timeout: Duration = "5s"
    crash_loop: _RawCrashLoop = msgspec.field(default_factory=_RawCrashLoop)


def build_notify(name: str, raw: dict[str, Any], where: Where, directory: str) -> NotifyConfig:
    top_keys = [key for key in _NOTIFY_EXPECTED if "." not in key]
    check_keys(raw, where, top_keys, {"crash_loop": ("count", "within")})
    if "url" not in raw:
        raise where.error("url", f"missing; expected {_NOTIFY_EXPECTED['url']}", "a url")
    parsed = convert(raw, _RawNotify, where, _NOTIFY_EXPECTED)
    events = _notify_events(parsed.events, where)
    if "crash_loop" in raw and "crash_loop" not in events:
        raise where.error(
            "crash_loop", 'is set, but events does not include "crash_loop"', 'events with "crash_loop"'
        )
    timeout = check_duration(parsed.timeout, where, "timeout")
    if timeout <= 0:
        raise where.bad("timeout", "a duration greater than zero", parsed.timeout)
    count = parsed.crash_loop.count
    if count < 1:
        raise where.bad("crash_loop.count", _NOTIFY_EXPECTED["crash_loop.count"], count)
    within = check_duration(parsed.crash_loop.within, where, "crash_loop.within")
    if within <= 0:
        raise where.bad("crash_loop.within", "a duration greater than zero", parsed.crash_loop.within)
    return NotifyConfig(
        name=name,
        url=_notify_url(parsed.url, where, directory),
        events=events,
        headers=_notify_headers(parsed.headers, where, directory),
        timeout=timeout,
        crash_loop=CrashLoopConfig(count=count, within=within),
    )


def _notify_events(values: list[str], where: Where) -> tuple[str, ...]:
    if not values:
        raise where.bad("events", "at least one event (remove the key to get them all)", values)
    for value in values:
        if value not in NOTIFY_EVENTS:
            close = difflib.get_close_matches(value, NOTIFY_EVENTS, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise where.error("events", f"unknown event {show(value)}{hint}", _NOTIFY_EXPECTED["events"])
    return tuple(dict.fromkeys(values))


def _notify_url(value: str, where: Where, directory: str) -> str:
    """The webhook's URL; like a token it may come from ``env:``/``file:`` (many webhook URLs
    carry their secret in the path), and then an error names the source, not the secret."""
    expected = "an http:// or https:// URL"
    url = resolve_token(value, where, directory, "url")
    if _is_http_url(url):
        return url
    if value.startswith(("env:", "file:")):
        raise where.error("url", f"{show(value)} does not hold {expected}", expected)
    raise where.bad("url", _NOTIFY_EXPECTED["url"], value)


def _is_http_url(url: str) -> bool:
    from urllib.parse import urlsplit

    if not url.isascii() or not url.isprintable() or " " in url:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises ValueError here
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _notify_headers(values: dict[str, str], where: Where, directory: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for header, value in values.items():
        key = f"headers.{header}"
        if not _HEADER_NAME.fullmatch(header):
            raise where.error(key, "is not a valid HTTP header name", "letters, digits and -")
        if header.lower() in _FIXED_HEADERS:
            raise where.error(key, "is set by stoker itself", "another header")
        resolved = resolve_token(value, where, directory, key)
        if not (resolved.isprintable() and all(ord(c) < 256 for c in resolved)):
            # a line break would start another header; http.client sends Latin-1 only
            raise where.bad(key, "a header value on one line, in Latin-1 characters", value)
        headers[header] = resolved
    return headers
