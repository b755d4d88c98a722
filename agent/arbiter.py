"""The slow/fast arbiter: which path acts on a subgoal, how long the fast path may try, and
when it has stopped making progress.

The fast path gets a subgoal when a promoted expert covers the skill's category, the skill's
success is more likely than not, and the agent is not in danger. The success estimate pools
what the gate measured on held-out episodes with what this fast path has done live since it
was loaded: an expert the gate passed that keeps failing in play loses the subgoal after a few
failures. A skill the gate never measured stays on the slow path (nothing proves the expert
can do it). Danger (a hostile creature close by, or health low) belongs to the slow path's
reflexes and shelters; a fast segment hands over the moment it arises.

The fast path's step budget comes from the skill's own slow-path statistics; a progress monitor
hands over early when nothing on screen or in the inventory has changed for a while. A fast path
that succeeds but costs too many steps loses the subgoal too: once a few attempts (the gate's
held-out ones and the live ones, pooled) show that a subgoal costs it (its own steps, plus the
slow path's correction when it fails) more than `max_cost` times what the slow path takes, the
slow path keeps that skill. In Crafter every step spent brings hunger, thirst and night
closer. A failure is corrected by the slow path from that very state, and the pair is recorded
(DESIGN.md, "The data's way through it" §2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.base import Observation
from envs.catalog import Skill

ADEQUATE = 0.5  # held-out success above which the fast path is worth trying first
STALL_STEPS = 8  # steps with no change on screen or in the inventory: the policy is stuck
MAX_COST = 2.0  # a subgoal's live fast-path cost in steps, in multiples of the slow path's mean
COST_TRIES = 3  # live attempts before the cost is weighed


@dataclass
class Arbiter:
    fast: object | None = None  # agent.fast_path.FastPolicy
    slow_mean_steps: dict[str, float] = field(default_factory=dict)  # per skill, from the store
    # Evaluation: True, the fast path on every covered skill; a set of skill names, the fast
    # path on those alone and the slow path on every other (one skill measured in isolation).
    force_fast: bool | frozenset[str] = False
    # A fast attempt's steps, in multiples of the skill's mean slow steps (+ 20). A failed attempt
    # costs the agent those steps: on 40 open-ended games 3.0 scored 40.6%, 1.5 49.3%, 1.0 48.1%.
    budget_factor: float = 1.5
    # The most a subgoal may cost the fast path, in multiples of the slow path's mean steps
    # (None: cost is not weighed).
    max_cost: float | None = MAX_COST
    live: dict[str, list[int]] = field(default_factory=dict)  # skill -> [successes, attempts, steps] live
    _live_version: object = None

    def path_for(self, skill: Skill, danger: bool = False) -> str:
        if self.fast is None or danger or not self.fast.covers(skill.category):
            return "slow"
        if isinstance(self.force_fast, frozenset):
            return "fast" if skill.name in self.force_fast else "slow"
        if self.force_fast or (self.trust(skill) >= ADEQUATE and self.affordable(skill)):
            return "fast"
        return "slow"

    def trust(self, skill: Skill) -> float:
        """Success of the fast path on this skill: the gate's held-out measurement (as that many
        pseudo-attempts) pooled with the live attempts since this fast path was loaded."""
        self._sync()
        rate = self.fast.confidence(skill)
        prior = self.fast.evidence(skill) if hasattr(self.fast, "evidence") else 1
        wins, tries = self.live.get(skill.name, (0, 0, 0))[:2]
        return (rate * prior + wins) / (prior + tries) if prior + tries else 0.0

    def affordable(self, skill: Skill) -> bool:
        """Whether a subgoal, as the fast path has done it at the gate and live, costs at most
        `max_cost` times the slow path's mean steps: the attempt's own steps, plus the slow
        path's when it fails and the slow path corrects. The gate's held-out attempts count as
        attempts (a costly expert is judged before it plays), pooled with the live ones; True
        until COST_TRIES attempts in all say otherwise."""
        self._sync()
        mean = self.slow_mean_steps.get(skill.name)
        wins, tries, steps = self.live.get(skill.name, (0, 0, 0))
        gate = self.fast.gate_cost(skill) if hasattr(self.fast, "gate_cost") else None
        if gate is not None:
            wins, tries, steps = wins + gate[0], tries + gate[1], steps + gate[2]
        if self.max_cost is None or not mean or tries < COST_TRIES:
            return True
        return steps / tries + (1 - wins / tries) * mean <= self.max_cost * mean

    def record(self, skill: Skill, outcome: str, steps: int = 0) -> None:
        """A fast attempt's outcome and steps; "interrupted" (danger, a survival need) is no verdict."""
        if outcome == "interrupted":
            return
        self._sync()
        tally = self.live.setdefault(skill.name, [0, 0, 0])
        tally[0] += outcome == "success"
        tally[1] += 1
        tally[2] += steps

    def _sync(self) -> None:
        """A newly loaded fast path (other experts) starts with a clean live record."""
        version = getattr(self.fast, "version", None)
        if version != self._live_version:
            self.live.clear()
            self._live_version = version

    def fast_budget(self, skill: Skill, slow_budget: int) -> int:
        """`budget_factor` times what the slow path needs on average, plus room to look around."""
        mean = self.slow_mean_steps.get(skill.name)
        if mean is None:
            return min(slow_budget, 100)
        return int(min(slow_budget, self.budget_factor * mean + 20))


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
