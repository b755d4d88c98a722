"""A job's candidate experts across its attempts.

A job whose worker died is requeued and run again (DESIGN.md "A crashed job is requeued").
Each attempt writes its candidates to directories of its own (`job7`, then `job7-a1`, ...),
so a rerun never overwrites a file a registry row vouches for; and before it trains, the
candidates an earlier attempt left behind (never promoted) are removed, rows and
directories, so no orphan `candidate` stays in the registry (issue 19, item 3).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from sqlalchemy import select

from memory.registry import expert_dir
from memory.tables import Expert, Job


def job_tag(job) -> str:
    """The directory name of this attempt's candidate (practice rounds add `-rK`)."""
    return f"job{job.id}" if not job.attempts else f"job{job.id}-a{job.attempts}"


def _of_job(path: str, job_id: int) -> bool:
    return re.fullmatch(rf"job{job_id}(-.+)?", Path(path).name) is not None


def supersede_job_candidates(store, job, models_dir: str | Path) -> list[int]:
    """Delete the rows and directories of the unpromoted experts earlier attempts of `job`
    registered; returns their ids. A promoted one (the attempt died after promoting it) stays."""
    models = Path(models_dir).absolute()
    with store.session() as s:
        rows = [e for e in s.scalars(select(Expert).where(
            Expert.kind == job.kind, Expert.game == job.game, Expert.status != "promoted"))
            if _of_job(e.path, job.id)]
        gone = [(e.id, expert_dir(models, e.path)) for e in rows]
        held = s.get(Job, job.id)
        if held is not None and held.expert_id in {i for i, _ in gone}:
            held.expert_id = None
        for e in rows:
            s.delete(e)
    for _, path in gone:
        if path.absolute().is_relative_to(models):  # never delete outside the models directory
            shutil.rmtree(path, ignore_errors=True)
    return [i for i, _ in gone]
