"""The [programs.NAME] tables: defaults, commands, instances, paths, process settings, day-2 keys
and names, each refusal a one-line error naming the file, table and key."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from config_helpers import error, load, program, program_error

from stoker.config import Backoff, LogConfig, ProgramConfig

# --------------------------------------------------------------------------------------------
# defaults
# --------------------------------------------------------------------------------------------


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
        log=LogConfig(max_size=50 * 1024 * 1024, keep=10, stderr="merge", timestamps=None),
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


def test_programs_keep_file_order(tmp_path: Path) -> None:
    names = ["zeta", "alpha", "mid.dle", "b-2", "a_1"]
    text = "".join(f'[programs."{n}"]\ncommand = "true"\n' for n in names)
    assert list(load(tmp_path, text).programs) == names


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
        ("{ markers = 1 }", "log.markers"),
        ("5", "log"),
    ],
)
def test_bad_log_settings(tmp_path: Path, log: str, key: str) -> None:
    err = program_error(tmp_path, f'command = "x"\nlog = {log}')
    assert (err.table, err.key) == ("programs.app", key)


def test_log_annotations_say_what_is_expected(tmp_path: Path) -> None:
    err = program_error(tmp_path, 'command = "x"\nlog = { timestamps = "off" }')
    assert "expected true or false (each line prefixed with the time it was read)" in str(err)
    err = program_error(tmp_path, 'command = "x"\nlog = { marker = false }')
    assert "markers" in str(err)  # the keys it may have, named
    log = program(tmp_path, 'command = "x"\nlog = { timestamps = false, markers = true }').log
    assert (log.timestamps, log.markers) == (False, True)


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
