"""The ``[daemon]`` table: where the daemon keeps its state, how it listens, its store.

:class:`DaemonConfig` is the validated table; :func:`build_daemon` checks the raw one (a
listen address off loopback needs a token of at least :data:`MIN_TOKEN` characters).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import zoneinfo
from collections.abc import Mapping
from typing import Any

import msgspec

from stoker.config.errors import Where, check_keys, convert, show
from stoker.config.values import DURATION, Duration, check_duration, resolve_path, resolve_token
from stoker.locate import DEFAULT_STATE_DIR


class DaemonConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[daemon]`` table, validated.

    ``state_dir`` is absolute. ``listen`` is normalised (``":9100"`` → ``"127.0.0.1:9100"``);
    use :attr:`listen_host` / :attr:`listen_port` to bind. ``token`` is the resolved secret
    (``env:``/``file:`` already read) and is hidden from ``repr``. ``timezone`` ``None`` means
    the system zone. ``shutdown_timeout`` is in seconds.
    """

    state_dir: str
    listen: str | None = None
    token: str | None = None
    store: str = "sqlite"
    node: str
    timezone: str | None = None
    shutdown_timeout: float = 30.0
    keep_jobs: float = 7 * 86400.0
    worker_max_jobs: int = 10000
    node_timeout: float = 30.0
    history: bool = True  # keep the recent figures the charts show (stoker.history)

    @property
    def listen_host(self) -> str | None:
        """Host to bind (IPv6 without brackets), or ``None`` when TCP is off."""
        return None if self.listen is None else _split_listen(self.listen)[0]

    @property
    def listen_port(self) -> int | None:
        """TCP port to bind, or ``None`` when TCP is off."""
        return None if self.listen is None else _split_listen(self.listen)[1]

    @property
    def store_shown(self) -> str:
        """`store` as it may be shown (status, logs): a password in the URL is `***`."""
        return _without_password(self.store)

    def __repr__(self) -> str:
        token = None if self.token is None else "'***'"
        return (
            f"DaemonConfig(state_dir={self.state_dir!r}, listen={self.listen!r}, "
            f"token={token}, store={self.store_shown!r}, node={self.node!r}, "
            f"timezone={self.timezone!r}, shutdown_timeout={self.shutdown_timeout!r}, "
            f"keep_jobs={self.keep_jobs!r}, worker_max_jobs={self.worker_max_jobs!r}, "
            f"node_timeout={self.node_timeout!r}, history={self.history!r})"
        )


class _RawDaemon(msgspec.Struct, forbid_unknown_fields=True):
    state_dir: str = DEFAULT_STATE_DIR
    listen: str | None = None
    token: str | None = None
    store: str = "sqlite"
    node: str | None = None
    timezone: str | None = None
    shutdown_timeout: Duration = 30.0
    keep_jobs: Duration = "7d"
    worker_max_jobs: int = 10000
    node_timeout: Duration = "30s"
    history: bool = True


_DAEMON_EXPECTED: dict[str, str] = {
    "state_dir": "a path string",
    "listen": 'an address like "127.0.0.1:9100", "[::1]:9100" or ":9100"',
    "token": 'a token string, "env:NAME" or "file:PATH"',
    "store": '"sqlite" or a "postgresql://…" URL',
    "node": "a node name string",
    "timezone": 'a time zone name like "Europe/Paris" or "UTC"',
    "shutdown_timeout": DURATION,
    "keep_jobs": DURATION + " (how long finished jobs are kept)",
    "worker_max_jobs": "a whole number, 1 or more (jobs a Python worker runs before it is replaced)",
    "node_timeout": DURATION + " (a node silent this long is taken for dead: others re-queue its jobs)",
    "history": "true or false (keep the figures of the last day for the dashboard's charts)",
}


MIN_TOKEN = 16  # characters of a token that guards a listen address other machines can reach


def build_daemon(raw: dict[str, Any], where: Where, directory: str) -> DaemonConfig:
    check_keys(raw, where, _DAEMON_EXPECTED)
    parsed = convert(raw, _RawDaemon, where, _DAEMON_EXPECTED)
    listen = _parse_listen(parsed.listen, where) if parsed.listen is not None else None
    token = resolve_token(parsed.token, where, directory) if parsed.token is not None else None
    if listen is not None and token is None and not _is_loopback(_split_listen(listen)[0]):
        raise where.error(
            "listen",
            f"{show(listen)} is reachable from other machines, so a token is required: "
            'set [daemon] token (e.g. token = "env:STOKER_TOKEN") or listen on 127.0.0.1',
            "a loopback address, or a token",
        )
    # Off loopback a token is guessed from anywhere, at network speed.
    if (
        listen is not None
        and token is not None
        and len(token) < MIN_TOKEN
        and not _is_loopback(_split_listen(listen)[0])
    ):
        count = f"{len(token)} character{'s are' if len(token) > 1 else ' is'}"
        raise where.error(
            "token",
            f"{count} too few to guard {show(listen)}, which other machines can reach: use at "
            f"least {MIN_TOKEN} (`openssl rand -hex 16` makes one of 32)",
            f"a token of at least {MIN_TOKEN} characters",
        )
    return DaemonConfig(
        state_dir=resolve_path(parsed.state_dir, where, "state_dir", directory),
        listen=listen,
        token=token,
        store=_check_store(parsed.store, where),
        node=_check_node(parsed.node, where),
        timezone=check_timezone(parsed.timezone, where),
        shutdown_timeout=check_duration(parsed.shutdown_timeout, where, "shutdown_timeout"),
        keep_jobs=check_duration(parsed.keep_jobs, where, "keep_jobs"),
        worker_max_jobs=_positive(parsed.worker_max_jobs, where, "worker_max_jobs", _DAEMON_EXPECTED),
        node_timeout=_node_timeout(parsed.node_timeout, where),
        history=parsed.history,
    )


def _node_timeout(value: float | str, where: Where) -> float:
    seconds = check_duration(value, where, "node_timeout")
    if seconds < 1:  # heartbeats go every third of it: below a second a busy node would seem dead
        raise where.bad("node_timeout", "a duration of 1s or more", value)
    return seconds


def _positive(value: int, where: Where, key: str, expected: Mapping[str, str]) -> int:
    if value < 1:
        raise where.bad(key, expected[key], value)
    return value


def _split_listen(listen: str) -> tuple[str, int]:
    """``"[::1]:9100"`` → ``("::1", 9100)``; ``":9100"`` → ``("127.0.0.1", 9100)``.
    Only for strings already accepted by :func:`_parse_listen`."""
    host, _, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") else host
    return host or "127.0.0.1", int(port)


_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _parse_listen(value: str, where: Where) -> str:
    expected = _DAEMON_EXPECTED["listen"]
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise where.bad("listen", expected + " (port 1-65535)", value)
    if host.startswith("[") and host.endswith("]"):
        if not _is_ip(host[1:-1], version=6):
            raise where.bad("listen", expected + " (bad IPv6 address)", value)
        return f"{host}:{int(port)}"
    if ":" in host:
        raise where.bad("listen", "an IPv6 address in brackets, like [::1]:9100", value)
    host = host or "127.0.0.1"
    if not (_is_ip(host, version=4) or (host.isascii() and _HOSTNAME.fullmatch(host))):
        raise where.bad("listen", expected + " (bad host)", value)
    return f"{host}:{int(port)}"


def _is_ip(text: str, *, version: int) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return address.version == version


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_store(value: str, where: Where) -> str:
    if value == "sqlite" or value.startswith(("postgresql://", "postgres://")):
        return value
    raise where.bad("store", _DAEMON_EXPECTED["store"], value)


def _without_password(url: str) -> str:
    """A postgresql:// URL with its password (user:PASSWORD@ or ?password=) as `***`."""
    if "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:***@{host}"
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", f"{scheme}://{authority}{slash}{tail}")


def _check_node(value: str | None, where: Where) -> str:
    if value is None:
        return socket.gethostname()
    if not value.strip() or not value.isprintable():
        raise where.bad("node", "a non-empty printable node name", value)
    return value


def check_timezone(value: str | None, where: Where) -> str | None:
    if value is None:
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise where.bad("timezone", _DAEMON_EXPECTED["timezone"], value) from None
    return value
