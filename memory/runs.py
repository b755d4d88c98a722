"""Runs that end without saying so: the owner of a run, and the sweep of runs whose owner died.

Ctrl-C and SIGTERM of `peam run` mark the run and its unfinished episodes `interrupted` on the
way out (agent/services/session.py). A SIGKILL, an OOM kill or a lost machine leaves them `running`;
each run therefore records its owner (host name and process id), and `sweep_stale_runs` turns
a `running` run whose owner is on this host and no longer alive into an `interrupted` one. It
runs when a run starts, in `peam runs` and when the dashboard lists runs (issue 19, item 2).
An owner on another host is left alone: a process table says nothing about another machine.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import DBAPIError

from memory.tables import Episode, Run, utcnow

log = logging.getLogger(__name__)
STALE_ERROR = "interrupted: its process ({host}:{pid}) ended without finishing the run"


def this_host() -> str:
    return socket.gethostname()[:255]


def owner() -> dict:
    """The columns `Store.start_run` records: this process on this host."""
    return {"owner_host": this_host(), "owner_pid": os.getpid()}


def pid_alive(pid: int, since: datetime | None = None) -> bool:
    """Whether process `pid` of this host is alive and (where /proc says) started no later than
    `since`: a process started after the run began is another one that reused the pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        pass
    if since is None:
        return not _zombie(pid)
    started = _started_at(pid)
    return not _zombie(pid) and (started is None or started <= since + timedelta(seconds=2))


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()  # fields after the command name
    except (OSError, IndexError):
        return None


def _zombie(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] == "Z"


def _started_at(pid: int) -> datetime | None:
    """The start time of `pid` from /proc (Linux), else None."""
    fields = _stat(pid)
    try:
        with open("/proc/stat") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
        ticks = int(fields[19])  # field 22 of stat(5): starttime, in clock ticks after boot
    except (OSError, StopIteration, TypeError, IndexError, ValueError):
        return None
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), timezone.utc)


def interrupt_run(store, run_id: int, error: str = "interrupted") -> int:
    """Mark the run `interrupted` and its running episodes too, each keeping the steps of its
    committed segments; returns how many episodes were marked."""
    with store.session() as s:
        return _interrupt(s, run_id, error)


def _interrupt(s, run_id: int, error: str) -> int:
    now = utcnow()
    done = s.execute(update(Episode).where(Episode.run_id == run_id, Episode.status == "running")
                     .values(status="interrupted", error=error, finished_at=now,
                             steps=Episode.slow_steps + Episode.fast_steps))
    s.execute(update(Run).where(Run.id == run_id, Run.status == "running")
              .values(status="interrupted", finished_at=now))
    return done.rowcount


def sweep_stale_runs(store) -> list[int]:
    """Every `running` run owned by a dead process of this host becomes `interrupted` (its
    running episodes too); returns their ids."""
    host = this_host()
    try:
        with store.session() as s:
            rows = s.execute(select(Run.id, Run.owner_pid, Run.started_at)
                             .where(Run.status == "running", Run.owner_host == host,
                                    Run.owner_pid.is_not(None))).all()
            stale = [(i, pid) for i, pid, started in rows if not pid_alive(pid, started)]
            for run_id, pid in stale:
                _interrupt(s, run_id, STALE_ERROR.format(host=host, pid=pid))
    except DBAPIError as e:  # a read-only store, say: reading goes on; the next writer sweeps
        log.warning("could not sweep stale runs: %s", str(e.orig or e).splitlines()[0])
        return []
    return [run_id for run_id, _ in stale]


@dataclass(frozen=True)
class RunSummary:
    id: int
    env: str
    task: str
    memory_mode: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    episodes: int
    successes: int
    steps: int
    owner: str | None


def runs_with_totals(limit: int, offset: int = 0):
    """The newest runs, each with its episodes, successes, fast and slow steps: one query for
    `peam runs` and the dashboard."""
    totals = (select(Episode.run_id, func.count().label("n"),
                     func.sum(case((Episode.status == "success", 1), else_=0)).label("won"),
                     func.sum(Episode.fast_steps).label("fast"),
                     func.sum(Episode.slow_steps).label("slow"))
              .group_by(Episode.run_id).subquery())
    return (select(Run, totals.c.n, totals.c.won, totals.c.fast, totals.c.slow)
            .outerjoin(totals, totals.c.run_id == Run.id)
            .order_by(Run.id.desc()).limit(limit).offset(offset))


def recent_runs(store, limit: int = 20) -> list[RunSummary]:
    """The newest runs with their episode counts, after sweeping stale ones."""
    sweep_stale_runs(store)
    with store.session() as s:
        return [RunSummary(r.id, r.env, r.task, r.memory_mode, r.status, r.started_at, r.finished_at,
                           int(n or 0), int(won or 0), int(fast or 0) + int(slow or 0),
                           f"{r.owner_host}:{r.owner_pid}" if r.owner_host else None)
                for r, n, won, fast, slow in s.execute(runs_with_totals(limit))]
