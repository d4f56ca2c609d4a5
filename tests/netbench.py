"""A cluster on a private network: PostgreSQL and three stoker nodes, each in a network namespace
of its own, joined by veth pairs to a bridge that lives in one more namespace. Nothing is set up
in the host's namespace, so nothing leaves the machine and other users' addresses never meet
ours. tests/test_partitions.py and bench/faults.py use it; `Cluster` creates it all and its
`close()` removes it all (processes by their ids, then the namespaces, which takes the veths and
the bridge with them), whatever happened meanwhile.

How faults reach the links: nftables rules in the node's own namespace (`Link`). Why not the
others:
- `tc qdisc … netem` is what one would use for loss and delay, but the kernel here has no
  sch_netem (CONFIG_NET_SCH_NETEM is not set).
- A userspace TCP proxy per link can stall bytes, but its own kernel keeps ACKing what the node
  sends: TCP keepalives and `tcp_user_timeout` never fire, and a "partition" is then a slow
  peer, not a network that drops packets.
- nftables `drop` rules in the node's namespace black-hole the packets both ways: no RST, no
  ICMP, each side's kernel retransmits into the void, exactly what a cut cable or a dead switch
  port looks like to both ends. `numgen random mod 100 < P drop` gives a lossy link on the same
  hook. nf_tables is built into this kernel; the `nft` tool is Debian's nftables package
  (`.ci/run` installs it).
Delay without netem would need a queue of our own (NFQUEUE); the fault scheduler's slow link is
the nftables loss (which TCP turns into delay: retransmissions) instead.

A node's clock (the `skew` fault): each daemon runs under libfaketime (Debian's faketime package,
LD_PRELOAD), which shifts CLOCK_REALTIME (`time.time()`) by the offset in a file of the node's
(`FAKETIME_TIMESTAMP_FILE`, "+30s"), read again every second (`FAKETIME_CACHE_DURATION=1`): writing
the file jumps a running daemon's clock, with no restart. CLOCK_MONOTONIC is left alone
(`FAKETIME_DONT_FAKE_MONOTONIC=1`): the event loop's timers, the job fence and every timeout keep
the machine's pace, as on a machine whose wall clock is simply wrong. Two details of the preload:
- the daemon and the Python workers it starts share the skew (they inherit the preload), but
  the workload's scripts (`WORK`, `SINGLE`, which write the history) are started through
  `env -u LD_PRELOAD`: they keep the machine's clock, the one clock the checker compares;
- libfaketime 0.9.10 (Debian 12) fails `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` with
  EINVAL, which is how Python 3.11's `time.sleep` sleeps: a `sitecustomize` on the daemon's
  PYTHONPATH (`SLEEP`) makes `time.sleep` sleep in `select` (a relative timeout, which
  libfaketime passes through) in the preloaded Python processes.

Nodes talk only through the database (LISTEN/NOTIFY, the nodes table, the published snapshots
of the cluster view; no node opens a connection to another), so a partition between nodes that
leaves each reaching the database must change nothing: the scheduler injects it all the same.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conftest import kill_marked, remove_cgroups, wait_for
from postgres import Server, binaries, fresh_database, run_server

from stoker.client import Client, ClientError

SUBNET = "10.250.0"
DB_ADDRESS = f"{SUBNET}.1"
NODES = ("n1", "n2", "n3")


FAKETIME_LIBRARIES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


def faketime_library() -> str | None:
    return next((path for path in FAKETIME_LIBRARIES if os.path.exists(path)), None)


def tools_missing() -> str | None:
    """Why this machine cannot run the bench, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install iproute2 nftables; .ci/run does)"
    if faketime_library() is None:
        return "libfaketime is not installed (apt-get install faketime; .ci/run does)"
    return None


# The sitecustomize of the preloaded Python processes (see the module's docstring).
SLEEP = """\
import os, select, time
if "faketime" in os.environ.get("LD_PRELOAD", ""):
    time.sleep = lambda seconds: select.select([], [], [], seconds) and None
"""


def inside(namespace: str) -> list[str]:
    """The prefix that runs a command in `namespace`'s network, and only there: nsenter, not
    `ip netns exec`, which also remounts /sys (and so hides the cgroup tree from the daemons)."""
    return ["nsenter", f"--net=/run/netns/{namespace}"]


def _run(*argv: str, input: str | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, input=input)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


@dataclass
class Link:
    """What is done to the traffic of one namespace (a node's): rules in its own table."""

    namespace: str
    cut: set[str] = field(default_factory=set)  # addresses whose packets are dropped, both ways
    loss: dict[str, int] = field(default_factory=dict)  # address → percent of packets dropped

    def apply(self) -> None:
        rules_in, rules_out = [], []
        for address in sorted(self.cut):
            rules_in.append(f"ip saddr {address} drop")
            rules_out.append(f"ip daddr {address} drop")
        for address, percent in sorted(self.loss.items()):
            rules_in.append(f"ip saddr {address} numgen random mod 100 < {percent} drop")
            rules_out.append(f"ip daddr {address} numgen random mod 100 < {percent} drop")
        body = "\n".join(
            ["table inet stkfault", "delete table inet stkfault", "table inet stkfault {",
             "  chain in { type filter hook input priority 0; policy accept;", *rules_in, "  }",
             "  chain out { type filter hook output priority 0; policy accept;", *rules_out, "  }",
             "}"]
        )  # fmt: skip
        _run(*inside(self.namespace), "nft", "-f", "-", input=body + "\n")


class Network:
    """Namespaces `<tag>-sw` (the bridge), `<tag>-db` and one per node, addressed 10.250.0.0/24."""

    def __init__(self, members: Sequence[str]) -> None:
        self.tag = "stk" + secrets.token_hex(3)
        self.switch = f"{self.tag}-sw"
        self.namespaces: list[str] = []
        self.address: dict[str, str] = {}
        self.links: dict[str, Link] = {}
        try:
            self._add(self.switch)
            _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.switch, "link", "set", "br0", "up")
            for i, member in enumerate(members):
                self._member(i, member)
        except BaseException:
            self.close()
            raise

    def namespace(self, member: str) -> str:
        return f"{self.tag}-{member}"

    def _add(self, namespace: str) -> None:
        _run("ip", "netns", "add", namespace)
        self.namespaces.append(namespace)
        _run("ip", "-n", namespace, "link", "set", "lo", "up")

    def _member(self, i: int, member: str) -> None:
        ns = self.namespace(member)
        self._add(ns)
        inside, outside = f"{self.tag}a{i}", f"{self.tag}b{i}"  # 11 characters: under IFNAMSIZ
        _run(
            "ip",
            "link",
            "add",
            inside,
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            outside,
            "netns",
            self.switch,
        )
        address = f"{SUBNET}.{1 + i}" if member == "db" else f"{SUBNET}.{10 + i}"
        _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", inside)
        _run("ip", "-n", ns, "link", "set", inside, "up")
        _run("ip", "-n", self.switch, "link", "set", outside, "master", "br0", "up")
        self.address[member] = address
        self.links[member] = Link(ns)

    def close(self) -> None:
        for ns in reversed(self.namespaces):  # each takes its veth ends (and the bridge) with it
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()


# --------------------------------------------------------------------------------------------
# the workload: what jobs and programs write to the history, outside the cluster
# --------------------------------------------------------------------------------------------

# A line per event, appended under an flock (whole lines, never interleaved), with the node that
# ran it and the time: `kind job attempt node pid time`. A job ticks every 0.1 s while it runs, so
# an attempt killed without a word still shows until when it ran.
WORK = """\
import fcntl, os, sys, time
node, history, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
job, attempt = os.environ["STOKER_JOB_ID"], os.environ["STOKER_JOB_ATTEMPT"]
def record(kind):
    fd = os.open(history, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{kind} {job} {attempt} {node} {os.getpid()} {time.time():.6f}\\n".encode())
    finally:
        os.close(fd)
record("start")
end = time.monotonic() + seconds
while time.monotonic() < end:
    time.sleep(min(0.1, max(0.0, end - time.monotonic())))
    record("tick")
record("end")
"""

# The singleton: ticks every 0.05 s (`single - - node pid time`). It first takes an flock on a
# file every copy shares: a copy that finds it taken writes `overlap` and waits for it.
SINGLE = """\
import fcntl, os, sys, time
node, history, lock_path = sys.argv[1], sys.argv[2], sys.argv[3]
def record(kind):
    fd = os.open(history, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{kind} - - {node} {os.getpid()} {time.time():.6f}\\n".encode())
    finally:
        os.close(fd)
lock = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o644)
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    record("overlap")
    fcntl.flock(lock, fcntl.LOCK_EX)
while True:
    record("single")
    time.sleep(0.05)
"""


@dataclass(frozen=True)
class Timing:
    node_timeout: float = 3.0  # the lease, and the silence after which a node is taken for dead
    job_seconds: tuple[float, float] = (0.2, 6.0)  # a job runs this long, chosen at random between
    slot_every: int = 1  # seconds between two slots of the schedule


def failover_bound(timing: Timing) -> float:
    """The singleton's documented failover, about `node_timeout` after its holder is lost (the
    lease lapses then and the others try just after), plus a second for the new copy to start
    (a Python interpreter on a busy machine) and tick."""
    return timing.node_timeout + 1.0


def node_config(node: str, url: str, shared: Path, timing: Timing) -> str:
    py = sys.executable
    history, lock = shared / "history.log", shared / "single.lock"
    return textwrap.dedent(
        f"""
        [daemon]
        store = "{url}"
        node = "{node}"
        node_timeout = "{timing.node_timeout}s"
        shutdown_timeout = "10s"

        [programs.single]
        command = ["env", "-u", "LD_PRELOAD", "{py}", "{shared / "single.py"}", "{node}", "{history}", "{lock}"]
        singleton = true
        start_seconds = 0
        stop_timeout = "5s"

        [tasks.work]
        command = ["env", "-u", "LD_PRELOAD", "{py}", "{shared / "work.py"}", "{node}", "{history}", "{{seconds}}"]
        queue = "work"
        max_attempts = 50
        backoff = {{ min = "1s", max = "2s" }}
        params = ["n"]

        [tasks.slot]
        command = ["env", "-u", "LD_PRELOAD", "{py}", "{shared / "work.py"}", "{node}", "{history}", "0.2"]
        queue = "slots"
        max_attempts = 50
        backoff = {{ min = "1s", max = "2s" }}

        [queues.work]
        concurrency = 6
        [queues.slots]
        concurrency = 2

        [schedules.tick]
        every = "{timing.slot_every}s"
        task = "slot"
        overlap = "allow"
        catch_up = "none"
        """
    )


class Node:
    """One stoker daemon, run in its namespace; reached through its unix socket (a file: the
    namespace does not hide it), so the test's own requests never cross the faulty network."""

    def __init__(self, name: str, namespace: str, root: Path) -> None:
        self.name, self.namespace, self.root = name, namespace, root
        self.config = root / "stoker.toml"
        self.state_dir = root / ".stoker"
        self.log = root / "daemon.log"
        root.mkdir(parents=True, exist_ok=True)
        self.clock = root / "faketime"  # the daemon's clock offset, read by libfaketime
        self.clock.write_text("+0\n")
        self.skew = 0  # seconds the daemon's clock is ahead (negative: behind) of the machine's
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped = False  # SIGSTOPped by the fault scheduler

    def set_skew(self, seconds: int) -> None:
        """Jump the daemon's clock to `seconds` ahead of the machine's (behind if negative),
        running or not: libfaketime reads the file again within a second."""
        self.clock.write_text(f"{seconds:+d}s\n" if seconds else "+0\n")
        self.skew = seconds

    @property
    def client(self) -> Client:
        return Client(socket_path=self.state_dir / "stoker.sock", timeout=5)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, wait: float = 30) -> None:
        assert not self.alive(), f"{self.name} already runs"
        library = faketime_library()
        assert library is not None, "libfaketime is not installed"
        clock = {
            "LD_PRELOAD": library,
            "FAKETIME_TIMESTAMP_FILE": str(self.clock),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "PYTHONPATH": str(self.root.parent / "shared" / "site"),
        }
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*inside(self.namespace), sys.executable, "-m", "stoker", "-c", str(self.config), "up"],
                stdout=log, stderr=log, cwd=self.root, start_new_session=True, env={**os.environ, **clock},
            )  # fmt: skip
        self.stopped = False
        wait_for(self._answers, wait, f"node {self.name} to answer; its log:\n{self.log_tail()}")

    def _answers(self) -> bool:
        if not self.alive():
            raise AssertionError(f"node {self.name} exited:\n{self.log_tail()}")
        try:
            self.client.status()
        except (ClientError, OSError):
            return False
        return True

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        if self.alive():
            self.signal(signal.SIGKILL)
            assert self.process is not None
            self.process.wait(10)
        self.stopped = False

    def close(self) -> list[int]:
        """Stop the daemon (SIGTERM, SIGKILL if it will not go); kill what it left; its leftovers."""
        if self.alive():
            assert self.process is not None
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        leftovers = kill_marked(str(self.state_dir))
        remove_cgroups(str(self.state_dir))
        return leftovers

    def log_tail(self, size: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""


class Cluster:
    """The network, PostgreSQL in `<tag>-db` listening on 10.250.0.1, and the nodes."""

    def __init__(self, root: Path, timing: Timing = Timing(), nodes: Sequence[str] = NODES) -> None:
        self.root, self.timing = root, timing
        self.shared = root / "shared"
        self.shared.mkdir(parents=True, exist_ok=True)
        (self.shared / "work.py").write_text(WORK)
        (self.shared / "single.py").write_text(SINGLE)
        (self.shared / "site").mkdir(exist_ok=True)
        (self.shared / "site" / "sitecustomize.py").write_text(SLEEP)
        self.history = self.shared / "history.log"
        self.history.touch()
        self._stack = contextlib.ExitStack()
        self.nodes: dict[str, Node] = {}
        self.network = Network(["db", *nodes])
        try:
            bindir = binaries()
            if bindir is None:
                raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
            prefix = inside(self.network.namespace("db"))
            settings = [f"listen_addresses='{DB_ADDRESS}'"]
            server = contextlib.contextmanager(run_server)(bindir, settings=settings, prefix=prefix)
            self.server: Server = self._stack.enter_context(server)
            hba = Path(self.server.data) / "pg_hba.conf"
            hba.write_text(hba.read_text() + f"host all all {SUBNET}.0/24 trust\n")
            self._reload_server()
            self.local_url = fresh_database(self.server)
            database = self.local_url.split("?")[0].rsplit("/", 1)[1]
            url = f"postgresql://{self.server.user}@{DB_ADDRESS}:{self.server.port}/{database}"
            for name in nodes:
                node = Node(name, self.network.namespace(name), root / name)
                node.root.mkdir(exist_ok=True)
                node.config.write_text(node_config(name, url, self.shared, timing))
                self.nodes[name] = node
        except BaseException:
            self.close()
            raise

    def _reload_server(self) -> None:
        server = self.server
        argv = [f"{server.bindir}/pg_ctl", "-D", server.data, "reload"]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        _run(*argv)

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()

    def heal(self) -> None:
        """Every link as it was, every paused daemon running again, every clock right."""
        for node in self.nodes.values():
            if node.skew:
                node.set_skew(0)
        for link in self.network.links.values():
            if link.cut or link.loss:
                link.cut.clear()
                link.loss.clear()
                link.apply()
        for node in self.nodes.values():
            if node.alive() and node.stopped:
                node.signal(signal.SIGCONT)
                node.stopped = False

    def close(self) -> list[int]:
        """Stop everything this cluster started; the pids of processes the daemons left."""
        leftovers: list[int] = []
        try:
            for node in self.nodes.values():
                leftovers += node.close()
        finally:
            try:
                self._stack.close()
            finally:
                self.network.close()
        return leftovers

    def logs(self) -> str:
        return "\n".join(f"--- {name}:\n{node.log_tail()}" for name, node in self.nodes.items())
