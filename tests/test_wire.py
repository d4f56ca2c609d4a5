"""The pool's wire format (stoker.jobs.wire): what one side encodes, the other decodes as the
same message; frames split anywhere come out whole; and a worker imports none of the daemon."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker.jobs import wire
from stoker.jobs.wire import Call, Command, Done, Revoke, Revoked

ids = st.integers(min_value=1, max_value=2**62)
text = st.text(max_size=20)
environment = st.dictionaries(text, text, max_size=3)


def requests() -> st.SearchStrategy[Call | Command]:
    common = {"id": ids, "output": text, "attempt": st.integers(1, 100), "rerun": st.booleans(),
              "directory": text, "environment": environment}  # fmt: skip
    params = st.dictionaries(text, st.none() | st.integers() | text | st.lists(st.integers()), max_size=3)
    return st.builds(Call, call=text, params=params, **common) | st.builds(
        Command, argv=st.lists(text, min_size=1, max_size=4), **common
    )


answers = st.builds(
    Done,
    id=ids,
    ok=st.booleans(),
    error=st.none() | text,
    status=st.none() | st.integers(0, 65535),
    spawn_error=st.none() | st.tuples(st.integers(1, 200), text, st.none() | text),
    output=text,
    written=st.integers(0, 2**40),
    took=st.none() | st.floats(0, 1e6),
    ended=st.none() | st.floats(0, 2e9),
) | st.builds(Revoked, id=ids)


@given(requests() | st.builds(Revoke, id=ids))
def test_what_the_daemon_sends_the_worker_reads_as_sent(message: Call | Command | Revoke) -> None:
    (data,) = wire.frames(bytearray(wire.frame(message)))
    assert wire.to_worker.decode(data) == message


@given(answers)
def test_what_the_worker_answers_the_daemon_reads_as_sent(message: Done | Revoked) -> None:
    (data,) = wire.frames(bytearray(wire.frame(message)))
    assert wire.answer.decode(data) == message


def test_a_calls_result_goes_as_the_json_the_worker_made_and_comes_back_as_its_value() -> None:
    sent = Done(7, ok=True, result=msgspec.Raw(b'{"sum": 3}'))
    (data,) = wire.frames(bytearray(wire.frame(sent)))
    got = wire.answer.decode(data)
    assert isinstance(got, Done) and got.result == {"sum": 3} and got.ok


@given(st.lists(answers, max_size=6), st.lists(st.integers(0, 400), max_size=6))
def test_frames_split_anywhere_come_out_whole_and_in_order(
    messages: list[Done | Revoked], cuts: list[int]
) -> None:
    stream = b"".join(wire.frame(m) for m in messages)
    buffer = bytearray()
    got = []
    at = 0
    for cut in [*sorted({min(c, len(stream)) for c in cuts}), len(stream)]:
        buffer += stream[at:cut]
        at = cut
        got += [wire.answer.decode(f) for f in wire.frames(buffer)]
    assert got == messages and buffer == b""


def test_a_message_of_the_other_direction_is_refused() -> None:
    (data,) = wire.frames(bytearray(wire.frame(Revoked(1))))
    with pytest.raises(msgspec.ValidationError):
        wire.to_worker.decode(data)


def test_a_worker_imports_none_of_the_daemons_modules() -> None:
    """The worker starts per slot and after every worker_max_jobs calls: what it imports is
    its start-up time, so the wire it shares with the daemon must not pull the daemon in."""
    probe = "import sys, stoker.jobs.worker; print(' '.join(sorted(m for m in sys.modules if m.startswith('stoker'))))"
    found = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, check=True)
    # stoker.about and stoker.names are leaves: the version and the state dir's file names.
    assert set(found.stdout.split()) == {
        "stoker", "stoker.about", "stoker.names",
        "stoker.jobs", "stoker.jobs.launch", "stoker.jobs.output", "stoker.jobs.wire", "stoker.jobs.worker",
    }  # fmt: skip
