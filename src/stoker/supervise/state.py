"""The life of one program instance, as a pure state machine.

Nothing here touches a process, a clock or a random source: the caller passes the time (`now`,
monotonic seconds) and events in, and performs the actions that come back. That keeps every
restart rule testable without spawning anything or sleeping.

States (the contract's names):

    stopped   not running, and nobody wants it to
    starting  spawned, not yet up for `start_seconds`
    running   up for at least `start_seconds`
    backoff   a start failed, or it crashed again in a crash loop; waiting before the next try
    stopping  stop signal sent; waiting for the exit (SIGKILL at the deadline)
    exited    ended and the restart policy says leave it
    fatal     gave up: the first start and `max_restarts` restarts after it all failed

The rules:
- A program that ran at least `start_seconds` and exits is restarted at once: a crash costs a
  spawn, not a delay. Unless it is in a crash loop (below): then it waits in `backoff`.
- One that dies sooner (or cannot be spawned at all) is a failed start: it is retried after an
  exponential, jittered backoff; the streak resets once an instance has run `start_seconds`.
- When `max_restarts` (> 0) restarts after a failed start fail too, it is fatal: the error
  says "gave up after N+1 failed starts (the first and max_restarts = N restarts)".
- A crash loop: the unexpected ends of an instance (failed starts, crashes after a good start,
  hangs) since its last stable run (one of `stable_seconds` or more), from the second on. The
  n-th crash of a loop waits backoff step n-1, so a program that dies every few seconds
  after starting fine slows down like one that cannot start; a stable run ends the loop, and
  the next crash is restarted at once again. The machine owns this record (`streak`): the
  status and the `crash_loop` notification both read it.
- Once a stop of the instance has begun (`StopPending`: it waits for its dependents to stop
  first), nothing starts it again: an exit then leaves it stopped.
- `restart` decides whether an exit is followed by a new start at all: always; on-failure
  (an exit code outside `success_exit_codes`, or death by a signal); never.
- With a readiness check (`needs_ready`), an instance is `running` only once it has been up
  `start_seconds` *and* reported ready. Not ready within `ready_timeout` of its spawn, it is
  stopped and counts as a failed start.
- With a `watchdog`, a running instance must ping at least that often; one that falls silent
  is stopped and, unless `restart = "never"`, started again at once, like a crash.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass

from stoker import backoff


class State(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    EXITED = "exited"
    FATAL = "fatal"


ACTIVE = frozenset({State.STARTING, State.RUNNING, State.STOPPING})
"""States in which a process exists."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The restart rules of one program, in plain numbers (seconds)."""

    restart: str = "always"  # always | on-failure | never
    success_exit_codes: frozenset[int] = frozenset({0})
    start_seconds: float = 1.0
    backoff_min: float = 1.0
    backoff_max: float = 60.0
    max_restarts: int = 0  # consecutive failed starts before fatal; 0 = never give up
    stop_timeout: float = 10.0
    needs_ready: bool = False  # running only after a Ready event
    ready_timeout: float = 60.0  # from the spawn; then a failed start
    watchdog: float = 0.0  # a running instance pings at least this often; 0 = no watchdog
    stable_seconds: float = 60.0  # a run this long ends a crash loop


def backoff_delay(policy: Policy, failures: int, jitter: float) -> float:
    """Seconds to wait before the next start after `failures` consecutive failed starts
    (see stoker.backoff: exponential, equal jitter)."""
    return backoff.backoff_delay(policy.backoff_min, policy.backoff_max, failures, jitter)


def wants_restart(policy: Policy, exit_code: int | None) -> bool:
    """Whether an exit (code, or None for death by a signal) calls for a new start."""
    if policy.restart == "always":
        return True
    if policy.restart == "never":
        return False
    return exit_code is None or exit_code not in policy.success_exit_codes


@dataclass(frozen=True, slots=True)
class Streak:
    """The unexpected ends of an instance since its last stable run (a crash loop from the
    second on). Times are monotonic seconds."""

    ends: int
    first: float  # the first end
    last: float  # the latest


# Events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """An operator (or autostart) wants the instance running."""


@dataclass(frozen=True, slots=True)
class Stop:
    """An operator wants the instance stopped."""


@dataclass(frozen=True, slots=True)
class StopPending:
    """A stop of the instance has begun, but its turn comes later (after its dependents have
    stopped): it may run on until the Stop, but nothing starts it again meanwhile."""


@dataclass(frozen=True, slots=True)
class Restart:
    """Stop if running, then start."""


@dataclass(frozen=True, slots=True)
class Spawned:
    pid: int


@dataclass(frozen=True, slots=True)
class SpawnFailed:
    error: str


@dataclass(frozen=True, slots=True)
class Exited:
    exit_code: int | None  # None when killed by a signal
    signal: int | None = None
    # The run's last line of output (stderr preferred), which usually says why: it ends the
    # error of an unexpected exit ("exited with code 255 after 0.03s: Connection refused").
    last_line: str | None = None


@dataclass(frozen=True, slots=True)
class Timer:
    """The deadline the machine asked for has come (stale timers are ignored)."""


@dataclass(frozen=True, slots=True)
class Ready:
    """The current process passed its readiness check."""


@dataclass(frozen=True, slots=True)
class WatchdogPing:
    """The current process said it is alive (sd_notify WATCHDOG=1)."""


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """The shell dropped a spawn it had put off (a stop came while it waited to spawn)."""


Event = (
    Start
    | Stop
    | StopPending
    | Restart
    | Spawned
    | SpawnFailed
    | Exited
    | Timer
    | Ready
    | WatchdogPing
    | Withdrawn
)


# Actions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spawn:
    """Start the process now and report Spawned or SpawnFailed."""


@dataclass(frozen=True, slots=True)
class SendStopSignal:
    """Send the program's stop signal to its process group."""


@dataclass(frozen=True, slots=True)
class KillGroup:
    """SIGKILL the whole process group."""


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Deliver Timer at monotonic time `at` (replaces any earlier timer)."""

    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    pass


Action = Spawn | SendStopSignal | KillGroup | SetTimer | CancelTimer


class Machine:
    """One instance's state. Call `handle(event, now, jitter)`; perform the returned actions."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.state = State.STOPPED
        self.pid: int | None = None
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self.error: str | None = None
        self.restarts = 0  # starts after the first one, for the operator
        self.failures = 0  # consecutive failed starts, for backoff and max_restarts
        self.streak: Streak | None = None  # unexpected ends since the last stable run
        self.started_at: float | None = None  # monotonic time of the current spawn
        self.since: float = 0.0  # monotonic time the state was entered
        self.deadline: float | None = None
        # What follows the stop in progress: "stop" (stay stopped), "start" (a restart),
        # "fail" (a failed start: it was not ready in time), "crash" (a hang: restarted like a
        # crash), "exit" (a hang, and restart=never).
        self._then: str = "stop"
        self._stop_pending = False  # a stop has begun: nothing starts it again (StopPending)
        self._ready = False  # the current process reported ready
        self._spawned_once = False

    def __repr__(self) -> str:
        return f"<Machine {self.state} pid={self.pid} failures={self.failures}>"

    def handle(self, event: Event, now: float, jitter: float = 0.5) -> list[Action]:
        """Apply one event; return what the caller must do, in order."""
        match event:
            case Start():
                self._stop_pending = False  # the operator's later word
                return self._on_start(now)
            case Stop():
                self._then = "stop"
                return self._on_stop(now)
            case StopPending():
                self._stop_pending = True
                if self.state is State.STOPPING:
                    self._then = "stop"  # not the restart (or failed start) it was going to be
                    return []
                if self.state is State.BACKOFF or (self.state is State.STARTING and self.pid is None):
                    return self._on_stop(now)  # no process to wait for: stop now
                return []
            case Restart():
                self._stop_pending = False
                if self.state in (State.STARTING, State.RUNNING):
                    self._then = "start"
                    return self._on_stop(now)
                if self.state is State.STOPPING:
                    self._then = "start"
                    return []
                return self._on_start(now)
            case Spawned(pid):
                return self._on_spawned(pid, now)
            case SpawnFailed(error):
                return self._on_spawn_failed(error, now, jitter)
            case Exited(code, sig, last_line):
                return self._on_exited(code, sig, now, jitter, last_line)
            case Timer():
                if self.deadline is None or now < self.deadline:
                    return []
                self.deadline = None
                return self._on_deadline(now)
            case Ready():
                return self._on_ready(now)
            case WatchdogPing():
                if self.state is State.RUNNING and self.policy.watchdog > 0:
                    return [self._set_timer(now + self.policy.watchdog)]
                return []
            case Withdrawn():
                if self.state is State.STOPPING and self.pid is None:
                    return self._cancel_timer() + self._after_stop(now, jitter)
                return []
        raise TypeError(f"not an event: {event!r}")  # pragma: no cover

    # transitions ---------------------------------------------------------------------------

    def _enter(self, state: State, now: float) -> None:
        self.state = state
        self.since = now
        if state in (State.STOPPED, State.EXITED, State.FATAL):
            self.streak = None  # at rest: whatever loop it was in is over

    def crash_loop(self, now: float) -> Streak | None:
        """The crash loop the instance is in at `now`: its streak from the second end on,
        unless the process it has now has already run stable (then the loop is over; the
        streak starts anew at that process's end)."""
        if self.streak is None or self.streak.ends < 2:
            return None
        if self.pid is not None and self._ran_stably(now):
            return None
        return self.streak

    def _ended(self, now: float, stable: bool) -> None:
        """Count an unexpected end (a failed start, a crash, a hang); `stable`: the run that
        ended was a stable one, so a new streak begins with this end."""
        s = self.streak
        self.streak = Streak(1, now, now) if s is None or stable else Streak(s.ends + 1, s.first, now)

    def _set_timer(self, at: float) -> SetTimer:
        self.deadline = at
        return SetTimer(at)

    def _timer_at(self, at: float) -> list[Action]:
        """A timer for `at`, unless that one is already set."""
        return [] if self.deadline == at else [self._set_timer(at)]

    def _cancel_timer(self) -> list[Action]:
        if self.deadline is None:
            return []
        self.deadline = None
        return [CancelTimer()]

    def _spawn(self, now: float) -> list[Action]:
        if self._stop_pending:  # (an operator's start cleared it first)
            self._enter(State.STOPPED, now)
            return []
        if self._spawned_once:
            self.restarts += 1
        self._spawned_once = True
        self._enter(State.STARTING, now)
        self.pid = None
        return [Spawn()]

    def _on_start(self, now: float) -> list[Action]:
        if self.state in (State.STARTING, State.RUNNING):
            return []
        if self.state is State.STOPPING:
            self._then = "start"
            return []
        # An operator's start is a fresh chance: forget the streak of failures.
        self.failures = 0
        self.streak = None
        self.error = None
        return [*self._cancel_timer(), *self._spawn(now)]

    def _on_stop(self, now: float) -> list[Action]:
        if self.state in (State.STARTING, State.RUNNING):
            if self.pid is None:
                # Spawn requested but not reported yet; the exit will follow the kill.
                self._enter(State.STOPPING, now)
                return [self._set_timer(now + self.policy.stop_timeout)]
            self._enter(State.STOPPING, now)
            return [SendStopSignal(), self._set_timer(now + self.policy.stop_timeout)]
        if self.state is State.STOPPING:
            return []
        actions = self._cancel_timer()
        self._enter(State.STOPPED, now)
        return actions

    def _on_spawned(self, pid: int, now: float) -> list[Action]:
        self.pid = pid
        self.started_at = now
        self.exit_code = None
        self.exit_signal = None
        self.error = None
        self._ready = False
        if self.state is State.STOPPING:
            # Stopped while the spawn was in flight: stop what just started.
            deadline = self.deadline if self.deadline is not None else now + self.policy.stop_timeout
            return [SendStopSignal(), self._set_timer(deadline)]
        return self._check_started(now)

    def _check_started(self, now: float) -> list[Action]:
        """In `starting` with a process: running once up `start_seconds` and (if it has a
        readiness check) ready; a failed start once `ready_timeout` passed without ready;
        otherwise a timer for whichever of the two comes next."""
        assert self.started_at is not None
        up_at = self.started_at + self.policy.start_seconds
        if now < up_at:
            return self._timer_at(up_at)
        if self._ready or not self.policy.needs_ready:
            return self._cancel_timer() + self._became_running(now)
        give_up_at = self.started_at + self.policy.ready_timeout
        if now < give_up_at:
            return self._timer_at(give_up_at)
        self.error = f"not ready within {self.policy.ready_timeout:g}s"
        self._ended(now, stable=False)
        self._then = "fail"
        return self._on_stop(now)

    def _on_ready(self, now: float) -> list[Action]:
        if self.state is not State.STARTING or self.pid is None or not self.policy.needs_ready:
            return []
        self._ready = True
        return self._check_started(now)

    def _became_running(self, now: float) -> list[Action]:
        self._enter(State.RUNNING, now)
        if self.policy.start_seconds > 0:
            self.failures = 0  # it has run start_seconds: the streak of failed starts is over
        if self.policy.watchdog > 0:
            return [self._set_timer(now + self.policy.watchdog)]
        return []

    def _on_spawn_failed(self, error: str, now: float, jitter: float) -> list[Action]:
        if self.state not in (State.STARTING, State.STOPPING):
            return []  # no spawn was in flight
        self.pid = None
        self.error = error
        if self.state is State.STOPPING:
            actions = self._cancel_timer()
            return actions + self._after_stop(now, jitter)
        self._ended(now, stable=False)
        return self._failed_start(now, jitter)

    def _failed_start(self, now: float, jitter: float) -> list[Action]:
        """A failed start (counted in the streak already): back off, or give up."""
        if self._stop_pending:
            self._enter(State.STOPPED, now)
            return []
        self.failures += 1
        if self.policy.max_restarts and self.failures > self.policy.max_restarts:
            self._enter(State.FATAL, now)
            last = f": {self.error}" if self.error else ""
            # The count is of failed starts, the setting of restarts: say how the two add up.
            n = self.policy.max_restarts
            restarts = f"max_restarts = {n} restart{'s' if n != 1 else ''}"
            self.error = f"gave up after {self.failures} failed starts (the first and {restarts}){last}"
            return self._cancel_timer()
        self._enter(State.BACKOFF, now)
        return [self._set_timer(now + backoff_delay(self.policy, self.failures, jitter))]

    def _on_exited(
        self, code: int | None, sig: int | None, now: float, jitter: float, last_line: str | None = None
    ) -> list[Action]:
        was = self.state
        if was not in ACTIVE:
            return []  # no process of ours exists in these states: nothing to decide
        ran_long_enough = self._ran_long_enough(now)
        stable = self._ran_stably(now)
        # "exited with code 255 after 0.03s: Connection refused": how and when it ended, and
        # its last words, where the reason usually is (as a failed job's error has them).
        lived = 0.0 if self.started_at is None else now - self.started_at
        why = f"{_describe_exit(code, sig)} after {_lifetime(lived)}"
        if last_line:
            why += f": {last_line}"
        self.pid = None
        self.exit_code = code
        self.exit_signal = sig
        actions = self._cancel_timer()
        if was is State.STOPPING:
            return actions + self._after_stop(now, jitter)
        if ran_long_enough:
            self.failures = 0
        if self._stop_pending:
            self._enter(State.STOPPED, now)  # its stop had begun: this exit is as good as one
            return actions
        if not wants_restart(self.policy, code):
            if code is None or code not in self.policy.success_exit_codes:
                self.error = why  # ended for good, and not well: say why
            self._enter(State.EXITED, now)
            return actions
        self._ended(now, stable)
        self.error = why  # a failed start, or a crash (a crash loop shows it while it backs off)
        if ran_long_enough:
            return actions + self._after_crash(now, jitter)
        return actions + self._failed_start(now, jitter)

    def _after_crash(self, now: float, jitter: float) -> list[Action]:
        """After a crash (or hang) of a process that had started fine, counted in the streak:
        the first of a streak is restarted at once; in a crash loop, the n-th end waits backoff
        step n-1 (1 for the second: backoff_min)."""
        assert self.streak is not None
        if self.streak.ends == 1:
            return self._spawn(now)
        if self._stop_pending:
            self._enter(State.STOPPED, now)
            return []
        self._enter(State.BACKOFF, now)
        return [self._set_timer(now + backoff_delay(self.policy, self.streak.ends - 1, jitter))]

    def _ran_long_enough(self, now: float) -> bool:
        """Whether the current process lived long enough that its exit is not a failed start.

        That is `start_seconds` (whether or not its timer has been delivered yet). With
        `start_seconds = 0` an instance counts as running at once, but an exit within
        `backoff_min` still counts as failed, so that a crash loop can never spin.
        """
        if self.started_at is None:
            return False
        limit = self.policy.start_seconds if self.policy.start_seconds > 0 else self.policy.backoff_min
        return now - self.started_at >= limit

    def _ran_stably(self, now: float) -> bool:
        """Whether the current process has run long enough that its end (or a hang) begins a
        new streak instead of adding to a crash loop: a good start, of `stable_seconds`."""
        if self.started_at is None or not self._ran_long_enough(now):
            return False
        return now - self.started_at >= self.policy.stable_seconds

    def _after_stop(self, now: float, jitter: float) -> list[Action]:
        then, self._then = self._then, "stop"
        if then == "fail":
            return self._failed_start(now, jitter)
        if then == "exit":
            self._enter(State.EXITED, now)
            return []
        if then == "crash":
            return self._after_crash(now, jitter)
        if then == "start":
            self.failures = 0
            self.streak = None  # a restart someone asked for is a fresh chance
            return self._spawn(now)
        self._enter(State.STOPPED, now)
        return []

    def _on_deadline(self, now: float) -> list[Action]:
        if self.state is State.STARTING:
            return self._check_started(now)
        if self.state is State.RUNNING and self.policy.watchdog > 0:
            # Silent for a whole watchdog period: treat it as hung. Stop it, then restart it
            # like a crash unless its policy says never (a hang is a failure, like death by a
            # signal).
            self.error = f"watchdog: no ping within {self.policy.watchdog:g}s"
            self._ended(now, self._ran_stably(now))
            self._then = "crash" if wants_restart(self.policy, None) else "exit"
            return self._on_stop(now)
        if self.state is State.BACKOFF:
            return self._spawn(now)
        if self.state is State.STOPPING:
            # stop_timeout passed: no more asking. Keep waiting for the exit the kill brings.
            return [KillGroup()]
        return []


def _lifetime(seconds: float) -> str:
    """How long a process lived, as its exit's error says it: 0.03s, 12.5s, 3m20s, 2h05m."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s // 60 % 60:02d}m"
    return f"{s // 86400}d{s // 3600 % 24}h"


def _describe_exit(code: int | None, sig: int | None) -> str:
    """ "exited with code 3", "killed by SIGSEGV" (as the daemon's log and notifications say it)."""
    if code is not None:
        return f"exited with code {code}"
    if sig is None:
        return "exited"
    try:
        return f"killed by {signal.Signals(sig).name}"
    except ValueError:
        return f"killed by signal {sig}"


def daemon_exit_code(state: State, exit_code: int | None, exit_signal: int | None) -> int | None:
    """The exit code of a daemon whose `stop_daemon_on_exit` program is now in `state`, or None
    while it is not over: an exit it will not be restarted from (EXITED) ends the daemon with
    the program's code (128 + N after signal N, as a shell says it); one it gave up on (FATAL)
    with the code of its last run, or 1. A stop by hand (STOPPED) is not an end of this kind."""
    if state not in (State.EXITED, State.FATAL):
        return None
    if exit_code is not None:
        return exit_code
    if exit_signal is not None:
        return 128 + exit_signal
    return 1
