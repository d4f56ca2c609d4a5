"""A real PostgreSQL server for the tests and the benchmarks: initdb into a temp dir, pg_ctl
on a free port, unix socket only.

One server per test session (starting one costs ~1 s); each test gets a database of its own
(`fresh_database()`), so tests never see each other's rows. Run as root (CI), the server runs
as the `postgres` user, since PostgreSQL refuses to run as root.

The tests run the server with `fsync = off` (nothing they check needs the disk). bench/cluster.py
shares this module (it puts tests/ on its import path) and asks for `durable=True`: the server's
own defaults, `fsync = on` and `synchronous_commit = on`, as a production server has them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass


@dataclass
class Server:
    host: str  # the unix socket directory
    port: int
    user: str
    bindir: str
    data: str
    options: str  # for pg_ctl -o
    env: Mapping[str, str] | None = None  # of pg_ctl, and so of the server
    prefix: Sequence[str] = ()  # runs pg_ctl (and so the server) under it: ["ip", "netns", "exec", NS]

    def stop(self) -> None:
        """Stop the server at once (as a crash would, without a checkpoint)."""
        _run([*self.prefix, *_as_server_user([f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "immediate", "-w",
                                              "stop"])], self.env)  # fmt: skip

    def start(self) -> None:
        log = os.path.join(os.path.dirname(self.data), "log")
        _run([*self.prefix, *_as_server_user([f"{self.bindir}/pg_ctl", "-D", self.data, "-o", self.options, "-l",
                                              log, "-w", "start"])], self.env)  # fmt: skip

    def postmaster_pid(self) -> int | None:
        """The server's main process (first line of postmaster.pid), while it runs."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.host}&port={self.port}"


def binaries() -> str | None:
    """The folder of initdb/pg_ctl (Debian keeps them out of PATH), newest version first."""
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(found)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version, reverse=True)
    return os.path.dirname(candidates[0]) if candidates else None


def _version(path: str) -> float:
    try:
        return float(path.split("/")[4])
    except (IndexError, ValueError):
        return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def run_server(
    bindir: str,
    *,
    durable: bool = False,
    settings: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> Iterator[Server]:
    """Start a server; stop it (and remove its files) when the generator is closed.

    `durable`: keep PostgreSQL's default fsync = on (the tests turn it off). `settings`: more
    `-c name=value` for the server. `env`: the environment of initdb, pg_ctl and so of the server
    (bench/cluster.py marks its processes with it). `prefix`: what pg_ctl runs under (the network
    namespace of tests/netbench.py)."""
    root = tempfile.mkdtemp(prefix="stoker-pg-")
    data, sockets = os.path.join(root, "data"), os.path.join(root, "run")
    os.mkdir(sockets)
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    try:
        _run(_as_server_user([f"{bindir}/initdb", "-D", data, "-U", user, "--auth=trust", "-E", "UTF8",
                              "--no-sync"]), env)  # fmt: skip
        port = _free_port()
        options = f"-p {port} -k {sockets} -c listen_addresses='' -c max_connections=200"
        if not durable:
            options += " -c fsync=off"
        options += "".join(f" -c {setting}" for setting in settings)
        server = Server(
            host=sockets,
            port=port,
            user=user,
            bindir=bindir,
            data=data,
            options=options,
            env=env,
            prefix=prefix,
        )
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        subprocess.run(
            [*prefix, *_as_server_user([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"])],
            capture_output=True,
            env=env,
        )
        shutil.rmtree(root, ignore_errors=True)


def _run(argv: list[str], env: Mapping[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def fresh_database(server: Server) -> str:
    """A new empty database on `server`; its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)
