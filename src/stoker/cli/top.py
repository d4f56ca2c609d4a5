"""`stoker top`: a live view of the daemon in the terminal, like `pm2 monit`.

It draws stoker.cli.top_view's screen again whenever the daemon's event stream
(/api/v1/events, followed in a thread) says something changed (at most every REDRAW seconds),
and every PERIOD seconds for what changes without an event (CPU, memory, uptimes). `q` (or
Ctrl-C) quits. On a terminal it takes the alternate screen and gives it back, the way `top`
does; when stdout is not a terminal it prints the screen once and exits.

Standard library only (termios, select, ANSI escapes): no other command pays for it, and it
needs nothing a terminal does not have.
"""

from __future__ import annotations

import os
import sys

from stoker.cli.context import Context, talking

# imported by `stoker top` alone (the parser imports this module for every command)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from stoker.client import Client

PERIOD = 2.0  # seconds between redraws with no event
REDRAW = 0.25  # seconds at least between redraws on events
FAILURES = 5


def _read(client: Client) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], str]:
    import time

    status = client.status()
    title = f"stoker top  {status['node']}  pid {status['pid']}  {time.strftime('%H:%M:%S')}  (q quits)"
    failures = [dict(j) for j in client.jobs(state="failed", limit=FAILURES)]
    return client.programs(), [dict(q) for q in client.queues()], failures, title


def top_command(ctx: Context, args: argparse.Namespace) -> None:
    """A live view of programs, queues and the last failures. Updates as they change; q quits."""
    import shutil

    from stoker.cli.top_view import screen

    with talking():
        client = ctx.client(timeout=30)
        programs, queues, failures, title = _read(client)
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        size = shutil.get_terminal_size((100, 40))
        print("\n".join(screen(programs, queues, failures, title=title, width=max(size.columns, 100))))
        return
    _live(ctx, client)


def _live(ctx: Context, client: Client) -> None:
    import select
    import shutil
    import termios
    import threading
    import time
    import tty

    from stoker.cli.top_view import screen

    changed = threading.Event()
    stop = threading.Event()

    def follow() -> None:  # the event stream: each event asks for a redraw
        while not stop.is_set():
            try:
                for _ in ctx.client(timeout=None).events():
                    changed.set()
                    if stop.is_set():
                        return
            except Exception:  # the daemon went away: the next read says so; try again later
                changed.set()
                stop.wait(1.0)

    threading.Thread(target=follow, name="events", daemon=True).start()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    out = sys.stdout
    try:
        tty.setcbreak(fd)
        out.write("\x1b[?1049h\x1b[?25l")  # the alternate screen; no cursor
        last = 0.0
        while True:
            try:
                programs, queues, failures, title = _read(client)
                size = shutil.get_terminal_size()
                frame = screen(programs, queues, failures, title=title, width=size.columns, height=size.lines)
            except Exception as e:  # the daemon stopped: say so, keep trying
                frame = [f"stoker top: {e}", "", "(q quits)"]
            out.write("\x1b[H\x1b[2J" + "\r\n".join(frame))
            out.flush()
            last = time.monotonic()
            changed.clear()
            # wait for a key, an event (then no sooner than REDRAW after the last draw) or PERIOD
            deadline = last + PERIOD
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], REDRAW)
                if ready:
                    key = os.read(fd, 32)
                    if b"q" in key or b"Q" in key or b"\x03" in key:
                        return
                if changed.is_set() and time.monotonic() - last >= REDRAW:
                    break
    except KeyboardInterrupt:
        return
    finally:
        stop.set()
        out.write("\x1b[?25h\x1b[?1049l")
        out.flush()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
