"""`--memory`: what serves as the agent's fast path, and keeping it current.

- `none`: the slow path alone.
- `peam` (default): the frozen base with the promoted expert of each category.
- `shared-lora`: one LoRA expert fine-tuned stage after stage on everything (the baseline
  that forgets).
- `retrieval`: a Voyager-style skill library of stored trajectories (memory/retrieval.py).
- `moram`: rank-1 associative-memory atoms (MoRAM), one frozen group per consolidated
  category, router-free; groups are trained by `peam bench continual --memory moram` (the
  queue's jobs train `peam` experts).
"""

from __future__ import annotations

import time
from pathlib import Path

from agent.arbiter import Arbiter
from envs.errors import ConfigError

MODES = ("none", "peam", "shared-lora", "retrieval", "moram")


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
        from memory.registry import promoted

        return tuple(sorted(e.id for e in promoted(self.store, self.env.name)))

    def refresh(self) -> Arbiter:
        if self.mode == "none":
            return self.arbiter
        version = (self._registry_version(), len(self.store.segments(path="slow", outcome="success"))
                   if self.mode == "retrieval" else 0)
        if version == self._version:
            return self.arbiter
        self._version = version
        slow_mean = {r.name: r.mean_steps for r in self.store.skill_table(self.env.name) if r.mean_steps}
        self.arbiter.fast = self._load()
        self.arbiter.slow_mean_steps = slow_mean
        return self.arbiter

    def _load(self):
        if self.mode == "retrieval":
            from memory.retrieval import SkillLibrary

            return SkillLibrary.for_env(self.store, self.env)
        from agent.fast_path import SHARED, FastPolicy
        from memory.registry import promoted, ref_of

        if not (self.models_dir / "base" / "model.safetensors").is_file():
            return None
        rows = [e for e in promoted(self.store, self.env.name) if e.skill is None]
        if self.mode == "moram":
            keep = sorted((e for e in rows if e.routing == "moram"), key=lambda e: e.id)  # stage order
        else:
            keep = [e for e in rows if e.routing == "category" and (e.category == SHARED) == (self.mode == "shared-lora")]
        return FastPolicy(self.models_dir, [ref_of(e) for e in keep], self.device) if keep else None


def auto_consolidate(store, env, models_dir: str | Path, fast, console=None, device: str = "cpu") -> list:
    """The self-trigger, in process: score every skill, queue a job for each one whose trigger
    fires, and run the queue. Costs are measured online: a job's cost is the median of the
    jobs run so far, or, before the first, a timed estimate (one epoch's worth of the training
    the job would do); the fast path's cost per use is its measured forward time × the skill's
    slow-path steps."""
    from agent.evaluation import run_job
    from consolidation.queue import enqueue
    from consolidation.scoring import measured_job_cost_s, pending_triggers, refresh_worthiness
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
    done = []
    if fired:
        worker = Worker(store, lambda job, beat: run_job(store, job, beat, device=device, models_dir=models_dir),
                        lease_s=600, name="in-process")
        while (job := worker.run_once()) is not None:
            done.append(job)
    return done


def _fast_decision_s(fast, env) -> float:
    """Seconds per fast decision: timed on the live fast path, else on a fresh policy of the
    same shape (what a first expert would cost)."""
    import numpy as np
    import torch

    from envs.base import Observation

    obs = Observation(rgb=np.zeros((64, 64, 3), np.uint8), local_view=np.zeros(env.view_shape, np.int16),
                      inventory={k: 0 for k in env.catalog.items})
    skill = next(iter(env.catalog))
    if fast is None:
        from memory.policy import PolicyConfig, build_policy

        policy = build_policy(PolicyConfig(), len(env.cell_names), len(env.catalog.items),
                              len(env.action_names), env.catalog.names).eval()
        with torch.inference_mode():
            args = (torch.zeros((1, *env.view_shape), dtype=torch.long), torch.zeros(1, len(env.catalog.items)),
                    torch.zeros(1, 2), policy.tokenizer.encode([skill.name]))
            t0 = time.perf_counter()
            for _ in range(5):
                policy(*args)
        return (time.perf_counter() - t0) / 5
    t0 = time.perf_counter()
    for _ in range(5):
        fast.act(obs, skill)
    return (time.perf_counter() - t0) / 5


def _estimate_job_cost(store, env) -> float:
    """Before any job ran: the seconds the slow path has spent so far, a bound on what the job
    will have to learn from (documented bootstrap; replaced by measurements after one job)."""
    return sum(s.wall_s for s in store.segments(path="slow", game=env.name)) or 1.0
