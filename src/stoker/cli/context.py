"""What every command shares: its Context (the config, a client of its daemon), the exit
codes of the contract, failing with one, client errors turned into them, and JSON output.

Exit codes: 0 ok, 1 operation failed, 2 usage or config error, 3 daemon not running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from stoker.terminal import visible

# typing and pathlib cost milliseconds `stoker status` does not have (see locate.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from stoker.client import Client
    from stoker.config import Config


EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 1, 2, 3


def fail(message: str, code: int) -> NoReturn:
    print(f"stoker: {visible(message)}", file=sys.stderr)  # it may quote the daemon's text
    sys.exit(code)


class Context:
    def __init__(self, config_option: str | None) -> None:
        self.config_option = config_option
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from stoker.config import ConfigError, load_config
            from stoker.locate import find_config_path

            path = find_config_path(self.config_option)
            try:
                self._config = load_config(path)
            except ConfigError as e:
                hint = "" if path.exists() else " (create one with `stoker init`, or pass -c FILE)"
                fail(f"{e}{hint}", EXIT_USAGE)
        return self._config

    def client(self, timeout: float | None = 120.0) -> Client:
        """A client of this config's daemon, found without decoding the whole config."""
        from stoker import names
        from stoker.client import Client
        from stoker.locate import config_file, quick_state_dir

        state_dir = quick_state_dir(config_file(self.config_option))
        if state_dir is None:  # unreadable or odd: the full loader says exactly what is wrong
            return Client.for_config(self.config, timeout=timeout)
        return Client(socket_path=os.path.join(state_dir, names.SOCKET), timeout=timeout)


@contextmanager
def talking() -> Iterator[None]:
    """Turn client errors into the contract's exit codes."""
    from stoker.client import ClientError, NotRunning

    try:
        yield
    except NotRunning:
        fail("the daemon is not running (start it with `stoker up -d`)", EXIT_NOT_RUNNING)
    except ClientError as e:
        fail(str(e), EXIT_USAGE if e.status in (400, 404, 422) else EXIT_FAILED)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


if TYPE_CHECKING:  # a command's handler; what one add_argument call gets
    Handler = Callable[[Context, argparse.Namespace], None]
    Arg = tuple[tuple[str, ...], dict[str, Any]]
