"""`--memory`: what serves as the agent's fast path, and keeping it current.

- `none`: the slow path alone (with its plan cursor).
- `peam` (default): the frozen base with the promoted expert of each category, for acting,
  and the plan base with the promoted plan expert of each task category, for choosing the
  next subgoal instead of the planner.
- `shared-lora`: one LoRA expert fine-tuned stage after stage on everything (the baseline
  that forgets).
- `retrieval`: a Voyager-style skill library of stored trajectories and planner decisions
  (memory/retrieval.py).
- `plan-cache`: the planner's chains replayed on an exact (task, inventory) match, no training
  (memory/plan_cache.py).
- `moram`: rank-1 associative-memory atoms (MoRAM), one frozen group per consolidated
  category, router-free; action groups are trained by `peam bench continual --memory moram`,
  plan groups by plan jobs asked for with that routing.
"""

from __future__ import annotations

import time
from pathlib import Path

from agent.arbiter import Arbiter
from envs.errors import ConfigError

MODES = ("none", "peam", "shared-lora", "retrieval", "plan-cache", "moram")
STORE_BUILT = ("retrieval", "plan-cache")  # rebuilt from the store's records, no training


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"unknown memory mode {mode!r}: use one of {', '.join(MODES)}")


class MemoryFastPath:
    """Builds the arbiter for a mode and rebuilds it when the registry changes (runners pick up
    newly promoted experts at the start of their next episode)."""

    def __init__(self, mode: str, store, env, models_dir: str | Path, device: str = "cpu"):
        check_mode(mode)
        self.mode, self.store, self.env = mode, store, env
        self.models_dir, self.device = Path(models_dir), device
        self._version = None
        self.arbiter = Arbiter()

    def _registry_version(self):
        from memory.registry import experts

        return tuple(sorted(e.id for e in experts(self.store, self.env.name, status="promoted")))

    def refresh(self) -> Arbiter:
        if self.mode == "none":
            return self.arbiter
        version = (self._registry_version(),
                   self.store.segment_count(game=self.env.name) if self.mode in STORE_BUILT else 0)
        if version == self._version:
            return self.arbiter
        self._version = version
        fresh = Arbiter.from_store(self._load(), self.store, self.env.name)
        self.arbiter.fast = fresh.fast
        self.arbiter.slow_mean_steps, self.arbiter.slow_mean_s = fresh.slow_mean_steps, fresh.slow_mean_s
        return self.arbiter

    def _load(self):
        if self.mode == "retrieval":
            from memory.retrieval import SkillLibrary

            return SkillLibrary.for_env(self.store, self.env)
        if self.mode == "plan-cache":
            from memory.plan_cache import PlanCache

            return PlanCache.from_store(self.store, self.env.name, self.env.catalog)
        return expert_fast_path(self.mode, self.store, self.env.name, self.models_dir, self.device)


def expert_refs(mode: str, store, game: str, kind: str = "action") -> list:
    """The promoted experts of one kind a parametric mode's fast path carries (MoRAM: in stage
    order)."""
    from agent.fast_path import SHARED
    from memory.registry import promoted, ref_of

    rows = [e for e in promoted(store, game, kind) if e.skill is None]
    if mode == "moram":
        keep = sorted((e for e in rows if e.routing == "moram"), key=lambda e: e.id)
    else:
        keep = [e for e in rows if e.routing == "category" and (e.category == SHARED) == (mode == "shared-lora")]
    return [ref_of(e) for e in keep]


def expert_fast_path(mode: str, store, game: str, models_dir: str | Path, device: str = "cpu"):
    """The frozen bases with the mode's promoted action and plan experts; None before there is
    any."""
    from agent.fast_path import FastPolicy
    from memory.base_io import has_base
    from memory.plan_policy import has_plan_base

    refs = expert_refs(mode, store, game) if has_base(models_dir) else []
    plans = expert_refs(mode, store, game, "plan") if has_plan_base(models_dir) else []
    if not refs and not plans:
        return None
    return FastPolicy(models_dir, refs, device, plan_experts=plans)


def auto_consolidate(store, env, models_dir: str | Path, fast, console=None, device: str = "cpu",
                     process=None) -> list:
    """The self-trigger, in process: score every skill, queue a job for each one whose trigger
    fires, and run the queue (`process` defaults to the real pipeline). Costs are measured
    online: a job's cost is the median of the jobs run so far (before the first, see
    `_estimate_job_cost`); the fast path's cost per use is its measured decision time × the
    mean slow-path steps per use."""
    from agent.evaluation import run_job
    from consolidation.queue import enqueue
    from consolidation.scoring import (measured_job_cost_s, pending_plan_triggers, pending_triggers,
                                       refresh_worthiness)
    from consolidation.worker import Worker

    job_cost = measured_job_cost_s(store, env.name) or _estimate_job_cost(store, env)
    steps = [r.mean_steps for r in store.skill_table(env.name) if r.mean_steps]
    fast_cost = _fast_decision_s(fast, env) * (sum(steps) / len(steps) if steps else 1.0)
    refresh_worthiness(store, env.name, job_cost_s=job_cost, fast_cost_estimate_s=fast_cost)
    fired = pending_triggers(store, env.name, job_cost_s=job_cost, fast_cost_estimate_s=fast_cost)
    for trig in fired:
        enqueue(store, game=env.name, category=trig.category, reason=trig.decision.reason)
        if console is not None:
            console.print(f"  trigger: {trig.skill} ({trig.category}): {trig.decision.reason}")
    # Which subgoal next: a plan job pays when the planner's seconds it would save exceed it.
    plan_cost = measured_job_cost_s(store, env.name, "plan") or job_cost
    plans = pending_plan_triggers(store, env.name, job_cost_s=plan_cost,
                                  proposal_cost_s=_proposal_s(env.name))
    for trig in plans:
        enqueue(store, game=env.name, category=trig.category, reason=trig.decision.reason, kind="plan")
        if console is not None:
            console.print(f"  trigger: plans of {trig.category} tasks: {trig.decision.reason}")
    fired = fired + plans
    done = []
    if fired:
        process = process or (lambda job, beat: run_job(store, job, beat, device=device, models_dir=models_dir))
        worker = Worker(store, process, lease_s=600, name="in-process")
        while (job := worker.run_once()) is not None:
            done.append(job)
    return done


def _proposal_s(game: str) -> float:
    """Seconds per plan-level proposal: a forward pass of a plan network of the shape a first
    plan expert would have, timed (the same for every expert: LoRA adds no latency worth
    weighing against a planner call)."""
    import numpy as np
    import torch

    from memory.plan_policy import PlanConfig, PlanNet, PlanSpec

    spec = PlanSpec.of(game)
    net = PlanNet(PlanConfig(), spec.n_features, len(spec.skills)).eval()
    x = torch.as_tensor(np.zeros((1, spec.n_features), np.float32))
    with torch.inference_mode():
        net(x)
        t0 = time.perf_counter()
        for _ in range(5):
            torch.softmax(net(x)[0], -1)
    return (time.perf_counter() - t0) / 5


def _fast_decision_s(fast, env) -> float:
    """Seconds per fast decision: timed on the live fast path, else on a fresh policy of the
    shape a first expert would have (built once per game)."""
    import numpy as np

    from envs.base import Observation

    obs = Observation(rgb=np.zeros((64, 64, 3), np.uint8), local_view=np.zeros(env.view_shape, np.int16),
                      inventory={k: 0 for k in env.catalog.items})
    skill = next(iter(env.catalog))
    act = fast.act if fast is not None and fast.covers(skill.category, "action") else _fresh_policy_act(env)
    t0 = time.perf_counter()
    for _ in range(5):
        act(obs, skill)
    return (time.perf_counter() - t0) / 5


_FRESH: dict = {}


def _fresh_policy_act(env):
    if env.name not in _FRESH:
        import torch

        from memory.policy import PolicyConfig, build_policy

        policy = build_policy(PolicyConfig(view_shape=tuple(env.view_shape)), len(env.cell_names), len(env.catalog.items),
                              len(env.action_names), env.catalog.names).eval()
        items = list(env.catalog.items)

        @torch.inference_mode()
        def act(obs, skill):
            return policy(torch.as_tensor(obs.local_view[None]).long(),
                          torch.tensor([[obs.inventory.get(k, 0) for k in items]]).float(),
                          torch.tensor([obs.facing]).float(), policy.tokenizer.encode([skill.name]))

        _FRESH[env.name] = act
    return _FRESH[env.name]


def _estimate_job_cost(store, env) -> float:
    """Before any job ran: the seconds the slow path has spent so far, a bound on what the job
    will have to learn from (documented bootstrap; replaced by measurements after one job)."""
    return sum(s.wall_s for s in store.segments(path="slow", game=env.name)) or 1.0
