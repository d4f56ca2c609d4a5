"""Files on disk: what the daemon makes in its state dir is its own (docs/security.md)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Stoker, free_port, kill_marked, wait_for
from hypothesis import given
from hypothesis import strategies as st

from stoker import sdnotify

PY = sys.executable


def modes(state_dir: Path) -> dict[str, int]:
    """Every path under the state dir (relative) and its permission bits."""
    found = {}
    for top, dirs, files in os.walk(state_dir):
        for name in dirs + files:
            path = Path(top) / name
            found[str(path.relative_to(state_dir))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(state_dir: Path) -> dict[str, int]:
    """Directories 0700 (but `logs/jobs`, 0711: a worker running as a task's user opens its own
    output files there through a descriptor, see docs/security.md), everything else (files,
    sockets) 0600: all of them, so that a new kind of file cannot slip through."""
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    found = modes(state_dir)
    wrong = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != ((0o711 if name == "logs/jobs" else 0o700) if (state_dir / name).is_dir() else 0o600)
    }
    assert not wrong, f"not private: {wrong}"
    return found


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_every_file_the_daemon_makes_is_private_whatever_the_umask(stoker: Stoker, umask: int) -> None:
    (stoker.root / "chatty.py").write_text(
        "import sys, time\n"
        "for _ in range(3):\n"
        "    print('x' * 999, flush=True)\n"
        "print('e', file=sys.stderr, flush=True)\n"
        "time.sleep(1000)\n"
    )
    stoker.write(
        f"""
        [programs.chatty]
        command = ["{PY}", "chatty.py"]
        start_seconds = 0
        log = {{ max_size = "1KB", keep = 2, stderr = "separate" }}
        [programs.quiet]
        command = "sleep 1000"
        [tasks.hello]
        command = ["echo", "hello"]
        [schedules.tick]
        every = "1d"
        command = "true"
        """
    )
    stoker.up(preexec_fn=lambda: os.umask(umask))
    stoker.wait_state("chatty:0", "running")
    job = stoker.json("enqueue", "hello", "--wait")
    assert job["output"] == "hello\n"
    assert stoker.cli("stop", "quiet").returncode == 0  # stopped.json
    wait_for(lambda: (stoker.state_dir / "logs" / "chatty.0.log.2").exists(), what="the log to rotate")
    wait_for(lambda: (stoker.state_dir / "logs" / "chatty.0.err.log").exists(), what="the stderr log")
    found = assert_private(stoker.state_dir)
    for kind in (
        "stoker.sock",
        "notify.sock",
        "stoker.pid",
        "stoker.lock",
        "stoker.db",
        "stoker.db-wal",
        "stoker.db-shm",
        "stopped.json",
        "logs",
        "logs/chatty.0.log",
        "logs/chatty.0.log.1",
        "logs/chatty.0.err.log",
        "logs/jobs",
        f"logs/jobs/{job['id']}.log",
    ):
        assert kind in found, f"{kind} was not made: the test proves nothing about it ({sorted(found)})"
    assert stoker.terminate() == 0
    assert_private(stoker.state_dir)  # what a stopped daemon leaves (the database, the logs)


def test_detached_daemon_log_is_private_with_umask_0(stoker: Stoker) -> None:
    stoker.write('[programs.p]\ncommand = "sleep 1000"\n')
    up = subprocess.run(
        [PY, "-m", "stoker", "-c", str(stoker.config), "up", "-d"],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0),
    )
    try:
        assert up.returncode == 0, up.stderr
        assert (stoker.state_dir / "stoker.log").exists()
        assert_private(stoker.state_dir)
    finally:
        assert stoker.cli("down").returncode == 0
        assert not kill_marked(str(stoker.state_dir))


def test_an_existing_wide_state_dir_is_made_0700(stoker: Stoker) -> None:
    stoker.state_dir.mkdir(mode=0o755)
    os.chmod(stoker.state_dir, 0o755)  # whatever the test's umask
    for name in ("stoker.log", "stopped.json", "stoker.lock"):  # as an older stoker made them
        (stoker.state_dir / name).write_text("" if name != "stopped.json" else '{"stopped_by_hand": []}')
        os.chmod(stoker.state_dir / name, 0o644)
    stoker.write('[programs.p]\ncommand = "sleep 1000"\n')
    stoker.up()
    assert stat.S_IMODE(stoker.state_dir.stat().st_mode) == 0o700
    assert f"state dir {stoker.state_dir} was mode 0755, now 0700" in stoker.log_text()
    assert (
        f"made private (0600) in {stoker.state_dir}: stoker.lock, stoker.log, stopped.json"
        in stoker.log_text()
    )
    assert_private(stoker.state_dir)
    stoker.terminate()
    stoker.up()  # already private: nothing to say
    assert stoker.log_text().count("now 0700") == 1


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root (these tests run as root in CI)")


def precious(root: Path, name: str) -> Path:
    """A file of root's outside the state dir, which a planted link names."""
    target = root / f"precious-{name.replace('/', '-')}"
    target.write_text("precious\n")
    os.chmod(target, 0o644)
    return target


def refused(stoker: Stoker) -> str:
    """`stoker up` in the foreground, which must fail: what it said."""
    daemon = stoker.up(wait=False)
    assert daemon.wait(60) == 1, stoker.log_text()
    return stoker.log_text()


def test_a_state_dir_owned_by_someone_else_is_refused(stoker: Stoker) -> None:
    """Before, the daemon ran in it with a warning; `nobody` planted a link where the daemon
    log goes and the daemon, root, appended to the file it names."""
    need_root()
    nobody = pwd.getpwnam("nobody")
    stoker.state_dir.mkdir()
    os.chmod(stoker.state_dir, 0o755)
    os.chown(stoker.state_dir, nobody.pw_uid, nobody.pw_gid)
    planted = {name: precious(stoker.root, name) for name in ("stoker.lock", "stoker.pid", "logs")}
    for name, target in planted.items():
        (stoker.state_dir / name).symlink_to(target)
        os.lchown(stoker.state_dir / name, nobody.pw_uid, nobody.pw_gid)
    stoker.write('[programs.p]\ncommand = "sleep 1000"\n[tasks.t]\ncommand = "true"\n')
    said = refused(stoker)
    assert (
        f"stoker: state dir {stoker.state_dir} is owned by nobody (uid {nobody.pw_uid}), not by root,"
        " the user the daemon runs as: nobody could plant links in it for the daemon to follow"
    ) in said
    assert f"Give it to root (chown -R root {stoker.state_dir}) or set another [daemon] state_dir" in said
    assert all(target.read_text() == "precious\n" for target in planted.values())
    assert stat.S_IMODE(stoker.state_dir.stat().st_mode) == 0o755  # not ours to change

    # given to root as the message says: it starts, and tightens it
    subprocess.run(["chown", "-R", "root", str(stoker.state_dir)], check=True)
    for name in planted:
        (stoker.state_dir / name).unlink()
    stoker.up()
    assert stat.S_IMODE(stoker.state_dir.stat().st_mode) == 0o700


@pytest.mark.parametrize("folder", ["logs", "logs/jobs"])
def test_a_folder_in_the_state_dir_owned_by_someone_else_or_a_link_is_refused(
    stoker: Stoker, folder: str
) -> None:
    need_root()
    nobody = pwd.getpwnam("nobody")
    (stoker.state_dir / folder).mkdir(mode=0o700, parents=True)
    os.chown(stoker.state_dir / folder, nobody.pw_uid, nobody.pw_gid)
    stoker.write('[tasks.t]\ncommand = "true"\n')
    assert f"folder {stoker.state_dir / folder} is owned by nobody (uid {nobody.pw_uid})" in refused(stoker)
    os.rmdir(stoker.state_dir / folder)
    elsewhere = stoker.root / "elsewhere"
    elsewhere.mkdir()
    (stoker.state_dir / folder).symlink_to(elsewhere)
    said = refused(stoker)
    assert f"folder {stoker.state_dir / folder} is a symbolic link: the daemon follows none" in said
    assert list(elsewhere.iterdir()) == []


def test_links_planted_in_the_state_dir_are_not_followed(stoker: Stoker) -> None:
    """A link where a program's log, a job's output, the pidfile or stopped.json goes (planted
    while the dir was open to others, before a start made it 0700): the file it names is left
    alone."""
    logs = stoker.state_dir / "logs"
    (logs / "jobs").mkdir(mode=0o700, parents=True)
    os.chmod(stoker.state_dir, 0o777)  # as a careless admin left it, for a `user =` program
    links = ("logs/p.0.log", "logs/jobs/1.log", "logs/jobs/2.log", "stoker.pid", "stopped.json")
    planted = {name: precious(stoker.root, name) for name in links}
    for name, target in planted.items():
        (stoker.state_dir / name).symlink_to(target)
    stoker.write(
        """
        [programs.p]
        command = ["sh", "-c", "echo hello from p; exec sleep 1000"]
        start_seconds = 0
        [tasks.say]
        command = ["echo", "said"]
        [tasks.call]
        call = "json:dumps"
        """
    )
    stoker.up()
    assert stat.S_IMODE(stoker.state_dir.stat().st_mode) == 0o700
    stoker.wait_state("p:0", "running")
    wait_for(lambda: "a symbolic link is in its place, and is not followed" in stoker.log_text(),
             what="the log's complaint")  # fmt: skip
    shown = stoker.cli("logs", "p")  # read through the daemon: not through the link either
    assert shown.returncode == 0 and "precious" not in shown.stdout, shown
    command, call = (json.loads(stoker.cli("enqueue", *args, "--wait", "--json").stdout)
                     for args in (["say"], ["call", "obj:=1"]))  # fmt: skip
    assert (command["id"], call["id"]) == (1, 2)
    for job in (command, call):
        assert job["state"] == "failed", job
        assert job["error"] == (f"cannot open the job's output file {logs}/jobs/{job['id']}.log:"
                                " a symbolic link is in its place (not followed)"), job  # fmt: skip
    assert stoker.cli("stop", "p").returncode == 0  # stopped.json written
    assert stoker.json("enqueue", "say", "--wait")["output"] == "said\n"  # job 3: no link there
    assert stoker.terminate() == 0
    assert {name: target.read_text() for name, target in planted.items()} == dict.fromkeys(
        planted, "precious\n"
    )
    # the pidfile and stopped.json are written beside and renamed over: the links are gone
    assert not (stoker.state_dir / "stopped.json").is_symlink()
    assert "p:0" in (stoker.state_dir / "stopped.json").read_text()


@pytest.mark.parametrize("name", ["stoker.lock", "stoker.db", "stoker.db-wal", "token"])
def test_a_link_in_place_of_the_lock_database_or_token_refuses_the_start(stoker: Stoker, name: str) -> None:
    stoker.state_dir.mkdir(mode=0o700)
    target = precious(stoker.root, name)
    (stoker.state_dir / name).symlink_to(target)
    stoker.write(f'[daemon]\nlisten = "127.0.0.1:{free_port()}"\n[tasks.t]\ncommand = "true"\n')
    said = refused(stoker)
    assert "Too many levels of symbolic links" in said or "a symbolic link, not followed" in said, said
    assert str(stoker.state_dir / name) in said
    assert target.read_text() == "precious\n"


# the notify socket: exactly the programs' users may send -------------------------------------

NOTIFY = (
    "import os, socket, time\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
    "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
    "time.sleep(1000)\n"
)


@pytest.fixture
def open_stoker() -> Iterator[Stoker]:
    """A daemon in a dir that other users may reach (/tmp, 0755), unlike pytest's tmp_path."""
    root = Path(tempfile.mkdtemp(prefix="stoker-files-"))
    os.chmod(root, 0o755)
    s = Stoker(root)
    try:
        yield s
    finally:
        leftovers = s.cleanup()
        shutil.rmtree(root, ignore_errors=True)
        assert not leftovers, f"processes survived the daemon: {leftovers}"


def send_as(user: str, address: Path) -> str:
    """Send READY=1 to `address` as `user` (no supplementary groups): "sent" or the error."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "try:\n"
        f"    s.sendto(b'READY=1', {str(address)!r})\n"
        "except OSError as e:\n"
        "    sys.exit(type(e).__name__)\n"
        "print('sent')\n"
    )
    run = subprocess.run(
        ["/usr/bin/python3", "-c", code], user=user, group=pwd.getpwnam(user).pw_gid, extra_groups=[],
        capture_output=True, text=True, timeout=30, cwd="/",
    )  # fmt: skip
    return run.stdout.strip() or run.stderr.strip()


def test_programs_users_and_only_they_may_send_to_the_notify_socket(open_stoker: Stoker) -> None:
    if os.geteuid() != 0:
        pytest.skip("programs run as other users only under root")
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs /usr/bin/python3 (a python every user may run)")
    stoker = open_stoker
    nobody = pwd.getpwnam("nobody").pw_uid
    try:
        os.setxattr(stoker.root, sdnotify.ACL_XATTR, sdnotify.acl(0o7, {nobody}, 0o5))
    except OSError as e:
        pytest.skip(f"the filesystem of {stoker.root} takes no POSIX ACLs: {e.strerror}")
    sdnotify.drop_acl(stoker.root)
    os.chmod(stoker.root, 0o755)
    config = f"""
        [programs.dropped]
        command = ["/usr/bin/python3", "-c", {NOTIFY!r}]
        user = "nobody"
        start_seconds = 0
        ready = "notify"
        [programs.own]
        command = ["{PY}", "-c", {NOTIFY!r}]
        start_seconds = 0
        ready = "notify"
        """
    stoker.write(config)
    stoker.up()
    stoker.wait_state("dropped:0", "running")  # it could send READY=1
    stoker.wait_state("own:0", "running")
    address = stoker.state_dir / "notify.sock"
    assert sdnotify.acl_users(os.getxattr(address, sdnotify.ACL_XATTR)) == {nobody: 0o2}
    assert sdnotify.acl_users(os.getxattr(stoker.state_dir, sdnotify.ACL_XATTR)) == {nobody: 0o1}
    assert stat.S_IMODE(address.stat().st_mode) == 0o620  # the group bits show the ACL's mask
    assert send_as("nobody", address) == "sent"
    assert send_as("daemon", address) == "PermissionError"  # another user: not even the dir
    # nobody may reach the socket, nothing else: the dir cannot be listed, its files not read
    assert send_as("nobody", stoker.state_dir / "stoker.sock") == "PermissionError"

    # Without programs of other users, the grants go.
    stoker.write(config.replace('user = "nobody"\n', ""))
    assert stoker.cli("reload").returncode == 0
    wait_for(lambda: stat.S_IMODE(address.stat().st_mode) == 0o600, what="the socket to be 0600 again")
    assert_private(stoker.state_dir)
    for path in (address, stoker.state_dir):
        with pytest.raises(OSError):
            os.getxattr(path, sdnotify.ACL_XATTR)
    assert send_as("nobody", address) == "PermissionError"

    # Such a program again: granted again.
    stoker.write(config)
    assert stoker.cli("reload").returncode == 0
    assert send_as("nobody", address) == "sent"
    assert stoker.terminate() == 0
    assert_private(stoker.state_dir)  # a stopped daemon takes its grant back
    with pytest.raises(OSError):
        os.getxattr(stoker.state_dir, sdnotify.ACL_XATTR)
    stoker.up()
    stoker.wait_state("dropped:0", "running")
    assert send_as("nobody", address) == "sent"
    # killed, it could not: the next start drops the grant (not a state dir made too wide) and
    # grants afresh
    stoker.kill()
    assert sdnotify.acl_users(os.getxattr(stoker.state_dir, sdnotify.ACL_XATTR)) == {nobody: 0o1}
    stoker.up()
    stoker.wait_state("dropped:0", "running")
    assert send_as("nobody", stoker.state_dir / "notify.sock") == "sent"
    assert "now 0700" not in stoker.log_text()


@given(
    owner=st.integers(0, 7),
    users=st.sets(st.integers(0, 2**32 - 2), max_size=20),
    perm=st.integers(0, 7),
)
def test_acl_round_trip(owner: int, users: set[int], perm: int) -> None:
    data = sdnotify.acl(owner, users, perm)
    assert sdnotify.acl_users(data) == dict.fromkeys(users, perm)
    assert len(data) == 4 + 8 * (len(users) + 4)


def test_notify_socket_is_born_private(tmp_path: Path) -> None:
    """Bound under a umask of 0 it is still 0600, with no moment of being wider."""
    import asyncio

    async def bind() -> int:
        listener = sdnotify.Listener(str(tmp_path / "notify.sock"), lambda pid, fields: None)
        try:
            return stat.S_IMODE(os.stat(tmp_path / "notify.sock").st_mode)
        finally:
            listener.close()

    old = os.umask(0)
    try:
        assert asyncio.run(bind()) == 0o600
    finally:
        os.umask(old)


def test_a_link_in_place_of_the_detached_daemons_log_refuses_the_start(stoker: Stoker) -> None:
    stoker.state_dir.mkdir(mode=0o700)
    target = precious(stoker.root, "stoker.log")
    (stoker.state_dir / "stoker.log").symlink_to(target)
    stoker.write('[programs.p]\ncommand = "sleep 1000"\n')
    up = stoker.cli("up", "-d")
    assert up.returncode == 1
    assert (
        f"stoker: daemon failed to start: cannot open the daemon log {stoker.state_dir / 'stoker.log'}:"
        " Too many levels of symbolic links"
    ) in up.stderr
    assert "Traceback" not in up.stderr + up.stdout
    assert target.read_text() == "precious\n"


def fake_stat(kind: int, mode: int, uid: int) -> os.stat_result:
    return os.stat_result((kind | mode, 1, 1, 1, uid, uid, 0, 0, 0, 0))


@pytest.mark.parametrize("top", [True, False])
@pytest.mark.parametrize("kind", [stat.S_IFDIR, stat.S_IFLNK, stat.S_IFREG])
@pytest.mark.parametrize("uid", [0, 1000])
@pytest.mark.parametrize("mode", [0o700, 0o755, 0o777, 0o1777])
def test_foreign(top: bool, kind: int, uid: int, mode: int) -> None:
    """Only a folder of the daemon's own user passes, whatever its mode (a wide one of ours is
    made 0700, not refused)."""
    from stoker.daemon.main import foreign

    reason = foreign(Path("/srv/x"), fake_stat(kind, mode, uid), 0, top=top)
    if kind == stat.S_IFDIR and uid == 0:
        assert reason is None
        return
    assert reason is not None
    assert reason.startswith("state dir /srv/x " if top else "folder /srv/x ")
    if kind == stat.S_IFLNK:
        assert "is a symbolic link" in reason
    elif kind == stat.S_IFREG:
        assert "is not a folder" in reason
    else:
        assert f"(uid {uid}), not by root" in reason
