"""stoker.toml decoding: defaults, resolution rules and one-line errors a person can act on."""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import signal
import socket
import textwrap
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stoker.config import (
    STARTER_TOML,
    Backoff,
    Config,
    ConfigError,
    DaemonConfig,
    LogConfig,
    ProgramConfig,
    find_config_path,
    find_cycle,
    internal_queues,
    internal_tasks,
    load_config,
    parse_config,
)

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "stoker.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.file == str(path)
    assert str(err).startswith(f"{path}: ")
    assert "\n" not in str(err)
    return err


def program(tmp_path: Path, body: str, name: str = "app") -> ProgramConfig:
    return load(tmp_path, f"[programs.{name}]\n{textwrap.dedent(body)}").programs[name]


def program_error(tmp_path: Path, body: str, name: str = "app") -> ConfigError:
    return error(tmp_path, f"[programs.{name}]\n{textwrap.dedent(body)}")


# --------------------------------------------------------------------------------------------
# finding and reading the file
# --------------------------------------------------------------------------------------------


def test_find_config_path_prefers_explicit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOKER_CONFIG", str(tmp_path / "env.toml"))
    assert find_config_path(str(tmp_path / "x.toml")) == tmp_path / "x.toml"


def test_find_config_path_uses_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOKER_CONFIG", "conf/env.toml")
    assert find_config_path() == tmp_path / "conf" / "env.toml"
    monkeypatch.delenv("STOKER_CONFIG")
    assert find_config_path() == tmp_path / "stoker.toml"
    monkeypatch.setenv("STOKER_CONFIG", "")
    assert find_config_path() == tmp_path / "stoker.toml"


def test_find_config_path_is_absolute_for_relative_explicit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = find_config_path("sub/../other.toml")
    assert path.is_absolute()
    assert path == tmp_path / "other.toml"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: no such file"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "stoker.toml"
    path.write_bytes(b"# \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_relative_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    config = load_config("stoker.toml")
    assert config.path == str(tmp_path / "stoker.toml")
    assert config.directory == str(tmp_path)


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    err = error(tmp_path, '[programs.a]\ncommand = "x"\nrestart = \n')
    assert err.line == 3
    assert re.fullmatch(rf"{re.escape(err.file)}: line 3: invalid TOML: .+", str(err))


def test_invalid_toml_at_end_of_file(tmp_path: Path) -> None:
    err = error(tmp_path, 'a = "unterminated')
    assert str(err).startswith(f"{err.file}: line 1: invalid TOML: Unterminated string")


def test_duplicate_table_is_a_toml_error(tmp_path: Path) -> None:
    err = error(tmp_path, '[programs.a]\ncommand = "x"\n[programs.a]\ncommand = "y"\n')
    assert "invalid TOML" in str(err)
    assert err.line == 3


# --------------------------------------------------------------------------------------------
# defaults
# --------------------------------------------------------------------------------------------


def test_empty_file_is_a_valid_config(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.programs == {}
    assert config.path == str(tmp_path / "stoker.toml")
    assert config.directory == str(tmp_path)


def test_daemon_defaults(tmp_path: Path) -> None:
    daemon = load(tmp_path, "").daemon
    assert daemon.state_dir == str(tmp_path / ".stoker")
    assert daemon.listen is None
    assert daemon.listen_host is None
    assert daemon.listen_port is None
    assert daemon.token is None
    assert daemon.store == "sqlite"
    assert daemon.node == socket.gethostname()
    assert daemon.timezone is None
    assert daemon.shutdown_timeout == 30.0


def test_program_defaults(tmp_path: Path) -> None:
    prog = program(tmp_path, 'command = "sleep 60"', name="mailer")
    assert prog == ProgramConfig(
        name="mailer",
        command=("sleep", "60"),
        shell=False,
        instances=1,
        directory=str(tmp_path),
        environment={},
        user=None,
        group=None,
        umask=None,
        autostart=True,
        restart="always",
        success_exit_codes=(0,),
        start_seconds=1.0,
        backoff=Backoff(min=1.0, max=60.0),
        max_restarts=0,
        stop_signal=signal.SIGTERM,
        stop_timeout=10.0,
        log=LogConfig(max_size=50 * 1024 * 1024, keep=10, stderr="merge", timestamps=False),
    )
    assert isinstance(prog.stop_signal, int)


def test_full_program(tmp_path: Path) -> None:
    prog = program(
        tmp_path,
        """
        command = ["php", "scripts/send_spool.php"]
        shell = false
        instances = 3
        directory = "app"
        environment = { APP_ENV = "prod" }
        user = "www-data"
        group = "www-data"
        umask = 0o027
        autostart = false
        restart = "on-failure"
        success_exit_codes = [0, 2]
        start_seconds = "250ms"
        stable_seconds = "30s"
        backoff = { min = "2s", max = "5m" }
        max_restarts = 5
        stop_signal = "SIGINT"
        stop_timeout = "1m30s"
        log = { max_size = "1MB", keep = 0, stderr = "separate", timestamps = true }
        """,
    )
    assert prog.command == ("php", "scripts/send_spool.php")
    assert prog.instances == 3
    assert prog.directory == str(tmp_path / "app")
    assert prog.environment == {"APP_ENV": "prod"}
    assert (prog.user, prog.group, prog.umask) == ("www-data", "www-data", 0o027)
    assert prog.autostart is False
    assert prog.restart == "on-failure"
    assert prog.success_exit_codes == (0, 2)
    assert prog.start_seconds == 0.25
    assert prog.stable_seconds == 30.0
    assert prog.backoff == Backoff(min=2.0, max=300.0)
    assert prog.max_restarts == 5
    assert prog.stop_signal == signal.SIGINT
    assert prog.stop_timeout == 90.0
    assert prog.log == LogConfig(max_size=1024 * 1024, keep=0, stderr="separate", timestamps=True)


def test_full_daemon(tmp_path: Path) -> None:
    daemon = load(
        tmp_path,
        """
        [daemon]
        state_dir = "/var/lib/stoker"
        listen = "127.0.0.1:9100"
        token = "s3cret"
        store = "postgresql://user@db/stoker"
        node = "web-1"
        timezone = "Asia/Shanghai"
        shutdown_timeout = "45s"
        """,
    ).daemon
    assert daemon.state_dir == "/var/lib/stoker"
    assert (daemon.listen, daemon.listen_host, daemon.listen_port) == (
        "127.0.0.1:9100",
        "127.0.0.1",
        9100,
    )
    assert daemon.token == "s3cret"
    assert daemon.store == "postgresql://user@db/stoker"
    assert daemon.node == "web-1"
    assert daemon.timezone == "Asia/Shanghai"
    assert daemon.shutdown_timeout == 45.0


def test_programs_keep_file_order(tmp_path: Path) -> None:
    names = ["zeta", "alpha", "mid.dle", "b-2", "a_1"]
    text = "".join(f'[programs."{n}"]\ncommand = "true"\n' for n in names)
    assert list(load(tmp_path, text).programs) == names


def test_config_objects_are_immutable(tmp_path: Path) -> None:
    config = load(tmp_path, '[programs.a]\ncommand = "true"\n')
    with pytest.raises(AttributeError):
        config.programs["a"].instances = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.daemon.node = "x"  # type: ignore[misc]


def test_same_text_gives_equal_configs(tmp_path: Path) -> None:
    text = '[programs.a]\ncommand = "true"\ninstances = 2\n[programs.b]\ncommand = "false"\n'
    one = load(tmp_path, text)
    two = parse_config(text, tmp_path / "stoker.toml")
    assert one == two
    changed = parse_config(text.replace("instances = 2", "instances = 3"), Path(one.path))
    assert changed.programs["b"] == one.programs["b"]
    assert changed.programs["a"] != one.programs["a"]


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


def test_string_command_is_split_like_a_shell_but_no_shell(tmp_path: Path) -> None:
    prog = program(tmp_path, r"""command = "php 'my script.php' --say=\"a b\" $HOME | cat" """)
    assert prog.command == ("php", "my script.php", "--say=a b", "$HOME", "|", "cat")
    assert prog.shell is False


def test_shell_true_keeps_the_string(tmp_path: Path) -> None:
    prog = program(tmp_path, 'shell = true\ncommand = "echo $HOME | tr a-z A-Z"')
    assert prog.command == ("/bin/sh", "-c", "echo $HOME | tr a-z A-Z")
    assert prog.shell is True


def test_shell_true_with_a_list_is_an_error(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'shell = true\ncommand = ["echo", "hi"]')
    assert err.key == "command"
    assert "a string when shell = true" in str(err)


@pytest.mark.parametrize("command", ['""', '"   "', "[]", '[""]'])
def test_empty_command_is_an_error(tmp_path: Path, command: str) -> None:
    err = program_error(tmp_path, f"command = {command}")
    assert (err.table, err.key) == ("programs.app", "command")
    assert "non-empty command" in str(err)


def test_empty_shell_command_is_an_error(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'shell = true\ncommand = " "')
    assert err.key == "command"


def test_missing_command_names_the_key(tmp_path: Path) -> None:
    err = program_error(tmp_path, "instances = 2")
    assert (err.table, err.key) == ("programs.app", "command")
    assert str(err).startswith(f"{err.file}: [programs.app] command: missing")


def test_empty_program_table_is_missing_command(tmp_path: Path) -> None:
    err = error(tmp_path, "[programs.app]\n")
    assert err.key == "command"


def test_unbalanced_quotes(tmp_path: Path) -> None:
    err = program_error(tmp_path, """command = 'php "oops'""")
    assert err.key == "command"
    assert "balanced quotes" in str(err)


def test_command_list_with_a_number(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = ["sleep", 5]')
    assert str(err) == (
        f"{err.file}: [programs.app] command: expected a command string or an array of "
        'strings, like "php send.php" or ["php", "send.php"], got ["sleep", 5]'
    )


def test_nul_in_command_is_refused(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = ["echo", "a\\u0000b"]')
    assert err.key == "command"


# --------------------------------------------------------------------------------------------
# instances and {instance}
# --------------------------------------------------------------------------------------------


def test_instance_expansion(tmp_path: Path) -> None:
    prog = program(
        tmp_path,
        """
        command = ["worker", "--id={instance}", "{instance}", "${HOME}", "{}", "{other}"]
        instances = 3
        directory = "data/{instance}"
        environment = { WORKER = "w{instance}", PLAIN = "x" }
        """,
        name="mailer",
    )
    assert prog.instance_names() == ["mailer:0", "mailer:1", "mailer:2"]
    spec = prog.spec(2)
    assert spec.name == "mailer:2"
    assert spec.program == "mailer"
    assert spec.instance == 2
    assert spec.argv == ("worker", "--id=2", "2", "${HOME}", "{}", "{other}")
    assert spec.directory == str(tmp_path / "data" / "2")
    assert spec.environment == {
        "WORKER": "w2",
        "PLAIN": "x",
        "STOKER_PROGRAM": "mailer",
        "STOKER_INSTANCE": "2",
    }
    # The program itself keeps the template.
    assert prog.command[1] == "--id={instance}"


def test_spec_environment_is_only_the_config_env(tmp_path: Path) -> None:
    spec = program(tmp_path, 'command = "true"').spec(0)
    assert spec.environment == {"STOKER_PROGRAM": "app", "STOKER_INSTANCE": "0"}


def test_instance_expansion_with_shell(tmp_path: Path) -> None:
    prog = program(tmp_path, 'shell = true\ncommand = "echo {instance} > out.{instance}"')
    assert prog.spec(0).argv == ("/bin/sh", "-c", "echo 0 > out.0")


@pytest.mark.parametrize("instance", [-1, 2, 100])
def test_spec_out_of_range(tmp_path: Path, instance: int) -> None:
    prog = program(tmp_path, 'command = "true"\ninstances = 2')
    with pytest.raises(ValueError):
        prog.spec(instance)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_instances_must_be_positive(tmp_path: Path, value: str) -> None:
    err = program_error(tmp_path, f'command = "true"\ninstances = {value}')
    assert err.key == "instances"
    assert f"got {value}" in str(err)


def test_instances_of_wrong_type(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = "true"\ninstances = "2"', name="mailer")
    assert (err.table, err.key) == ("programs.mailer", "instances")
    assert str(err) == (
        f'{err.file}: [programs.mailer] instances: expected a whole number, 1 or more, got "2"'
    )


# --------------------------------------------------------------------------------------------
# directories and paths
# --------------------------------------------------------------------------------------------


def test_directory_defaults_to_config_folder_not_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "srv" / "app"
    conf_dir.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    config = load(conf_dir, '[programs.a]\ncommand = "true"\n')
    assert config.programs["a"].directory == str(conf_dir)
    assert config.daemon.state_dir == str(conf_dir / ".stoker")


def test_relative_directory_is_relative_to_config_folder(tmp_path: Path) -> None:
    prog = program(tmp_path, 'command = "true"\ndirectory = "../shared/./bin"')
    assert prog.directory == str(tmp_path.parent / "shared" / "bin")


def test_absolute_directory_is_kept(tmp_path: Path) -> None:
    assert program(tmp_path, 'command = "true"\ndirectory = "/opt/app"').directory == "/opt/app"


def test_relative_state_dir(tmp_path: Path) -> None:
    daemon = load(tmp_path, '[daemon]\nstate_dir = "var/stoker"\n').daemon
    assert daemon.state_dir == str(tmp_path / "var" / "stoker")


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = "true"\ndirectory = ""')
    assert err.key == "directory"


# --------------------------------------------------------------------------------------------
# environment, user, umask, signals, exit codes, durations, log
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["8080", "true", "1.5", "[1]"])
def test_environment_values_must_be_strings(tmp_path: Path, value: str) -> None:
    err = program_error(tmp_path, f'command = "true"\nenvironment = {{ A = "ok", PORT = {value} }}')
    assert (err.table, err.key) == ("programs.app", "environment.PORT")
    assert 'PORT = "8080"' in str(err)
    assert str(err).endswith(f"got {value}" if value != "true" else "got true")


def test_environment_must_be_a_table(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = "true"\nenvironment = "A=1"')
    assert err.key == "environment"


@pytest.mark.parametrize("name", ["STOKER_PROGRAM", "STOKER_INSTANCE"])
def test_environment_cannot_override_stoker_variables(tmp_path: Path, name: str) -> None:
    err = program_error(tmp_path, f'command = "true"\nenvironment = {{ {name} = "x" }}')
    assert err.key == f"environment.{name}"


def test_environment_name_with_equals_is_refused(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = "true"\nenvironment = { "A=B" = "x" }')
    assert err.key == "environment.A=B"


def test_odd_environment_name_keeps_the_message_on_one_line(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = "true"\nenvironment = { "A\\nB=" = "x" }')
    assert err.key == "environment.A\nB="
    assert '"environment.A\\nB="' in str(err)


def test_user_and_group_are_not_resolved(tmp_path: Path) -> None:
    prog = program(tmp_path, 'command = "true"\nuser = "no-such-user-here"\ngroup = "nogrp"')
    assert (prog.user, prog.group) == ("no-such-user-here", "nogrp")


def test_empty_user_is_an_error(tmp_path: Path) -> None:
    assert program_error(tmp_path, 'command = "true"\nuser = ""').key == "user"


@pytest.mark.parametrize(
    ("value", "umask"), [("0o022", 0o022), ('"022"', 0o022), ('"0o077"', 0o077), ("0", 0)]
)
def test_umask(tmp_path: Path, value: str, umask: int) -> None:
    assert program(tmp_path, f'command = "true"\numask = {value}').umask == umask


@pytest.mark.parametrize("value", ['"999"', '"abc"', "0o1000", "-1", '""', "1.5", "true"])
def test_bad_umask(tmp_path: Path, value: str) -> None:
    err = program_error(tmp_path, f'command = "true"\numask = {value}')
    assert err.key == "umask"
    assert "octal" in err.expected


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ('"TERM"', signal.SIGTERM),
        ('"SIGTERM"', signal.SIGTERM),
        ('"term"', signal.SIGTERM),
        ('"hup"', signal.SIGHUP),
        ('"SIGQUIT"', signal.SIGQUIT),
        ("9", signal.SIGKILL),
        ('"15"', signal.SIGTERM),
    ],
)
def test_stop_signal(tmp_path: Path, value: str, number: int) -> None:
    assert program(tmp_path, f'command = "true"\nstop_signal = {value}').stop_signal == number


@pytest.mark.parametrize("value", ['"FOO"', '"SIG_DFL"', '"SIG_IGN"', "0", "999", '""', "1.0"])
def test_bad_stop_signal(tmp_path: Path, value: str) -> None:
    err = program_error(tmp_path, f'command = "true"\nstop_signal = {value}')
    assert err.key == "stop_signal"
    assert "signal name" in str(err)


def test_success_exit_codes(tmp_path: Path) -> None:
    assert program(tmp_path, 'command = "x"\nsuccess_exit_codes = [0, 3]').success_exit_codes == (
        0,
        3,
    )


@pytest.mark.parametrize("value", ["[256]", "[-1]", '["0"]', "0"])
def test_bad_success_exit_codes(tmp_path: Path, value: str) -> None:
    err = program_error(tmp_path, f'command = "true"\nsuccess_exit_codes = {value}')
    assert err.key == "success_exit_codes"


@pytest.mark.parametrize("key", ["start_seconds", "stable_seconds", "stop_timeout"])
def test_bad_durations_name_the_key(tmp_path: Path, key: str) -> None:
    err = program_error(tmp_path, f'command = "true"\n{key} = "ten"')
    assert (err.table, err.key) == ("programs.app", key)
    assert str(err) == (
        f'{err.file}: [programs.app] {key}: expected a duration like "10s", "5m", "250ms" or '
        'a number of seconds, got "ten"'
    )


@pytest.mark.parametrize("value", ["-1", "true", "[1]"])
def test_bad_duration_values(tmp_path: Path, value: str) -> None:
    assert program_error(tmp_path, f'command = "x"\nstop_timeout = {value}').key == "stop_timeout"


def test_numeric_durations(tmp_path: Path) -> None:
    prog = program(tmp_path, 'command = "x"\nstart_seconds = 0\nstop_timeout = 2.5')
    assert (prog.start_seconds, prog.stop_timeout) == (0.0, 2.5)


def test_backoff_min_greater_than_max(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = "x"\nbackoff = { min = "10s", max = "5s" }')
    assert err.key == "backoff"
    assert "min" in str(err) and "max" in str(err)


@pytest.mark.parametrize("value", ["0", '"0s"'])
def test_backoff_min_must_be_positive(tmp_path: Path, value: str) -> None:
    err = program_error(tmp_path, f'command = "x"\nbackoff = {{ min = {value} }}')
    assert err.key == "backoff.min"


def test_backoff_partial_table_keeps_other_default(tmp_path: Path) -> None:
    assert program(tmp_path, 'command = "x"\nbackoff = { max = "5m" }').backoff == Backoff(min=1.0, max=300.0)


def test_backoff_as_subtable(tmp_path: Path) -> None:
    config = load(tmp_path, '[programs.a]\ncommand = "x"\n[programs.a.backoff]\nmin = "3s"\nmax = "4s"\n')
    assert config.programs["a"].backoff == Backoff(min=3.0, max=4.0)


def test_bad_backoff_type(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = "x"\nbackoff = "1s"')
    assert err.key == "backoff"
    assert "a table like" in str(err)


def test_restart_must_be_one_of(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = "x"\nrestart = "sometimes"', name="mailer")
    assert str(err) == (
        f'{err.file}: [programs.mailer] restart: expected one of "always", "on-failure", '
        '"never", got "sometimes"'
    )
    assert (err.table, err.key) == ("programs.mailer", "restart")
    assert err.expected == 'one of "always", "on-failure", "never"'


@pytest.mark.parametrize(
    ("log", "key"),
    [
        ('{ max_size = "lots" }', "log.max_size"),
        ("{ max_size = 0 }", "log.max_size"),
        ('{ keep = "3" }', "log.keep"),
        ("{ keep = -1 }", "log.keep"),
        ('{ stderr = "both" }', "log.stderr"),
        ('{ timestamps = "yes" }', "log.timestamps"),
        ("5", "log"),
    ],
)
def test_bad_log_settings(tmp_path: Path, log: str, key: str) -> None:
    err = program_error(tmp_path, f'command = "x"\nlog = {log}')
    assert (err.table, err.key) == ("programs.app", key)


def test_log_size_number_of_bytes(tmp_path: Path) -> None:
    assert program(tmp_path, 'command = "x"\nlog = { max_size = 4096 }').log.max_size == 4096


# --------------------------------------------------------------------------------------------
# unknown and unsupported keys
# --------------------------------------------------------------------------------------------


def test_unknown_program_key_with_suggestion(tmp_path: Path) -> None:
    err = error(tmp_path, '[programs.mailer]\ncomand = "x"\n')
    assert str(err) == f'{err.file}: [programs.mailer] unknown key "comand" (did you mean "command"?)'
    assert (err.table, err.key) == ("programs.mailer", "comand")


def test_unknown_key_without_close_match_has_no_suggestion(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = "x"\nzzzzzz = 1')
    assert str(err) == f'{err.file}: [programs.app] unknown key "zzzzzz"'


def test_unknown_nested_key(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = "x"\nlog = { maxsize = "1MB" }')
    assert str(err).endswith('unknown key "log.maxsize" (did you mean "log.max_size"?)')
    err = program_error(tmp_path, 'command = "x"\nbackoff = { minimum = "1s" }')
    assert str(err).endswith('unknown key "backoff.minimum" (did you mean "backoff.min"?)')


def test_unknown_daemon_key(tmp_path: Path) -> None:
    err = error(tmp_path, '[daemon]\nlisten_on = ":9100"\n')
    assert str(err) == f'{err.file}: [daemon] unknown key "listen_on" (did you mean "listen"?)'


def test_unknown_top_level_table(tmp_path: Path) -> None:
    err = error(tmp_path, '[program.a]\ncommand = "x"\n')
    assert str(err) == f'{err.file}: unknown table [program] (did you mean "programs"?)'


def test_unknown_top_level_key(tmp_path: Path) -> None:
    err = error(tmp_path, "version = 2\n")
    assert str(err) == f'{err.file}: unknown key "version"'


def test_singleton_and_nodes(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [programs.cron_like]
        command = "x"
        singleton = true
        nodes = ["web-*", "worker-[12]", "db.internal"]
        [programs.plain]
        command = "x"
        """,
    )
    assert config.programs["cron_like"].singleton is True
    assert config.programs["cron_like"].nodes == ("web-*", "worker-[12]", "db.internal")
    assert (config.programs["plain"].singleton, config.programs["plain"].nodes) == (False, ())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[]", "remove the key to run on every node"),
        ('["web-*", ""]', "no empty or unprintable patterns"),
        ('["web-*", "  "]', "no empty or unprintable patterns"),
        ('"web-*"', "a non-empty array of node names or glob patterns"),
        ("[1]", "a non-empty array of node names or glob patterns"),
    ],
)
def test_bad_nodes_are_refused(tmp_path: Path, value: str, expected: str) -> None:
    err = error(tmp_path, f'[programs.X]\ncommand = "x"\nnodes = {value}\n')
    assert (err.table, err.key) == ("programs.X", "nodes")
    assert expected in str(err), str(err)


def test_bad_singleton_is_refused(tmp_path: Path) -> None:
    err = error(tmp_path, '[programs.X]\ncommand = "x"\nsingleton = "yes"\n')
    assert (err.table, err.key) == ("programs.X", "singleton")
    assert "true or false" in str(err)


# --------------------------------------------------------------------------------------------
# day-2 keys: readiness, dependencies, resource restarts
# --------------------------------------------------------------------------------------------


def test_day2_keys_parse(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    config = load(
        tmp_path,
        """
        [programs.redis]
        command = "redis-server"
        ready = "tcp:6379"
        [programs.web]
        command = "php -S 127.0.0.1:80{instance}"
        instances = 2
        depends_on = ["redis"]
        ready = "http://127.0.0.1:80{instance}/health"
        ready_timeout = "2m"
        max_memory = "256MB"
        watch = ["src/"]
        watch_ignore = ["*.log"]
        watchdog = "30s"
        """,
    )
    web = config.programs["web"]
    assert web.depends_on == ("redis",)
    assert (web.ready_timeout, web.watchdog, web.max_memory) == (120.0, 30.0, 256 * 1024 * 1024)
    assert web.watch == (str(tmp_path / "src"),)
    assert web.watch_ignore == ("*.log",)
    assert [web.spec(i).ready for i in (0, 1)] == [
        "http://127.0.0.1:800/health",
        "http://127.0.0.1:801/health",
    ]
    assert config.programs["redis"].depends_on == ()


@pytest.mark.parametrize(
    ("lines", "key", "says"),
    [
        ('ready = "tcp:http"', "ready", "the port must be a number"),
        ('ready = "tcp:::1:80"', "ready", "brackets"),
        ('ready = "ftp://x"', "ready", "is not a readiness check"),
        ('ready = "http://"', "ready", "has no host"),
        ('ready = "http://h:99999/"', "ready", "out of range"),
        ('ready_timeout = "0s"', "ready_timeout", "greater than zero"),
        ('watchdog = "soon"', "watchdog", "a duration"),
        ('max_memory = "0MB"', "max_memory", "greater than zero"),
        ('max_memory = "lots"', "max_memory", "a size"),
        ('watch = ["no-such-dir/"]', "watch", "paths that exist"),
        ('watch_ignore = [""]', "watch_ignore", "no empty strings"),
        ('depends_on = ["X"]', "depends_on", "cannot depend on itself"),
        ('depends_on = ["redis"]', "depends_on", 'no program "redis" in this file'),
        ('depends_on = ["Y"]', "depends_on", 'did you mean "Yy"'),
        ('depends_on = "Yy"', "depends_on", "an array of program names"),
    ],
)
def test_day2_key_errors(tmp_path: Path, lines: str, key: str, says: str) -> None:
    err = error(tmp_path, f'[programs.X]\ncommand = "x"\n{lines}\n[programs.Yy]\ncommand = "y"\n')
    assert (err.table, err.key) == ("programs.X", key)
    assert says in str(err)


def test_task_size_limits(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[tasks.a]\ncommand = "a"\n[tasks.b]\ncommand = "b"\nmax_params = "1KB"\nmax_output = 4096\n',
    )
    assert (config.tasks["a"].max_params, config.tasks["a"].max_output) == (64 * 1024, 100 * 1024 * 1024)
    assert (config.tasks["b"].max_params, config.tasks["b"].max_output) == (1024, 4096)
    for line, key, says in [
        ('max_params = "0KB"', "max_params", "greater than zero"),
        ('max_params = "big"', "max_params", "a size"),
        ("max_output = 0", "max_output", "greater than zero"),
        ("max_output = true", "max_output", "a size"),
    ]:
        err = error(tmp_path, f'[tasks.a]\ncommand = "a"\n{line}\n')
        assert (err.table, err.key) == ("tasks.a", key) and says in str(err)
    # a schedule's own parameters are held to its task's limit
    err = error(
        tmp_path,
        '[tasks.a]\ncommand = "a {x}"\nmax_params = "20B"\n'
        '[schedules.s]\nevery = "1m"\ntask = "a"\nparams = { x = "way more than twenty bytes" }\n',
    )
    assert err.key == "params" and "max_params of 20B" in str(err)


def test_dependency_cycle_names_the_circle(tmp_path: Path) -> None:
    err = error(
        tmp_path,
        """
        [programs.a]
        command = "a"
        depends_on = ["b"]
        [programs.b]
        command = "b"
        depends_on = ["c"]
        [programs.c]
        command = "c"
        depends_on = ["a"]
        [programs.d]
        command = "d"
        depends_on = ["a"]
        """,
    )
    assert (
        str(err)
        == f"{err.file}: [programs.a] depends_on: the programs depend on each other in a circle: a → b → c → a"
    )


@given(
    st.dictionaries(st.sampled_from("abcdef"), st.lists(st.sampled_from("abcdef"), max_size=3), max_size=6)
)
def test_find_cycle_agrees_with_a_topological_sort(graph: dict[str, list[str]]) -> None:
    import graphlib

    cycle = find_cycle(graph)
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
        acyclic = True
    except graphlib.CycleError:
        acyclic = False
    assert acyclic == (cycle == [])
    if cycle:
        assert cycle[0] == cycle[-1]
        assert all(b in graph.get(a, []) for a, b in itertools.pairwise(cycle))


# --------------------------------------------------------------------------------------------
# program names and table shapes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a:b", "with space", "é", "a/b", ""])
def test_bad_program_names(tmp_path: Path, name: str) -> None:
    err = error(tmp_path, f'[programs.{json.dumps(name)}]\ncommand = "x"\n')
    assert err.table == "programs"
    assert "program name" in str(err)


def test_all_is_reserved(tmp_path: Path) -> None:
    err = error(tmp_path, '[programs.all]\ncommand = "x"\n')
    assert "reserved" in str(err)


def test_program_that_is_not_a_table(tmp_path: Path) -> None:
    err = error(tmp_path, '[programs]\nmailer = "php x.php"\n')
    assert (err.table, err.key) == ("programs", "mailer")
    assert "expected a table ([programs.mailer])" in str(err)


@pytest.mark.parametrize("key", ["daemon", "programs"])
def test_top_level_tables_must_be_tables(tmp_path: Path, key: str) -> None:
    err = error(tmp_path, f"{key} = 5\n")
    assert (err.table, err.key) == (None, key)


# --------------------------------------------------------------------------------------------
# [daemon]: listen, token, store, timezone
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "normal", "host", "port"),
    [
        (":9100", "127.0.0.1:9100", "127.0.0.1", 9100),
        ("127.0.0.1:80", "127.0.0.1:80", "127.0.0.1", 80),
        ("127.1.2.3:80", "127.1.2.3:80", "127.1.2.3", 80),
        ("[::1]:9100", "[::1]:9100", "::1", 9100),
        ("localhost:9100", "localhost:9100", "localhost", 9100),
    ],
)
def test_loopback_listen_needs_no_token(
    tmp_path: Path, listen: str, normal: str, host: str, port: int
) -> None:
    daemon = load(tmp_path, f'[daemon]\nlisten = "{listen}"\n').daemon
    assert (daemon.listen, daemon.listen_host, daemon.listen_port) == (normal, host, port)


@pytest.mark.parametrize("listen", ["0.0.0.0:9100", "[::]:9100", "10.0.0.5:80", "web-1:9100"])
def test_public_listen_requires_token(tmp_path: Path, listen: str) -> None:
    err = error(tmp_path, f'[daemon]\nlisten = "{listen}"\n')
    assert (err.table, err.key) == ("daemon", "listen")
    assert "token is required" in str(err)
    daemon = load(tmp_path, f'[daemon]\nlisten = "{listen}"\ntoken = "0123456789abcdef"\n').daemon
    assert daemon.listen == listen
    assert daemon.token == "0123456789abcdef"


@pytest.mark.parametrize("listen", ["0.0.0.0:9100", "[::]:9100", "10.0.0.5:80", "web-1:9100"])
@pytest.mark.parametrize("token", ["x", "t0ken", "0123456789abcde", "  0123456789abcde  "])
def test_a_short_token_is_refused_off_loopback(tmp_path: Path, listen: str, token: str) -> None:
    err = error(tmp_path, f'[daemon]\nlisten = "{listen}"\ntoken = "{token}"\n')
    assert (err.table, err.key) == ("daemon", "token")
    assert err.expected == "a token of at least 16 characters"
    count = len(token.strip())
    assert f"{count} character{'s are' if count > 1 else ' is'} too few to guard " in str(err)
    assert listen in str(err) and "at least 16" in str(err)
    if count > 1:
        assert token.strip() not in str(err)  # the secret is not shown


def test_a_short_token_from_a_file_is_refused_off_loopback(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    err = error(tmp_path, '[daemon]\nlisten = "0.0.0.0:9100"\ntoken = "file:token"\n')
    assert (err.table, err.key) == ("daemon", "token") and "6 characters are too few" in str(err)


@pytest.mark.parametrize("listen", [":9100", "127.0.0.1:9100", "[::1]:9100", "localhost:9100"])
def test_a_short_token_is_allowed_on_loopback(tmp_path: Path, listen: str) -> None:
    assert load(tmp_path, f'[daemon]\nlisten = "{listen}"\ntoken = "t0ken"\n').daemon.token == "t0ken"


@pytest.mark.parametrize(
    "listen",
    ["9100", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:9100", "[nope]:1", "a b:1", ""],
)
def test_bad_listen(tmp_path: Path, listen: str) -> None:
    err = error(tmp_path, f'[daemon]\nlisten = "{listen}"\ntoken = "t"\n')
    assert err.key == "listen"


def test_token_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_STOKER_TOKEN", "  abc  ")
    assert load(tmp_path, '[daemon]\ntoken = "env:MY_STOKER_TOKEN"\n').daemon.token == "abc"


def test_token_from_missing_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_STOKER_TOKEN", raising=False)
    err = error(tmp_path, '[daemon]\ntoken = "env:MY_STOKER_TOKEN"\n')
    assert (err.table, err.key) == ("daemon", "token")
    assert "MY_STOKER_TOKEN" in str(err) and "not set" in str(err)


def test_token_from_file_relative_to_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("from-file\n")
    monkeypatch.chdir("/")
    assert load(tmp_path, '[daemon]\ntoken = "file:secrets/token"\n').daemon.token == "from-file"


def test_token_from_missing_file(tmp_path: Path) -> None:
    err = error(tmp_path, '[daemon]\ntoken = "file:nope"\n')
    assert err.key == "token"
    assert str(tmp_path / "nope") in str(err)


@pytest.mark.parametrize("text", ['""', '"   "', '"file:empty"'])
def test_empty_token_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "empty").write_text("\n")
    err = error(tmp_path, f"[daemon]\ntoken = {text}\n")
    assert err.key == "token"
    assert "empty" in str(err)


def test_repr_hides_token(tmp_path: Path) -> None:
    config = load(tmp_path, '[daemon]\ntoken = "super-secret-value"\n')
    assert "super-secret-value" not in repr(config)
    assert "super-secret-value" not in repr(config.daemon)


@pytest.mark.parametrize("store", ["sqlite", "postgresql://u@h/db", "postgres://h/db"])
def test_store(tmp_path: Path, store: str) -> None:
    assert load(tmp_path, f'[daemon]\nstore = "{store}"\n').daemon.store == store


@pytest.mark.parametrize(
    ("store", "shown"),
    [
        ("sqlite", "sqlite"),
        (
            "postgresql://app:s3cret@db:5432/orders?sslmode=require",
            "postgresql://app:***@db:5432/orders?sslmode=require",
        ),
        (
            "postgresql://app@/orders?host=/run/pg&password=s3cret",
            "postgresql://app@/orders?host=/run/pg&password=***",
        ),
        ("postgres://app@db/orders", "postgres://app@db/orders"),
    ],
)
def test_store_is_shown_without_its_password(tmp_path: Path, store: str, shown: str) -> None:
    daemon = load(tmp_path, f'[daemon]\nstore = "{store}"\n').daemon
    assert daemon.store == store and daemon.store_shown == shown
    assert "s3cret" not in repr(daemon)


@pytest.mark.parametrize("store", ["mysql://x", "SQLite", ""])
def test_bad_store(tmp_path: Path, store: str) -> None:
    assert error(tmp_path, f'[daemon]\nstore = "{store}"\n').key == "store"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime"])
def test_bad_timezone(tmp_path: Path, zone: str) -> None:
    err = error(tmp_path, f"[daemon]\ntimezone = {json.dumps(zone)}\n")
    assert (err.table, err.key) == ("daemon", "timezone")


def test_utc_timezone(tmp_path: Path) -> None:
    assert load(tmp_path, '[daemon]\ntimezone = "UTC"\n').daemon.timezone == "UTC"


def test_bad_shutdown_timeout(tmp_path: Path) -> None:
    err = error(tmp_path, '[daemon]\nshutdown_timeout = "soon"\n')
    assert (err.table, err.key) == ("daemon", "shutdown_timeout")


def test_bad_daemon_type(tmp_path: Path) -> None:
    err = error(tmp_path, "[daemon]\nnode = 5\n")
    assert str(err) == f"{err.file}: [daemon] node: expected a node name string, got 5"


# --------------------------------------------------------------------------------------------
# the starter config
# --------------------------------------------------------------------------------------------


def test_starter_toml_parses(tmp_path: Path) -> None:
    config = parse_config(STARTER_TOML, tmp_path / "stoker.toml")
    assert list(config.programs) == ["worker"]
    worker = config.programs["worker"]
    assert shutil.which(worker.command[0]) is not None


def test_starter_toml_with_every_example_uncommented_parses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOKER_TOKEN", "example")
    monkeypatch.setenv("OPS_HOOK_URL", "https://hooks.example.com/stoker")
    monkeypatch.setenv("OPS_HOOK_TOKEN", "secret")
    setting = re.compile(r"^# ([a-z_]+ = .*|\[[a-z_.]+\].*)$")  # a setting, or a table's header
    lines = [setting.sub(r"\1", line) for line in STARTER_TOML.splitlines()]
    # (a program's two spellings of command, and a task's command or call, exclude each other;
    # depends_on names a program the starter does not have)
    skipped = ("command = [", "call = ", "depends_on = ")
    uncommented = "\n".join(line for line in lines if not line.startswith(skipped))
    keys = {m.group(1) for m in re.finditer(r"^([a-z_]+) = ", "\n".join(lines), re.M)}
    config = parse_config(uncommented, tmp_path / "stoker.toml")
    daemon_keys = set(DaemonConfig.__struct_fields__)
    program_keys = set(ProgramConfig.__struct_fields__) - {"name"}
    task_keys = {"command", "queue", "params", "max_attempts", "backoff", "timeout", "stop_timeout"}
    assert '\n# call = "' in STARTER_TOML
    assert daemon_keys | program_keys | task_keys | {"concurrency"} <= keys, (
        "every key has a commented example"
    )
    assert config.daemon.token == "example"
    assert config.programs["worker"].command[0] == "php"
    assert config.notify["ops"].url == "https://hooks.example.com/stoker"


# --------------------------------------------------------------------------------------------
# no other exception, ever
# --------------------------------------------------------------------------------------------


def _toml(value: Any) -> str:
    """Serialise a Python value as a TOML value (inline tables, arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_str(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def _toml_str(text: str) -> str:
    """A TOML basic string (astral characters raw: TOML refuses escaped surrogate pairs)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


_PROGRAM_KEYS = [*ProgramConfig.__struct_fields__, "max_memory", "watch", "nodes", "comand", "x"]
_PROGRAM_KEYS.remove("name")
_NESTED_KEYS = ["min", "max", "max_size", "keep", "stderr", "timestamps", "A", "PORT", "x"]
_INTERESTING = [
    "10s", "5m", "250ms", "0s", "-1s", "512KB", "0", "1GB", "TERM", "sigkill", "SIG_DFL", "99",
    "always", "never", "on-failure", "merge", "separate", "022", "0o777", "999", "", " ",
    "{instance}", "/bin/sh", "sleep 1", "'unbalanced", "a\x00b", "..", "/", "env:HOME",
    "env:NO_SUCH_VAR_X", "file:nope", "127.0.0.1:9100", "0.0.0.0:1", ":0", "[::1]:1", "UTC",
    "Nowhere/Zone", "postgresql://x", "www-data",
]  # fmt: skip
_scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-3, max_value=300),
    st.floats(),
    st.booleans(),
    st.text(st.characters(codec="utf-8"), max_size=12),
    st.sampled_from(_INTERESTING),
    st.datetimes(min_value=datetime(1000, 1, 1)),
    st.dates(min_value=date(1000, 1, 1)),
)
_junk = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(_NESTED_KEYS) | st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=8,
)


# Values that are valid or just over an edge, so that many examples get past the first key.
_PLAUSIBLE: dict[str, list[Any]] = {
    "command": ["sleep 1", ["sleep", "{instance}"], "", [], "'", ["a\x00"]],
    "shell": [True, False],
    "instances": [1, 3, 0, -1, 2**62],
    "directory": [".", "..", "/tmp/{instance}", "rel/dir", ""],
    "environment": [{}, {"A": "{instance}"}, {"A": 1}, {"STOKER_PROGRAM": "x"}, {"": "x"}],
    "user": ["www-data", "", "0"],
    "group": ["www-data", ""],
    "umask": [0o022, "022", "0o777", 0o1000, "8", -1],
    "autostart": [True, False],
    "restart": ["always", "on-failure", "never", "sometimes"],
    "success_exit_codes": [[0], [], [0, 255], [256], [-1]],
    "start_seconds": ["1s", 0, 0.5, -1, "1h30m", "ten", math.inf],
    "stable_seconds": ["1m", 0, -1, "ten"],
    "backoff": [{}, {"min": "1s"}, {"min": "10s", "max": "1s"}, {"min": 0}, {"max": "1d"}],
    "max_restarts": [0, 3, -1],
    "stop_signal": ["TERM", "sigint", 9, "15", 0, "SIG_DFL", "NOPE"],
    "stop_timeout": ["10s", 0, "250ms", "-1s"],
    "log": [{}, {"max_size": "1KB"}, {"max_size": 0}, {"keep": -1}, {"stderr": "separate"}],
}


def _program_value(key: str) -> st.SearchStrategy[Any]:
    return st.sampled_from(_PLAUSIBLE[key]) | _junk if key in _PLAUSIBLE else _junk


def _check_outcome(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    try:
        config = load_config(path)
    except ConfigError as err:
        assert str(err).startswith(f"{path}: "), str(err)
        assert "\n" not in str(err)
        assert err.file == str(path)
        return
    for prog in config.programs.values():
        for i in range(min(prog.instances, 3)):
            spec = prog.spec(i)
            assert spec.argv and all(isinstance(a, str) for a in spec.argv)
            assert spec.directory.startswith("/")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    entries=st.lists(st.sampled_from(_PROGRAM_KEYS), max_size=4, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: _program_value(key) for key in keys})
    ),
    with_command=st.booleans(),
)
def test_junk_program_values_give_config_or_config_error(
    tmp_path_factory: pytest.TempPathFactory, entries: dict[str, Any], with_command: bool
) -> None:
    body = dict(entries)
    if with_command:
        body.setdefault("command", "sleep 1")
    lines = [f"{key} = {_toml(value)}" for key, value in body.items()]
    text = "[programs.app]\n" + "\n".join(lines) + "\n"
    _check_outcome(tmp_path_factory.mktemp("junk") / "stoker.toml", text)


_DAEMON_KEYS = [
    "state_dir", "listen", "token", "store", "node", "timezone", "shutdown_timeout", "lisen",
]  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(entries=st.dictionaries(st.sampled_from(_DAEMON_KEYS), _junk, max_size=4))
def test_junk_daemon_values_give_config_or_config_error(
    tmp_path_factory: pytest.TempPathFactory, entries: dict[str, Any]
) -> None:
    lines = [f"{key} = {_toml(value)}" for key, value in entries.items()]
    text = "[daemon]\n" + "\n".join(lines) + "\n"
    _check_outcome(tmp_path_factory.mktemp("junk") / "stoker.toml", text)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    name=st.text(max_size=10),
    top=st.dictionaries(st.text(max_size=8) | st.sampled_from(["daemon", "programs"]), _junk),
)
def test_junk_names_and_tables_give_config_or_config_error(
    tmp_path_factory: pytest.TempPathFactory, name: str, top: dict[str, Any]
) -> None:
    lines = [f"{_toml_str(k)} = {_toml(v)}" for k, v in top.items()]
    text = "\n".join(lines) + f'\n[programs.{_toml_str(name)}]\ncommand = "true"\n'
    _check_outcome(tmp_path_factory.mktemp("junk") / "stoker.toml", text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_gives_config_or_config_error(text: str) -> None:
    path = Path("/nonexistent-dir/stoker.toml")
    try:
        parse_config(text, path)
    except ConfigError as err:
        assert str(err).startswith(f"{path}: ")
        assert "\n" not in str(err)


# --------------------------------------------------------------------------------------------
# [tasks.*] and [queues.*]
# --------------------------------------------------------------------------------------------


def test_task_defaults_and_placeholders(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [tasks.build_apk]
        command = ["ant", "release", "-Dpackage={package}", "{{literal}}", "{flavor}"]
        queue = "build"
        params = ["note", "flavor"]
        [tasks.plain]
        command = "php send.php"
        [queues.build]
        concurrency = 2
        """,
    )
    apk = config.tasks["build_apk"]
    assert apk.command == ("ant", "release", "-Dpackage={package}", "{{literal}}", "{flavor}")
    assert apk.required == ("package", "flavor") and apk.optional == ("note",)
    assert apk.max_attempts == 1 and apk.timeout is None and apk.stop_timeout == 10.0
    assert apk.backoff == Backoff(min=10.0, max=600.0) and apk.directory == str(tmp_path)
    plain = config.tasks["plain"]
    assert plain.command == ("php", "send.php") and plain.queue == "default"
    assert config.queues["build"].concurrency == 2
    assert config.queues["default"].concurrency == 1  # used by a task, declared nowhere


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        ('command = "x"\nmax_attempts = 0', "max_attempts", "1 or more"),
        ('command = "x"\nmax_attempts = "3"', "max_attempts", "1 or more"),
        ('command = "x"\ntimeout = "soon"', "timeout", "duration"),
        ('command = "x"\ntimeout = 0', "timeout", "greater than zero"),
        ('command = "x"\nqueue = "a b"', "queue", "queue name"),
        ('command = "x"\nparams = ["bad-name"]', "params", "parameter names"),
        ('command = "x"\nretries = 3', "retries", "unknown key"),
        (
            'command = "x"\nenvironment = { STOKER_JOB_ID = "1" }',
            "environment.STOKER_JOB_ID",
            "set by stoker",
        ),
        ('command = "x"\nbackoff = { min = "1m", max = "1s" }', "backoff", "min"),
        ("command = []", "command", "non-empty"),
    ],
)
def test_task_errors_name_the_key(tmp_path: Path, body: str, key: str, expected: str) -> None:
    err = error(tmp_path, f"[tasks.t]\n{body}\n")
    assert err.table == "tasks.t" and err.key == key, str(err)
    assert expected in str(err)


def test_task_needs_command_or_call(tmp_path: Path) -> None:
    err = error(tmp_path, "[tasks.t]\nqueue = 'q'\n")
    assert "exactly one of command" in str(err)


def test_bad_queue(tmp_path: Path) -> None:
    err = error(tmp_path, "[queues.q]\nconcurrency = 0\n")
    assert (err.table, err.key) == ("queues.q", "concurrency")
    err = error(tmp_path, "[queues.q]\nsize = 3\n")
    assert err.key == "size"


def test_node_timeout(tmp_path: Path) -> None:
    assert load(tmp_path, "").daemon.node_timeout == 30.0
    assert load(tmp_path, '[daemon]\nnode_timeout = "2m"\n').daemon.node_timeout == 120.0
    err = error(tmp_path, '[daemon]\nnode_timeout = "500ms"\n')
    assert (err.table, err.key, err.expected) == ("daemon", "node_timeout", "a duration of 1s or more")


def test_keep_jobs(tmp_path: Path) -> None:
    assert load(tmp_path, "").daemon.keep_jobs == 7 * 86400
    assert load(tmp_path, '[daemon]\nkeep_jobs = "12h"\n').daemon.keep_jobs == 12 * 3600


# --------------------------------------------------------------------------------------------
# [schedules.*]
# --------------------------------------------------------------------------------------------


def test_schedules_with_a_task_or_an_inline_command(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [daemon]
        timezone = "Europe/Berlin"
        [tasks.notify]
        command = ["php", "notify.php", "{channel}"]
        [schedules.gray_notify]
        every = "30m"
        task = "notify"
        params = { channel = "android" }
        [schedules.cleanup]
        cron = "0 3 * * *"
        command = "php cleanup.php"
        timeout = "10m"
        overlap = "allow"
        catch_up = "latest"
        jitter = "5s"
        """,
    )
    gray = config.schedules["gray_notify"]
    assert (gray.every, gray.cron, gray.task, gray.params) == (1800.0, None, "notify", {"channel": "android"})
    cleanup = config.schedules["cleanup"]
    assert cleanup.cron == "0 3 * * *" and cleanup.timezone == "Europe/Berlin"  # the daemon's zone
    assert (cleanup.overlap, cleanup.catch_up, cleanup.jitter) == ("allow", "latest", 5.0)
    inline = config.tasks["schedule.cleanup"]
    assert inline.command == ("php", "cleanup.php") and inline.timeout == 600
    assert inline.queue == "schedule.cleanup" and config.queues["schedule.cleanup"].concurrency == 64
    assert cleanup.inline and not gray.inline
    assert gray.when_file is None and gray.when_path is None


def test_when_file_is_kept_as_written_and_resolved_against_the_config(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [schedules.gray]
        every = "30m"
        command = "php notify.php"
        when_file = " flags/gray_release "
        [schedules.abs]
        every = "30m"
        command = "true"
        when_file = "/run/app/enabled"
        """,
    )
    gray, absolute = config.schedules["gray"], config.schedules["abs"]
    assert gray.when_file == "flags/gray_release"  # as the messages show it
    assert gray.when_path == str(tmp_path / "flags" / "gray_release")  # whatever the cwd
    assert (absolute.when_file, absolute.when_path) == ("/run/app/enabled", "/run/app/enabled")


def test_internal_names_are_an_inline_commands_task_and_its_own_queue(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [tasks.notify]
        command = ["echo", "hi"]
        [schedules.own]
        every = "1m"
        command = "true"
        [schedules.shared]
        every = "1m"
        command = "true"
        queue = "default"
        [schedules.listed]
        every = "1m"
        task = "notify"
        """,
    )
    assert internal_tasks(config) == {"schedule.own": "own", "schedule.shared": "shared"}
    assert internal_queues(config) == {"schedule.own": "own"}  # "default" is notify's too
    assert set(config.queues) == {"default", "schedule.own"}


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        ('every = "1m"\ncron = "* * * * *"\ncommand = "x"', None, "exactly one of every or cron"),
        ('command = "x"', None, "exactly one of every or cron"),
        ('every = "1m"', None, "exactly one of task"),
        ('every = "soon"\ncommand = "x"', "every", "duration"),
        ('cron = "61 * * * *"\ncommand = "x"', "cron", "bad minute"),
        ('cron = "* * * * *"\ntimezone = "Mars/Base"\ncommand = "x"', "timezone", "time zone"),
        ('every = "1m"\ntimezone = "UTC"\ncommand = "x"', "timezone", "only a cron schedule"),
        ('every = "1m"\ntask = "ghost"', "task", "no task 'ghost'"),
        ('every = "1m"\ntask = "t"', "params", "needs parameter(s) 'x'"),
        ('every = "1m"\ntask = "t"\nparams = { x = "1" }\ntimeout = "1s"', "timeout", "belongs to the task"),
        ('every = "1m"\ncommand = "x"\noverlap = "maybe"', "overlap", "skip"),
        ('every = "1m"\ncommand = "x"\ncatch_up = "all"', "catch_up", "latest"),
        ('every = "1m"\ncommand = "x"\nwhen = "now"', "when", "unknown key"),
        ('every = "1m"\ncommand = "x"\nwhen_file = ""', "when_file", "a non-empty path"),
        ('every = "1m"\ncommand = "x"\nwhen_file = "  "', "when_file", "a non-empty path"),
        ('every = "1m"\ncommand = "x"\nwhen_file = 1', "when_file", "a path"),
    ],
)
def test_schedule_errors_name_the_key(tmp_path: Path, body: str, key: str | None, expected: str) -> None:
    err = error(tmp_path, f'[tasks.t]\ncommand = ["echo", "{{x}}"]\n[schedules.s]\n{body}\n')
    assert err.table == "schedules.s" and err.key == key, str(err)
    assert expected in str(err)
