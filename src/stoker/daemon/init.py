"""When stoker is PID 1 (`CMD ["stoker", "up"]` in a container): be a proper init.

PID 1 inherits every orphan in the container: a program that double-forks, a shell that leaves
a background job behind. Their exit statuses must be collected or they stay zombies forever
and fill the process table. PID 1 also gets no default signal handling from the kernel, so a
`docker stop` SIGTERM that nobody handles does nothing.

The daemon itself is an asyncio program whose children are each reaped by their own pidfd; a
catch-all `waitpid(-1)` in it would steal those statuses. So, like tini or dumb-init, the PID 1
process stays tiny: it forks the daemon, passes every signal it gets on to it, reaps whatever
dies, and exits with the daemon's status when the daemon exits.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


def run_as_init(run_daemon: Callable[[], int]) -> int:
    """Fork; the child runs `run_daemon()` and exits with its code; this process reaps until
    that child is gone, and returns its exit code (128 + N for death by signal N)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)  # none may be lost in between
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        code = 1
        try:
            code = run_daemon()
        finally:
            os._exit(code)

    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(child, sig)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        from setproctitle import setproctitle

        setproctitle("stoker: init (reaps orphans, forwards signals)")
    except ImportError:  # pragma: no cover - a dependency; cosmetic anyway
        pass
    while True:
        try:
            pid, status = os.wait()  # any child: the daemon, or an orphan handed to PID 1
        except ChildProcessError:  # pragma: no cover - the daemon was reaped already
            return 1
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code
