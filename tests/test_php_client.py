"""The PHP client (clients/php) against a real daemon: its PHPUnit suite, run by Debian's phpunit.

The daemon is this fixture's, with the tasks, queues and program the suite expects; the suite
finds it through STOKER_TEST_CONFIG (the stoker.toml), STOKER_TEST_URL and STOKER_TEST_TOKEN.
Any PHPUnit failure, error, warning, risky or skipped test fails this test, with its output.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from conftest import Stoker, need

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "php"
TOKEN = "php-client-s3cret"


def test_php_client_phpunit_suite(stoker: Stoker, unused_tcp_port: int) -> None:
    need("php")
    phpunit = need("phpunit")
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{unused_tcp_port}"
        token = "{TOKEN}"

        [programs.idle]
        command = ["sleep", "1000"]
        start_seconds = "0s"

        [tasks.echo]
        command = ["echo", "{{word}}"]
        queue = "fast"
        [tasks.echo.params.word]
        pattern = '[a-z]+'

        [tasks.hello]
        command = ["echo", "hello"]
        queue = "fast"

        [tasks.slow]
        command = ["sleep", "1000"]
        queue = "slow"

        [tasks.fail]
        command = ["sh", "-c", "echo failing; exit 3"]
        max_attempts = 1

        [tasks.tally]
        command = ["true", "{{run}}", "{{n}}"]
        queue = "tally"

        [queues.fast]
        concurrency = 4
        [queues.slow]
        concurrency = 1
        [queues.tally]
        concurrency = 4
        """
    )
    stoker.up()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STOKER_")},
        "STOKER_TEST_CONFIG": str(stoker.config),
        "STOKER_TEST_URL": f"http://127.0.0.1:{unused_tcp_port}",
        "STOKER_TEST_TOKEN": TOKEN,
    }
    result = subprocess.run(
        [phpunit, "--fail-on-skipped", "--fail-on-incomplete", "--do-not-cache-result"],
        cwd=CLIENT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"phpunit failed:\n{output}\ndaemon log:\n{stoker.log_text()[-3000:]}"
    ran = re.search(r"^OK \((\d+) tests?, (\d+) assertions?\)$", result.stdout, re.M)
    assert ran and int(ran.group(1)) >= 20, f"phpunit ran too little:\n{output}"


# The PHP client reads `[daemon] state_dir` with the CLI's line scan (src/stoker/locate.py):
# whenever it is sure, it must agree with it (which agrees with tomllib: tests/test_locate.py).

LINES = [
    "[daemon]",
    "[daemon]  # the daemon",
    "[ daemon ]",
    "[daemon] x",
    "[tasks.a]",
    "[[daemon]]",
    "[daemon",
    'state_dir = "run/state"',
    "state_dir = 'single'",
    'state_dir="/abs/dir"   # a comment',
    'state_dir = "x" y',
    'state_dir = ""',
    "state_dir = 5",
    'state_dir = "unclosed',
    '  state_dir = "indented"',
    'state_dir = "a\x01b"',
    'state_dir = "a\'b"',
    'daemon.state_dir = "dotted"',
    "# state_dir in a comment",
    'listen = "127.0.0.1:9100"',
    'command = "echo \\t"',
    "command = '''x'''",
    'command = """x"""',
    "",
    "   ",
    "\u3000[tasks.b]",
    "\xa0state_dir = 'nbsp'",
    "a = '\x0c'",
    "\x1c",
]


def _texts() -> list[str]:
    import random

    rng = random.Random(20261205)
    texts = ["", "[daemon]\n", '[daemon]\nstate_dir = "s"\n']
    for _ in range(1500):
        lines = [rng.choice(LINES) for _ in range(rng.randint(0, 6))]
        texts.append(rng.choice(["\n", "\r\n"]).join(lines) + rng.choice(["", "\n"]))
    return texts


def test_php_reads_state_dir_as_the_cli_does() -> None:
    import json

    from stoker.locate import _UNSURE, scan_state_dir

    php = need("php")
    texts = _texts()
    script = (
        f"require {json.dumps(str(CLIENT / 'autoload.php'))};"
        "echo json_encode(array_map([\\Stoker\\Target::class, 'scanStateDir'],"
        " json_decode(stream_get_contents(STDIN), true)));"
    )
    result = subprocess.run(
        [php, "-r", script], input=json.dumps(texts), capture_output=True, text=True, timeout=60, check=True
    )
    got = json.loads(result.stdout)
    exotic = re.compile("[\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
    sure = 0
    for text, php_value in zip(texts, got, strict=True):
        value = scan_state_dir(text)
        expected = None if value is _UNSURE or value == "" else value
        if exotic.search(text):
            assert php_value is None, repr(text)  # left to a TOML parser: never a wrong answer
        else:
            assert php_value == expected, repr(text)
        sure += php_value is not None
    assert sure > 100  # the cases that matter were met, not only refusals
