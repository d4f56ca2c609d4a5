"""The CLI's quick read of `[daemon] state_dir` must agree with the TOML parser whenever it is
sure, and defer to it otherwise."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stoker.locate import DEFAULT_STATE_DIR, _parse_state_dir, quick_state_dir, scan_state_dir

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*/stoker.toml"))


def parsed(text: str) -> object:
    """What tomllib says state_dir is (None when the text is not TOML or daemon not a table)."""
    return _parse_state_dir(text)


def agrees(text: str) -> bool:
    quick = scan_state_dir(text)
    return not isinstance(quick, str) or quick == parsed(text)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_examples_are_read_quickly_and_rightly(path: Path) -> None:
    text = path.read_text()
    assert isinstance(scan_state_dir(text), str)
    assert agrees(text)


CASES = {
    "": DEFAULT_STATE_DIR,
    '[daemon]\nstate_dir = "/var/lib/stoker"\n': "/var/lib/stoker",
    "[daemon]\nstate_dir='run' # here\n": "run",
    '[ daemon ]  # the daemon\n  state_dir   =   "x y"\n': "x y",
    '[programs.a]\ncommand = ["sleep", "1"]\n': DEFAULT_STATE_DIR,
}


@pytest.mark.parametrize("text,expected", CASES.items())
def test_sure_cases(text: str, expected: str) -> None:
    assert scan_state_dir(text) == expected
    assert parsed(text) == expected


UNSURE = [
    '[programs.a]\nstate_dir = "x"\n',  # wrong table: the full loader will refuse it
    'daemon.state_dir = "x"\n',
    'daemon = { state_dir = "x" }\n',
    '[daemon]\n"state_dir" = "x"\n',
    '[daemon]\nstate_dir = "a\\tb"\n',
    '[daemon]\nstate_dir = """x"""\n',
    "[daemon]\nstate_dir = 3\n",
    '[daemon]\nstate_dir = "x" extra\n',
    '[daemon]\nstate_dir = "x"\nstate_dir = "y"\n',
    '[programs.a]\ncommand = ["echo", "state_dir"]\n',
    '[[daemon]]\nstate_dir = "x"\n',
    '[daemon]\nx = [\n[1, 2],\n]\nstate_dir = "x"\n',
    '[daemon]\nname = "\\u0073tate_dir"\n',
]


@pytest.mark.parametrize("text", UNSURE)
def test_unsure_cases_defer_to_the_parser(text: str) -> None:
    assert not isinstance(scan_state_dir(text), str)


line = st.one_of(
    st.sampled_from(
        [
            "[daemon]",
            "[ daemon ]",
            "[programs.a]",
            "[[daemon]]",
            "[daemon.x]",
            'state_dir = "s"',
            "state_dir = 's' # c",
            'state_dir="t"',
            'daemon.state_dir = "d"',
            'state_dir = "a" "b"',
            "state_dir = 1",
            'x = "state_dir"',
            "x = [",
            "[1, 2],",
            "]",
            "# state_dir",
            '"""',
            "",
        ]
    ),
    st.text(alphabet="[]=\"'#\\ .abdemnorst_\t", max_size=20),
)


@settings(max_examples=1000)
@given(st.lists(line, max_size=8))
def test_never_contradicts_tomllib(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    quick = scan_state_dir(text)
    if isinstance(quick, str):
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return  # not TOML at all: the daemon would not start on it either
        daemon = data.get("daemon", {})
        if not isinstance(daemon, dict):
            return  # `[[daemon]]`: the full loader refuses it, so no daemon runs on it
        assert daemon.get("state_dir", DEFAULT_STATE_DIR) == quick


def test_quick_state_dir_resolves_against_the_config_folder(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "stoker.toml"
    config.parent.mkdir()
    config.write_text('[daemon]\nstate_dir = "../state"\n')
    assert quick_state_dir(str(config)) == str(tmp_path / "state")
    config.write_text("[daemon]\nstate_dir = 3\n")
    assert quick_state_dir(str(config)) is None
    assert quick_state_dir(str(tmp_path / "missing.toml")) is None
