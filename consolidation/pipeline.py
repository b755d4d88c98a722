"""One consolidation job from claim to verdict: train a candidate expert, let it practise
(DAgger rounds), measure it in the game against the current one, promote it atomically or
reject it, then re-measure every earlier skill so forgetting is on record.

A practice round plays the candidate on the category's skills on practice seeds (never the
gate's) with the slow path shadowing it: every state the candidate reaches is recorded with the
action the slow path would have taken there, and the next candidate is trained on those too
(Ross et al. 2011). Behavioural cloning alone never shows the policy the states its own
mistakes lead to. Off by default (`practice_rounds=0`): on one gather store a round did not
measurably improve the expert (benchmarks/expert_recipe.py) and it costs a job several times
its training time.

The game-side work is passed in (`evaluate`, `practise`): consolidation does not import the
agent (DESIGN.md's import direction); `agent/services/evaluation.py` supplies both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from consolidation.candidates import job_tag, supersede_job_candidates
from consolidation.fit import FitConfig
from consolidation.queue import JobRow, advance
from consolidation.trainer import ExpertTrainingConfig, train_base, train_expert
from consolidation.worker import JobOutcome
from envs import make_env
from memory.base_io import ensure_base
from memory.expert_io import AdapterError, read_expert, sha256_of
from memory.policy import PolicyConfig
from memory.registry import ExpertRef, promote, promoted, ref_of
from memory.tables import Evaluation, Expert, utcnow

# evaluate(refs, skills, episodes) -> {skill: {"attempts", "successes", "rate"}}
Evaluate = Callable[[list, list[str], int], dict[str, dict]]
# practise(refs, skills, episodes, round) -> fast-path steps recorded with the slow path's labels
Practise = Callable[[list, list[str], int, int], int]


@dataclass
class ConsolidationConfig:
    device: str = "cpu"  # where the base and the expert train (overrides theirs)
    eval_episodes: int = 4  # held-out episodes per skill at the gate
    forgetting_episodes: int = 2  # per earlier skill, after each promotion
    base: FitConfig = FitConfig(epochs=8)  # the first job of a store trains the base
    expert: ExpertTrainingConfig = ExpertTrainingConfig()
    practice_rounds: int = 0  # DAgger rounds before the gate (0: behavioural cloning alone)
    practice_episodes: int = 8  # per skill of the category, per round
    mirror: bool = False  # train the base and the experts on mirrored copies of every step too
    targets: bool = True  # the base's per-kind target tokens (memory/policy.py TargetEncoder)

    def base_config(self) -> FitConfig:
        return replace(self.base, device=self.device, mirror=self.mirror or self.base.mirror)

    def expert_config(self) -> ExpertTrainingConfig:
        return replace(self.expert, device=self.device, mirror=self.mirror or self.expert.mirror)


def run_pipeline(store, job: JobRow, heartbeat: Callable[[], None], *, evaluate: Evaluate,
                 models_dir: str | Path, config: ConsolidationConfig | None = None,
                 practise: Practise | None = None) -> JobOutcome:
    cfg = config or ConsolidationConfig()
    models_dir = Path(models_dir)
    catalog = make_env(job.game).catalog
    category = job.category or catalog[job.skill].category
    # The first job of a store trains the frozen base all experts share (once, under a lock).
    ensure_base(models_dir, lambda: train_base(
        store, out_dir=models_dir, game=job.game, config=cfg.base_config(),
        policy_config=PolicyConfig(targets=cfg.targets), progress=False))
    supersede_job_candidates(store, job, models_dir)  # what an earlier, killed attempt left
    heartbeat()
    current = next((e for e in promoted(store, job.game) if e.category == category and e.skill is None), None)
    expert_cfg = cfg.expert_config()
    skills = _practised(store, job.game, category, catalog)
    others = [ref_of(r) for r in promoted(store, job.game) if r.category != category and r.skill is None]

    def train(tag: str):
        return train_expert(store, models_dir=models_dir, game=job.game, category=category, tag=tag,
                            current_path=current.path if current else None, config=expert_cfg)

    t0 = time.perf_counter()
    tag = job_tag(job)
    candidate, practice_s, practice_steps = train(tag), 0.0, []
    for k in range(1, cfg.practice_rounds + 1 if practise is not None and skills else 1):
        heartbeat()
        if not _intact(candidate.path, candidate.sha256):
            break  # the gate below rejects it
        t1 = time.perf_counter()
        practice_steps.append(practise(others + [ExpertRef(category, candidate.path, candidate.expert_id,
                                                           sha256=candidate.sha256)],
                                   skills, cfg.practice_episodes, k))
        practice_s += time.perf_counter() - t1
        heartbeat()
        _set_status(store, candidate.expert_id, "superseded")
        candidate = train(f"{tag}-r{k}")
    train_s = time.perf_counter() - t0 - practice_s
    heartbeat()
    advance(store, job.id, job.worker, "evaluating", expert_id=candidate.expert_id)
    metrics = {"category": category, "train_seconds": train_s, "practice_seconds": practice_s,
               "practice_steps": practice_steps, "relabelled": candidate.metrics.get("relabelled"),
               "samples": candidate.metrics.get("samples"), "pairs": candidate.metrics.get("pairs"),
               # the last training's throughput (practice rounds train more than once)
               "samples_per_s": (candidate.metrics.get("samples") or 0) * candidate.metrics.get("copies", 1)
               * (candidate.metrics.get("epochs_run") or 0) / max(candidate.metrics.get("seconds") or train_s, 1e-9),
               "current_expert_id": current.id if current else None}
    if not _intact(candidate.path, candidate.sha256):  # a torn file is neither played nor promoted
        _set_status(store, candidate.expert_id, "rejected")
        return JobOutcome("rejected", candidate.expert_id, {**metrics, "rejected": "file not intact"})

    cand_ref = ExpertRef(category, candidate.path, candidate.expert_id, sha256=candidate.sha256)
    with_candidate = evaluate(others + [cand_ref], skills, cfg.eval_episodes)
    heartbeat()
    with_current = (evaluate(others + [ref_of(current)], skills, cfg.eval_episodes)
                    if current else {s: {"rate": 0.0} for s in skills})
    heartbeat()
    cand, cur = _mean(with_candidate, skills), _mean(with_current, skills)
    metrics.update(skills=skills, candidate_success=cand, current_success=cur,
                   candidate=with_candidate, current=with_current)
    # The gate: not worse than the expert it replaces, and of some use at all (an expert that
    # never succeeds would only cost the slow path a failed attempt first); and the file must
    # still read back whole at the moment it is promoted.
    if cand >= cur and cand > 0 and _intact(candidate.path, candidate.sha256):
        _set_skill_success(store, candidate.expert_id, with_candidate)
        promote(store, candidate.expert_id)
        metrics["forgetting"] = _measure_forgetting(store, job.game, evaluate, cfg, candidate.expert_id)
        return JobOutcome("promoted", candidate.expert_id, metrics)
    _set_status(store, candidate.expert_id, "rejected")
    return JobOutcome("rejected", candidate.expert_id, metrics)


def _practised(store, game: str, category: str, catalog) -> list[str]:
    """The category's skills the slow path has succeeded at: what the expert can be judged on."""
    rows = store.skill_table(game)
    return [r.name for r in rows if r.category == category and r.name in catalog
            and (r.successes or 0) > 0]


def _mean(results: dict[str, dict], skills: list[str]) -> float:
    return sum(results.get(s, {}).get("rate", 0.0) for s in skills) / max(len(skills), 1)


def _intact(path: str, sha256: str) -> bool:
    """The candidate's file still reads back whole and matches the digest the registry holds:
    a corrupt or truncated file is never promoted."""
    try:
        read_expert(path)
        return sha256_of(path) == sha256
    except (AdapterError, OSError):
        return False


def _set_skill_success(store, expert_id: int, results: dict[str, dict]) -> None:
    with store.session() as s:
        row = s.get(Expert, expert_id)
        row.metrics = {**(row.metrics or {}),
                       "skill_success": {k: v["rate"] for k, v in results.items()},
                       "skill_attempts": {k: v.get("attempts", 0) for k, v in results.items()},
                       "skill_steps": {k: v["steps"] for k, v in results.items() if "steps" in v},
                       "skill_seconds": {k: v["seconds"] for k, v in results.items() if "seconds" in v}}


def _set_status(store, expert_id: int, status: str) -> None:
    with store.session() as s:
        s.get(Expert, expert_id).status = status


def _measure_forgetting(store, game: str, evaluate: Evaluate, cfg: ConsolidationConfig,
                        version: int) -> dict[str, float]:
    """Every skill an expert covers, re-measured under the new registry: the forgetting
    curve's next point (DESIGN.md, "Forgetting is measured, not assumed")."""
    rows = [r for r in promoted(store, game) if r.skill is None]
    catalog = make_env(game).catalog
    by_category = {r.category: r for r in rows}
    skills = [s for c in by_category for s in _practised(store, game, c, catalog)]
    if not skills:
        return {}
    results = evaluate([ref_of(r) for r in rows], skills, cfg.forgetting_episodes)
    now = utcnow()
    with store.session() as s:
        for skill, res in results.items():
            s.add(Evaluation(expert_id=by_category[catalog[skill].category].id, skill=skill,
                             episodes=res.get("attempts", 0), successes=res.get("successes", 0),
                             success_rate=res["rate"], registry_version=version, created_at=now))
    return {k: v["rate"] for k, v in results.items()}
