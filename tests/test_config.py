"""stoker.toml as a whole: finding and reading the file, its TOML, the top-level tables, the
starter config, and hostile input (hypothesis: a Config or a one-line ConfigError, nothing else)."""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from config_helpers import error, load, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stoker.config import (
    STARTER_TOML,
    ConfigError,
    DaemonConfig,
    ProgramConfig,
    find_config_path,
    find_cycle,
    load_config,
    parse_config,
)

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
# unknown tables and keys
# --------------------------------------------------------------------------------------------


def test_unknown_top_level_table(tmp_path: Path) -> None:
    err = error(tmp_path, '[program.a]\ncommand = "x"\n')
    assert str(err) == f'{err.file}: unknown table [program] (did you mean "programs"?)'


def test_unknown_top_level_key(tmp_path: Path) -> None:
    err = error(tmp_path, "version = 2\n")
    assert str(err) == f'{err.file}: unknown key "version"'


# --------------------------------------------------------------------------------------------
# dependencies between programs: no cycle
# --------------------------------------------------------------------------------------------


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
# table shapes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["daemon", "programs"])
def test_top_level_tables_must_be_tables(tmp_path: Path, key: str) -> None:
    err = error(tmp_path, f"{key} = 5\n")
    assert (err.table, err.key) == (None, key)


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
