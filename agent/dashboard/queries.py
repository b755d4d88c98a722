"""Read-side queries of the dashboard: store rows in, API models out. Nothing here writes,
except `queue_job`, the one mutation the dashboard offers."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from sqlalchemy import func, select

from agent.dashboard.schemas import (EpisodeOut, EvaluationOut, ExpertOut, JobOut, JobRequest,
                                     RunOut, SegmentOut, SkillDetailOut, SkillOut, SuccessPoint)
from memory.store import Episode, Expert, Job, Segment, Skill, SkillRow, Store
from memory.tables import Evaluation, utcnow

RECENT = 50  # segments and episodes shown on a skill's page
MAX_POINTS = 2000  # attempts plotted on a skill's success chart
MAX_EVALUATIONS = 1000  # points of a skill's forgetting curve
MAX_SHARE_POINTS = 5000  # episodes plotted on the runs page's fast-path share chart
FACTORS = ("cost_saving", "stability", "redundancy", "interference")


class NotFound(LookupError):
    """A name or id the store does not hold: the API answers 404."""


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def fast_share(fast: int, slow: int) -> float | None:
    return fast / (fast + slow) if fast + slow else None


def _skill(k: Skill) -> SkillOut:
    """A skill's statistics (as `SkillRow` computes them) and its stored worthiness factors."""
    return SkillOut(**asdict(SkillRow.of(k)), **{f: getattr(k, f) for f in FACTORS})


def skills(store: Store, *, category: str | None, sort: str, order: str, limit: int,
           offset: int, game: str | None = None) -> list[SkillOut]:
    query = select(Skill).order_by(Skill.game, Skill.id)
    if category is not None:
        query = query.where(Skill.category == category)
    if game is not None:
        query = query.where(Skill.game == game)
    with store.session() as s:
        rows = [_skill(k) for k in s.scalars(query)]
    present = [r for r in rows if getattr(r, sort) is not None]
    missing = [r for r in rows if getattr(r, sort) is None]  # unattempted: always last
    present.sort(key=lambda r: (getattr(r, sort), r.name), reverse=order == "desc")
    return (present + missing)[offset:offset + limit]


def games(store: Store) -> list[str]:
    with store.session() as s:
        return list(s.scalars(select(Skill.game).distinct().order_by(Skill.game)))


def categories(store: Store) -> list[str]:
    with store.session() as s:
        return list(s.scalars(select(Skill.category).distinct().order_by(Skill.category)))


def _episode(e: Episode) -> EpisodeOut:
    return EpisodeOut(id=e.id, run_id=e.run_id, env=e.env, task=e.task, seed=e.seed,
                      status=e.status, steps=e.steps, reward=e.reward, error=e.error,
                      planner_calls=e.planner_calls, planner_s=e.planner_latency_s,
                      planner_tokens_in=e.planner_tokens_in, planner_tokens_out=e.planner_tokens_out,
                      memory_decisions=e.memory_decisions, wall_s=e.wall_s, fast_steps=e.fast_steps,
                      slow_steps=e.slow_steps, fast_share=fast_share(e.fast_steps, e.slow_steps),
                      started_at=e.started_at, finished_at=e.finished_at)


def _segment(g: Segment) -> SegmentOut:
    return SegmentOut.model_validate(g, from_attributes=True)


def skill_detail(store: Store, name: str, game: str | None = None) -> SkillDetailOut:
    query = select(Skill).where(Skill.name == name).order_by(Skill.game)
    if game is not None:
        query = query.where(Skill.game == game)
    with store.session() as s:
        skill = s.scalars(query.limit(1)).first()
        if skill is None:
            raise NotFound(f"no skill {name!r}")
        of_skill = (select(Segment).join(Episode, Episode.id == Segment.episode_id)
                    .where(Segment.skill == name, Episode.env == skill.game))
        history = s.execute(of_skill.with_only_columns(Segment.path, Segment.outcome,
                                                       Segment.created_at)
                            .order_by(Segment.id).limit(MAX_POINTS)).all()
        recent = s.scalars(of_skill.order_by(Segment.id.desc()).limit(RECENT)).all()
        episode_ids = select(Segment.episode_id).where(Segment.skill == name).distinct()
        episodes = s.scalars(select(Episode).where(Episode.id.in_(episode_ids),
                                                   Episode.env == skill.game)
                             .order_by(Episode.id.desc()).limit(RECENT)).all()
        corrections = of_skill.where(Segment.path == "slow",
                                     Segment.corrects_segment_id.is_not(None))
        pairs = s.scalar(corrections.with_only_columns(func.count(Segment.id)))
        curve = s.scalars(_evaluations_query(name).limit(MAX_EVALUATIONS)).all()
        return SkillDetailOut(skill=_skill(skill),
                              success_over_time=_running_rates(history),
                              recent_segments=[_segment(g) for g in recent],
                              recent_episodes=[_episode(e) for e in episodes],
                              evaluations=[_evaluation(v) for v in curve],
                              correction_pairs=pairs or 0)


def _evaluations_query(skill: str | None):
    query = select(Evaluation).order_by(Evaluation.registry_version, Evaluation.id)
    return query if skill is None else query.where(Evaluation.skill == skill)


def _evaluation(v: Evaluation) -> EvaluationOut:
    return EvaluationOut.model_validate(v, from_attributes=True)


def evaluations(store: Store, *, skill: str | None, limit: int,
                offset: int) -> list[EvaluationOut]:
    """Forgetting-curve points in registry-version order, of one skill or of all."""
    with store.session() as s:
        return [_evaluation(v) for v in
                s.scalars(_evaluations_query(skill).limit(limit).offset(offset))]


def _running_rates(history) -> list[SuccessPoint]:
    """The running success rate of each path after every attempt, in commit order."""
    tried: dict[str, int] = {}
    won: dict[str, int] = {}
    points = []
    for path, outcome, at in history:
        tried[path] = tried.get(path, 0) + 1
        won[path] = won.get(path, 0) + (outcome == "success")
        points.append(SuccessPoint(attempt=tried[path], path=path,
                                   success_rate=won[path] / tried[path], at=at))
    return points


def experts(store: Store, *, limit: int, offset: int) -> list[ExpertOut]:
    """Newest first, each with the (latest) consolidation job that produced it, if any."""
    with store.session() as s:
        rows = s.scalars(select(Expert).order_by(Expert.id.desc()).limit(limit)
                         .offset(offset)).all()
        ids = [x.id for x in rows]
        made_by = {j.expert_id: j for j in
                   s.scalars(select(Job).where(Job.expert_id.in_(ids)).order_by(Job.id))}
        out = []
        for x in rows:
            job = made_by.get(x.id)
            m = (job.metrics or {}) if job else {}
            out.append(ExpertOut.model_validate(x, from_attributes=True).model_copy(update={
                "skill_success": skill_success(x.metrics), "propose_above": propose_above(x.metrics),
                "job_id": job.id if job else None, "job_status": job.status if job else None,
                "candidate_success": _number(m.get("candidate_success")),
                "current_success": _number(m.get("current_success"))}))
        return out


def _number(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def skill_success(metrics: dict | None) -> dict[str, float]:
    """An expert's held-out fast-path success per skill, as consolidation recorded it."""
    raw = (metrics or {}).get("skill_success")
    if not isinstance(raw, dict):
        return {}
    return {str(k): float(v) for k, v in raw.items() if _number(v) is not None}


def propose_above(metrics: dict | None) -> dict[str, float | None]:
    """A plan expert's calibrated threshold per task (consolidation/plan_training.py)."""
    raw = (metrics or {}).get("propose_above")
    if not isinstance(raw, dict):
        return {}
    return {str(k): _number(v) for k, v in raw.items()}


def _job(j: Job) -> JobOut:
    return JobOut(id=j.id, kind=j.kind, game=j.game, skill=j.skill, category=j.category, reason=j.reason,
                  status=j.status, worker=j.worker, attempts=j.attempts, error=j.error,
                  expert_id=j.expert_id, created_at=j.created_at, started_at=j.started_at,
                  finished_at=j.finished_at, wait_s=_seconds(j.created_at, j.started_at),
                  duration_s=_seconds(j.started_at, j.finished_at))


def jobs(store: Store, *, limit: int, offset: int) -> list[JobOut]:
    with store.session() as s:
        rows = s.scalars(select(Job).order_by(Job.id.desc()).limit(limit).offset(offset))
        return [_job(j) for j in rows]


def queue_job(store: Store, request: JobRequest) -> JobOut:
    """Insert a queued consolidation job for a known skill or category (NotFound otherwise)."""
    column = Skill.name if request.skill is not None else Skill.category
    target = request.skill if request.skill is not None else request.category
    with store.session() as s:
        known = s.scalar(select(func.count()).where(Skill.game == request.game, column == target))
        if not known:
            kind = "skill" if request.skill is not None else "category"
            raise NotFound(f"no {kind} {target!r} in game {request.game!r}")
        job = Job(game=request.game, skill=request.skill, category=request.category,
                  reason="dashboard", status="queued", created_at=utcnow())
        s.add(job)
        s.flush()
        return _job(job)


def runs(store: Store, *, limit: int, offset: int) -> list[RunOut]:
    from memory.runs import runs_with_totals, sweep_stale_runs

    sweep_stale_runs(store)  # a run whose process died shows as interrupted, not running
    query = runs_with_totals(limit, offset)
    with store.session() as s:
        out = []
        for run, n, n_won, fast, slow in s.execute(query):
            fast, slow = int(fast or 0), int(slow or 0)
            out.append(RunOut(id=run.id, env=run.env, task=run.task, planner=run.planner,
                              memory_mode=run.memory_mode, status=run.status,
                              started_at=run.started_at, finished_at=run.finished_at,
                              episodes=n or 0, successes=int(n_won or 0), fast_steps=fast,
                              slow_steps=slow, fast_share=fast_share(fast, slow)))
        return out


def episodes(store: Store, *, run_id: int | None, limit: int, offset: int) -> list[EpisodeOut]:
    query = select(Episode).order_by(Episode.id.desc()).limit(limit).offset(offset)
    if run_id is not None:
        query = query.where(Episode.run_id == run_id)
    with store.session() as s:
        return [_episode(e) for e in s.scalars(query)]


def fast_share_series(store: Store, *, run_id: int | None) -> list[dict]:
    """Per episode with any steps, in order: its run, id, start and fast-path share (the most
    recent `MAX_SHARE_POINTS`), for the runs page's chart."""
    query = (select(Episode.id, Episode.run_id, Episode.started_at, Episode.fast_steps,
                    Episode.slow_steps)
             .where(Episode.fast_steps + Episode.slow_steps > 0)
             .order_by(Episode.id.desc()).limit(MAX_SHARE_POINTS))
    if run_id is not None:
        query = query.where(Episode.run_id == run_id)
    with store.session() as s:
        rows = s.execute(query).all()
    return [{"episode": i, "run": r, "at": at.isoformat(), "fast_share": fast_share(f, w)}
            for i, r, at, f, w in reversed(rows)]


def episode(store: Store, episode_id: int) -> EpisodeOut:
    with store.session() as s:
        row = s.get(Episode, episode_id)
        if row is None:
            raise NotFound(f"no episode {episode_id}")
        return _episode(row)
