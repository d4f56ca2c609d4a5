"""Containment in cgroup v2 (stoker.supervise.cgroups): a descendant that calls setsid() leaves
its program's process group, not its cgroup, and dies with its program or job.

The daemon tests need a writable cgroup v2 with cgroup.kill (Linux 5.14): a property of the
machine, not a missing tool, so they skip plainly without one (CI runs as root on a machine
that has it)."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import Stoker, marked_pids, pid_alive, wait_for
from hypothesis import given
from hypothesis import strategies as st
from test_metrics import scrape

from stoker.supervise import cgroups

HYBRID = """\
25 31 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
41 25 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
42 25 0:39 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
"""
PURE = "33 24 0:28 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n"


# the pure core ----------------------------------------------------------------------------


def test_v2_mount_found_in_a_hybrid_and_a_pure_layout() -> None:
    assert cgroups.v2_mount(HYBRID) == ("/sys/fs/cgroup/unified", "/")
    assert cgroups.v2_mount(PURE) == ("/sys/fs/cgroup", "/")
    assert cgroups.v2_mount(HYBRID.splitlines()[2]) is None  # v1 only
    assert cgroups.v2_mount("") is None
    # optional fields before the separator, and an escaped space in the mount point
    line = r"50 1 0:40 /sub /mnt/my\040cg rw shared:1 master:2 - cgroup2 none rw"
    assert cgroups.v2_mount(line) == ("/mnt/my cg", "/sub")


def test_own_path_is_the_unified_line() -> None:
    assert (
        cgroups.own_path("4:memory:/x\n0::/system.slice/stoker.service\n") == "/system.slice/stoker.service"
    )
    assert cgroups.own_path("0::/\n") == "/"
    assert cgroups.own_path("4:memory:/x\n1:name=systemd:/\n") is None  # v1 only
    assert cgroups.own_path("0::/gone (deleted)\n") is None


def test_locate_joins_the_mount_and_our_path() -> None:
    assert cgroups.locate(HYBRID, "0::/\n") == "/sys/fs/cgroup/unified"
    assert cgroups.locate(PURE, "0::/system.slice/a.service\n") == "/sys/fs/cgroup/system.slice/a.service"
    # a mount of a subtree (a container's view): our path is below its root
    sub = "50 1 0:40 /lxc/c1 /sys/fs/cgroup rw - cgroup2 none rw\n"
    assert cgroups.locate(sub, "0::/lxc/c1/init.scope\n") == "/sys/fs/cgroup/init.scope"
    assert cgroups.locate(sub, "0::/lxc/c1\n") == "/sys/fs/cgroup"
    assert cgroups.locate(sub, "0::/lxc/c10\n") is None  # not below it (only a prefix)
    assert cgroups.locate("", "0::/\n") is None
    assert cgroups.locate(PURE, "1:cpu:/\n") is None


@given(st.text(min_size=1), st.text(min_size=1))
def test_tree_names_differ_per_state_dir_and_are_valid_names(a: str, b: str) -> None:
    a, b = "/" + a.replace("\0", ""), "/" + b.replace("\0", "")
    name = cgroups.tree_name(a)
    assert name == cgroups.tree_name(a) and name.startswith("stoker-")
    assert "/" not in name and len(name) < 64
    if os.path.abspath(a) != os.path.abspath(b):
        assert name != cgroups.tree_name(b)


# the machine ------------------------------------------------------------------------------


def _home() -> str | None:
    """Our own cgroup v2 directory, if we may make cgroups with cgroup.kill under it."""
    with open("/proc/self/mountinfo") as f, open("/proc/self/cgroup") as g:
        home = cgroups.locate(f.read(), g.read())
    if home is None:
        return None
    probe = os.path.join(home, f"stoker-test-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(probe)
    except OSError:
        return None
    try:
        return home if os.path.exists(os.path.join(probe, "cgroup.kill")) else None
    finally:
        os.rmdir(probe)


HOME = _home() if os.path.exists("/proc/self/cgroup") else None


def need_cgroups() -> str:
    # A plain skip even under STOKER_TEST_REQUIRE_ALL: this is the machine (its kernel and
    # cgroup mounts), not a tool that could be installed.
    if HOME is None:
        pytest.skip("no writable cgroup v2 with cgroup.kill (Linux 5.14) on this machine")
    return HOME


def tree_of(stoker: Stoker) -> str:
    return os.path.join(need_cgroups(), cgroups.tree_name(str(stoker.state_dir)))


SETSID_PROGRAM = "setsid sleep 1000 & echo $! > {pidfile}; exec sleep 1000"


def escaped_pid(pidfile: Path) -> int:
    """The pid of the setsid'd sleep, once it has left the process group."""

    def read() -> int | None:
        try:
            pid = int(pidfile.read_text())
        except (OSError, ValueError):
            return None
        try:
            return pid if os.getsid(pid) == pid and pid_alive(pid) else None
        except ProcessLookupError:
            return None

    pid = wait_for(read, what="the setsid'd child")
    assert isinstance(pid, int)
    return pid


# programs ---------------------------------------------------------------------------------


def test_a_stop_kills_a_child_that_left_the_process_group(stoker: Stoker, tmp_path: Path) -> None:
    tree = tree_of(stoker)
    pidfile = tmp_path / "escaped"
    stoker.write(
        f"""
        [programs.leaver]
        command = ["sh", "-c", "{SETSID_PROGRAM.format(pidfile=pidfile)}"]
        start_seconds = "100ms"
        """
    )
    stoker.up()
    row = stoker.wait_state("leaver:0", "running")
    escaped = escaped_pid(pidfile)
    assert "cgroups: each program instance and job in its own, under " + tree in stoker.log_text()
    assert os.getpgid(escaped) != row["pid"]  # out of the group: only the cgroup holds it
    procs = Path(tree, "program-leaver-0", "cgroup.procs").read_text().split()
    assert str(escaped) in procs and str(row["pid"]) in procs
    assert stoker.json("stop", "leaver")[0]["state"] == "stopped"
    wait_for(lambda: not pid_alive(escaped), 5, "the setsid'd child to die with its program")
    stoker.terminate()
    assert not os.path.exists(tree), "the daemon's cgroups outlived it"


def test_a_child_that_left_the_group_dies_when_its_program_exits(stoker: Stoker, tmp_path: Path) -> None:
    need_cgroups()
    pidfile = tmp_path / "escaped"
    stoker.write(
        f"""
        [programs.leaver]
        command = ["sh", "-c", "setsid sleep 1000 & echo $! > {pidfile}; sleep 0.3; exit 3"]
        start_seconds = "100ms"
        restart = "never"
        """
    )
    stoker.up()
    escaped = escaped_pid(pidfile)
    stoker.wait_state("leaver:0", "exited")
    wait_for(lambda: not pid_alive(escaped), 5, "the setsid'd child to die with its program's exit")


def test_an_earlier_daemons_cgroups_are_killed_and_removed(stoker: Stoker) -> None:
    tree = tree_of(stoker)
    stoker.write("")
    left = os.path.join(tree, "program-old-0")
    os.makedirs(left)
    # a process no environment marks (kill_orphans cannot find it): only its cgroup says whose
    with cgroups.born_in(left, need_cgroups()):
        orphan = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        assert str(orphan.pid) in Path(left, "cgroup.procs").read_text().split()
        stoker.up()
        assert orphan.wait(10) == -signal.SIGKILL
        assert not os.path.exists(left)
        stoker.terminate()
        assert not os.path.exists(tree)
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
        cgroups.kill_and_remove(tree)


def test_without_cgroups_a_setsid_child_outlives_its_program(
    stoker: Stoker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The documented limit of process groups alone (STOKER_CGROUPS=off, or no cgroup v2): the
    # next daemon's orphan sweep (by STOKER_SUPERVISOR) is what ends such a child.
    monkeypatch.setenv(cgroups.SWITCH, "off")
    pidfile = tmp_path / "escaped"
    stoker.write(
        f"""
        [programs.leaver]
        command = ["sh", "-c", "{SETSID_PROGRAM.format(pidfile=pidfile)}"]
        start_seconds = "100ms"
        """
    )
    stoker.up()
    stoker.wait_state("leaver:0", "running")
    escaped = escaped_pid(pidfile)
    try:
        assert "cgroups: off" in stoker.log_text()
        if HOME is not None:
            assert not os.path.exists(os.path.join(HOME, cgroups.tree_name(str(stoker.state_dir))))
        assert stoker.json("stop", "leaver")[0]["state"] == "stopped"
        assert pid_alive(escaped)
        assert marked_pids(str(stoker.state_dir)) == [escaped]
        stoker.terminate()
        stoker.up()  # the next daemon finds it by its marker
        wait_for(lambda: not pid_alive(escaped), 5, "the orphan sweep to kill it")
    finally:
        if pid_alive(escaped):
            os.kill(escaped, signal.SIGKILL)


# command jobs -----------------------------------------------------------------------------


def test_a_cancelled_jobs_setsid_child_dies(stoker: Stoker, tmp_path: Path) -> None:
    need_cgroups()
    pidfile = tmp_path / "escaped"
    stoker.write(
        f"""
        [tasks.leaver]
        command = ["sh", "-c", "{SETSID_PROGRAM.format(pidfile=pidfile)}"]
        """
    )
    stoker.up()
    job = stoker.client.enqueue("leaver")
    escaped = escaped_pid(pidfile)
    stoker.client.cancel(job.id)
    wait_for(lambda: stoker.client.job(job.id).state == "cancelled", what="the job to be cancelled")
    wait_for(lambda: not pid_alive(escaped), 5, "the cancelled job's setsid'd child to die")


def test_an_ended_jobs_setsid_child_dies(stoker: Stoker, tmp_path: Path) -> None:
    need_cgroups()
    pidfile = tmp_path / "escaped"
    stoker.write(
        f"""
        [tasks.leaver]
        command = ["sh", "-c", "setsid sleep 1000 & echo $! > {pidfile}; sleep 0.3"]
        """
    )
    stoker.up()
    job = stoker.client.enqueue("leaver")
    escaped = escaped_pid(pidfile)
    wait_for(lambda: stoker.client.job(job.id).state == "succeeded", what="the job to succeed")
    wait_for(lambda: not pid_alive(escaped), 5, "the ended job's setsid'd child to die")


def test_a_job_dropped_to_another_user_places_its_command_too(stoker: Stoker, tmp_path: Path) -> None:
    # The worker runs as the task's user: the daemon gives it its cgroup's procs files, so that
    # it can step into its `job` cgroup for the spawn and back.
    need_cgroups()
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root")
    import pwd
    import sys

    nobody = pwd.getpwnam("nobody")
    try:
        runs = subprocess.run([sys.executable, "-c", "pass"], user=nobody.pw_uid, group=nobody.pw_gid)
    except PermissionError:
        runs = None
    if runs is None or runs.returncode != 0:  # (a Python installed under root's 0700 home, say)
        pytest.skip(f"{sys.executable} cannot be run by nobody on this machine")
    tmp_path.chmod(0o777)
    stoker.root.chmod(0o755)
    pidfile = tmp_path / "escaped"
    stoker.write(
        f"""
        [tasks.leaver]
        command = ["sh", "-c", "{SETSID_PROGRAM.format(pidfile=pidfile)}"]
        user = "nobody"
        """
    )
    stoker.up()
    job = stoker.client.enqueue("leaver")
    escaped = escaped_pid(pidfile)
    assert os.stat(f"/proc/{escaped}").st_uid != 0
    stoker.client.cancel(job.id)
    wait_for(lambda: not pid_alive(escaped), 5, "the cancelled job's setsid'd child to die")


# the IO shell -----------------------------------------------------------------------------


def test_born_in_places_the_child_before_it_can_fork() -> None:
    home = need_cgroups()
    tree = cgroups.Tree(home, os.path.join(home, f"stoker-test-{uuid.uuid4().hex[:8]}"))
    os.makedirs(tree.root)
    try:
        cgroup = tree.cgroup("program-x-0")
        before = Path("/proc/self/cgroup").read_text()
        with cgroups.born_in(cgroup, home):
            # forks at once, before the spawner could have moved it after the fact
            child = subprocess.Popen(["sh", "-c", "setsid sleep 1000 & sleep 1000"], start_new_session=True)
        assert Path("/proc/self/cgroup").read_text() == before  # back home
        wait_for(lambda: len(Path(cgroup, "cgroup.procs").read_text().split()) == 3, what="three processes")
        assert cgroups.populated(cgroup)
        assert not cgroups.remove(cgroup)  # busy
        assert cgroups.kill_and_remove(cgroup)
        assert child.wait(5) == -signal.SIGKILL
        assert not os.path.exists(cgroup) and not cgroups.populated(cgroup)
        assert cgroups.remove(cgroup)  # gone already: nothing to do
    finally:
        tree.close()
    assert not os.path.exists(tree.root)


def test_max_memory_counts_a_child_that_left_the_group(stoker: Stoker, tmp_path: Path) -> None:
    # The process group's RSS misses a setsid'd child; its cgroup holds it.
    import sys

    need_cgroups()
    pidfile = tmp_path / "escaped"
    (tmp_path / "hog.py").write_text(
        "import time\nheap = b'x' * (200 * 1024 * 1024)\nprint('hogging', flush=True)\ntime.sleep(1000)\n"
    )
    stoker.write(
        f"""
        [programs.leaver]
        command = ["sh", "-c", "setsid {sys.executable} hog.py & echo $! > {pidfile}; exec sleep 1000"]
        start_seconds = 0
        max_memory = "100MB"
        """
    )
    stoker.up()
    first = stoker.wait_state("leaver:0", "running")
    escaped = escaped_pid(pidfile)
    wait_for(
        lambda: stoker.programs()["leaver:0"]["pid"] not in (None, first["pid"]),
        timeout=30,
        what="the program to be restarted for its setsid'd child's memory",
    )
    assert "over max_memory 100MB: restarting it" in stoker.log_text()
    wait_for(lambda: not pid_alive(escaped), 5, "the hog to die with the restart")


def test_status_and_metrics_count_a_child_that_left_the_group(
    stoker: Stoker, tmp_path: Path, unused_tcp_port: int
) -> None:
    # What `stoker status` shows is what max_memory measures: the cgroup's memory, a setsid'd
    # child's 200 MB included (its process group's RSS would be a few MB of sleep).
    import sys

    need_cgroups()
    pidfile = tmp_path / "escaped"
    (tmp_path / "hog.py").write_text(
        "import time\nheap = b'x' * (200 * 1024 * 1024)\nprint('hogging', flush=True)\ntime.sleep(1000)\n"
    )
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{unused_tcp_port}"
        token = "t0ken"

        [programs.leaver]
        command = ["sh", "-c", "setsid {sys.executable} hog.py & echo $! > {pidfile}; exec sleep 1000"]
        start_seconds = 0
        """
    )
    stoker.up()
    stoker.wait_state("leaver:0", "running")
    escaped_pid(pidfile)

    def memory() -> int | None:
        shown = stoker.programs()["leaver:0"]["memory"]
        return shown if shown is not None and shown > 200 * 1024 * 1024 else None

    wait_for(memory, timeout=30, what="status to count the setsid'd child's 200 MB")
    samples = scrape(unused_tcp_port)
    assert (
        samples[("stoker_program_memory_bytes", (("instance", "0"), ("program", "leaver")))]
        > 200 * 1024 * 1024
    )


def test_the_stop_signal_reaches_a_child_that_left_the_group(stoker: Stoker, tmp_path: Path) -> None:
    # A graceful stop for it too (as systemd's control-group kill mode): the main process waits
    # for the child's word before it exits, and would be SIGKILLed at stop_timeout without it.
    import sys

    need_cgroups()
    pidfile, said = tmp_path / "escaped", tmp_path / "said"
    (tmp_path / "child.py").write_text(
        "import os, signal, sys, time\n"
        f"def bye(*_):\n    open({str(said)!r}, 'w').write('bye')\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"  # (ready for the stop)
        "time.sleep(1000)\n"
    )
    (tmp_path / "main.sh").write_text(
        f"trap 'while [ ! -s {said} ]; do sleep 0.05; done; exit 0' TERM\n"
        f"setsid {sys.executable} child.py &\n"
        "sleep 1000 & wait\n"
    )
    stoker.write(
        """
        [programs.leaver]
        command = ["sh", "main.sh"]
        start_seconds = "100ms"
        stop_timeout = "5s"
        """
    )
    stoker.up()
    stoker.wait_state("leaver:0", "running")
    escaped = escaped_pid(pidfile)
    assert stoker.json("stop", "leaver")[0]["state"] == "stopped"
    assert said.read_text() == "bye"
    assert "sending SIGKILL" not in stoker.log_text()
    wait_for(lambda: not pid_alive(escaped), 5, "the child to be gone")


def _read_only_cgroups() -> None:
    """In the daemon's child before exec: a mount namespace of its own in which the cgroup2
    mount is read-only (a bind remount: the mount, not the hierarchy, so no one else sees it)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    clone_newns, ms_rec, ms_private, ms_remount, ms_bind, ms_rdonly = (
        0x20000,
        0x4000,
        0x40000,
        0x20,
        0x1000,
        0x1,
    )
    if libc.unshare(clone_newns) != 0:
        os._exit(120)
    if libc.mount(b"none", b"/", None, ms_rec | ms_private, None) != 0:
        os._exit(121)
    assert MOUNT is not None
    if libc.mount(None, MOUNT.encode(), None, ms_remount | ms_bind | ms_rdonly, None) != 0:
        os._exit(122)


MOUNT = None
if HOME is not None:
    with open("/proc/self/mountinfo") as _f:
        MOUNT = (cgroups.v2_mount(_f.read()) or (None,))[0]


def test_a_read_only_cgroup_tree_falls_back_to_process_groups(stoker: Stoker, tmp_path: Path) -> None:
    # The real condition, not the switch: the daemon may not write the cgroup tree.
    need_cgroups()
    if os.geteuid() != 0:
        pytest.skip("a mount namespace of its own needs root")
    pidfile = tmp_path / "escaped"
    stoker.write(
        f"""
        [programs.leaver]
        command = ["sh", "-c", "{SETSID_PROGRAM.format(pidfile=pidfile)}"]
        start_seconds = "100ms"
        """
    )
    stoker.up(preexec_fn=_read_only_cgroups)
    stoker.wait_state("leaver:0", "running")
    escaped = escaped_pid(pidfile)
    try:
        assert "cgroups: not used (" in stoker.log_text() and "Read-only file system" in stoker.log_text()
        assert not os.path.exists(tree_of(stoker))
        assert stoker.json("stop", "leaver")[0]["state"] == "stopped"
        assert pid_alive(escaped)  # the documented limit of process groups alone
    finally:
        os.kill(escaped, signal.SIGKILL)


def test_a_cancel_signals_a_jobs_child_that_left_the_group(stoker: Stoker, tmp_path: Path) -> None:
    # As for programs: the command waits for the child's word before it exits, and would be
    # SIGKILLed at stop_timeout without it.
    import sys

    need_cgroups()
    pidfile, said = tmp_path / "escaped", tmp_path / "said"
    (tmp_path / "child.py").write_text(
        "import os, signal, sys, time\n"
        f"def bye(*_):\n    open({str(said)!r}, 'w').write('bye')\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"  # (ready for the stop)
        "time.sleep(1000)\n"
    )
    (tmp_path / "main.sh").write_text(
        f"trap 'while [ ! -s {said} ]; do sleep 0.05; done; exit 0' TERM\n"
        f"setsid {sys.executable} child.py &\n"
        "sleep 1000 & wait\n"
    )
    stoker.write(
        """
        [tasks.leaver]
        command = ["sh", "main.sh"]
        stop_timeout = "5s"
        """
    )
    stoker.up()
    job = stoker.client.enqueue("leaver")
    escaped = escaped_pid(pidfile)
    stoker.client.cancel(job.id)
    wait_for(lambda: said.exists() and said.read_text() == "bye", what="the child's goodbye")
    wait_for(lambda: stoker.client.job(job.id).state == "cancelled", what="the job to be cancelled")
    wait_for(lambda: not pid_alive(escaped), 5, "the child to be gone")
