"""`--memory`: what serves as the agent's fast path, and keeping it current (the self-trigger
that trains new experts between episodes is agent/services/self_trigger.py).

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

from pathlib import Path
from typing import TYPE_CHECKING

# Only light imports at the top: `peam --help` reads the table of modes, and both the arbiter
# and envs/ pull in numpy.
if TYPE_CHECKING:
    from agent.loop.arbiter import Arbiter

# Each mode with the few words `peam run --help` shows for it (the module docstring says more).
MODE_SUMMARIES = {
    "none": "the slow path alone",
    "peam": "isolated experts for acting and for choosing subgoals",
    "shared-lora": "one LoRA fine-tuned stage after stage",
    "retrieval": "a Voyager-style library of stored trajectories",
    "plan-cache": "the planner's chains replayed on an exact match",
    "moram": "rank-1 associative-memory atoms, router-free",
}
MODES = tuple(MODE_SUMMARIES)
STORE_BUILT = ("retrieval", "plan-cache")  # rebuilt from the store's records, no training


def modes_help() -> str:
    """Every mode with its summary, for a `--memory` help text."""
    return "; ".join(f"{mode} ({summary})" for mode, summary in MODE_SUMMARIES.items())


def check_mode(mode: str) -> None:
    from envs.errors import ConfigError

    if mode not in MODES:
        raise ConfigError(f"unknown memory mode {mode!r}: use one of {', '.join(MODES)}")


class MemoryFastPath:
    """Builds the arbiter for a mode and rebuilds it when the registry changes (runners pick up
    newly promoted experts at the start of their next episode)."""

    def __init__(self, mode: str, store, env, models_dir: str | Path, device: str = "cpu"):
        check_mode(mode)
        self.mode, self.store, self.env = mode, store, env
        self.models_dir, self.device = Path(models_dir), device
        from agent.loop.arbiter import Arbiter

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
        fresh = type(self.arbiter).from_store(self._load(), self.store, self.env.name)
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
    from agent.loop.fast_path import SHARED
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
    from agent.loop.fast_path import FastPolicy
    from memory.base_io import has_base
    from memory.plan_policy import has_plan_base

    refs = expert_refs(mode, store, game) if has_base(models_dir) else []
    plans = expert_refs(mode, store, game, "plan") if has_plan_base(models_dir) else []
    if not refs and not plans:
        return None
    return FastPolicy(models_dir, refs, device, plan_experts=plans)
