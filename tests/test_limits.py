"""Kernel-enforced limits of a program instance: `memory_max`, `cpu_weight`, `tasks_max`
(stoker.supervise.limits, the pure mapping; stoker.supervise.cgroups, where they are written).

Where cgroup v2 has a controller the limit goes in the instance's v2 cgroup; on a hybrid host,
whose controllers stay bound to v1 (this one's), in the v1 hierarchy of its controller. The
daemon tests look at the cgroups the program's process is in (/proc/PID/cgroup), as the kernel
holds it, and at what the limit does: a fork refused, an OOM kill. They need a writable cgroup
tree (a property of the machine, not a tool), so they skip plainly without one."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from conftest import Stoker, wait_for
from hypothesis import given
from hypothesis import strategies as st

from stoker.config import ConfigError, load_config
from stoker.supervise import cgroups
from stoker.supervise.limits import (
    MEMORY_FLOOR,
    NONE,
    SHARES_RANGE,
    WEIGHT_RANGE,
    Limits,
    oom_kills,
    shares,
    v1_files,
    v2_files,
)

# the pure mapping -------------------------------------------------------------------------

ALL = Limits(memory_max=64 << 20, cpu_weight=50, tasks_max=10)


def test_each_limit_needs_its_controller_and_nothing_else() -> None:
    assert NONE.controllers() == ()
    assert ALL.controllers() == ("memory", "cpu", "pids")
    assert Limits(tasks_max=1).controllers() == ("pids",)
    assert Limits(cpu_weight=1, memory_max=MEMORY_FLOOR).controllers() == ("memory", "cpu")


def test_the_files_of_each_controller_in_v2_and_in_v1() -> None:
    assert v2_files(ALL, "memory") == {"memory.max": str(64 << 20)}
    assert v2_files(ALL, "cpu") == {"cpu.weight": "50"}
    assert v2_files(ALL, "pids") == {"pids.max": "10"}
    assert v1_files(ALL, "memory") == {"memory.limit_in_bytes": str(64 << 20)}
    assert v1_files(ALL, "cpu") == {"cpu.shares": "512"}
    assert v1_files(ALL, "pids") == {"pids.max": "10"}
    for controller in ("memory", "cpu", "pids", "io", ""):
        assert v2_files(NONE, controller) == {} and v1_files(NONE, controller) == {}
    assert v2_files(ALL, "io") == {} and v1_files(ALL, "hugetlb") == {}


@given(st.integers(*WEIGHT_RANGE), st.integers(*WEIGHT_RANGE))
def test_shares_keep_the_order_of_weights_within_what_v1_takes(a: int, b: int) -> None:
    assert SHARES_RANGE[0] <= shares(a) <= SHARES_RANGE[1]
    if a <= b:
        assert shares(a) <= shares(b)


def test_shares_as_systemd_converts_them() -> None:
    assert shares(100) == 1024  # the default weight is v1's default share
    assert shares(1) == 10 and shares(10_000) == 102_400
    assert shares(WEIGHT_RANGE[0]) >= SHARES_RANGE[0]


def test_oom_kills_read_from_v2_events_and_v1_oom_control() -> None:
    v2 = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n"
    v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"
    assert oom_kills(v2) == 2 and oom_kills(v1) == 5
    assert oom_kills("oom_kill_disable 0\nunder_oom 0\n") == 0  # (a kernel before 4.13)
    assert oom_kills("") == 0 and oom_kills("oom_kill x\n") == 0


HYBRID = """\
41 25 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
42 25 0:39 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
43 25 0:40 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
44 25 0:41 /lxc/c1 /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
45 25 0:42 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
"""
PROC = "9:name=systemd:/\n8:pids:/lxc/c1/app\n4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/\n"


def test_v1_homes_of_a_hybrid_layout() -> None:
    assert cgroups.v1_homes(HYBRID, PROC) == {
        "memory": "/sys/fs/cgroup/memory/process_api/x",
        "cpu": "/sys/fs/cgroup/cpu,cpuacct",
        "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
        "pids": "/sys/fs/cgroup/pids/app",  # (mounted from /lxc/c1: the path below it)
        "name=systemd": "/sys/fs/cgroup/systemd",
    }
    outside = PROC.replace("8:pids:/lxc/c1/app", "8:pids:/lxc/c10")
    assert "pids" not in cgroups.v1_homes(HYBRID, outside)  # not below what is mounted here
    assert cgroups.v1_homes(HYBRID, "0::/\n") == {}  # pure v2: no v1 hierarchy
    assert cgroups.v1_homes("", PROC) == {}
    assert cgroups.v1_homes(HYBRID, "4:memory:/gone (deleted)\n") == {}


def test_the_config_keys(tmp_path: Path) -> None:
    def program(lines: str) -> Limits:
        path = tmp_path / "stoker.toml"
        path.write_text(f'[programs.p]\ncommand = "sleep 1"\n{lines}\n')
        return load_config(path).programs["p"].limits()

    assert program("") == NONE
    assert program('memory_max = "64MB"\ncpu_weight = 50\ntasks_max = 10') == ALL
    assert program(f"memory_max = {MEMORY_FLOOR}").memory_max == MEMORY_FLOOR
    for bad, said in [
        ('memory_max = "1MB"', "memory_max: expected a size"),
        ('memory_max = "lots"', "memory_max"),
        ("cpu_weight = 0", "cpu_weight: expected a whole number from 1 to 10000"),
        ("cpu_weight = 10001", "cpu_weight: expected a whole number from 1 to 10000"),
        ('cpu_weight = "high"', "cpu_weight"),
        ("tasks_max = 0", "tasks_max: expected a whole number, 1 or more"),
    ]:
        with pytest.raises(ConfigError) as error:
            program(bad)
        assert said in str(error.value) and "programs.p" in str(error.value), str(error.value)


# the daemon ----------------------------------------------------------------------------------


def _tree_available() -> bool:
    try:
        with open("/proc/self/mountinfo") as f, open("/proc/self/cgroup") as g:
            mountinfo, proc = f.read(), g.read()
    except OSError:
        return False
    home = cgroups.locate(mountinfo, proc)
    return (
        home is not None and os.access(home, os.W_OK) and os.path.exists(os.path.join(home, "cgroup.procs"))
    )


def need_controller(controller: str) -> None:
    # A plain skip even under STOKER_TEST_REQUIRE_ALL: the machine's cgroup layout, not a tool.
    with open("/proc/self/mountinfo") as f, open("/proc/self/cgroup") as g:
        mountinfo, proc = f.read(), g.read()
    home = cgroups.locate(mountinfo, proc)
    v2 = home is not None and controller in Path(home, "cgroup.controllers").read_text().split()
    v1 = cgroups.v1_homes(mountinfo, proc).get(controller)
    if not _tree_available() or not (v2 or (v1 is not None and os.access(v1, os.W_OK))):
        pytest.skip(f"no writable {controller} controller (cgroup v2 or v1) on this machine")


def cgroup_file(pid: int, controller: str, file: str) -> str:
    """The content of `file` in the cgroup of `controller` that process `pid` is in (v2's where
    v2 has it, else the v1 hierarchy's): what the kernel holds the process to."""
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    proc = Path(f"/proc/{pid}/cgroup").read_text()
    home = cgroups.locate(mountinfo, proc)
    if home is not None and Path(home, file).exists():
        return Path(home, file).read_text()
    v1 = cgroups.v1_homes(mountinfo, proc)[controller]
    return Path(v1, file).read_text()


def test_tasks_max_refuses_the_fork_past_it(stoker: Stoker, tmp_path: Path) -> None:
    need_controller("pids")
    report = tmp_path / "forks"
    forker = tmp_path / "forker.py"
    forker.write_text(
        "import subprocess, time\n"
        "started = []\n"
        "for _ in range(8):\n"
        "    try:\n"
        "        started.append(subprocess.Popen(['sleep', '1000']))\n"
        "    except OSError:\n"
        "        pass\n"
        f"open({str(report)!r}, 'w').write(str(len(started)))\n"
        "time.sleep(1000)\n"
    )
    stoker.write(
        f"""
        [programs.forker]
        command = ["{sys.executable}", "{forker}"]
        tasks_max = 4
        start_seconds = "100ms"
        """
    )
    stoker.up()
    row = stoker.wait_state("forker:0", "running")
    wait_for(report.exists, what="the forks to be tried")
    assert 0 < int(report.read_text()) <= 3  # itself and three more at most
    assert cgroup_file(row["pid"], "pids", "pids.max").strip() == "4"
    assert int(cgroup_file(row["pid"], "pids", "pids.current")) <= 4
    events = cgroup_file(row["pid"], "pids", "pids.events")  # `max N`: N forks refused
    assert int(events.split()[1]) > 0, events
    stoker.json("stop", "forker")
    stoker.terminate()


def test_cpu_weight_is_the_share_the_kernel_gives(stoker: Stoker) -> None:
    need_controller("cpu")
    stoker.write(
        """
        [programs.light]
        command = ["sleep", "1000"]
        cpu_weight = 50
        [programs.plain]
        command = ["sleep", "1000"]
        """
    )
    stoker.up()
    light = stoker.wait_state("light:0", "running")
    plain = stoker.wait_state("plain:0", "running")
    try:
        weight = cgroup_file(light["pid"], "cpu", "cpu.weight")
        assert weight.strip() == "50"
    except FileNotFoundError:
        assert cgroup_file(light["pid"], "cpu", "cpu.shares").strip() == "512"  # (v1)
        default = cgroup_file(plain["pid"], "cpu", "cpu.shares").strip()
        assert default == "1024"  # the plain program is not in a weighted cgroup
    stoker.terminate()


def test_memory_max_has_the_kernel_kill_the_program_and_says_so(stoker: Stoker) -> None:
    need_controller("memory")
    # 256 MB written (not just reserved: pages count once touched), under a 32 MB limit.
    hog = "import time; b = bytearray(256 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1000)"
    stoker.write(
        f"""
        [programs.hog]
        command = ["{sys.executable}", "-c", "{hog}"]
        memory_max = "32MB"
        start_seconds = "100ms"
        restart = "never"
        [programs.bystander]
        command = ["sleep", "1000"]
        """
    )
    stoker.up()
    stoker.wait_state("hog:0", "exited", timeout=30)
    wait_for(
        lambda: "killed by SIGKILL: out of memory (memory_max 32MB reached)" in stoker.log_text(),
        what="the daemon to say why hog died",
    )
    assert stoker.wait_state("bystander:0", "running")  # the daemon and the others go on
    stoker.terminate()


def test_a_daemon_alone_in_its_cgroup_moves_into_a_leaf_and_leaves_no_cgroup(stoker: Stoker) -> None:
    # systemd starts a service alone in its cgroup; cgroup v2 passes controllers down only from
    # a cgroup with no process in it, so the daemon moves one level down, into its tree.
    if not _tree_available():
        pytest.skip("no writable cgroup v2 on this machine")
    with open("/proc/self/mountinfo") as f, open("/proc/self/cgroup") as g:
        home = cgroups.locate(f.read(), g.read())
    assert home is not None
    service = os.path.join(home, f"test-service-{uuid.uuid4().hex[:8]}")
    os.mkdir(service)
    try:
        stoker.write(
            """
            [programs.app]
            command = ["sleep", "1000"]
            """
        )
        procs = os.path.join(service, "cgroup.procs")
        daemon = stoker.up(preexec_fn=lambda: Path(procs).write_text("0"))
        tree = os.path.join(service, cgroups.tree_name(str(stoker.state_dir)))
        row = stoker.wait_state("app:0", "running")
        own = Path(f"/proc/{daemon.pid}/cgroup").read_text()
        assert own.strip().endswith(os.path.join(os.path.basename(tree), cgroups.DAEMON_LEAF)), own
        assert str(row["pid"]) in Path(tree, "program-app-0", "cgroup.procs").read_text().split()
        assert Path(procs).read_text().split() == []  # the service's cgroup is free of processes
        stoker.terminate()
        assert not os.path.exists(tree), "the daemon's cgroups outlived it"
    finally:
        cgroups.kill_and_remove(service)


def test_a_limit_without_its_controller_is_logged_once_and_nothing_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A tree (plain directories: no controller anywhere) and no v1 hierarchy: the program runs,
    # without the limit, and the log says which limit and why, once per program.
    root = tmp_path / "stoker-x"
    root.mkdir()
    tree = cgroups.Tree(str(tmp_path), str(root), v1={})
    with caplog.at_level("WARNING", logger="stoker"):
        for _ in range(2):
            path = tree.cgroup("program-app-0", limits=Limits(tasks_max=5))
    assert sorted(os.listdir(path)) == []
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "program-app-0: tasks_max not applied: no pids controller here (neither in cgroup v2 nor a v1 "
        "hierarchy this daemon may write)"
    ]
