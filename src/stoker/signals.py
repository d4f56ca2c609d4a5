"""Signal names as people write them: "TERM", "SIGTERM", "term" or 15."""

from __future__ import annotations

import signal


def parse_signal(value: str | int) -> int:
    """The signal number for a name or number; ValueError naming what was expected."""
    if isinstance(value, bool):
        raise ValueError(f'expected a signal name like "TERM" or a number, got {value!r}')
    if isinstance(value, int):
        if value in signal.valid_signals():
            return value
        raise ValueError(f"expected a signal number, got {value}")
    name = value.strip().upper()
    if name.isdigit():
        return parse_signal(int(name))
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(
            f'expected a signal name like "TERM", "HUP", "USR1" or a number, got {value!r}'
        ) from None
