"""The [notify.NAME] tables: webhooks with their defaults and secrets, and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from stoker.config import NOTIFY_EVENTS, ConfigError, parse_config


def error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, tmp_path / "stoker.toml")
    return info.value


def test_a_webhook_with_defaults(tmp_path: Path) -> None:
    config = parse_config(
        '[notify.ops]\nurl = "https://hooks.example.com/stoker"\n', tmp_path / "stoker.toml"
    )
    ops = config.notify["ops"]
    assert ops.url == "https://hooks.example.com/stoker"
    assert ops.events == NOTIFY_EVENTS
    assert ops.headers == {} and ops.timeout == 5.0
    assert (ops.crash_loop.count, ops.crash_loop.within) == (5, 300.0)


def test_a_webhook_with_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "Bearer s3cret")
    monkeypatch.setenv("HOOK_URL", "https://hooks.slack.com/services/T0/B0/XYZ")
    (tmp_path / "team").write_text("ops-team\n")
    config = parse_config(
        """
        [notify.ops]
        url = "https://hooks.example.com/stoker"
        events = ["job_failed", "crash_loop", "job_failed"]
        headers = { Authorization = "env:HOOK_TOKEN", X-Team = "file:team", X-Plain = "literal" }
        timeout = "2s"
        crash_loop = { count = 3, within = "1m" }
        [notify.slack]
        url = "env:HOOK_URL"
        """.replace("\n        ", "\n"),
        tmp_path / "stoker.toml",
    )
    ops = config.notify["ops"]
    assert ops.events == ("job_failed", "crash_loop")
    assert ops.headers == {"Authorization": "Bearer s3cret", "X-Team": "ops-team", "X-Plain": "literal"}
    assert ops.timeout == 2.0 and (ops.crash_loop.count, ops.crash_loop.within) == (3, 60.0)
    slack = config.notify["slack"]
    assert slack.url == "https://hooks.slack.com/services/T0/B0/XYZ"
    # the url and the header values may be secrets: repr shows neither
    assert "XYZ" not in repr(slack) and "s3cret" not in repr(ops) and "hooks.slack.com" in repr(slack)


# fmt: off
BAD_WEBHOOKS = [
    ('url = "ftp://example.com"', 'url: expected an http:// or https:// URL, "env:NAME" or "file:PATH", got "ftp://example.com"'),
    ('url = "http://"', 'url: expected an http:// or https:// URL, "env:NAME" or "file:PATH", got "http://"'),
    ('url = "http://example.com:99999/"', "url: expected an http:// or https:// URL"),
    ('url = "env:STOKER_TEST_UNSET_HOOK"', 'url: environment variable "STOKER_TEST_UNSET_HOOK" is not set'),
    ('url = "file:nowhere"', "url: no such file: "),
    ("url = 5", 'url: expected an http:// or https:// URL, "env:NAME" or "file:PATH", got 5'),
    ('events = ["job_failed"]', "url: missing; expected an http:// or https:// URL"),
    ('url = "http://x"\nevents = ["job_fail"]', 'events: unknown event "job_fail" (did you mean "job_failed"?)'),
    ('url = "http://x"\nevents = []', "events: expected at least one event (remove the key to get them all), got []"),
    ('url = "http://x"\nevents = "job_failed"', 'events: expected an array of event names: "program_fatal", "crash_loop", "job_failed", "schedule_missed", got "job_failed"'),
    ('url = "http://x"\nheaders = { "Bad Name" = "x" }', 'headers.Bad Name: is not a valid HTTP header name'),
    ('url = "http://x"\nheaders = { Content-Length = "1" }', "headers.Content-Length: is set by stoker itself"),
    ('url = "http://x"\nheaders = { X-A = "a\\nb" }', 'headers.X-A: expected a header value on one line, in Latin-1 characters, got "a\\nb"'),
    ('url = "http://x"\nheaders = { X-A = "" }', "headers.X-A: the value is empty"),
    ('url = "http://x"\nheaders = { X-A = 1 }', 'headers: expected a table of header values, like { Authorization = "env:HOOK_TOKEN" }, got { "X-A" = 1 }'),
    ('url = "http://x"\ntimeout = "0s"', 'timeout: expected a duration greater than zero, got "0s"'),
    ('url = "http://x"\ntimeout = "soon"', 'timeout: expected a duration like "10s", "5m", "250ms" or a number of seconds, got "soon"'),
    ('url = "http://x"\ncrash_loop = { count = 0 }', "crash_loop.count: expected a whole number, 1 or more (unexpected exits that make a crash loop), got 0"),
    ('url = "http://x"\ncrash_loop = { within = "0s" }', 'crash_loop.within: expected a duration greater than zero, got "0s"'),
    ('url = "http://x"\ncrash_loop = { times = 3 }', 'unknown key "crash_loop.times"'),
    ('url = "http://x"\nevents = ["job_failed"]\ncrash_loop = { count = 3 }', 'crash_loop: is set, but events does not include "crash_loop"'),
    ('uri = "http://x"', 'unknown key "uri" (did you mean "url"?)'),
]
# fmt: on


@pytest.mark.parametrize(("body", "message"), BAD_WEBHOOKS)
def test_bad_webhooks_are_refused_by_file_table_and_key(tmp_path: Path, body: str, message: str) -> None:
    err = error(tmp_path, f"[notify.ops]\n{body}\n")
    assert str(err).startswith(f"{tmp_path / 'stoker.toml'}: [notify.ops] {message}"), str(err)
    assert err.table == "notify.ops"


def test_a_secret_url_is_not_shown_when_it_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_URL", "htp://typo.example.com/s3cret")
    err = error(tmp_path, '[notify.ops]\nurl = "env:HOOK_URL"\n')
    assert str(err).endswith('[notify.ops] url: "env:HOOK_URL" does not hold an http:// or https:// URL')
    assert "s3cret" not in str(err)


def test_notify_needs_a_table_per_webhook(tmp_path: Path) -> None:
    err = error(tmp_path, '[notify]\nurl = "http://x"\n')
    assert str(err).endswith(
        '[notify] url: expected one table per webhook, like [notify.ops] with url = "…", got "http://x"'
    )
    err = error(tmp_path, '[notify."a b"]\nurl = "http://x"\n')
    assert 'webhook name "a b" is not allowed' in str(err)
