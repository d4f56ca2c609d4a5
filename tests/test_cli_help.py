"""`--help` of every command, taken from the parser itself: a new command is covered at once."""

from __future__ import annotations

import argparse
import re

import pytest

from stoker import cli

COMMANDS = cli.top_parser().commands


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        cli.main([*argv, "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: stoker")
    return out


def first_sentence(doc: str) -> str:
    text = " ".join(doc.split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


@pytest.mark.parametrize("name", COMMANDS)
def test_help_of_every_command_names_what_it_takes(capsys: pytest.CaptureFixture[str], name: str) -> None:
    out = help_of(capsys, name)
    assert "None" not in out, out
    parser = cli.command_parser(name)
    usage = out.split("\n\n")[0]
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            assert action.option_strings[-1] in out, out
        if action.choices:  # every choice is shown: in the usage for an argument, else by the option
            where = out if action.option_strings else usage
            assert all(str(choice) in where for choice in action.choices), out
    assert " ".join(str(cli.COMMANDS[name][0].__doc__).split()) in " ".join(out.split())


def test_choices_read_as_alternatives(capsys: pytest.CaptureFixture[str]) -> None:
    assert help_of(capsys, "queue").startswith("Usage: stoker queue [OPTIONS] pause|resume QUEUE\n")
    assert help_of(capsys, "schedule").startswith(
        "Usage: stoker schedule [OPTIONS] run|pause|resume|history NAME\n"
    )
    jobs = help_of(capsys, "jobs")
    assert re.search(
        r"--state queued\|running\|succeeded\|failed\|cancelled\s+Only jobs in this state\.", jobs
    )


def test_command_list_shows_each_command_in_one_whole_short_sentence(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = help_of(capsys)
    listed = out.split("Commands:\n", 1)[1].splitlines()
    assert len(listed) == len(COMMANDS), f"a description took more than one line:\n{out}"
    rows = dict(line.split(maxsplit=1) for line in listed)
    assert sorted(rows) == sorted(COMMANDS)
    for name, text in rows.items():
        assert text == first_sentence(str(cli.COMMANDS[name][0].__doc__)), name
        assert text.endswith(".") and "..." not in text, text
