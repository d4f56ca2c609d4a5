"""What runs as root in a pool worker, and what a `user =` child can reach (issue 24, findings
4 and 5; docs/security.md "Files on disk")."""

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
from conftest import Stoker
from hypothesis import given
from hypothesis import strategies as st

from stoker.supervise.reach import allowed, blocked, why_python_unreachable


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("running as another user needs root (these tests run as root in CI)")


PLANT = "import pathlib; pathlib.Path({marker!r}).write_text('imported')\nraise SystemExit('planted')\n"


def test_modules_in_the_config_folder_do_not_shadow_the_standard_library(stoker: Stoker) -> None:
    """A select.py beside the config ran as root in every worker: the worker's own `import
    select` found it first (python -m puts the folder it starts in first, and it started in the
    config's folder). The folder is still on the path, last: its own modules import."""
    app = stoker.root / "app"  # (the daemon itself starts elsewhere: the test's `python -m`)
    app.mkdir()
    stoker.config = app / "stoker.toml"
    planted = ("select", "json", "socket", "struct", "traceback", "importlib")
    for name in planted:
        (app / f"{name}.py").write_text(PLANT.format(marker=str(app / f"{name}.imported")))
    (app / "myapp").mkdir()
    (app / "myapp" / "__init__.py").write_text("")
    (app / "myapp" / "tasks.py").write_text(
        "import json, os, sys\n"
        "def where(n):\n"
        "    return {'n': n, 'json': json.__file__, 'cwd': os.getcwd(), 'last': sys.path[-1]}\n"
    )
    stoker.write(
        f"""
        [daemon]
        state_dir = "{stoker.state_dir}"
        [tasks.where]
        call = "myapp.tasks:where"
        [tasks.echo]
        command = ["echo", "hi"]
        """
    )
    stoker.up()
    job = stoker.json("enqueue", "where", "n:=3", "--wait")
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["n"] == 3
    assert result["json"] != str(app / "json.py")
    assert result["last"] == str(app)  # on the path, after everything else
    assert result["cwd"] == str(app)  # a job still runs in its task's directory
    assert stoker.json("enqueue", "echo", "--wait")["output"] == "hi\n"
    assert sorted(p.name for p in app.glob("*.imported")) == []


@pytest.fixture
def open_stoker() -> Iterator[Stoker]:
    """A daemon whose config is in a folder every user may reach (as /srv/app would be), with
    the default state dir beside it: `.stoker`, 0700, root's."""
    root = Path(tempfile.mkdtemp(prefix="stoker-contained-"))
    os.chmod(root, 0o755)
    s = Stoker(root)
    try:
        yield s
    finally:
        leftovers = s.cleanup()
        shutil.rmtree(root, ignore_errors=True)
        assert not leftovers, f"processes survived the daemon: {leftovers}"


def nobody_cannot_run_python() -> str | None:
    """Why `nobody` cannot run this Python (the pool's workers), as the daemon would say it."""
    import stoker

    entry = pwd.getpwnam("nobody")
    needed = [os.path.dirname(os.__file__), os.path.dirname(os.path.dirname(stoker.__file__))]
    groups = os.getgrouplist("nobody", entry.pw_gid)
    return why_python_unreachable("nobody", entry.pw_uid, groups, sys.executable, needed)


def test_a_task_with_user_nobody_runs_or_says_why_it_cannot(open_stoker: Stoker) -> None:
    """Under the default layout (state dir 0700, root's). Where nobody can run this Python, the
    job runs as nobody; where it cannot (a Python under /root, as on a developer's machine), the
    job's error says so, where it said "the worker was killed by SIGTERM" or "exited with code
    126"."""
    need_root()
    stoker = open_stoker
    stoker.write(
        """
        [tasks.who]
        command = ["id", "-un"]
        user = "nobody"
        [tasks.environ]
        call = "os:getcwd"
        user = "nobody"
        """
    )
    stoker.up()
    assert stat.S_IMODE(stoker.state_dir.stat().st_mode) == 0o700
    reason = nobody_cannot_run_python()
    for task in ("who", "environ"):
        run = stoker.cli("enqueue", task, "--wait", "--json")
        job = json.loads(run.stdout)
        if reason is None:
            assert job["state"] == "succeeded", job
            assert job["output"] == "nobody\n" if task == "who" else job["result"] == str(stoker.root)
        else:
            assert job["state"] == "failed"
            assert job["error"] == reason, job
            assert job["error"].startswith("the worker cannot run as nobody: nobody cannot reach ")


def test_a_notify_program_with_user_nobody_becomes_running(open_stoker: Stoker) -> None:
    """Under the default layout, with a sender nobody may run (php, not this Python)."""
    need_root()
    php = shutil.which("php")
    if php is None:
        pytest.skip("php is not installed (the sender every user may run)")
    if "sockets" not in subprocess.run([php, "-m"], capture_output=True, text=True, check=True).stdout:
        pytest.skip("php has no sockets extension")
    stoker = open_stoker
    sender = (
        "$s = socket_create(AF_UNIX, SOCK_DGRAM, 0);"
        "$addr = getenv('NOTIFY_SOCKET');"
        "if (!socket_sendto($s, 'READY=1', 7, 0, $addr)) { fwrite(STDERR, 'cannot send'); exit(3); }"
        "echo posix_getpwuid(posix_geteuid())['name'], \"\\n\";"
        "sleep(1000);"
    )
    stoker.write(
        f"""
        [programs.ready]
        command = ["{php}", "-r", {json.dumps(sender)}]
        user = "nobody"
        ready = "notify"
        start_seconds = 0
        """
    )
    stoker.up()
    stoker.wait_state("ready:0", "running")
    assert stat.S_IMODE(stoker.state_dir.stat().st_mode) & 0o007 == 0  # no one else's way in
    log = stoker.state_dir / "logs" / "ready.0.log"
    assert log.read_text().strip().endswith("nobody")


# reach: the permission bits as the kernel reads them ----------------------------------------


@given(mode=st.integers(0, 0o777), want=st.sampled_from([1, 2, 4, 5, 7]), uid=st.integers(1, 5))
def test_allowed_takes_the_first_class_that_matches(mode: int, want: int, uid: int) -> None:
    owner_bits, group_bits, other_bits = (mode >> 6) & 7, (mode >> 3) & 7, mode & 7
    assert allowed(mode, uid, 99, uid, [99], want) == (owner_bits & want == want)  # owner, even in the group
    assert allowed(mode, 0, 99, uid, [98, 99], want) == (group_bits & want == want)
    assert allowed(mode, 0, 99, uid, [98], want) == (other_bits & want == want)
    assert allowed(mode, 7, 99, 0, [], want)  # root


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every user may reach (/tmp's, 0755), unlike pytest's tmp_path."""
    root = Path(tempfile.mkdtemp(prefix="stoker-reach-"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_allowed_agrees_with_the_kernel(open_dir: Path) -> None:
    """Every mode, for a file nobody owns, one in nobody's group and one of neither: what
    access(2) says as nobody."""
    need_root()
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs /usr/bin/python3 (a python every user may run)")
    entry = pwd.getpwnam("nobody")
    cases = {}
    for mode in range(0o1000):
        for who, (uid, gid) in {
            "own": (entry.pw_uid, 0),
            "group": (0, entry.pw_gid),
            "other": (0, 0),
        }.items():
            path = open_dir / f"{who}-{mode:o}"
            path.touch()
            os.chown(path, uid, gid)
            os.chmod(path, mode)
            cases[str(path)] = (mode, uid, gid)
    script = (
        "import json, os, sys\n"
        "paths = json.load(sys.stdin)\n"
        "print(json.dumps({p: [os.access(p, m) for m in (os.R_OK, os.W_OK, os.X_OK)] for p in paths}))\n"
    )
    try:
        run = subprocess.run(
            ["/usr/bin/python3", "-c", script], input=json.dumps(list(cases)), capture_output=True, text=True,
            user="nobody", group=entry.pw_gid, extra_groups=[], check=True, timeout=60, cwd="/",
        )  # fmt: skip
    except subprocess.CalledProcessError as e:
        pytest.skip(f"nobody cannot reach {open_dir}: {e.stderr[-300:]}")
    kernel = json.loads(run.stdout)
    groups = [entry.pw_gid]
    for path, (mode, uid, gid) in cases.items():
        ours = [allowed(mode, uid, gid, entry.pw_uid, groups, want) for want in (4, 2, 1)]
        assert ours == kernel[path], (path, oct(mode))


def test_blocked_names_the_first_closed_folder(open_dir: Path) -> None:
    closed = open_dir / "a" / "closed"
    inner = closed / "b" / "python"
    inner.parent.mkdir(parents=True)
    inner.write_text("")
    os.chmod(open_dir / "a", 0o755)
    os.chmod(closed, 0o700)
    os.chmod(inner, 0o755)
    os.chmod(closed.parent.parent, 0o755)
    stranger = 54321
    me = os.geteuid()
    assert blocked(str(inner), stranger, [54321], 1) == f"{closed} is mode 0700, owned by uid {me}"
    assert blocked(str(inner), me, [], 1) is None
    os.chmod(closed, 0o711)  # searchable is enough on the way
    assert blocked(str(inner), stranger, [54321], 1) is None
    os.chmod(inner, 0o750)
    assert blocked(str(inner), stranger, [54321], 1) == f"{inner} is mode 0750, owned by uid {me}"
    assert blocked(str(open_dir / "missing" / "x"), stranger, [], 1) is None  # nothing to say


def test_a_worker_that_dies_is_reported_by_its_own_exit(stoker: Stoker) -> None:
    """Not by the SIGTERM the daemon sends what is left of it."""
    (stoker.root / "dying.py").write_text(
        "import os\ndef die(how):\n    os._exit(3) if how == 'exit' else os.kill(os.getpid(), 9)\n"
    )
    stoker.write('[tasks.die]\ncall = "dying:die"\n')
    stoker.up()
    for how, said in (
        ("exit", "the worker exited with code 3"),
        ("kill", "the worker was killed by SIGKILL"),
    ):
        job = json.loads(stoker.cli("enqueue", "die", f"how={how}", "--wait", "--json").stdout)
        assert (job["state"], job["error"]) == ("failed", said), job
