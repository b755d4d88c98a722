"""The slow/fast arbiter: which path acts on a subgoal, how long the fast path may try, and
when it has stopped making progress.

The fast path gets a subgoal when a promoted expert covers the skill's category and the gate
measured it succeeding more often than not on held-out episodes. Its step budget comes from
the skill's own slow-path statistics; a progress monitor hands over early when nothing on
screen or in the inventory has changed for a while. A failure is corrected by the slow path
from that very state, and the pair is recorded (DESIGN.md, "The data's way through it" §2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.base import Observation
from envs.catalog import Skill

ADEQUATE = 0.5  # held-out success above which the fast path is worth trying first
STALL_STEPS = 8  # steps with no change on screen or in the inventory: the policy is stuck


@dataclass
class Arbiter:
    fast: object | None = None  # agent.fast_path.FastPolicy
    slow_mean_steps: dict[str, float] = field(default_factory=dict)  # per skill, from the store
    force_fast: bool = False  # evaluation: the fast path on every covered skill

    def path_for(self, skill: Skill) -> str:
        if self.fast is None or not self.fast.covers(skill.category):
            return "slow"
        if self.force_fast or self.fast.confidence(skill) >= ADEQUATE:
            return "fast"
        return "slow"

    def fast_budget(self, skill: Skill, slow_budget: int) -> int:
        """Three times what the slow path needs on average, plus room to look around."""
        mean = self.slow_mean_steps.get(skill.name)
        if mean is None:
            return min(slow_budget, 100)
        return int(min(slow_budget, 3 * mean + 20))


class ProgressMonitor:
    """Counts steps since the screen or the inventory last changed."""

    def __init__(self, obs: Observation):
        self._last = (obs.local_view.copy(), dict(obs.inventory))
        self.idle = 0

    def update(self, obs: Observation) -> bool:
        """False once the fast path has been idle for STALL_STEPS."""
        view, inv = self._last
        if np.array_equal(view, obs.local_view) and inv == obs.inventory:
            self.idle += 1
        else:
            self.idle = 0
            self._last = (obs.local_view.copy(), dict(obs.inventory))
        return self.idle < STALL_STEPS
