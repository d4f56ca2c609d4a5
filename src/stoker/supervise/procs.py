"""Looking at processes from outside: memory of process groups, and a dead daemon's orphans."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable
from typing import NamedTuple

from stoker.supervise.spawn import SUPERVISOR_ENV

log = logging.getLogger("stoker")

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class GroupUsage(NamedTuple):
    memory: int  # RSS in bytes of every process in the group
    cpu_seconds: float  # user + system time of those processes and of the children they reaped


def group_usage(pgids: Iterable[int]) -> dict[int, GroupUsage]:
    """Memory and CPU time of each process group (the program and everything it started).

    One pass over /proc for all groups at once: asking per program would cost a scan each.
    """
    wanted = set(pgids)
    if not wanted:
        return {}
    memory = dict.fromkeys(wanted, 0)
    ticks = dict.fromkeys(wanted, 0)
    if not os.path.isdir("/proc/self"):  # pragma: no cover - macOS: leaders only
        import psutil

        usage = {}
        for pgid in wanted:
            try:
                process = psutil.Process(pgid)
                times = process.cpu_times()
                cpu = times.user + times.system + times.children_user + times.children_system
                usage[pgid] = GroupUsage(process.memory_info().rss, cpu)
            except psutil.Error:
                usage[pgid] = GroupUsage(0, 0.0)
        return usage
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        # os.open/os.read: half the cost of open() on a scan that `stoker status` waits for
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            stat = os.read(fd, 4096)
        except OSError:
            continue
        finally:
            os.close(fd)
        # Fields after the command name, which is in parentheses and may hold spaces:
        # fields[0] is stat's field 3 (state), so field N of proc(5) is fields[N - 3].
        fields = stat[stat.rfind(b")") + 2 :].split()
        pgrp = int(fields[2])
        if pgrp in wanted:
            memory[pgrp] += int(fields[21]) * _PAGE
            # utime, stime, cutime, cstime: a reaped child's time moves into its parent's
            # cutime/cstime, so short-lived helpers a program runs still count.
            ticks[pgrp] += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return {pgid: GroupUsage(memory[pgid], ticks[pgid] / _TICKS) for pgid in wanted}


def kill_orphans(state_dir: str) -> int:
    """SIGKILL the process groups a previous daemon of this state dir left behind.

    Children die with the daemon (PR_SET_PDEATHSIG), but their own children do not; they carry
    STOKER_SUPERVISOR=<state dir> in their environment, which is how we know them. Returns how
    many processes were found.
    """
    found = _kill_marked(state_dir, None)
    if found:
        log.warning("killed %d process(es) left behind by a previous daemon", found)
    return found


def kill_job_processes(state_dir: str, job_id: int) -> int:
    """SIGKILL the process groups of job `job_id`'s command (found by the job's marker:
    STOKER_SUPERVISOR and STOKER_JOB_ID in their environment), whose worker died under it.
    Returns how many processes were found."""
    found = _kill_marked(state_dir, str(job_id))
    if found:
        log.warning("job %d: killed %d process(es) its worker left behind", job_id, found)
    return found


def _kill_marked(state_dir: str, job_id: str | None) -> int:
    import psutil

    me = os.getpid()
    groups: set[int] = set()
    found = 0
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            env = proc.environ()
            if env.get(SUPERVISOR_ENV) != state_dir:
                continue
            if job_id is not None and env.get("STOKER_JOB_ID") != job_id:
                continue
            groups.add(os.getpgid(proc.pid))
            found += 1
        except (psutil.Error, OSError):
            continue
    for pgid in groups:
        if pgid == os.getpgid(0):
            continue
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    return found
