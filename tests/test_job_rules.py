"""Pure job logic: what follows an attempt, and how parameters fill a command."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker.backoff import backoff_delay
from stoker.jobs.params import Param, ParamError, as_text, fill, normalize, placeholders
from stoker.jobs.rules import JobState, Outcome, after_attempt

NOW = 1000.0


@pytest.mark.parametrize("attempt", [1, 2, 3])
@pytest.mark.parametrize("max_attempts", [1, 2, 3])
@pytest.mark.parametrize("outcome", list(Outcome))
def test_after_attempt_every_case(outcome: Outcome, attempt: int, max_attempts: int) -> None:
    if attempt > max_attempts:
        return
    nxt = after_attempt(outcome, attempt, max_attempts, 10.0, 600.0, NOW, 0.5)
    if outcome is Outcome.SUCCEEDED:
        assert nxt.state is JobState.SUCCEEDED and nxt.run_at is None
    elif outcome is Outcome.CANCELLED:
        assert nxt.state is JobState.CANCELLED and nxt.run_at is None
    elif outcome is Outcome.INTERRUPTED:
        assert nxt.state is JobState.QUEUED and nxt.run_at == NOW and not nxt.counts
    elif attempt < max_attempts:  # failed or timed out with attempts left
        assert nxt.state is JobState.QUEUED and nxt.counts
        assert nxt.run_at == NOW + backoff_delay(10.0, 600.0, attempt, 0.5)
    else:
        assert nxt.state is JobState.FAILED and nxt.run_at is None
    if outcome is not Outcome.INTERRUPTED:
        assert nxt.counts


@given(
    attempt=st.integers(1, 50),
    low=st.floats(0.001, 100),
    factor=st.floats(1, 1000),
    jitter=st.floats(0, 0.999),
)
def test_retry_delay_is_bounded_and_grows(attempt: int, low: float, factor: float, jitter: float) -> None:
    high = low * factor
    nxt = after_attempt(Outcome.FAILED, attempt, attempt + 1, low, high, NOW, jitter)
    assert nxt.run_at is not None
    delay = nxt.run_at - NOW
    assert low / 2 <= delay + 1e-9 and delay <= high + 1e-9
    full = min(high, low * 2 ** (attempt - 1))
    assert full / 2 - 1e-9 <= delay <= full + 1e-9


def test_placeholders_in_order_once() -> None:
    assert placeholders(["ant", "-Dp={package}", "{flavor}", "{package}", "${HOME}"]) == (
        "package",
        "flavor",
        "HOME",
    )
    assert placeholders(["{{literal}}", "{not valid}", "{1x}", "{}"]) == ()


def test_fill_keeps_each_value_inside_its_argument() -> None:
    hostile = "a b; rm -rf / && echo $(id) `x` | cat > f 'q' \"d\" \n next"
    argv = fill(["php", "send.php", "--to={to}", "{to}"], {"to": hostile})
    assert argv == ["php", "send.php", f"--to={hostile}", hostile]


def test_fill_braces_and_types() -> None:
    assert fill(["{{x}}", "{a}{b}", "}}{{"], {"a": 1, "b": True}) == ["{x}", "1true", "}{"]
    assert fill(["{f}"], {"f": 1.5}) == ["1.5"]


def test_fill_missing_and_unfit() -> None:
    with pytest.raises(ParamError, match="missing parameter 'to'"):
        fill(["{to}"], {})
    for bad in (None, [1], {"a": 1}):
        with pytest.raises(ParamError, match="must be text or a number"):
            fill(["{x}"], {"x": bad})
    with pytest.raises(ParamError, match="NUL"):
        as_text("x", "a\0b")


def test_check_names_missing_and_unknown() -> None:
    a, b = Param(name="a"), Param(name="b", type="any", required=False)
    assert normalize("t", {"a": 1, "b": 2}, [a, b]) == {"a": 1, "b": 2}
    with pytest.raises(ParamError, match=r"needs parameter\(s\) 'a'; it takes: a, b \(optional\)"):
        normalize("t", {"b": 1}, [a, b])
    with pytest.raises(ParamError, match="has no parameter 'c'"):
        normalize("t", {"a": 1, "c": 1}, [a])
    normalize("t", {"anything": 1}, [], open_ended=True)
    with pytest.raises(ParamError, match="not allowed"):
        normalize("t", {"bad-name": 1}, [], open_ended=True)
    with pytest.raises(ParamError, match="it takes none"):
        normalize("t", {"x": 1}, [])


@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), st.text(), max_size=4))
def test_fill_never_splits_or_joins_arguments(params: dict[str, str]) -> None:
    params = {k: v.replace("\0", "") for k, v in params.items()}
    template = [f"{{{name}}}" for name in params]
    assert fill(template, params, options=params) == list(params.values())
