"""The consolidation job queue, kept in the store's `jobs` table (SQLite or PostgreSQL).

A job moves queued → running → evaluating → promoted | rejected | failed (running → failed too).
A worker holds a job under a lease it renews by heartbeat; a job whose lease passed (its worker
crashed) goes back to the queue, and after `max_attempts` lost leases it is failed — DESIGN.md
"Nothing is lost: a crashed job is requeued".

Atomic claims: on PostgreSQL `SELECT … FOR UPDATE SKIP LOCKED` lets concurrent workers pass over
each other's rows; on SQLite the store begins every transaction IMMEDIATE (memory/db.py), so the
select and the update of one transaction run under the write lock (SQLite drops FOR UPDATE).
Times come from the workers' clocks (UTC), assumed in sync to well under a lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, text

from envs.errors import PeamError
from memory.columns import KINDS, OPEN
from memory.tables import Job, Skill, utcnow

ACTIVE = ("queued", "running", "evaluating")
LEASED = ("running", "evaluating")
FINAL = ("promoted", "rejected", "failed")
TRANSITIONS = {"queued": {"running"}, "running": {"evaluating", "failed"},
               "evaluating": {"promoted", "rejected", "failed"}}
MAX_ATTEMPTS = 3
ENQUEUE_LOCK = 0x70656A71  # "peaj": serialises enqueue's check-then-insert on PostgreSQL


class QueueError(PeamError):
    """A job the user asked for that cannot be queued; the message says how to mend it."""


class LeaseLostError(RuntimeError):
    """The job is no longer held by this worker (its lease expired and it was requeued)."""


@dataclass(frozen=True)
class JobRow:
    id: int
    kind: str  # action: train a skill category's expert; plan: a task category's plan expert
    game: str
    skill: str | None
    category: str | None
    reason: str
    status: str
    worker: str | None
    lease_until: datetime | None
    heartbeat_at: datetime | None
    attempts: int
    error: str | None
    expert_id: int | None
    metrics: dict | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def target(self) -> str:
        if self.kind == "plan":
            return f"plans {self.category}"
        return f"skill {self.skill}" if self.skill else f"category {self.category}"


def _row(job: Job) -> JobRow:
    return JobRow(**{name: getattr(job, name) for name in JobRow.__dataclass_fields__})


def enqueue(store, *, game: str, skill: str | None = None, category: str | None = None,
            reason: str, kind: str = "action") -> int:
    """Queue a job for one skill or one category (a plan job: one task category); returns its
    id. An identical job already queued or in progress is returned instead of a duplicate."""
    if kind not in KINDS:
        raise QueueError(f"unknown job kind {kind!r}; use one of {', '.join(KINDS)}")
    if (skill is None) == (category is None):
        raise QueueError("name exactly one of --skill or --category")
    if kind == "plan" and skill is not None:
        raise QueueError("a plan job is for a task category: name --category (or 'open' for the open-ended task)")
    with store.session() as s:
        if s.bind.dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ENQUEUE_LOCK})
        _check_known(s, game, skill, category, kind)
        same = select(Job.id).where(
            Job.kind == kind, Job.game == game, Job.status.in_(ACTIVE),
            Job.skill.is_(None) if skill is None else Job.skill == skill,
            Job.category.is_(None) if category is None else Job.category == category)
        existing = s.scalar(same.order_by(Job.id).limit(1))
        if existing is not None:
            return existing
        job = Job(kind=kind, game=game, skill=skill, category=category, reason=reason, status="queued",
                  created_at=utcnow())
        s.add(job)
        s.flush()
        return job.id


def _check_known(s, game: str, skill: str | None, category: str | None, kind: str = "action") -> None:
    if kind == "plan" and category == OPEN:
        return
    if skill is not None:
        if s.scalar(select(Skill.id).where(Skill.game == game, Skill.name == skill)) is None:
            raise QueueError(f"unknown skill {skill!r} for game {game!r}: "
                             f"`peam skills --all` lists them")
    elif s.scalar(select(Skill.id).where(Skill.game == game, Skill.category == category)
                  .limit(1)) is None:
        known = sorted(set(s.scalars(select(Skill.category).where(Skill.game == game))))
        known += [OPEN] if kind == "plan" and known else []
        raise QueueError(f"unknown category {category!r} for game {game!r}: "
                         f"use one of {', '.join(known) or '(none: run `peam run` first)'}")


def claim(store, worker: str, lease_s: float) -> JobRow | None:
    """Take the oldest queued job for `worker` under a lease of `lease_s` seconds, or None."""
    now = utcnow()
    with store.session() as s:
        job = s.scalar(select(Job).where(Job.status == "queued").order_by(Job.id).limit(1)
                       .with_for_update(skip_locked=True))
        if job is None:
            return None
        job.status, job.worker, job.started_at = "running", worker, now
        job.heartbeat_at, job.lease_until = now, now + timedelta(seconds=lease_s)
        s.flush()
        return _row(job)


def heartbeat(store, job_id: int, worker: str, lease_s: float) -> None:
    """Extend `worker`'s lease on `job_id`; LeaseLostError if the job is no longer its own."""
    now = utcnow()
    with store.session() as s:
        job = _held(s, job_id, worker)
        job.heartbeat_at, job.lease_until = now, now + timedelta(seconds=lease_s)


def _held(s, job_id: int, worker: str) -> Job:
    job = s.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None:
        raise KeyError(f"no job {job_id}")
    if job.worker != worker or job.status not in LEASED:
        raise LeaseLostError(f"job {job_id} is {job.status} and held by {job.worker!r}, "
                             f"not {worker!r}")
    return job


def requeue_expired(store, now: datetime | None = None, *,
                    max_attempts: int = MAX_ATTEMPTS) -> int:
    """Jobs whose lease passed go back to the queue with one more attempt, or are failed once
    they lost `max_attempts` leases. Returns how many jobs were touched."""
    now = now or utcnow()
    with store.session() as s:
        expired = s.scalars(select(Job).where(Job.status.in_(LEASED), Job.lease_until < now)
                            .with_for_update(skip_locked=True)).all()
        for job in expired:
            job.attempts += 1
            job.worker, job.lease_until = None, None
            if job.attempts >= max_attempts:
                job.status, job.finished_at = "failed", now
                job.error = f"lease expired {job.attempts} times"
            else:
                job.status = "queued"
        return len(expired)


def release(store, job_id: int, worker: str) -> bool:
    """Give `worker`'s job back to the queue untouched (no attempt counted): the worker could
    not run it (its own setup failed), which says nothing about the job. False when the job
    was no longer this worker's."""
    with store.session() as s:
        try:
            job = _held(s, job_id, worker)
        except LeaseLostError:
            return False
        job.status, job.worker, job.lease_until, job.started_at = "queued", None, None, None
        return True


def advance(store, job_id: int, worker: str, status: str, *, expert_id: int | None = None,
            metrics: dict | None = None, error: str | None = None) -> JobRow:
    """Move `worker`'s job to `status` along the state machine; ValueError for an illegal
    transition, LeaseLostError when the job is no longer this worker's."""
    with store.session() as s:
        job = _held(s, job_id, worker)
        if status not in TRANSITIONS.get(job.status, ()):
            raise ValueError(f"job {job_id}: illegal transition {job.status} -> {status}")
        job.status = status
        if expert_id is not None:
            job.expert_id = expert_id
        if metrics is not None:
            job.metrics = metrics
        if error is not None:
            job.error = error
        if status in FINAL:
            job.finished_at, job.lease_until = utcnow(), None
        s.flush()
        return _row(job)


def get_job(store, job_id: int) -> JobRow:
    with store.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise KeyError(f"no job {job_id}")
        return _row(job)


def jobs(store, limit: int = 50, status: str | None = None) -> list[JobRow]:
    """Newest first."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Job.status == status)
    with store.session() as s:
        return [_row(j) for j in s.scalars(query)]
