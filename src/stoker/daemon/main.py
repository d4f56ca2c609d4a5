"""The daemon: one asyncio loop that owns the programs and serves the control API.

`stoker up` runs `run()` in the foreground; `stoker up -d` detaches first (double fork, setsid,
stdio to the daemon log) and the launching process waits on a pipe until the daemon says it is
ready or why it is not.

Length: the daemon's wiring: the parts (store, supervisor, dispatcher, scheduler, API) are
built, started, reloaded and stopped here in one order; the order is the point, so it is kept
in one file rather than spread over the parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import msgspec

from stoker import names
from stoker.config import Config
from stoker.daemon import lock
from stoker.skew import NodeClock

if TYPE_CHECKING:  # (imported where used: `stoker up -d`'s launching process needs none of it)
    import uvicorn

    from stoker.api.listeners import Listener
    from stoker.daemon.cluster import Publisher
    from stoker.daemon.sampler import Sampler
    from stoker.daemon.singletons import LeaseKeeper
    from stoker.notify.notifier import Notifier
    from stoker.runtime import DaemonInfo
    from stoker.store import Store
    from stoker.store.shared import SharedStore
    from stoker.supervise.instance import Instance
    from stoker.supervise.supervisor import Supervisor

log = logging.getLogger("stoker")


class StartupError(Exception):
    """The daemon cannot start; the message says why (it reaches the `stoker up` caller)."""


def socket_path(config: Config) -> Path:
    return Path(config.daemon.state_dir) / names.SOCKET


def prepare_state_dir(config: Config) -> Path:
    """The state dir, made 0700 if it is not there; refused (StartupError) if it is not ours:
    checked before anything is opened in it."""
    state_dir = Path(config.daemon.state_dir)
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _refuse_foreign(state_dir, os.stat(state_dir), top=True)
        logs = state_dir / names.LOGS
        logs.mkdir(mode=0o700, exist_ok=True)
        _refuse_foreign(logs, os.lstat(logs))
        with contextlib.suppress(FileNotFoundError):  # (made by the dispatcher, when there are tasks)
            _refuse_foreign(logs / names.JOB_LOGS, os.lstat(logs / names.JOB_LOGS))
    except OSError as e:
        raise StartupError(f"cannot create state dir {state_dir}: {e.strerror}") from None
    return state_dir


def foreign(path: Path, st: os.stat_result, me: int, *, top: bool = False) -> str | None:
    """Why the daemon must not use the folder `path` (`st`: its lstat, or its stat for the
    state dir itself, which may be a link an admin made), or None. Another user who owns a
    folder of ours (or a link in place of one) could plant links there that the daemon, root
    as a rule, would follow when it writes a log: to overwrite any file of the machine."""
    what = "state dir" if top else "folder"
    if stat.S_ISLNK(st.st_mode):
        return f"{what} {path} is a symbolic link: the daemon follows none inside its state dir (remove it)"
    if not stat.S_ISDIR(st.st_mode):
        return f"{what} {path} is not a folder (remove it)"
    if st.st_uid != me:
        owner, mine = _user_name(st.st_uid), _user_name(me)
        return (
            f"{what} {path} is owned by {owner} (uid {st.st_uid}), not by {mine}, the user the daemon"
            f" runs as: {owner} could plant links in it for the daemon to follow, and read what it keeps"
            f" there. Give it to {mine} (chown -R {mine} {path}) or set another [daemon] state_dir"
        )
    return None


def _refuse_foreign(path: Path, st: os.stat_result, *, top: bool = False) -> None:
    if (reason := foreign(path, st, os.geteuid(), top=top)) is not None:
        raise StartupError(reason)


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def keep_private(state_dir: Path) -> None:
    """Tighten a state dir that others may enter (made by hand, `mkdir -p` under umask 022, an
    older stoker) to 0700: a fresh one is born so, and its files are ours alone. Said in the log,
    since it may change what someone relied on. (One we do not own was refused before:
    prepare_state_dir.)
    """
    from stoker.sdnotify import drop_acl

    with contextlib.suppress(OSError):  # (not ours to change: said below)
        if drop_acl(state_dir):  # the notify socket's grant (sdnotify): renewed once programs run
            os.chmod(state_dir, stat.S_IMODE(state_dir.stat().st_mode) & ~0o070)
    # Files an older stoker made 0644: programs' users may be granted a way in (the notify
    # socket's), and would find the database readable. (logs/ gets no grant: not needed there.)
    tightened = []
    for entry in os.scandir(state_dir):
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.geteuid():
                os.chmod(entry.path, stat.S_IMODE(st.st_mode) & 0o700)
                tightened.append(entry.name)
    logs = state_dir / names.LOGS
    if (mode := stat.S_IMODE(logs.lstat().st_mode)) & 0o077:  # (a folder of ours: prepare_state_dir)
        os.chmod(logs, 0o700)
        log.info("%s was mode %04o, now 0700", logs, mode)
    if tightened:
        log.info("made private (0600) in %s: %s", state_dir, ", ".join(sorted(tightened)))
    st = state_dir.stat()
    if not st.st_mode & 0o077:
        return
    mode = stat.S_IMODE(st.st_mode)
    try:
        os.chmod(state_dir, 0o700)
    except OSError as e:
        log.warning("state dir %s is mode %04o and cannot be made 0700: %s", state_dir, mode, e.strerror)
        return
    log.info("state dir %s was mode %04o, now 0700: the daemon's files are not for others", state_dir, mode)


def _setup_logging(stream: TextIO) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter("%(asctime)s stoker[%(process)d] %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    root = logging.getLogger("stoker")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def _bind_unix(path: Path) -> Listener:
    # We hold the lock, so a socket file here is a dead daemon's leftover.
    from stoker.api.listeners import Listener

    path.unlink(missing_ok=True)
    sock = Listener(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # born 0600: no window in which others could connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _bind_tcp(host: str, port: int, ceiling: int) -> Listener:
    """The TCP door; its connections may not take a descriptor from `ceiling` on (listeners.py)."""
    from stoker.api.listeners import Listener

    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = Listener(family, kind, proto)
    sock.ceiling = ceiling
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _unbind(config: Config, sockets: list[socket.socket]) -> None:
    """Close the sockets of a start that failed; no stale stoker.sock stays to mislead."""
    for sock in sockets:
        sock.close()
    socket_path(config).unlink(missing_ok=True)


OPEN_FILES_WANTED = 65536  # enough for ~15,000 instances; not "infinity", which children inherit


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files towards the hard one and return it. Each instance holds
    a log file, a pipe and a pidfd, so systemd's default soft limit of 1024 would stop a config
    of a few hundred programs. Programs and jobs inherit the raised limit, as they do under
    supervisord (minfds) and pm2 (node raises its own)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= OPEN_FILES_WANTED:
        return OPEN_FILES_WANTED if soft == resource.RLIM_INFINITY else soft
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, wanted, e)
            return soft
        return wanted
    return soft


def _systemd_watchdog_seconds() -> float | None:
    """WatchdogSec= of systemd's unit for us, if it set one (and meant us, not a parent)."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1_000_000


async def _ping_systemd(every: float) -> None:
    from stoker import sdnotify

    while sdnotify.tell_systemd(WATCHDOG=1):
        await asyncio.sleep(every)


async def serve(config: Config, ready: Callable[[], None]) -> int:
    """Run until asked to stop: programs, API; then stop every program and return the exit
    code (0, or that of a `stop_daemon_on_exit` program whose end stopped the daemon)."""
    daemon = Daemon(config)
    await daemon.start()
    await daemon.run(ready)
    log.info("stopped")
    return daemon.exit_code


class Daemon:
    """The daemon's parts and the order they come and go in. Read it top to bottom:

    - `start()`: before anything runs, the program supervisor and the API's sockets, the store
      and what runs jobs and schedules on it, the HTTP server (a start that fails undoes what
      it did: sockets closed, store closed);
    - `run(ready)`: the background tasks, the programs' autostart, then waiting to be asked
      to stop (SIGTERM, SIGINT, the API), and `stop()`; `close()` whatever happens;
    - `reload()`: SIGHUP or the API, one at a time: re-read the config and apply what changed;
    - `stop()`: the orderly way down (schedules, then programs and jobs, then the cluster,
      then the notifications of what they did on the way out); `close()`: what is left.
    """

    # made by start(): the parts
    loop: asyncio.AbstractEventLoop
    supervisor: Supervisor
    info: DaemonInfo  # what the API reaches
    notifier: Notifier
    server: uvicorn.Server
    token: str | None  # the API token TCP requests need, and the file it is kept in, if made
    made: Path | None
    open_files: int  # the raised limit
    ceiling: int  # the descriptors TCP connections may not take (api/listeners.py)
    systemd_watchdog: float | None
    notify_task: asyncio.Task[None]  # made by run()

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stopping = asyncio.Event()
        self.store: Store | None = None
        self.shared: SharedStore | None = None  # `store`, when other nodes share it (PostgreSQL)
        # this node's "now" on the store: the wall clock, corrected on a shared store whose
        # server's clock differs (stoker/skew.py; the heartbeat measures it)
        self.clock = NodeClock()
        self.publisher: Publisher | None = None  # the cluster view: this node's programs, for the others
        self.keeper: LeaseKeeper | None = None  # singletons run where this node holds their lease
        self.sockets: list[socket.socket] = []
        self.jobs_task: asyncio.Task[None] | None = None
        self.schedules_task: asyncio.Task[None] | None = None
        self.cron_task: asyncio.Task[None] | None = None
        self.watchdog_task: asyncio.Task[None] | None = None
        self.cluster_task: asyncio.Task[None] | None = None
        self.publish_task: asyncio.Task[None] | None = None
        self.leases_task: asyncio.Task[None] | None = None
        self.history_task: asyncio.Task[None] | None = None
        self._reloading = asyncio.Lock()
        self.exit_code = 0  # that of a stop_daemon_on_exit program whose end stopped the daemon

    # start ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Everything up to serving the API; StartupError (nothing left open) if it cannot."""
        self._prepare()
        self._bind()
        await self._open_jobs()
        await self._serve_api()

    def _prepare(self) -> None:
        """The process, the supervisor (nothing started yet), what the API shows, the webhooks."""
        from stoker import sdnotify
        from stoker.notify.notifier import Notifier
        from stoker.runtime import DaemonInfo
        from stoker.supervise import cgroups
        from stoker.supervise.procs import kill_orphans
        from stoker.supervise.supervisor import Supervisor

        config = self.config
        self.loop = asyncio.get_running_loop()
        self.systemd_watchdog = _systemd_watchdog_seconds()
        sdnotify.take_from_environment()  # before anything is started: none of it may speak for us
        # Every program and job learns which node runs it (a singleton may want to say where it is).
        # (Set before the supervisor and the dispatcher copy the environment; a reload keeps it.)
        os.environ["STOKER_NODE"] = config.daemon.node
        kill_orphans(config.daemon.state_dir)
        cgroups.use(cgroups.open_tree(config.daemon.state_dir))  # (an earlier daemon's leftovers killed)
        self.open_files = open_files = raise_open_file_limit()
        self.supervisor = supervisor = Supervisor(config)
        if (needed := 4 * len(supervisor.instances) + 256) > open_files:
            log.warning(
                "%d program instances may need %d open files, but the limit is %d"
                " (raise LimitNOFILE= or ulimit -n)",
                len(supervisor.instances),
                needed,
                open_files,
            )
        self.info = info = DaemonInfo(
            supervisor=supervisor, started_at=time.time(), request_shutdown=self.stopping.set
        )
        self.sampler: Sampler | None = None
        if config.daemon.history:  # the charts' figures (stoker.history), fed from here on
            from stoker.daemon.sampler import Sampler
            from stoker.history import History

            info.history = History(time.time())
            self.sampler = sampler = Sampler(info.history, supervisor, lambda: info.dispatcher)
            info.events.listen(sampler.observe)
            supervisor.subscribe(sampler.changed)
        # a stop_daemon_on_exit program's end for good stops the daemon with its exit code
        supervisor.subscribe(self._stop_daemon_on_exit)
        self.token, self.made = _api_token(config)
        # [notify] webhooks; listening from here on, so it hears what the scheduler's start finds
        self.notifier = Notifier(config, supervisor, info.events, lambda: info.scheduler)

    def _stop_daemon_on_exit(self, inst: Instance) -> None:
        """The container idiom: a `stop_daemon_on_exit` program that ended for good (exited and
        not restarted, or fatal) stops the daemon, which exits with its code."""
        from stoker.supervise.state import daemon_exit_code

        if not inst.program.stop_daemon_on_exit or self.stopping.is_set():
            return
        code = daemon_exit_code(inst.state, inst.machine.exit_code, inst.machine.exit_signal)
        if code is not None:
            log.info("%s ended (%s): stop_daemon_on_exit: stopping the daemon", inst.name, inst.state)
            self.exit_code = code
            self.stopping.set()

    def _bind(self) -> None:
        """The API's sockets, bound before anything is opened: a port in use ends the start with
        nothing to undo but these (TCP first, so that it leaves no socket file behind)."""
        from stoker.api.listeners import quiet_accept_errors, tcp_descriptor_ceiling

        d = self.config.daemon
        # TCP connections leave a quarter of the descriptors (at least 64) to the unix socket and
        # to spawning; at most half of the rest wait for a request head (connections.py).
        self.ceiling = tcp_descriptor_ceiling(self.open_files)
        quiet_accept_errors(self.loop)  # a failed accept() is said by its Listener, once a minute at most
        if d.listen_host is not None and d.listen_port is not None:
            self.sockets.append(_bind_tcp(d.listen_host, d.listen_port, self.ceiling))
        self.sockets.insert(0, _bind_unix(socket_path(self.config)))

    async def _open_jobs(self) -> None:
        """The store, this node's place in the cluster (a shared store), the dispatcher and the
        scheduler on it; on a failure the store is closed and the sockets unbound."""
        from stoker.daemon.cluster import Publisher, listen, read_clock
        from stoker.daemon.singletons import LeaseKeeper
        from stoker.jobs.dispatcher import Dispatcher
        from stoker.store import StoreError
        from stoker.store.shared import SharedStore
        from stoker.views import program_snapshots

        config, d, info, supervisor = self.config, self.config.daemon, self.info, self.supervisor
        try:
            self.store = store = await _open_store(config)
        except BaseException:
            _unbind(config, self.sockets)
            raise
        self.shared = shared = store if isinstance(store, SharedStore) else None  # with other nodes
        info.shared = shared
        if shared is not None:  # the cluster view: this node's programs, for the others to show
            self.publisher = publisher = Publisher(shared, d.node, _version(), program_snapshots(supervisor))
            supervisor.subscribe(lambda inst: publisher.changed())
        # singletons run where this node holds their lease (without a shared store: here)
        self.keeper = keeper = (
            None if shared is None else LeaseKeeper(shared, supervisor, d.node, d.node_timeout)
        )
        try:
            if shared is not None:
                try:
                    await shared.join(d.node, d.node_timeout)
                except StoreError as e:
                    raise StartupError(str(e)) from None
                read_clock(shared, self.clock, d.node)  # before any job or slot is timed
            if store is not None:
                info.dispatcher = Dispatcher(
                    config, store, publish=info.events.publish, shared=shared, clock=self.clock
                )
                await info.dispatcher.start()
                if config.schedules:
                    from stoker.schedule.scheduler import Scheduler

                    info.scheduler = Scheduler(
                        config, store, info.dispatcher, publish=info.events.publish, clock=self.clock
                    )
                    await info.scheduler.start()
                if shared is not None:
                    wake_leases = keeper.wake if keeper else None
                    listen(shared, store, info.dispatcher, lambda: info.scheduler, wake_leases)
        except BaseException:  # the store's connections and tasks end here, not in asyncio.run's sweep
            if store is not None:
                await store.close()
            _unbind(config, self.sockets)
            raise

    async def _serve_api(self) -> None:
        """The API on the bound sockets (uvicorn's server, started without its own loop)."""
        import uvicorn

        from stoker.api.app import build_app
        from stoker.api.connections import TOTAL, guarded_protocol
        from stoker.api.unix_protocol import UnixProtocol
        from stoker.views import program_events

        # the `program` events (of /api/v1/events, the dashboard's, the notifications')
        self.supervisor.subscribe(program_events(self.supervisor, self.info.events.publish))
        app = build_app(self.info, self.token, self.made)
        self.server = server = uvicorn.Server(
            uvicorn.Config(
                app,
                lifespan="off",
                log_level="warning",
                access_log=False,
                # h11, with a deadline and a bound on unfinished heads
                http=guarded_protocol(total=min(TOTAL, max(1, self.ceiling // 2))),
                ws="none",
                date_header=False,  # uvicorn refreshes it on a 0.1 s tick we never run: idle means idle
                server_header=False,
                timeout_graceful_shutdown=2,
            )
        )
        server.config.load()
        server.lifespan = server.config.lifespan_class(server.config)
        # startup() without serve(): serve() installs its own signal handlers and a 0.1 s tick loop.
        # uvicorn serves TCP (with the guard); the unix socket is served here with the httptools
        # protocol (api/unix_protocol.py), a server of the same uvicorn.Server: shut down with it.
        unix = [sock for sock in self.sockets if sock.family == socket.AF_UNIX]
        await server.startup(sockets=[sock for sock in self.sockets if sock not in unix])
        for sock in unix:
            served = await self.loop.create_server(
                functools.partial(
                    UnixProtocol, config=server.config, server_state=server.server_state,
                    app_state=server.lifespan.state,
                ),
                sock=sock,
                backlog=server.config.backlog,
            )  # fmt: skip
            server.servers.append(served)

    # run -----------------------------------------------------------------------------------

    async def run(self, ready: Callable[[], None]) -> None:
        """Run the programs, jobs and schedules until asked to stop; then stop them, in order."""
        self.notify_task = asyncio.create_task(self.notifier.run(), name="notify")
        self.info.reload = self.reload
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        self.loop.add_signal_handler(signal.SIGHUP, lambda: self.loop.create_task(self._reload_on_signal()))
        try:
            self._launch(ready)
            await self.stopping.wait()
            await self.stop()
        finally:
            await self.close()

    def _launch(self, ready: Callable[[], None]) -> None:
        """The background tasks, then the programs; `ready()` once they are on their way."""
        from stoker import sdnotify
        from stoker.daemon.cluster import JobFence, keep_alive

        config, d, info, supervisor = self.config, self.config.daemon, self.info, self.supervisor
        shared, store, publisher = self.shared, self.store, self.publisher
        if shared is not None and store is not None and info.dispatcher is not None:
            from stoker.jobs.dispatcher import LAPSED

            fence = JobFence(info.dispatcher, d.node_timeout)
            self.cluster_task = asyncio.create_task(
                keep_alive(shared, store, d.node, d.node_timeout, reason=LAPSED,
                           requeued=partial(info.dispatcher.queued_elsewhere, None), publisher=publisher,
                           fence=fence, clock=self.clock),
                name="cluster",
            )  # fmt: skip
        if publisher is not None:
            self.publish_task = asyncio.create_task(publisher.run(), name="cluster view")
        if self.keeper is not None:  # before autostart: it starts the singletons once it has their leases
            self.leases_task = asyncio.create_task(self.keeper.run(), name="singleton leases")
        if info.scheduler is not None:
            self.schedules_task = asyncio.create_task(info.scheduler.run(), name="schedules")
        if self.sampler is not None:
            self.history_task = asyncio.create_task(self.sampler.run(), name="history")
        if info.dispatcher is not None and config.tasks:
            self.jobs_task = asyncio.create_task(info.dispatcher.run(), name="jobs")
        supervisor.autostart()
        self.cron_task = self._start_cron_restarts()
        log.info(
            "stoker %s ready: %d program(s), %d instance(s), socket %s%s%s",
            _version(),
            len(config.programs),
            len(supervisor.instances),
            socket_path(config),
            f", http://{d.listen}" if d.listen else "",
            f" (its token is in {self.made})" if self.made else "",
        )
        ready()
        status = f"{len(supervisor.instances)} program instance(s)"
        sdnotify.tell_systemd(READY=1, MAINPID=os.getpid(), STATUS=status)
        if self.systemd_watchdog:
            self.watchdog_task = asyncio.create_task(
                _ping_systemd(self.systemd_watchdog / 2), name="systemd watchdog"
            )

    def _start_cron_restarts(self) -> asyncio.Task[None] | None:
        supervisor = self.supervisor
        if not any(p.cron_restart for p in supervisor.config.programs.values()):
            return None
        from stoker.supervise.cron_restart import restart_on_schedule, triggers_of

        return asyncio.create_task(restart_on_schedule(supervisor, triggers_of(supervisor)))

    # reload --------------------------------------------------------------------------------

    async def reload(
        self, progress: Callable[[dict[str, Any]], None] | None = None, config: Config | None = None
    ) -> dict[str, Any]:
        """Re-read the config file and apply what changed; ConfigError (nothing changed) if
        the file is not valid. `progress` hears each instance the reload stops, as it stops.
        `config`: apply this one instead of the file's (the XML-RPC API's addProcessGroup:
        the running config with one program group added or removed)."""
        from stoker import sdnotify

        async with self._reloading:
            sdnotify.tell_systemd(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000)
            try:
                return await self._apply_reload(progress, config)
            finally:
                sdnotify.tell_systemd(READY=1)

    async def _reload_on_signal(self) -> None:
        from stoker.config import ConfigError

        try:
            await self.reload()
        except ConfigError as e:
            log.error("reload refused, nothing changed: %s", e)

    async def _apply_reload(
        self, progress: Callable[[dict[str, Any]], None] | None, config: Config | None
    ) -> dict[str, Any]:
        from stoker.config import load_config
        from stoker.daemon.reload_progress import StopReporter
        from stoker.reload import RESTART_ONLY, describe, diff

        info, supervisor = self.info, self.supervisor
        current = supervisor.config
        new = load_config(current.path) if config is None else config
        changes = diff(current, new)
        # what is bound at start stays as it is until the daemon restarts
        kept = {key: getattr(current.daemon, key) for key in RESTART_ONLY}
        new = msgspec.structs.replace(new, daemon=msgspec.structs.replace(new.daemon, **kept))
        if (cannot := await self._gain_jobs(new)) is not None:
            changes.needs_restart.append(cannot)
        if info.dispatcher is not None:
            info.dispatcher.reconfigure(new)
        if info.scheduler is not None:
            info.scheduler.reconfigure(new)
        self.notifier.reconfigure(new)
        touched = {*changes.removed, *changes.changed, *changes.resized}
        unsubscribe = supervisor.subscribe(StopReporter(touched, progress)) if progress else None
        try:
            await supervisor.apply(new, changes)
        finally:
            if unsubscribe is not None:
                unsubscribe()
        await _cancelled(self.cron_task)
        self.cron_task = self._start_cron_restarts()
        if self.publisher is not None:  # programs added or removed change no instance's state
            self.publisher.changed()
        report = {**changes.as_json(), "config": new.path}
        log.info("reloaded %s: %s", new.path, describe(report))
        return report

    async def _gain_jobs(self, new: Config) -> str | None:
        """What the first task or schedule needs, if the daemon lacks it: the store (a daemon
        started without tasks on SQLite opened none), the dispatcher, the scheduler. They stay
        once made (a config without tasks leaves them idle). None, or why it cannot."""
        from stoker.jobs.dispatcher import Dispatcher

        info = self.info
        if not new.tasks:  # (a schedule's inline command is a task too)
            return None
        if self.store is None:
            try:
                self.store = await _open_store(new)
            except StartupError as e:
                log.error("reload: cannot add tasks and schedules: %s", e)
                return f"tasks and schedules (the store cannot be opened: {e})"
        store = self.store
        assert store is not None
        if info.dispatcher is None:
            dispatcher = Dispatcher(
                new, store, publish=info.events.publish, shared=self.shared, clock=self.clock
            )
            await dispatcher.start()
            info.dispatcher = dispatcher
        if self.jobs_task is None:
            self.jobs_task = asyncio.create_task(info.dispatcher.run(), name="jobs")
        if new.schedules and info.scheduler is None:
            from stoker.schedule.scheduler import Scheduler

            # born without schedules, then given them as any reload gives a running scheduler
            # new ones (planned from now: no catch-up, no @reboot, as for every added schedule)
            scheduler = Scheduler(msgspec.structs.replace(new, schedules={}), store, info.dispatcher,
                                  publish=info.events.publish, clock=self.clock)  # fmt: skip
            await scheduler.start()
            info.scheduler = scheduler
            self.schedules_task = asyncio.create_task(scheduler.run(), name="schedules")
        return None

    # stop ----------------------------------------------------------------------------------

    async def stop(self) -> None:
        """The way down, in order: nothing more starts; the schedules stop firing; programs and
        jobs stop together; this node leaves the cluster; the last notifications are sent."""
        from stoker import sdnotify
        from stoker.store import StoreError

        d, info, supervisor = self.config.daemon, self.info, self.supervisor
        log.info("shutting down")
        supervisor.closing()  # from here on nothing starts (the cron restarts are still being cancelled)
        sdnotify.tell_systemd(STOPPING=1)
        await _cancelled(self.cron_task)
        await _cancelled(self.history_task)
        if info.scheduler is not None and self.schedules_task is not None:
            info.scheduler.stop()
            await self.schedules_task
        async with asyncio.TaskGroup() as group:
            group.create_task(supervisor.shutdown())
            if info.dispatcher is not None:
                group.create_task(info.dispatcher.shutdown(d.shutdown_timeout))
        if self.jobs_task is not None:
            await self.jobs_task
        # Others saw the programs stopping (published on each change); the node now leaves, and
        # its row with it: a publish still pending would be for nobody.
        await _cancelled(self.publish_task)
        await _cancelled(self.leases_task)  # the programs are stopped: leave() gives their leases up
        if self.cluster_task is not None and self.shared is not None:  # its jobs are ended or queued again
            await _cancelled(self.cluster_task)
            with contextlib.suppress(StoreError):
                await self.shared.leave(d.node)
        self.notifier.close()  # after the programs and jobs: what they did on the way out is sent too
        await self.notify_task

    async def close(self) -> None:
        """Whatever `stop()` did not end (it failed, or never ran), then the store, the cgroups,
        the signal handlers and the API, whose socket file goes last."""
        from stoker.supervise import cgroups

        if self.watchdog_task is not None:
            self.watchdog_task.cancel()
        for task in (self.cron_task, self.schedules_task, self.jobs_task, self.cluster_task,
                     self.publish_task, self.leases_task, self.notify_task, self.history_task):  # fmt: skip
            if task is not None and not task.done():
                await _cancelled(task)
        if self.store is not None:
            await self.store.close()
        if (tree := cgroups.current()) is not None:  # what is left in it dies with the daemon
            cgroups.use(None)
            await asyncio.to_thread(tree.close)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self.loop.remove_signal_handler(sig)
        self.server.should_exit = True
        await self.server.shutdown(sockets=self.sockets)
        socket_path(self.config).unlink(missing_ok=True)


async def _cancelled(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` (if any) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _api_token(config: Config) -> tuple[str | None, Path | None]:
    """The token TCP requests need (None: no `listen`), and the file it was kept in when the
    daemon made it (no [daemon] token: daemon/token.py)."""
    from stoker.daemon.token import TokenError, made_token, token_file

    d = config.daemon
    if d.listen is None or d.token is not None:
        return d.token, None
    try:
        return made_token(d.state_dir), token_file(d.state_dir)
    except TokenError as e:
        raise StartupError(str(e)) from None


async def _open_store(config: Config) -> Store | None:
    """The job store, when there are tasks or jobs to show: SQLite's from earlier runs, or a
    PostgreSQL store's (named in the config, shared with other nodes); a programs-only daemon
    on SQLite never opens a database."""
    from stoker.store import StoreError, open_store

    d = config.daemon
    if not config.tasks and d.store == "sqlite" and not (Path(d.state_dir) / names.DATABASE).exists():
        return None
    try:
        store = open_store(d.store, d.state_dir)
        await store.open()
    except StoreError as e:
        raise StartupError(str(e)) from None
    return store


def _version() -> str:
    from stoker.about import __version__

    return __version__


def run(config: Config, *, detach: bool = False) -> int:
    """`stoker up`: returns the exit code."""
    if os.getpid() == 1 and not detach:
        from stoker.daemon.init import run_as_init

        return run_as_init(lambda: _run_reporting(config))
    return _run(config, detach=detach)


def _run_reporting(config: Config) -> int:
    """The daemon under the PID 1 shim: a startup error is said here (the CLI is not above)."""
    try:
        return _run(config, detach=False)
    except StartupError as e:
        print(f"stoker: {e}", file=sys.stderr)
        return 1


def _run(config: Config, *, detach: bool) -> int:
    state_dir = prepare_state_dir(config)
    try:
        lock_fd = lock.acquire(state_dir)
    except lock.AlreadyRunning as e:
        print(f"stoker: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a link planted in its place (ELOOP) is not followed
        raise StartupError(f"cannot lock {state_dir / names.LOCK}: {e.strerror}") from None
    if detach:
        return _run_detached(config, state_dir, lock_fd)
    _setup_logging(sys.stderr)
    return _run_here(config, state_dir, lambda: None)


def _run_here(config: Config, state_dir: Path, ready: Callable[[], None]) -> int:
    from setproctitle import setproctitle

    setproctitle(f"stoker: daemon {config.path}")
    keep_private(state_dir)
    lock.write_pid(state_dir)
    # The young objects are collected after 10,000 allocations, not 700: a job's objects live
    # some milliseconds (until its store commit), and at 700 they were traversed, promoted and
    # traversed again. 3% of the daemon's instructions per job (callgrind, bench/profile_jobs.py);
    # the same RSS with 100 programs.
    gc.set_threshold(10_000, 10, 10)
    try:
        return asyncio.run(serve(config, ready))
    except StartupError as e:
        log.error("%s", e)
        raise
    finally:
        lock.remove_pid(state_dir)


def _run_detached(config: Config, state_dir: Path, lock_fd: int) -> int:
    """Double fork; the caller waits for "ok" (or a reason) on a pipe from the daemon.

    `lock_fd` is inherited by both forks: the daemon holds the lock from here on, and the
    launching process's copy goes away when it exits.
    """
    del lock_fd
    read_end, write_end = os.pipe()
    if (first_child := os.fork()) > 0:
        os.close(write_end)
        os.waitpid(first_child, 0)  # it exits at once; reap it so no zombie lingers
        return _await_daemon(read_end, config)
    # first child: new session, so no terminal can send us SIGHUP; fork again so we are not
    # a session leader and can never acquire a controlling terminal.
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    code = 1
    try:
        daemon_log = state_dir / names.DAEMON_LOG
        try:  # (O_NOFOLLOW: a link planted in its place is not followed)
            fd = os.open(daemon_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise StartupError(f"cannot open the daemon log {daemon_log}: {e.strerror}") from None
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        os.chdir("/")
        _setup_logging(sys.stderr)

        def ready() -> None:
            os.write(write_end, b"ok\n")
            os.close(write_end)

        code = _run_here(config, state_dir, ready)
    except BaseException as e:  # the reason must reach the waiting `stoker up -d`
        if isinstance(e, StartupError):
            reason = str(e)
        else:
            reason = f"{type(e).__name__}: {e}"
            log.exception("daemon failed")
        with contextlib.suppress(OSError):
            os.write(write_end, f"error: {reason}\n".encode())
    finally:
        os._exit(code)  # the kernel drops the lock with our last fd


def _await_daemon(read_end: int, config: Config) -> int:
    chunks = []
    while chunk := os.read(read_end, 4096):
        chunks.append(chunk)
        if b"\n" in chunk:
            break
    os.close(read_end)
    message = b"".join(chunks).decode(errors="replace").strip()
    if message != "ok":
        reason = message.removeprefix("error: ") or "the daemon exited during startup"
        log_file = Path(config.daemon.state_dir) / names.DAEMON_LOG
        print(f"stoker: daemon failed to start: {reason} (see {log_file})", file=sys.stderr)
        return 1
    # "returns 0 only once the daemon answers": ask it, over the socket, like any client.
    from stoker.client import Client, ClientError

    try:
        status = Client.for_config(config).status()
    except ClientError as e:
        print(f"stoker: daemon started but does not answer: {e}", file=sys.stderr)
        return 1
    d = config.daemon
    http = "" if d.listen is None else f", http://{d.listen}/"
    if d.listen is not None and d.token is None:
        from stoker.daemon.token import token_file

        http += f" (its token is in {token_file(d.state_dir)})"
    print(f"stoker: daemon running, pid {status['pid']}, socket {socket_path(config)}{http}")
    return 0
