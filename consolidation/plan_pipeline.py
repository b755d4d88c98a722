"""One plan consolidation job from claim to verdict: train a candidate plan expert for a task
category, measure it in the game against the slow agent and the current plan expert, promote
it atomically or reject it, then re-measure every earlier task so forgetting is on record.

The gate plays each task of the category that the store has decisions of, on held-out seeds,
with the slow executor acting and the plan-level memory forced to propose wherever it is sure
(the planner answers the rest). A task's score is its successes (for the open-ended task, the
achievements unlocked); the candidate is promoted only if its score is at least the slow
agent's on the same seeds and at least the current expert's: the memory that replaces planner
calls must never make the agent worse. The game-side work is passed in (`evaluate`):
consolidation does not import the agent; `agent/services/evaluation.py` supplies it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from consolidation.candidates import job_tag, supersede_job_candidates
from consolidation.dataset import NoDataError
from consolidation.plan_training import PlanTrainingConfig, plan_data, train_plan_base, train_plan_expert
from consolidation.queue import JobRow, advance
from consolidation.worker import JobOutcome
from envs import make_env
from memory.base_io import base_lock
from memory.expert_io import AdapterError, read_expert, sha256_of
from memory.plan_policy import PlanSpec, has_plan_base, plan_category
from memory.registry import ExpertRef, promote, promoted, ref_of
from memory.tables import Evaluation, Expert, utcnow

# evaluate(plan refs or None for the slow agent alone, tasks, episodes) ->
#   {task: {"episodes", "successes", "unlocked", "proposals", "proposal_successes", "calls"}}
EvaluatePlans = Callable[[list | None, list[str], int], dict[str, dict]]
GATE_TASKS = 6  # the most-practised tasks of a category the gate plays (it plays each twice)


@dataclass
class PlanJobConfig:
    eval_episodes: int = 6  # held-out episodes per task at the gate
    forgetting_episodes: int = 2  # per earlier task, after each promotion
    training: PlanTrainingConfig = field(default_factory=PlanTrainingConfig)


def score(results: dict[str, dict], tasks: list[str], open_task: str) -> int:
    """Successes of the tasks, counting the open-ended task by its achievements unlocked."""
    return sum(results.get(t, {}).get("unlocked" if t == open_task else "successes", 0) for t in tasks)


def run_plan_pipeline(store, job: JobRow, heartbeat: Callable[[], None], *, evaluate: EvaluatePlans,
                      models_dir: str | Path, config: PlanJobConfig | None = None) -> JobOutcome:
    from envs.tasks import OPEN_ENDED

    cfg = config or PlanJobConfig()
    models_dir = Path(models_dir)
    catalog = make_env(job.game).catalog
    category = job.category
    training = cfg.training
    with base_lock(models_dir):  # the first plan job trains the plan base all plan experts share
        if not has_plan_base(models_dir):
            train_plan_base(store, models_dir=models_dir, game=job.game, catalog=catalog, config=training)
    supersede_job_candidates(store, job, models_dir)  # what an earlier, killed attempt left
    heartbeat()
    rows = promoted(store, job.game, "plan")
    current = next((e for e in rows if e.category == category and e.skill is None), None)
    others = [ref_of(r) for r in rows if r.category != category and r.skill is None]
    previous = ([r.path for r in sorted(rows, key=lambda e: e.id) if r.routing == "moram"]
                if training.routing == "moram" else None)
    t0 = time.perf_counter()
    candidate = train_plan_expert(store, models_dir=models_dir, game=job.game, catalog=catalog,
                                  category=category, tag=job_tag(job),
                                  current_path=current.path if current else None,
                                  previous=previous, config=training)
    train_s = time.perf_counter() - t0
    heartbeat()
    advance(store, job.id, job.worker, "evaluating", expert_id=candidate.expert_id)
    counts = candidate.metrics["tasks"]
    tasks = sorted(counts, key=lambda t: (-counts[t], t))[:GATE_TASKS]
    metrics = {"kind": "plan", "category": category, "train_seconds": train_s, "tasks": tasks,
               "decisions": candidate.metrics["decisions"], "pairs": candidate.metrics["pairs"],
               "val_accuracy": candidate.metrics["val_accuracy"],
               "current_expert_id": current.id if current else None}
    if not _intact(candidate.path, candidate.sha256):
        _set_status(store, candidate.expert_id, "rejected")
        return JobOutcome("rejected", candidate.expert_id, {**metrics, "rejected": "file not intact"})
    # In MoRAM's case the earlier groups are part of the candidate (they are loaded with it).
    refs = others + [ExpertRef(category, candidate.path, candidate.expert_id,
                               support=candidate.metrics.get("support"), sha256=candidate.sha256,
                               propose_above=candidate.metrics.get("propose_above"))]
    with_candidate = evaluate(refs, tasks, cfg.eval_episodes)
    heartbeat()
    slow = evaluate(None, tasks, cfg.eval_episodes)
    heartbeat()
    with_current = evaluate(others + [ref_of(current)], tasks, cfg.eval_episodes) if current else None
    heartbeat()
    cand, base = score(with_candidate, tasks, OPEN_ENDED), score(slow, tasks, OPEN_ENDED)
    cur = score(with_current, tasks, OPEN_ENDED) if with_current else None
    proposals = sum(r.get("proposals", 0) for r in with_candidate.values())
    metrics.update(candidate_score=cand, slow_score=base, current_score=cur, proposals=proposals,
                   candidate=with_candidate, slow=slow, current=with_current,
                   candidate_success=_share(with_candidate), current_success=_share(with_current or slow))
    if cand >= base and (cur is None or cand >= cur) and proposals > 0 and _intact(candidate.path, candidate.sha256):
        _set_measured(store, candidate.expert_id, with_candidate)
        promote(store, candidate.expert_id)
        metrics["forgetting"] = _measure_forgetting(store, job.game, catalog, evaluate, cfg, candidate.expert_id)
        return JobOutcome("promoted", candidate.expert_id, metrics)
    _set_status(store, candidate.expert_id, "rejected")
    return JobOutcome("rejected", candidate.expert_id, metrics)


def plan_categories_with_data(store, game: str) -> dict[str, int]:
    """{task category: planner decisions recorded}: what a plan job could learn from."""
    catalog = make_env(game).catalog
    counts: dict[str, int] = {}
    for task, n in plan_data(store, game, PlanSpec.of(game), catalog).counts.items():
        c = plan_category(task, catalog)
        counts[c] = counts.get(c, 0) + n
    return counts


def _share(results: dict[str, dict]) -> float:
    """Proposals that led to a successful subgoal, over all tasks (the dashboard's one number)."""
    n = sum(r.get("proposals", 0) for r in results.values())
    return sum(r.get("proposal_successes", 0) for r in results.values()) / n if n else 0.0


def _intact(path: str, sha256: str) -> bool:
    try:
        read_expert(path)
        return sha256_of(path) == sha256
    except (AdapterError, OSError):
        return False


def _set_measured(store, expert_id: int, results: dict[str, dict]) -> None:
    """The gate's per-task record, as the arbiter's plan trust reads it (memory/registry.py)."""
    with store.session() as s:
        row = s.get(Expert, expert_id)
        row.metrics = {**(row.metrics or {}),
                       "skill_success": {t: (r["proposal_successes"] / r["proposals"] if r.get("proposals") else 0.0)
                                         for t, r in results.items()},
                       "skill_attempts": {t: r.get("proposals", 0) for t, r in results.items()},
                       "task_success": {t: r["successes"] / max(r["episodes"], 1) for t, r in results.items()}}


def _set_status(store, expert_id: int, status: str) -> None:
    with store.session() as s:
        s.get(Expert, expert_id).status = status


def _measure_forgetting(store, game: str, catalog, evaluate: EvaluatePlans, cfg: PlanJobConfig,
                        version: int) -> dict[str, float]:
    """Every task a promoted plan expert was measured on, again under the new registry
    (Evaluation rows named "plan:<task>")."""
    rows = [r for r in promoted(store, game, "plan") if r.skill is None]
    tasks = sorted({t for r in rows for t in ((r.metrics or {}).get("skill_success") or {})})
    if not tasks:
        return {}
    results = evaluate([ref_of(r) for r in rows], tasks, cfg.forgetting_episodes)
    by_category = {r.category: r for r in rows}
    now = utcnow()
    with store.session() as s:
        for task, res in results.items():
            owner = by_category.get(plan_category(task, catalog))
            rate = res["successes"] / max(res["episodes"], 1)
            s.add(Evaluation(expert_id=owner.id if owner else None, skill=f"plan:{task}",
                             episodes=res["episodes"], successes=res["successes"], success_rate=rate,
                             registry_version=version, created_at=now))
    return {t: r["successes"] / max(r["episodes"], 1) for t, r in results.items()}


__all__ = ["PlanJobConfig", "run_plan_pipeline", "plan_categories_with_data", "score", "NoDataError"]
