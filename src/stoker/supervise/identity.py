"""Who a child runs as: the `user`/`group` of its program or task, resolved as systemd and
supervisord resolve them.

With `user`, the child gets that user's uid, the primary group from its passwd entry (unless
`group` names another), the supplementary groups initgroups(3) would give it (the groups of
/etc/group that list the user, plus the primary group) and none of the daemon's; and its
environment gets HOME, USER, LOGNAME and SHELL from the passwd entry (the config's own
`environment` may still set them). `group` alone changes the group and clears the daemon's
supplementary groups.

Only root can become someone else. A daemon that is not root runs its children as itself:
`user` naming that same user changes nothing; naming another user (or `group` another group)
is an error that says so (CannotDrop), where the kernel's EPERM from inside the fork would
have read as "permission denied: <the program>".

Looked up at every start, not once: a user added or changed since the daemon started is seen
the way a login would see it.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass


class CannotDrop(ValueError):
    """The daemon cannot run a child as the `user`/`group` asked for (it is not root)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """The credentials to give a child (None: the daemon's own, left as they are) and the
    variables its environment takes from the passwd entry of its user."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None  # supplementary groups (setgroups); None: unchanged
    variables: tuple[tuple[str, str], ...] = ()  # HOME, USER, LOGNAME, SHELL

    @property
    def environment(self) -> dict[str, str]:
        return dict(self.variables)


SAME = Identity()  # no user, no group: the daemon's own credentials and environment


def account_variables(entry: pwd.struct_passwd) -> tuple[tuple[str, str], ...]:
    """What a login sets from a passwd entry (login(1), systemd's User=)."""
    return (
        ("HOME", entry.pw_dir),
        ("USER", entry.pw_name),
        ("LOGNAME", entry.pw_name),
        ("SHELL", entry.pw_shell or "/bin/sh"),
    )


def own_account() -> tuple[tuple[str, str], ...]:
    """HOME, USER, LOGNAME, SHELL of the user the daemon runs as (nothing if it has no passwd
    entry, as in some containers)."""
    try:
        return account_variables(pwd.getpwuid(os.geteuid()))
    except KeyError:
        return ()


def resolve(user: str | None, group: str | None) -> Identity:
    """The identity of a child with this `user` and `group` (names as the config has them).

    Raises KeyError for an unknown user or group (pwd's and grp's own, which
    stoker.supervise.spawn.describe_spawn_error turns into "unknown user: NAME"), and
    CannotDrop when the daemon, not being root, would have to become someone else."""
    if user is None and group is None:
        return SAME
    entry = pwd.getpwnam(user) if user is not None else None
    gid = grp.getgrnam(group).gr_gid if group is not None else None
    if os.geteuid() != 0:
        return _unprivileged(entry, group, gid)
    if entry is None:  # `group` alone: root keeps its uid, takes the group and no other
        return Identity(gid=gid, groups=())
    if gid is None:
        gid = entry.pw_gid
    groups = tuple(os.getgrouplist(entry.pw_name, gid))  # what initgroups(name, gid) would set
    return Identity(uid=entry.pw_uid, gid=gid, groups=groups, variables=account_variables(entry))


def _unprivileged(entry: pwd.struct_passwd | None, group: str | None, gid: int | None) -> Identity:
    me = os.geteuid()
    try:
        who = pwd.getpwuid(me).pw_name
    except KeyError:
        who = f"uid {me}"
    if entry is not None and entry.pw_uid != me:
        raise CannotDrop(
            f"cannot run as user {entry.pw_name}: the daemon runs as {who}, and only root can change user"
        )
    if gid is not None and gid != os.getegid():
        raise CannotDrop(
            f"cannot run as group {group}: the daemon runs as {who} (group "
            f"{_group_name(os.getegid())}), and only root can change group"
        )
    return Identity(variables=account_variables(entry) if entry is not None else ())


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


__all__ = ["SAME", "CannotDrop", "Identity", "account_variables", "own_account", "resolve"]
