"""Privilege drop and what children inherit (docs/security.md), with real daemons as root.

A child with `user` must look like a login of that user: its uid, the primary group from passwd
(or `group`), the groups initgroups gives it and none of the daemon's, HOME/USER/LOGNAME/SHELL
from passwd. No child may inherit a secret the daemon read from its environment; with
`inherit_environment = false` a child starts from a clean environment.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, wait_for
from hypothesis import given
from hypothesis import strategies as st

from stoker.config import load_config
from stoker.reload import diff
from stoker.supervise.environment import CLEAN_KEPT, DEFAULT_PATH, child_base, secret_names
from stoker.supervise.identity import SAME, CannotDrop, Identity, account_variables, resolve
from stoker.supervise.spawn import describe_spawn_error

FINISHED = ("succeeded", "failed", "cancelled")
DAEMON_EXTRA_GROUP = 4242  # a supplementary group the daemon has and no child should keep


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root (these tests run as root in CI)")


def nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this machine has no user nobody")


def other_group(entry: pwd.struct_passwd) -> grp.struct_group:
    """A group that is neither root's nor `entry`'s primary one."""
    for group in grp.getgrall():
        if group.gr_gid not in (0, entry.pw_gid):
            return group
    pytest.skip("this machine has no group besides root's and nobody's")


def the_groups(name: str, gid: int) -> set[int]:
    """What initgroups(name, gid) sets."""
    return set(os.getgrouplist(name, gid))


def daemon_with_extra_group() -> None:
    """The daemon's preexec: one more supplementary group, which no child may keep."""
    os.setgroups([*os.getgroups(), DAEMON_EXTRA_GROUP])


def credentials(status: str) -> dict[str, Any]:
    """The Uid, Gid and Groups lines of a /proc/PID/status text."""
    found: dict[str, Any] = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid"):
            found[key] = [int(v) for v in value.split()]
        elif key == "Groups":
            found[key] = {int(v) for v in value.split()}
    return found


def proc_credentials(pid: int) -> dict[str, Any]:
    return credentials(Path(f"/proc/{pid}/status").read_text())


def proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if item)


def env_lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def finished(stoker: Stoker, job_id: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job = stoker.client.job(job_id)
        return job if job["state"] in FINISHED else None

    job: dict[str, Any] = wait_for(check, 30, f"job {job_id} to finish; log:\n{stoker.log_text()[-3000:]}")
    return job


def succeeded(stoker: Stoker, task: str) -> dict[str, Any]:
    job = finished(stoker, stoker.client.enqueue(task).id)
    assert job["state"] == "succeeded", job
    return job


def running_pid(stoker: Stoker, name: str) -> int:
    pid: int = stoker.wait_state(name, "running")["pid"]
    return pid


def python_runs_as_nobody() -> None:
    """Jobs run in a worker (a call in it, a command as its child), which is this Python
    started as the task's user."""
    try:
        subprocess.run(
            [sys.executable, "-c", "import stoker.jobs.worker"], user="nobody", cwd="/",
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
    except subprocess.CalledProcessError as e:
        pytest.skip(f"user nobody cannot run this Python ({sys.executable}): {e.stderr.decode()[-300:]}")
    except PermissionError as e:  # (a folder on its way is closed to nobody: /root, say)
        pytest.skip(f"user nobody cannot run this Python ({sys.executable}): {e}")


ACCOUNT = ("HOME", "USER", "LOGNAME", "SHELL")


def account_of(entry: pwd.struct_passwd) -> dict[str, str]:
    return {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name, "SHELL": entry.pw_shell}


# --------------------------------------------------------------------------------------------
# Privilege drop, with a real daemon
# --------------------------------------------------------------------------------------------


def test_a_program_with_user_gets_that_users_group_groups_and_account(stoker: Stoker) -> None:
    need_root()
    user = nobody()
    other = other_group(user)
    stoker.write(
        f"""
        [programs.plain]
        command = ["sleep", "1000"]
        user = "nobody"
        start_seconds = 0

        [programs.grouped]
        command = ["sleep", "1001"]
        user = "nobody"
        group = "{other.gr_name}"
        environment = {{ HOME = "/srv/elsewhere" }}
        start_seconds = 0
        """
    )
    stoker.up(preexec_fn=daemon_with_extra_group)
    assert DAEMON_EXTRA_GROUP in proc_credentials(stoker.daemon.pid)["Groups"]  # type: ignore[union-attr]

    pid = running_pid(stoker, "plain:0")
    assert proc_credentials(pid) == {
        "Uid": [user.pw_uid] * 4,
        "Gid": [user.pw_gid] * 4,  # nobody's primary group from passwd, not root's
        "Groups": the_groups("nobody", user.pw_gid),  # initgroups, nothing of the daemon's
    }
    env = proc_environ(pid)
    assert {k: env.get(k) for k in ACCOUNT} == account_of(user)

    pid = running_pid(stoker, "grouped:0")
    assert proc_credentials(pid) == {
        "Uid": [user.pw_uid] * 4,
        "Gid": [other.gr_gid] * 4,  # `group` overrides the primary group
        "Groups": the_groups("nobody", other.gr_gid),
    }
    env = proc_environ(pid)
    assert {k: env.get(k) for k in ACCOUNT} == {**account_of(user), "HOME": "/srv/elsewhere"}


def test_a_command_job_with_user_runs_as_that_user(stoker: Stoker) -> None:
    """Spawned by a worker (os.posix_spawn), which must have dropped already."""
    need_root()
    user = nobody()
    python_runs_as_nobody()
    other = other_group(user)
    report = ["sh", "-c", "grep -E '^(Uid|Gid|Groups):' /proc/self/status; env"]
    stoker.write(
        f"""
        [tasks.dropped]
        command = {json.dumps(report)}
        user = "nobody"
        directory = "/"  # (the worker, as nobody, changes into it: the test's folder is root's)

        [tasks.grouped]
        command = {json.dumps(report)}
        user = "nobody"
        directory = "/"
        group = "{other.gr_name}"
        environment = {{ SHELL = "/bin/sh" }}

        [tasks.silent]
        command = ["true"]
        user = "nobody"
        directory = "/"
        """
    )
    stoker.up(preexec_fn=daemon_with_extra_group)

    job = succeeded(stoker, "dropped")
    output = job["output"]
    kept = os.stat(stoker.state_dir / "logs" / "jobs" / f"{job['id']}.log")
    assert (kept.st_uid, kept.st_mode & 0o777) == (user.pw_uid, 0o600)  # the job's user's, nobody else's
    assert credentials(output) == {
        "Uid": [user.pw_uid] * 4,
        "Gid": [user.pw_gid] * 4,
        "Groups": the_groups("nobody", user.pw_gid),
    }
    env = env_lines(output)
    assert {k: env.get(k) for k in ACCOUNT} == account_of(user)

    output = succeeded(stoker, "grouped")["output"]
    assert credentials(output) == {
        "Uid": [user.pw_uid] * 4,
        "Gid": [other.gr_gid] * 4,
        "Groups": the_groups("nobody", other.gr_gid),
    }
    env = env_lines(output)
    assert {k: env.get(k) for k in ACCOUNT} == {**account_of(user), "SHELL": "/bin/sh"}

    job = succeeded(stoker, "silent")  # printed nothing: leaves no file, as any job
    assert not (stoker.state_dir / "logs" / "jobs" / f"{job['id']}.log").exists()


def test_a_python_call_job_with_user_runs_as_that_user(stoker: Stoker) -> None:
    """A call runs in the worker itself: the worker is what must have dropped."""
    need_root()
    user = nobody()
    python_runs_as_nobody()
    stoker.write(
        """
        [tasks.uids]
        call = "os:getresuid"
        user = "nobody"

        [tasks.gids]
        call = "os:getresgid"
        user = "nobody"

        [tasks.groups]
        call = "os:getgroups"
        user = "nobody"

        [tasks.environ]
        call = "os:environ.copy"
        user = "nobody"
        """
    )
    stoker.up(preexec_fn=daemon_with_extra_group)
    assert succeeded(stoker, "uids")["result"] == [user.pw_uid] * 3
    assert succeeded(stoker, "gids")["result"] == [user.pw_gid] * 3
    assert set(succeeded(stoker, "groups")["result"]) == the_groups("nobody", user.pw_gid)
    env = succeeded(stoker, "environ")["result"]
    assert {k: env.get(k) for k in ACCOUNT} == account_of(user)


def test_a_daemon_that_is_not_root_says_it_cannot_become_another_user() -> None:
    """Run in a child of the test that drops to nobody first: the daemon's own check, for real."""
    need_root()
    user = nobody()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, then ask as a daemon running as nobody would
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
            os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
            answers = []
            for who, group in (("root", None), (None, "root"), ("nobody", None)):
                try:
                    answers.append(repr(resolve(who, group)))
                except CannotDrop as e:
                    answers.append(describe_spawn_error(e, ["sleep"], "/"))
            os.write(write, json.dumps(answers).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        answers = json.loads(f.read())
    os.waitpid(pid, 0)
    root_group = grp.getgrgid(0).gr_name
    primary = grp.getgrgid(user.pw_gid).gr_name
    assert answers == [
        "cannot run as user root: the daemon runs as nobody, and only root can change user",
        f"cannot run as group {root_group}: the daemon runs as nobody (group {primary}), "
        "and only root can change group",
        repr(Identity(variables=account_variables(user))),  # itself: nothing to change
    ]


# --------------------------------------------------------------------------------------------
# What children inherit, with a real daemon
# --------------------------------------------------------------------------------------------

TOKEN = "tok-3f9a1c77e2b04d5c"


def secret_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's environment (the test's, which `stoker up` inherits): secrets the config
    reads, one more variable that happens to hold the token, and one plain variable."""
    monkeypatch.setenv("STOKER_TOKEN", TOKEN)
    monkeypatch.setenv("DEPLOY_TOKEN_COPY", f"  {TOKEN}\n")  # the token, however it is spaced
    monkeypatch.setenv("OPS_HOOK_URL", "http://127.0.0.1:9/hook/s3cret-path")
    monkeypatch.setenv("OPS_HOOK_TOKEN", "Bearer hook-s3cret")
    monkeypatch.setenv("PLAIN_SETTING", "visible")


SECRETS = ("STOKER_TOKEN", "DEPLOY_TOKEN_COPY", "OPS_HOOK_URL", "OPS_HOOK_TOKEN")

SECRET_CONFIG = """
[daemon]
token = "env:STOKER_TOKEN"

[notify.ops]
url = "env:OPS_HOOK_URL"
headers = { Authorization = "env:OPS_HOOK_TOKEN" }
events = ["schedule_missed"]
"""


def test_no_child_inherits_the_daemons_secrets(stoker: Stoker, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_environment(monkeypatch)
    stoker.write(
        SECRET_CONFIG
        + """
        [programs.app]
        command = ["sleep", "1000"]
        start_seconds = 0

        [tasks.env]
        command = ["env"]

        [tasks.environ]
        call = "os:environ.copy"
        """
    )
    stoker.up()
    program = proc_environ(running_pid(stoker, "app:0"))
    command = env_lines(succeeded(stoker, "env")["output"])
    call = succeeded(stoker, "environ")["result"]
    for env in (program, command, call):
        assert [name for name in SECRETS if name in env] == []
        assert env["PLAIN_SETTING"] == "visible"  # the rest is inherited as before
        assert env["PATH"] == os.environ["PATH"]
    assert stoker.client.status()  # (the daemon itself read them all)


def test_no_child_inherits_the_stores_password(
    stoker: Stoker, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libpq reads the daemon's password from PGPASSWORD: a program must not find it there."""
    monkeypatch.setenv("PGPASSWORD", "pg-s3cret")  # (the test server trusts: it never asks for it)
    stoker.write(
        f"""
        [daemon]
        store = "{postgres_url}"

        [programs.app]
        command = ["sleep", "1000"]
        start_seconds = 0
        """
    )
    stoker.up()
    env = proc_environ(running_pid(stoker, "app:0"))
    assert "PGPASSWORD" not in env and env["PATH"] == os.environ["PATH"]


def test_inherit_environment_false_starts_from_a_clean_environment(
    stoker: Stoker, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_environment(monkeypatch)
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LC_TIME", "C.UTF-8")
    stoker.write(
        SECRET_CONFIG
        + """
        [programs.app]
        command = ["sleep", "1000"]
        inherit_environment = false
        environment = { APP_ENV = "prod" }
        start_seconds = 0

        [tasks.env]
        command = ["env"]
        inherit_environment = false
        environment = { APP_ENV = "prod" }

        [tasks.environ]
        call = "os:environ.copy"
        inherit_environment = false
        environment = { APP_ENV = "prod" }
        """
    )
    stoker.up()
    kept = {k: v for k, v in os.environ.items() if k in CLEAN_KEPT or k.startswith("LC_")}
    me = account_of(pwd.getpwuid(os.geteuid()))
    state_dir = str(stoker.state_dir)
    node = stoker.client.status()["node"]
    common = {**kept, **me, "APP_ENV": "prod", "STOKER_NODE": node, "STOKER_SUPERVISOR": state_dir}

    assert proc_environ(running_pid(stoker, "app:0")) == {
        **common, "STOKER_PROGRAM": "app", "STOKER_INSTANCE": "0",
    }  # fmt: skip
    for task in ("env", "environ"):
        job = succeeded(stoker, task)
        env = env_lines(job["output"]) if task == "env" else job["result"]
        assert env == {
            **common, "STOKER_TASK": task, "STOKER_JOB_ID": str(job["id"]), "STOKER_JOB_ATTEMPT": "1",
            "STOKER_JOB_PARAMS": "{}",
        }  # fmt: skip


def test_changing_inherit_environment_restarts_the_program(
    stoker: Stoker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIN_SETTING", "visible")
    program = """
        [programs.app]
        command = ["sleep", "1000"]
        start_seconds = 0
        """
    stoker.write(program)
    stoker.up()
    before = running_pid(stoker, "app:0")
    assert proc_environ(before)["PLAIN_SETTING"] == "visible"
    stoker.write(program + "inherit_environment = false\n")
    result = stoker.cli("reload", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["changed"] == ["app"]
    after = wait_for(lambda: (p := running_pid(stoker, "app:0")) != before and p, what="a new process")
    assert "PLAIN_SETTING" not in proc_environ(after)


# --------------------------------------------------------------------------------------------
# The pure parts
# --------------------------------------------------------------------------------------------


def test_config_reads_inherit_environment_and_collects_env_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_environment(monkeypatch)
    monkeypatch.setenv("SCHED_SECRET", "literal")
    path = tmp_path / "stoker.toml"
    path.write_text(
        SECRET_CONFIG
        + """
        [programs.app]
        command = "sleep 1"
        inherit_environment = false
        [tasks.t]
        command = "true"
        inherit_environment = false
        [schedules.s]
        every = "1h"
        command = "true"
        inherit_environment = false
        environment = { NOT_A_SECRET = "env:SCHED_SECRET" }
        """.replace("\n        ", "\n")
    )
    config = load_config(path)
    assert config.env_secrets == {
        "STOKER_TOKEN",
        "OPS_HOOK_URL",
        "OPS_HOOK_TOKEN",
    }  # ([environment]: literal)
    assert config.programs["app"].inherit_environment is False
    assert config.tasks["t"].inherit_environment is False
    assert config.tasks["schedule.s"].inherit_environment is False
    path.write_text('[programs.app]\ncommand = "sleep 1"\ninherit_environment = "no"\n')
    with pytest.raises(Exception) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: [programs.app] inherit_environment: expected true or false (false: a clean "
        'environment, not the daemon\'s), got "no"'
    )
    edited = tmp_path / "edited.toml"
    edited.write_text('[programs.app]\ncommand = "sleep 1"\n')
    before = load_config(edited)
    edited.write_text('[programs.app]\ncommand = "sleep 1"\ninherit_environment = false\n')
    assert diff(before, load_config(edited)).changed == ["app"]


def test_secret_names() -> None:
    environ = {"A": "tok", "B": " tok\n", "C": "other", "PGPASSWORD": "pw", "D": "tokens"}
    assert secret_names(environ, {"X"}, "tok", "sqlite") == {"X", "A", "B"}
    assert secret_names(environ, (), None, "postgresql://h/db") == {"PGPASSWORD"}
    assert secret_names(environ, (), "", "sqlite") == set()


NAMES = st.sampled_from(["PATH", "LANG", "LC_ALL", "LC_TIME", "TZ", "HOME", "USER", "APP", "STOKER_NODE",
                         "STOKER_TOKEN", "LANGUAGE", "PYTHONPATH"])  # fmt: skip


@given(st.dictionaries(NAMES, st.text(max_size=5)), st.booleans(), st.booleans())
def test_child_base(inherited: dict[str, str], inherit: bool, with_user: bool) -> None:
    account = (("HOME", "/home/u"), ("USER", "u"), ("LOGNAME", "u"), ("SHELL", "/bin/sh"))
    identity = Identity(uid=1000, gid=1000, groups=(1000,), variables=account) if with_user else SAME
    env = child_base(inherited, inherit=inherit, identity=identity)
    if with_user:
        assert {k: env[k] for k, _ in account} == dict(account)  # the passwd entry wins
    if inherit:
        assert env == {**inherited, **identity.environment}
        return
    assert env.get("PATH") == inherited.get("PATH", DEFAULT_PATH)
    assert set(env) - set(ACCOUNT) <= {k for k in inherited if k in CLEAN_KEPT or k.startswith("LC_")} | {
        "PATH"
    }
    assert all(env[k] == v for k, v in inherited.items() if k in env and k not in ACCOUNT)
    if not with_user:  # clean without `user`: the daemon's own account
        assert {k: env[k] for k in ACCOUNT} == account_of(pwd.getpwuid(os.geteuid()))


def test_resolve_as_root() -> None:
    need_root()
    user = nobody()
    other = other_group(user)
    assert resolve(None, None) is SAME
    assert resolve("nobody", None) == Identity(
        uid=user.pw_uid, gid=user.pw_gid, groups=tuple(os.getgrouplist("nobody", user.pw_gid)),
        variables=account_variables(user),
    )  # fmt: skip
    assert resolve("nobody", other.gr_name).gid == other.gr_gid
    assert resolve(None, other.gr_name) == Identity(gid=other.gr_gid, groups=())
    with pytest.raises(KeyError) as caught:
        resolve("no-such-user-here", None)
    assert describe_spawn_error(caught.value, ["x"], "/") == "unknown user: no-such-user-here"
    with pytest.raises(KeyError) as caught:
        resolve("nobody", "no-such-group-here")
    assert describe_spawn_error(caught.value, ["x"], "/") == "unknown group: no-such-group-here"
