"""Typed task parameters (stoker.jobs.params): declarations, the rules a value must meet, and
the argv a job's values make. Pure: no daemon (tests/test_params_daemon.py drives real ones)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stoker.jobs.params import (
    INT_MAX,
    Param,
    ParamError,
    SpecError,
    declare,
    fill,
    json_schema,
    leading,
    normalize,
    template_error,
)

BUILD = ("./build.sh", "{package}", "--channel={channel}", "{count}")
BUILD_PARAMS = {
    "package": {"pattern": "^[a-z][a-z0-9_.]{1,100}$"},
    "channel": {"choices": ["android", "ios"], "default": "android"},
    "count": {"type": "int", "min": 1, "max": 50},
}


def build() -> tuple[Param, ...]:
    params, open_ended = declare(BUILD, BUILD_PARAMS)
    assert not open_ended
    return params


def refused(params: Any, declared: tuple[Param, ...], match: str, param: str | None) -> None:
    with pytest.raises(ParamError, match=match) as caught:
        values = normalize("build", params, declared)
        fill(BUILD, values, options={p.name for p in declared if p.allow_option})
    assert caught.value.param == param


# declarations ------------------------------------------------------------------------------


def test_declare_the_brief_example() -> None:
    package, channel, count = build()
    assert (package.name, package.type, package.required, package.pattern) == (
        "package",
        "string",
        True,
        "^[a-z][a-z0-9_.]{1,100}$",
    )
    assert (channel.required, channel.default, channel.choices) == (False, "android", ("android", "ios"))
    assert (count.type, count.min, count.max, count.max_length) == ("int", 1, 50, None)
    assert package.max_length == 4096


def test_list_form_keeps_its_meaning() -> None:
    params, open_ended = declare(["php", "send.php", "{to}"], ["subject", "to"])
    assert [(p.name, p.type, p.required) for p in params] == [
        ("to", "string", True),
        ("subject", "any", False),
    ]
    assert not open_ended
    assert declare(None, None)[1] is True  # a call task without params takes any
    assert declare(None, ["a"])[1] is False
    assert declare(("x",), None) == ((), False)


def test_undeclared_placeholders_are_required_strings() -> None:
    params, _ = declare(("cp", "{src}", "{dst}"), {"src": {"pattern": "[a-z]+"}})
    assert [(p.name, p.declared, p.required) for p in params] == [("src", True, True), ("dst", False, True)]


@pytest.mark.parametrize(
    ("command", "table", "key", "words"),
    [
        (
            BUILD,
            {**BUILD_PARAMS, "package": {"pattern": "([a-z"}},
            "params.package.pattern",
            "not a valid regular",
        ),
        (
            BUILD,
            {**BUILD_PARAMS, "count": {"type": "int", "min": 1, "default": 0}},
            "params.count.default",
            "1 or more",
        ),
        (
            BUILD,
            {**BUILD_PARAMS, "channel": {"choices": ["a"], "default": "b"}},
            "params.channel.default",
            "one of",
        ),
        (
            BUILD,
            {**BUILD_PARAMS, "package": {"pattern": "[a-z]+", "default": "A"}},
            "params.package.default",
            "pattern",
        ),
        (BUILD, {**BUILD_PARAMS, "package": {"default": "-x"}}, "params.package.default", "begin with '-'"),
        (BUILD, {**BUILD_PARAMS, "package": {"choices": ["ok", "--bad"]}}, "params.package.choices", "'-'"),
        (BUILD, {**BUILD_PARAMS, "package": {"default": ""}}, "params.package.default", "empty"),
        (BUILD, {**BUILD_PARAMS, "unused": {}}, "params.unused", "never uses {unused}"),
        (BUILD, {**BUILD_PARAMS, "package": {"extra": True}}, "params.package.extra", "not an extra"),
        (
            BUILD,
            {**BUILD_PARAMS, "flavour": {"extra": True, "allow_option": True}},
            "params.flavour.allow_option",
            "only a parameter in the command",
        ),
        (BUILD, {**BUILD_PARAMS, "count": {"type": "float"}}, "params.count.type", "one of"),
        (
            BUILD,
            {**BUILD_PARAMS, "count": {"type": "int", "pattern": "1"}},
            "params.count.pattern",
            "only a string",
        ),
        (BUILD, {**BUILD_PARAMS, "count": {"type": "int", "min": 1.5}}, "params.count.min", "whole number"),
        (
            BUILD,
            {**BUILD_PARAMS, "count": {"type": "int", "min": 5, "max": 1}},
            "params.count.max",
            "below min",
        ),
        (
            BUILD,
            {**BUILD_PARAMS, "count": {"type": "number", "max_length": 3}},
            "params.count.max_length",
            "only a string",
        ),
        (BUILD, {**BUILD_PARAMS, "package": {"max_length": 0}}, "params.package.max_length", "1 or more"),
        (BUILD, {**BUILD_PARAMS, "package": {"typo": 1}}, "params.package.typo", "unknown key"),
        (
            BUILD,
            {**BUILD_PARAMS, "package": {"allow_option": "yes"}},
            "params.package.allow_option",
            "true or false",
        ),
        (
            BUILD,
            {**BUILD_PARAMS, "count": {"type": "bool", "choices": [True]}},
            "params.count.choices",
            "true or false already",
        ),
        (
            BUILD,
            {**BUILD_PARAMS, "package": {"required": False}},
            "params.package.required",
            "give it a default",
        ),
        (
            BUILD,
            {**BUILD_PARAMS, "channel": {"required": True, "default": "x"}},
            "params.channel.required",
            "never missing",
        ),
        (BUILD, {**BUILD_PARAMS, "package": {"choices": []}}, "params.package.choices", "non-empty"),
        (BUILD, {**BUILD_PARAMS, "bad-name": {}}, "params.bad-name", "not a parameter name"),
        (None, {"x": {"allow_option": True}}, "params.x.allow_option", "call task has no command"),
        (None, {"x": {"extra": True}}, "params.x.extra", "call task has no command"),
        (("echo", "{p"), {}, "command", "unbalanced brace"),
        (("echo", "p}"), None, "command", "unbalanced brace"),
        (("echo", "{{p}"), None, "command", "unbalanced brace"),
    ],
)
def test_declaration_errors_name_the_key(
    command: tuple[str, ...] | None, table: Any, key: str, words: str
) -> None:
    with pytest.raises(SpecError, match=words) as caught:
        declare(command, table)
    assert caught.value.key == key


def test_balanced_braces_stay_literal() -> None:
    for argv in (["awk", "{print $1}"], ["find", ".", "-exec", "{}", ";"], ["{{x}}", "}}{{", "{{{a}}}"]):
        assert template_error(argv) is None, argv
    assert fill(["awk", "{print $1}", "{{{a}}}"], {"a": "v"}) == ["awk", "{print $1}", "{v}"]


def test_call_task_declarations() -> None:
    params, open_ended = declare(None, {"to": {"pattern": ".+@.+"}, "n": {"type": "int", "required": False}})
    assert not open_ended and [(p.name, p.required) for p in params] == [("to", True), ("n", False)]
    # no argv: a leading '-' is a value like any other for a function
    assert normalize("mail", {"to": "-a@b", "n": "3"}, params) == {"to": "-a@b", "n": 3}
    with pytest.raises(ParamError, match="does not match") as caught:
        normalize("mail", {"to": "nobody"}, params)
    assert caught.value.param == "to"


def test_extras_declared_for_a_command() -> None:
    params, _ = declare(("run", "{a}"), {"fmt": {"extra": True, "choices": ["pdf", "csv"], "default": "pdf"}})
    assert normalize("t", {"a": "x"}, params) == {"a": "x", "fmt": "pdf"}
    with pytest.raises(ParamError, match="one of 'pdf', 'csv'"):
        normalize("t", {"a": "x", "fmt": "doc"}, params)


# values ------------------------------------------------------------------------------------


def test_values_are_converted_and_defaults_filled() -> None:
    declared = build()
    assert normalize("build", {"package": "com.example", "count": "5"}, declared) == {
        "package": "com.example",
        "count": 5,
        "channel": "android",
    }
    values = normalize("build", {"package": "com.example", "count": 50, "channel": "ios"}, declared)
    assert fill(BUILD, values) == ["./build.sh", "com.example", "--channel=ios", "50"]


@pytest.mark.parametrize(
    ("params", "match", "param"),
    [
        ({"package": "--upload-pack=touch /tmp/x", "count": 1}, "does not match", "package"),
        ({"package": "com.x", "count": 0}, "1 or more", "count"),
        ({"package": "com.x", "count": 51}, "50 or less", "count"),
        ({"package": "com.x", "count": "5.0"}, "whole number", "count"),
        ({"package": "com.x", "count": 5.0}, "whole number", "count"),
        ({"package": "com.x", "count": True}, "whole number", "count"),
        ({"package": "com.x", "count": "-3"}, "1 or more", "count"),
        ({"package": "com.x", "count": 1, "channel": "web"}, "one of 'android', 'ios'", "channel"),
        ({"package": 5, "count": 1}, "must be a string", "package"),
        ({"package": "", "count": 1}, "must not be empty", "package"),
        ({"package": "com.x\0", "count": 1}, "NUL", "package"),
        ({"count": 1}, r"needs parameter\(s\) 'package'", "package"),
        ({"package": "com.x", "count": 1, "other": 1}, "has no parameter 'other'", "other"),
    ],
)
def test_refusals_name_the_parameter(params: dict[str, Any], match: str, param: str) -> None:
    refused(params, build(), match, param)


def test_leading_dash_refused_unless_allowed() -> None:
    plain, _ = declare(("ls", "{dir}"), {})
    with pytest.raises(ParamError, match="must not begin with '-'") as caught:
        fill(("ls", "{dir}"), normalize("ls", {"dir": "--version"}, plain))
    assert caught.value.param == "dir"
    # not at the start of its element: not at risk
    assert fill(("x", "--dir={dir}", "a{dir}"), {"dir": "-v"}) == ["x", "--dir=-v", "a-v"]
    allowed, _ = declare(("ls", "{dir}"), {"dir": {"allow_option": True}})
    assert fill(("ls", "{dir}"), {"dir": "-l"}, options={"dir"}) == ["ls", "-l"]
    assert allowed[0].allow_option
    # an empty value before it puts the next placeholder first
    with pytest.raises(ParamError, match="'b' must not begin"):
        fill(("{a}{b}",), {"a": "", "b": "-x"})
    assert leading(("{a}{b}", "x{c}", "{{{d}", "{e}y")) == {"a", "b", "e"}


def test_bool_and_number() -> None:
    params, _ = declare(
        ("t", "{flag}", "{ratio}"), {"flag": {"type": "bool"}, "ratio": {"type": "number", "max": 2}}
    )
    values = normalize("t", {"flag": "TRUE", "ratio": "1.5"}, params)
    assert values == {"flag": True, "ratio": 1.5}
    assert fill(("t", "{flag}", "{ratio}"), values) == ["t", "true", "1.5"]
    assert normalize("t", {"flag": False, "ratio": "2"}, params) == {"flag": False, "ratio": 2}
    for bad in ({"flag": "yes", "ratio": 1}, {"flag": 1, "ratio": 1}):
        with pytest.raises(ParamError, match="true or false"):
            normalize("t", bad, params)
    for ratio in ("nan", "inf", "1e999", "2.5", "-1e400"):
        with pytest.raises(ParamError, match="ratio"):
            normalize("t", {"flag": True, "ratio": ratio}, params)


def test_ints_stay_within_64_bits() -> None:
    params, _ = declare(("t", "{n}"), {"n": {"type": "int"}})
    assert normalize("t", {"n": str(INT_MAX)}, params) == {"n": INT_MAX}
    for n in (INT_MAX + 1, str(INT_MAX + 1), "1" * 30):
        with pytest.raises(ParamError, match="'n'"):
            normalize("t", {"n": n}, params)


def test_pattern_or_choices_may_allow_empty() -> None:
    params, _ = declare(("t", "{a}", "{b}"), {"a": {"pattern": "[a-z]*"}, "b": {"choices": ["", "x"]}})
    assert fill(("t", "{a}", "{b}"), normalize("t", {"a": "", "b": ""}, params)) == ["t", "", ""]


def test_max_length() -> None:
    params, _ = declare(("t", "{a}", "{b}"), {"a": {"max_length": 3}})
    normalize("t", {"a": "abc", "b": "x" * 4096}, params)
    for values in ({"a": "abcd", "b": "x"}, {"a": "a", "b": "x" * 4097}):
        with pytest.raises(ParamError, match="longer than"):
            normalize("t", values, params)


def test_nul_refused_everywhere() -> None:
    for params in (["x"], None):
        declared, open_ended = declare(None, params)
        for value in ("a\0", ["a", {"b": "\0"}], {"k\0": 1}):
            with pytest.raises(ParamError, match="NUL"):
                normalize("t", {"x": value}, declared, open_ended=open_ended)


def test_json_schema() -> None:
    schema = json_schema(build(), open_ended=False, command=BUILD)
    assert schema == {
        "type": "object",
        "properties": {
            "package": {
                "type": "string",
                "pattern": "^(?:^[a-z][a-z0-9_.]{1,100}$)$",
                "maxLength": 4096,
                "not": {"pattern": "^-"},
            },
            "channel": {
                "type": "string",
                "default": "android",
                "enum": ["android", "ios"],
                "maxLength": 4096,
            },
            "count": {"type": "integer", "minimum": 1, "maximum": 50},
        },
        "additionalProperties": False,
        "required": ["package", "count"],
    }


# properties --------------------------------------------------------------------------------

NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
ELEMENT = st.lists(
    st.one_of(st.sampled_from(["{a}", "{b}", "{c}", "{{", "}}"]), st.text("x-= ", max_size=3)), max_size=4
).map("".join)


@settings(max_examples=500)
@given(
    st.lists(ELEMENT, min_size=1, max_size=4),
    st.dictionaries(st.sampled_from("abc"), st.text(), min_size=3, max_size=3),
)
def test_no_value_begins_an_element_with_a_dash(template: list[str], values: dict[str, str]) -> None:
    """Whatever the values, an element that begins with a placeholder never begins with '-'
    unless the parameter allows options: fill refuses instead."""
    values = {k: v.replace("\0", "") for k, v in values.items()}
    try:
        argv = fill(template, values)
    except ParamError as e:
        assert "must not begin with '-'" in str(e)
        return
    for element, text in zip(template, argv, strict=True):
        pieces = [
            (values[piece[1]], True)
            if re.fullmatch(r"\{[abc]\}", piece)
            else (piece[:1] if piece in ("{{", "}}") else piece, False)
            for piece in re.split(r"(\{\{|\}\}|\{[abc]\})", element)
        ]
        first = next(((t, is_value) for t, is_value in pieces if t), ("", False))
        assert "".join(t for t, _ in pieces) == text
        if text.startswith("-"):
            assert not first[1], (element, values, text)  # the dash is the template's own


@settings(max_examples=300)
@given(st.dictionaries(NAMES, st.text(), min_size=1, max_size=4))
def test_accepted_values_arrive_unchanged(values: dict[str, str]) -> None:
    """A value the rules accept fills its element byte for byte, whatever its characters."""
    template = tuple(f"{{{name}}}" for name in values)
    declared, _ = declare(template, {})
    try:
        stored = normalize("t", values, declared)
        argv = fill(template, stored)
    except ParamError as e:
        bad = values[e.param] if e.param else ""
        assert bad == "" or bad.startswith("-") or "\0" in bad or len(bad) > 4096, e
        return
    assert argv == list(values.values())


@given(st.text())
def test_an_allowed_option_arrives_unchanged(value: str) -> None:
    value = value.replace("\0", "") or "-"
    declared, _ = declare(("x", "{v}"), {"v": {"allow_option": True}})
    assert fill(("x", "{v}"), normalize("t", {"v": value}, declared), options={"v"}) == ["x", value]


def test_check_size_measures_the_parameters_as_json() -> None:
    from stoker.jobs.params import check_size

    values = {"a": "x" * 10}  # {"a":"xxxxxxxxxx"}: 18 bytes
    assert check_size("t", values, 18) == 18
    with pytest.raises(ParamError) as refused:
        check_size("t", values, 17)
    assert str(refused.value) == (
        "task 't': the parameters are 18B as JSON (18 bytes), over its max_params of 17B:"
        " pass a large input as a file path instead"
    )
    assert refused.value.param is None
    assert check_size("t", {}, 2) == 2
