"""The sd_notify protocol, both ways.

Programs tell stoker they are ready (`ready = "notify"`) or alive (`watchdog = "30s"`) the way
they would tell systemd: datagrams like ``READY=1\\nSTATUS=warming up`` on the unix socket named
by $NOTIFY_SOCKET. The same libraries work unchanged (libsystemd's sd_notify, python-sdnotify,
`systemd-notify` from a shell script when run with --pid, PHP's or Go's ports).

And stoker itself, run by systemd with `Type=notify` (`stoker systemd` prints such a unit),
tells systemd the same things about itself.

Who sent a datagram is taken from the kernel (SO_PASSCRED), never from its content: a process
can only speak for the program instance it belongs to.

Who may send at all is the kernel's check too: a datagram to a socket file needs write permission
on it and search permission on every directory above it. The socket is 0600 in the 0700 state
dir, so only the daemon's user reaches it; programs that run as other users (`user = …`) are
granted exactly that, each by uid in a POSIX ACL: write on the socket, search on the state dir
(nothing else: they can neither list the dir nor open any file in it that is 0600).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import pwd
import socket
import struct
from collections.abc import Callable, Iterable

from stoker import names

log = logging.getLogger("stoker")

ENV_NAMES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
"""What systemd sets for a notify service; never passed on to what stoker starts."""

_MAX_DATAGRAM = 4096
_UCRED = struct.Struct("3i")  # pid, uid, gid
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux

# POSIX access ACLs as the kernel stores them in an xattr (linux/posix_acl_xattr.h)
ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = struct.Struct("<I")
_ACL_ENTRY = struct.Struct("<HHI")  # tag, permissions, id
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_NO_ID = 0xFFFFFFFF


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
    path = os.path.join(os.path.abspath(state_dir), names.NOTIFY_SOCKET)
    if len(path.encode()) <= _SUN_PATH_MAX:
        return path
    return f"@stoker-notify-{os.getpid()}"


def acl(owner: int, users: Iterable[int], perm: int) -> bytes:
    """An access ACL: the owner's `owner` bits, `perm` for each of `users` (by uid), nothing for
    the group and others. (The mask, which the mode's group bits then show, is `perm`.)"""
    entries = [(_USER_OBJ, owner, _NO_ID)]
    entries += [(_USER, perm, uid) for uid in sorted(set(users))]  # the kernel wants them sorted
    entries += [(_GROUP_OBJ, 0, _NO_ID), (_MASK, perm, _NO_ID), (_OTHER, 0, _NO_ID)]
    return _ACL_VERSION.pack(2) + b"".join(_ACL_ENTRY.pack(*entry) for entry in entries)


def acl_users(data: bytes) -> dict[int, int]:
    """The named users of an access ACL and their permissions (the inverse of `acl`'s)."""
    offsets = range(_ACL_VERSION.size, len(data), _ACL_ENTRY.size)
    entries = (_ACL_ENTRY.unpack_from(data, at) for at in offsets)
    return {uid: perm for tag, perm, uid in entries if tag == _USER}


def drop_acl(path: str | os.PathLike[str]) -> bool:
    """Remove an access ACL (leaving the mode's group bits at what its mask was); True if there
    was one. A filesystem without ACLs has none to drop."""
    try:
        os.getxattr(path, ACL_XATTR)  # (removing a missing one succeeds on ext4: no answer)
        os.removexattr(path, ACL_XATTR)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.EOPNOTSUPP, errno.ENOENT):
            return False
        raise
    return True


def users_of(names: Iterable[str | None]) -> set[int]:
    """The uids of these `user =` settings other than our own (unknown ones are left out: such a
    program fails to start and says why)."""
    uids = set()
    for name in names:
        if name is None:
            continue
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            if name.isdigit():
                uids.add(int(name))
    uids.discard(os.geteuid())
    return uids


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
        old = os.umask(0o177)  # born 0600: no window in which others could send
        try:
            self._sock.bind(_sockaddr(address))
        finally:
            os.umask(old)
        self._allowed: set[int] = set()
        self._sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._read)

    def allow(self, uids: set[int]) -> None:
        """Let exactly these users (besides ours) send: an ACL on the socket (write) and on its
        directory, the state dir (search). An abstract address has no file: anyone may send,
        and only the sender's credentials decide (as before any of this)."""
        if self.address.startswith("@") or uids == self._allowed:
            return
        directory = os.path.dirname(self.address)
        try:
            if uids:
                os.setxattr(directory, ACL_XATTR, acl(0o7, uids, 0o1))
                os.setxattr(self.address, ACL_XATTR, acl(0o6, uids, 0o2))
            else:
                for path, mode in ((self.address, 0o600), (directory, 0o700)):
                    drop_acl(path)
                    os.chmod(path, mode)
        except OSError as e:
            names = ", ".join(sorted(_user_name(uid) for uid in uids - self._allowed))
            log.warning(
                "notify socket %s: cannot let %s send (%s): their programs cannot use"
                " ready = \"notify\" or watchdog",
                self.address, names or "others", e.strerror,
            )  # fmt: skip
            return
        self._allowed = set(uids)

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
            if self._allowed:  # the state dir is the daemon's alone again
                with contextlib.suppress(OSError):
                    directory = os.path.dirname(self.address)
                    drop_acl(directory)
                    os.chmod(directory, 0o700)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


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
