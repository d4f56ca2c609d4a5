"""The sd_notify protocol, both ways.

Programs tell stoker they are ready (`ready = "notify"`) or alive (`watchdog = "30s"`) the way
they would tell systemd: datagrams like ``READY=1\\nSTATUS=warming up`` on the unix socket named
by $NOTIFY_SOCKET. The same libraries work unchanged (libsystemd's sd_notify, python-sdnotify,
`systemd-notify` from a shell script when run with --pid, PHP's or Go's ports).

And stoker itself, run by systemd with `Type=notify` (`stoker systemd` prints such a unit),
tells systemd the same things about itself.

Who sent a datagram is taken from the kernel (SO_PASSCRED), never from its content: a process
can only speak for the program instance it belongs to.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Callable

log = logging.getLogger("stoker")

ENV_NAMES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
"""What systemd sets for a notify service; never passed on to what stoker starts."""

_MAX_DATAGRAM = 4096
_UCRED = struct.Struct("3i")  # pid, uid, gid
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


def parse(datagram: bytes) -> dict[str, str]:
    """``b"READY=1\\nSTATUS=up"`` → ``{"READY": "1", "STATUS": "up"}`` (lines without "="
    are ignored, as systemd does; the last of a repeated name wins)."""
    fields: dict[str, str] = {}
    for line in datagram.decode("utf-8", "replace").split("\n"):
        name, sep, value = line.partition("=")
        if sep and name:
            fields[name] = value
    return fields


def address_for(state_dir: str) -> str:
    """Where the notify socket of the daemon of `state_dir` lives: a file in the state dir
    when its path fits in a unix socket address, else a Linux abstract name ("@…")."""
    path = os.path.join(os.path.abspath(state_dir), "notify.sock")
    if len(path.encode()) <= _SUN_PATH_MAX:
        return path
    return f"@stoker-notify-{os.getpid()}"


def _sockaddr(address: str) -> str | bytes:
    # "@name" is the abstract namespace: a leading NUL byte on the wire.
    return b"\0" + address[1:].encode() if address.startswith("@") else address


class Listener:
    """The daemon's notify socket: calls `on_message(sender_pid, fields)` for each datagram."""

    def __init__(self, address: str, on_message: Callable[[int, dict[str, str]], None]) -> None:
        self.address = address
        self._on_message = on_message
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if not address.startswith("@"):
            try:
                os.unlink(address)  # left by a daemon that died; the state dir lock is ours
            except FileNotFoundError:
                pass
        self._sock.bind(_sockaddr(address))
        if not address.startswith("@"):
            # Programs may run as other users (`user = …`); who may speak is checked per
            # datagram from its credentials, so the socket itself can be open to all.
            os.chmod(address, 0o666)
        self._sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._read)

    def _read(self) -> None:
        for _ in range(64):  # bounded per wake-up, so a flood cannot starve the loop
            try:
                data, ancillary, _flags, _addr = self._sock.recvmsg(
                    _MAX_DATAGRAM, socket.CMSG_SPACE(_UCRED.size)
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # pragma: no cover - a socket error is not the sender's data
                log.warning("notify socket: %s", e)
                return
            pid = _sender(ancillary)
            if pid is None:
                continue
            try:
                self._on_message(pid, parse(data))
            except Exception:  # pragma: no cover - a bug here must not kill the reader
                log.exception("notify socket: handling a message from pid %d", pid)

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        if not self.address.startswith("@"):
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass


def _sender(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED.size:
            pid, _uid, _gid = _UCRED.unpack_from(data)
            return pid
    return None


# stoker's own notifications to systemd ---------------------------------------------------------

_systemd_address: str | None = None


def take_from_environment() -> None:
    """Remember $NOTIFY_SOCKET (set by systemd for stoker itself) and clear the variables, so
    that nothing stoker starts can speak to systemd in stoker's name."""
    global _systemd_address
    _systemd_address = os.environ.get("NOTIFY_SOCKET") or None
    for name in ENV_NAMES:
        os.environ.pop(name, None)


def tell_systemd(**fields: str | int) -> bool:
    """Send ``READY=1`` etc. to systemd when it started stoker as a notify service; False when
    it did not (or the socket is gone: systemd only listens while the service is up)."""
    if _systemd_address is None:
        return False
    message = "\n".join(f"{name}={value}" for name, value in fields.items()).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(message, _sockaddr(_systemd_address))
        except OSError as e:
            log.warning("could not notify systemd at %s: %s", _systemd_address, e)
            return False
    return True
