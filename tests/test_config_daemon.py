"""The [daemon] table: defaults, listen and token, store, node, timezone and durations."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from config_helpers import error, load

# --------------------------------------------------------------------------------------------
# defaults
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# directories and paths
# --------------------------------------------------------------------------------------------


def test_relative_state_dir(tmp_path: Path) -> None:
    daemon = load(tmp_path, '[daemon]\nstate_dir = "var/stoker"\n').daemon
    assert daemon.state_dir == str(tmp_path / "var" / "stoker")


# --------------------------------------------------------------------------------------------
# unknown and unsupported keys
# --------------------------------------------------------------------------------------------


def test_unknown_daemon_key(tmp_path: Path) -> None:
    err = error(tmp_path, '[daemon]\nlisten_on = ":9100"\n')
    assert str(err) == f'{err.file}: [daemon] unknown key "listen_on" (did you mean "listen"?)'


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
# node_timeout and keep_jobs
# --------------------------------------------------------------------------------------------


def test_node_timeout(tmp_path: Path) -> None:
    assert load(tmp_path, "").daemon.node_timeout == 30.0
    assert load(tmp_path, '[daemon]\nnode_timeout = "2m"\n').daemon.node_timeout == 120.0
    err = error(tmp_path, '[daemon]\nnode_timeout = "500ms"\n')
    assert (err.table, err.key, err.expected) == ("daemon", "node_timeout", "a duration of 1s or more")


def test_keep_jobs(tmp_path: Path) -> None:
    assert load(tmp_path, "").daemon.keep_jobs == 7 * 86400
    assert load(tmp_path, '[daemon]\nkeep_jobs = "12h"\n').daemon.keep_jobs == 12 * 3600
