"""The daemon: one asyncio loop that owns the programs and serves the control API.

`stoker up` runs `run()` in the foreground; `stoker up -d` detaches first (double fork, setsid,
stdio to the daemon log) and the launching process waits on a pipe until the daemon says it is
ready or why it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from stoker.config import Config
from stoker.daemon import lock

if TYPE_CHECKING:
    from stoker.api.listeners import Listener
    from stoker.store import Store

log = logging.getLogger("stoker")


class StartupError(Exception):
    """The daemon cannot start; the message says why (it reaches the `stoker up` caller)."""


def socket_path(config: Config) -> Path:
    return Path(config.daemon.state_dir) / "stoker.sock"


def prepare_state_dir(config: Config) -> Path:
    """The state dir, made 0700 if it is not there; refused (StartupError) if it is not ours:
    checked before anything is opened in it."""
    state_dir = Path(config.daemon.state_dir)
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _refuse_foreign(state_dir, os.stat(state_dir), top=True)
        logs = state_dir / "logs"
        logs.mkdir(mode=0o700, exist_ok=True)
        _refuse_foreign(logs, os.lstat(logs))
        with contextlib.suppress(FileNotFoundError):  # (made by the dispatcher, when there are tasks)
            _refuse_foreign(logs / "jobs", os.lstat(logs / "jobs"))
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
    logs = state_dir / "logs"
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


async def serve(config: Config, ready: Callable[[], None]) -> None:
    """Run until asked to stop: programs, API; then stop every program and return."""
    import uvicorn

    from stoker import sdnotify
    from stoker.api.app import DaemonInfo, build_app, program_snapshots
    from stoker.api.connections import TOTAL, guarded_protocol
    from stoker.api.listeners import quiet_accept_errors, tcp_descriptor_ceiling
    from stoker.daemon.cluster import Publisher, SharedStore, keep_alive, listen
    from stoker.daemon.singletons import LeaseKeeper
    from stoker.jobs.dispatcher import Dispatcher
    from stoker.notify.notifier import Notifier
    from stoker.store import StoreError
    from stoker.supervise import cgroups
    from stoker.supervise.procs import kill_orphans
    from stoker.supervise.supervisor import Supervisor

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    systemd_watchdog = _systemd_watchdog_seconds()
    sdnotify.take_from_environment()  # before anything is started: none of it may speak for us
    # Every program and job learns which node runs it (a singleton may want to say where it is).
    # (Set before the supervisor and the dispatcher copy the environment; a reload keeps it.)
    os.environ["STOKER_NODE"] = config.daemon.node
    kill_orphans(config.daemon.state_dir)
    cgroups.use(cgroups.open_tree(config.daemon.state_dir))  # (an earlier daemon's leftovers killed)
    open_files = raise_open_file_limit()
    supervisor = Supervisor(config)
    if (needed := 4 * len(supervisor.instances) + 256) > open_files:
        log.warning(
            "%d program instances may need %d open files, but the limit is %d"
            " (raise LimitNOFILE= or ulimit -n)",
            len(supervisor.instances),
            needed,
            open_files,
        )
    info = DaemonInfo(supervisor=supervisor, started_at=time.time(), request_shutdown=stopping.set)
    token, made = _api_token(config)
    # [notify] webhooks; listening from here on, so it hears what the scheduler's start finds
    notifier = Notifier(config, supervisor, info.events, lambda: info.scheduler)
    d = config.daemon
    # Bound before anything is opened: a port in use ends the start with nothing to undo but
    # these (TCP first, so that it leaves no socket file behind).
    # TCP connections leave a quarter of the descriptors (at least 64) to the unix socket and
    # to spawning; at most half of the rest wait for a request head (connections.py).
    ceiling = tcp_descriptor_ceiling(open_files)
    quiet_accept_errors(loop)  # a failed accept() is said by its Listener, once a minute at most
    sockets: list[socket.socket] = []
    if d.listen_host is not None and d.listen_port is not None:
        sockets.append(_bind_tcp(d.listen_host, d.listen_port, ceiling))
    sockets.insert(0, _bind_unix(socket_path(config)))
    try:
        store = await _open_store(config)
    except BaseException:
        _unbind(config, sockets)
        raise
    shared = store if isinstance(store, SharedStore) else None  # with other nodes (PostgreSQL)
    info.shared = shared
    publisher = None
    if shared is not None:  # the cluster view: this node's programs, for the others to show
        publisher = Publisher(shared, config.daemon.node, _version(), program_snapshots(info))
        supervisor.subscribe(lambda inst: publisher.changed())
    # singletons run where this node holds their lease (without a shared store: here)
    keeper = None if shared is None else LeaseKeeper(shared, supervisor, d.node, d.node_timeout)
    try:
        if shared is not None:
            try:
                await shared.join(config.daemon.node, config.daemon.node_timeout)
            except StoreError as e:
                raise StartupError(str(e)) from None
        if store is not None:
            info.dispatcher = Dispatcher(config, store, publish=info.events.publish)
            await info.dispatcher.start()
            if config.schedules:
                from stoker.schedule.scheduler import Scheduler

                info.scheduler = Scheduler(config, store, info.dispatcher, publish=info.events.publish)
                await info.scheduler.start()
            if shared is not None:
                wake_leases = keeper.wake if keeper else None
                listen(shared, store, info.dispatcher, lambda: info.scheduler, wake_leases)
    except BaseException:  # the store's connections and tasks end here, not in asyncio.run's sweep
        if store is not None:
            await store.close()
        _unbind(config, sockets)
        raise

    app = build_app(info, token, made)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            # h11, with a deadline and a bound on unfinished heads
            http=guarded_protocol(total=min(TOTAL, max(1, ceiling // 2))),
            ws="none",
            date_header=False,  # uvicorn refreshes it on a 0.1 s tick we never run: idle means idle
            server_header=False,
            timeout_graceful_shutdown=2,
        )
    )
    server.config.load()
    server.lifespan = server.config.lifespan_class(server.config)
    # startup() without serve(): serve() installs its own signal handlers and a 0.1 s tick loop.
    await server.startup(sockets=sockets)

    jobs_task = schedules_task = cron_task = watchdog_task = cluster_task = publish_task = None
    leases_task = None
    notify_task = asyncio.create_task(notifier.run(), name="notify")
    reloading = asyncio.Lock()

    def start_cron_restarts() -> asyncio.Task[None] | None:
        if not any(p.cron_restart for p in supervisor.config.programs.values()):
            return None
        from stoker.supervise.cron_restart import restart_on_schedule, triggers_of

        return asyncio.create_task(restart_on_schedule(supervisor, triggers_of(supervisor)))

    async def reload(
        progress: Callable[[dict[str, Any]], None] | None = None, config: Config | None = None
    ) -> dict[str, Any]:
        """Re-read the config file and apply what changed; ConfigError (nothing changed) if
        the file is not valid. `progress` hears each instance the reload stops, as it stops.
        `config`: apply this one instead of the file's (the XML-RPC API's addProcessGroup:
        the running config with one program group added or removed)."""
        async with reloading:
            sdnotify.tell_systemd(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000)
            try:
                return await apply_reload(progress, config)
            finally:
                sdnotify.tell_systemd(READY=1)

    async def gain_jobs(new: Config) -> str | None:
        """What the first task or schedule needs, if the daemon lacks it: the store (a daemon
        started without tasks on SQLite opened none), the dispatcher, the scheduler. They stay
        once made (a config without tasks leaves them idle). None, or why it cannot."""
        nonlocal store, jobs_task, schedules_task
        if not new.tasks:  # (a schedule's inline command is a task too)
            return None
        if store is None:
            try:
                store = await _open_store(new)
            except StartupError as e:
                log.error("reload: cannot add tasks and schedules: %s", e)
                return f"tasks and schedules (the store cannot be opened: {e})"
        assert store is not None
        if info.dispatcher is None:
            dispatcher = Dispatcher(new, store, publish=info.events.publish)
            await dispatcher.start()
            info.dispatcher = dispatcher
        if jobs_task is None:
            jobs_task = asyncio.create_task(info.dispatcher.run(), name="jobs")
        if new.schedules and info.scheduler is None:
            from stoker.schedule.scheduler import Scheduler

            # born without schedules, then given them as any reload gives a running scheduler
            # new ones (planned from now: no catch-up, no @reboot, as for every added schedule)
            scheduler = Scheduler(msgspec.structs.replace(new, schedules={}), store, info.dispatcher,
                                  publish=info.events.publish)  # fmt: skip
            await scheduler.start()
            info.scheduler = scheduler
            schedules_task = asyncio.create_task(scheduler.run(), name="schedules")
        return None

    async def apply_reload(
        progress: Callable[[dict[str, Any]], None] | None, config: Config | None
    ) -> dict[str, Any]:
        nonlocal cron_task
        from stoker.config import load_config
        from stoker.daemon.reload_progress import StopReporter
        from stoker.reload import RESTART_ONLY, describe, diff

        current = supervisor.config
        new = load_config(current.path) if config is None else config
        changes = diff(current, new)
        # what is bound at start stays as it is until the daemon restarts
        kept = {key: getattr(current.daemon, key) for key in RESTART_ONLY}
        new = msgspec.structs.replace(new, daemon=msgspec.structs.replace(new.daemon, **kept))
        if (cannot := await gain_jobs(new)) is not None:
            changes.needs_restart.append(cannot)
        if info.dispatcher is not None:
            info.dispatcher.reconfigure(new)
        if info.scheduler is not None:
            info.scheduler.reconfigure(new)
        notifier.reconfigure(new)
        touched = {*changes.removed, *changes.changed, *changes.resized}
        unsubscribe = supervisor.subscribe(StopReporter(touched, progress)) if progress else None
        try:
            await supervisor.apply(new, changes)
        finally:
            if unsubscribe is not None:
                unsubscribe()
        if cron_task is not None:
            cron_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cron_task
        cron_task = start_cron_restarts()
        if publisher is not None:  # programs added or removed change no instance's state
            publisher.changed()
        report = {**changes.as_json(), "config": new.path}
        log.info("reloaded %s: %s", new.path, describe(report))
        return report

    async def reload_on_signal() -> None:
        from stoker.config import ConfigError

        try:
            await reload()
        except ConfigError as e:
            log.error("reload refused, nothing changed: %s", e)

    info.reload = reload
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload_on_signal()))
    try:
        if shared is not None and store is not None and info.dispatcher is not None:
            from stoker.jobs.dispatcher import DIED

            cluster_task = asyncio.create_task(
                keep_alive(shared, store, d.node, d.node_timeout, reason=DIED,
                           requeued=partial(info.dispatcher.queued_elsewhere, None), publisher=publisher),
                name="cluster",
            )  # fmt: skip
        if publisher is not None:
            publish_task = asyncio.create_task(publisher.run(), name="cluster view")
        if keeper is not None:  # before autostart: it starts the singletons once it has their leases
            leases_task = asyncio.create_task(keeper.run(), name="singleton leases")
        if info.scheduler is not None:
            schedules_task = asyncio.create_task(info.scheduler.run(), name="schedules")
        if info.dispatcher is not None and config.tasks:
            jobs_task = asyncio.create_task(info.dispatcher.run(), name="jobs")
        supervisor.autostart()
        cron_task = start_cron_restarts()
        log.info(
            "stoker %s ready: %d program(s), %d instance(s), socket %s%s%s",
            _version(),
            len(config.programs),
            len(supervisor.instances),
            socket_path(config),
            f", http://{d.listen}" if d.listen else "",
            f" (its token is in {made})" if made else "",
        )
        ready()
        status = f"{len(supervisor.instances)} program instance(s)"
        sdnotify.tell_systemd(READY=1, MAINPID=os.getpid(), STATUS=status)
        if systemd_watchdog:
            watchdog_task = asyncio.create_task(_ping_systemd(systemd_watchdog / 2), name="systemd watchdog")
        await stopping.wait()
        log.info("shutting down")
        supervisor.closing()  # from here on nothing starts (the cron restarts are still being cancelled)
        sdnotify.tell_systemd(STOPPING=1)
        if cron_task is not None:
            cron_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cron_task
        if info.scheduler is not None and schedules_task is not None:
            info.scheduler.stop()
            await schedules_task
        async with asyncio.TaskGroup() as group:
            group.create_task(supervisor.shutdown())
            if info.dispatcher is not None:
                group.create_task(info.dispatcher.shutdown(d.shutdown_timeout))
        if jobs_task is not None:
            await jobs_task
        # Others saw the programs stopping (published on each change); the node now leaves, and
        # its row with it: a publish still pending would be for nobody.
        if publish_task is not None:
            publish_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publish_task
        if leases_task is not None:  # the programs are stopped: leave() gives their leases up
            leases_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leases_task
        if cluster_task is not None and shared is not None:  # its jobs are ended or queued again
            cluster_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cluster_task
            with contextlib.suppress(StoreError):
                await shared.leave(d.node)
        notifier.close()  # after the programs and jobs: what they did on the way out is sent too
        await notify_task
    finally:
        if watchdog_task is not None:
            watchdog_task.cancel()
        if cron_task is not None and not cron_task.done():
            cron_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cron_task
        if schedules_task is not None and not schedules_task.done():
            schedules_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await schedules_task
        if jobs_task is not None and not jobs_task.done():
            jobs_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await jobs_task
        if cluster_task is not None and not cluster_task.done():
            cluster_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cluster_task
        if publish_task is not None and not publish_task.done():
            publish_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publish_task
        if leases_task is not None and not leases_task.done():
            leases_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leases_task
        if not notify_task.done():
            notify_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await notify_task
        if store is not None:
            await store.close()
        if (tree := cgroups.current()) is not None:  # what is left in it dies with the daemon
            cgroups.use(None)
            await asyncio.to_thread(tree.close)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        server.should_exit = True
        await server.shutdown(sockets=sockets)
        socket_path(config).unlink(missing_ok=True)
    log.info("stopped")


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
    if not config.tasks and d.store == "sqlite" and not (Path(d.state_dir) / "stoker.db").exists():
        return None
    try:
        store = open_store(d.store, d.state_dir)
        await store.open()
    except StoreError as e:
        raise StartupError(str(e)) from None
    return store


def _version() -> str:
    from stoker import __version__

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
        raise StartupError(f"cannot lock {state_dir / 'stoker.lock'}: {e.strerror}") from None
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
        asyncio.run(serve(config, ready))
    except StartupError as e:
        log.error("%s", e)
        raise
    finally:
        lock.remove_pid(state_dir)
    return 0


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
        daemon_log = state_dir / "stoker.log"
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
        log_file = Path(config.daemon.state_dir) / "stoker.log"
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
