"""The thin shell around worthiness and the trigger: read the evidence from the store, call
the pure functions (consolidation/worthiness.py, consolidation/trigger.py), write the factors.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from consolidation.queue import ACTIVE
from consolidation.trigger import Decision, should_consolidate
from consolidation.worthiness import SkillEvidence, Worthiness, worthiness
from memory.tables import Expert, Job, Skill


@dataclass(frozen=True)
class Trigger:
    skill: str
    category: str
    decision: Decision


def _covered_categories(store, game: str) -> set[str]:
    with store.session() as s:
        return set(s.scalars(select(Expert.category).where(Expert.game == game, Expert.kind == "action",
                                                           Expert.status == "promoted")))


def _evidence(store, game: str, since: dict[str, datetime] | None = None,
              ) -> tuple[dict[str, SkillEvidence], dict[str, str]]:
    """Evidence of every skill of `game` from its segments (only those created after
    `since[skill]` when given), and each skill's category."""
    since = since or {}
    counts: dict[str, dict[str, list]] = defaultdict(lambda: {"slow": [], "fast": []})
    demos: dict[str, list[int]] = defaultdict(list)
    for seg in store.segments(game=game):
        if seg.skill in since and seg.created_at <= since[seg.skill]:
            continue
        counts[seg.skill][seg.path].append((seg.outcome == "success", seg.cost_s))
        if seg.path == "slow" and seg.outcome == "success":
            demos[seg.skill].append(seg.steps)
    with store.session() as s:
        categories = dict(s.execute(select(Skill.name, Skill.category)
                                      .where(Skill.game == game)).tuples().all())
    covered = _covered_categories(store, game)

    def rate(side):
        return sum(ok for ok, _ in side) / len(side) if side else None

    def mean_s(side):
        return sum(t for _, t in side) / len(side) if side else None

    fast_rate = {name: rate(counts[name]["fast"]) or 0.0 for name in categories}
    evidence = {}
    for name, category in categories.items():
        slow, fast = counts[name]["slow"], counts[name]["fast"]
        others = tuple(fast_rate[o] for o, c in categories.items() if c == category and o != name)
        evidence[name] = SkillEvidence(
            uses=len(slow) + len(fast), slow_attempts=len(slow),
            slow_successes=sum(ok for ok, _ in slow), fast_attempts=len(fast),
            fast_successes=sum(ok for ok, _ in fast), slow_s_per_use=mean_s(slow),
            fast_s_per_use=mean_s(fast), success_steps=tuple(demos[name]),
            expert_covers=category in covered,
            others_fast_success=others if category in covered else ())
    return evidence, categories


def refresh_worthiness(store, game: str, *, job_cost_s: float,
                       fast_cost_estimate_s: float) -> dict[str, Worthiness]:
    """Recompute and store every skill's worthiness factors; returns them by skill name."""
    evidence, _ = _evidence(store, game)
    scores = {name: worthiness(e, job_cost_s=job_cost_s,
                               fast_cost_estimate_s=fast_cost_estimate_s)
              for name, e in evidence.items()}
    with store.session() as s:
        for row in s.scalars(select(Skill).where(Skill.game == game)):
            w = scores.get(row.name)
            if w is not None:
                row.worthiness, row.cost_saving, row.stability = w.score, w.cost_saving, w.stability
                row.redundancy, row.interference = w.redundancy, w.interference
    return scores


def _last_jobs(store, game: str, categories: dict[str, str]) -> tuple[dict[str, datetime], set]:
    """When each skill's last job (for it or its category) was queued, and the skills that
    have one queued or in progress now."""
    with store.session() as s:
        rows = s.execute(select(Job.skill, Job.category, Job.created_at, Job.status)
                         .where(Job.game == game, Job.kind == "action")).all()
    last: dict[str, datetime] = {}
    active: set[str] = set()
    for skill, category, created, status in rows:
        targets = [skill] if skill else [n for n, c in categories.items() if c == category]
        for name in targets:
            if name not in last or created > last[name]:
                last[name] = created
            if status in ACTIVE:
                active.add(name)
    return last, active


def pending_triggers(store, game: str, *, job_cost_s: float,
                     fast_cost_estimate_s: float) -> list[Trigger]:
    """The skills whose trigger fires now, judged on their evidence since their last job
    (uses since then × (slow − fast) seconds per use; the path counts since then, so an expert
    that replaced a failing one is not blamed for its predecessor's failures). Skills with a
    job already queued or running are left out."""
    everything, categories = _evidence(store, game)
    last, active = _last_jobs(store, game, categories)
    since_last, _ = _evidence(store, game, since=last)
    fired = []
    for name, e in since_last.items():
        if name in active:
            continue
        # Seconds per use from the whole history (the best estimate), uses since the last job.
        saved = e.uses * everything[name].saving_per_use_s(fast_cost_estimate_s)
        decision = should_consolidate(e, savings_since_last_job_s=saved, job_cost_s=job_cost_s)
        if decision.fire:
            fired.append(Trigger(name, categories[name], decision))
    return fired


def measured_job_cost_s(store, game: str, kind: str = "action") -> float | None:
    """The measured seconds of a consolidation job: the median wall time (claim to end) of the
    game's jobs that ran to a verdict; None before any did (the caller then needs an estimate,
    e.g. a timed dry run). The median, so one job slowed by a busy machine does not move it."""
    with store.session() as s:
        spans = sorted((end - start).total_seconds() for start, end in s.execute(
            select(Job.started_at, Job.finished_at).where(
                Job.game == game, Job.kind == kind, Job.status.in_(("promoted", "rejected")),
                Job.started_at.is_not(None), Job.finished_at.is_not(None))))
    if not spans:
        return None
    mid = len(spans) // 2
    return spans[mid] if len(spans) % 2 else (spans[mid - 1] + spans[mid]) / 2


@dataclass(frozen=True)
class PlanTrigger:
    category: str  # a task category (memory.columns.OPEN for the open-ended task)
    decision: Decision


def _plan_evidence(store, game: str, since: dict[str, datetime]) -> dict[str, SkillEvidence]:
    """Per task category, since its last plan job: the subgoals the planner chose (their
    outcomes, and the planner's seconds each cost) and those the plan-level memory chose."""
    from envs import make_env
    from envs.errors import UnknownTaskError
    from memory.plan_policy import plan_category

    catalog = make_env(game).catalog
    sides: dict[str, dict[str, list]] = defaultdict(lambda: {"slow": [], "fast": []})
    categories: dict[str, str | None] = {}
    for seg in store.segments(game=game):
        task = (seg.context or {}).get("task")
        if task is None or seg.decided_by not in ("planner", "fallback", "memory"):
            continue
        if task not in categories:
            try:
                categories[task] = plan_category(task, catalog)
            except UnknownTaskError:
                categories[task] = None
        category = categories[task]
        if category is None or (category in since and seg.created_at <= since[category]):
            continue
        side = "fast" if seg.decided_by == "memory" else "slow"
        sides[category][side].append((seg.outcome == "success", seg.planner_s))
    return {c: SkillEvidence(
        uses=len(s["slow"]) + len(s["fast"]), slow_attempts=len(s["slow"]),
        slow_successes=sum(ok for ok, _ in s["slow"]), fast_attempts=len(s["fast"]),
        fast_successes=sum(ok for ok, _ in s["fast"]),
        slow_s_per_use=sum(t for _, t in s["slow"]) / len(s["slow"]) if s["slow"] else None,
        fast_s_per_use=None) for c, s in sides.items()}


def pending_plan_triggers(store, game: str, *, job_cost_s: float,
                          proposal_cost_s: float) -> list[PlanTrigger]:
    """The task categories whose plan trigger fires now: the planner seconds their decisions
    cost since the category's last plan job, less what the memory's proposals would have cost
    instead (`proposal_cost_s` each, measured), exceed the measured seconds of a job; or the
    memory's choices fail significantly more often than the planner's (the same scale-free
    rule as for skills: consolidation/trigger.py). A symbolic planner's decisions cost
    microseconds and rarely pay for a job; a language model's cost seconds and soon do."""
    with store.session() as s:
        rows = s.execute(select(Job.category, Job.created_at, Job.status)
                         .where(Job.game == game, Job.kind == "plan")).all()
    last: dict[str, datetime] = {}
    active = set()
    for category, created, status in rows:
        last[category] = max(created, last.get(category, created))
        if status in ACTIVE:
            active.add(category)
    fired = []
    for category, e in _plan_evidence(store, game, last).items():
        if category in active:
            continue
        saved = e.slow_attempts * e.saving_per_use_s(proposal_cost_s)
        decision = should_consolidate(e, savings_since_last_job_s=saved, job_cost_s=job_cost_s)
        if decision.fire:
            fired.append(PlanTrigger(category, decision))
    return fired
