"""The slow/fast arbiter: which path acts on a subgoal, how long the fast path may try, and
when it has stopped making progress.

Two levels. **Which subgoal next** (`propose`): the plan-level memory answers instead of the
slow planner where it covers the task's category, its held-out and live record on this task is
adequate, and it is sure of the proposal; a novel task, low confidence or a failure go to the
planner. **How to act** (`path_for`): the fast path gets a subgoal when a promoted expert covers
the skill's category, the skill's success is more likely than not, the agent is not in danger,
and the fast path's measured cost is no worse than the executor's. The success estimate pools
what the gate measured on held-out episodes with what this fast path has done live since it
was loaded: an expert the gate passed that keeps failing in play loses the subgoal after a few
failures. A skill the gate never measured stays on the slow path (nothing proves the expert
can do it). Danger (a hostile creature close by, or health low) belongs to the slow path's
reflexes and shelters; a fast segment hands over the moment it arises.

The fast path's step budget comes from the skill's own slow-path statistics; a progress monitor
hands over early when nothing on screen or in the inventory has changed for a while. A fast path
that succeeds but costs more loses the subgoal too: once a few attempts (the gate's held-out
ones and the live ones, pooled) show that a subgoal costs it (its own steps and seconds, plus
the slow path's correction when it fails) more than `max_cost` times what the slow path spends,
the slow path keeps that skill. In Crafter every step spent brings hunger, thirst and night
closer; seconds are what the agent set out to save. A failure is corrected by the slow path from
that very state, and the pair is recorded (DESIGN.md, "The data's way through it" §2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.base import Observation
from envs.catalog import Skill
from memory.columns import OPEN
from memory.protocol import FastPath, Proposal

ADEQUATE = 0.5  # held-out success above which the fast path is worth trying first
STALL_STEPS = 8  # steps with no change on screen or in the inventory: the policy is stuck
# A subgoal's fast-path cost (steps, and seconds where measured), in multiples of the slow
# path's: 1.0, no worse than the executor: the fast path must never make the agent worse.
MAX_COST = 1.0
COST_TRIES = 3  # attempts (the gate's and live ones) before the cost is weighed
# The plan-level memory's own probability of its proposal under which the planner is asked:
# floors. Each plan expert's training also calibrates, per task, the probability above which its
# held-out proposals agreed with the planner's choices (consolidation/plan_training.py
# `calibrate`); the higher of the two holds. A proposal that is not wrong for the recipe can
# still lose the game: on make_iron_pickaxe unsure ones changed where the agent stood at dusk,
# and in open-ended play a choice unlike the planner's changes the rest of the game (both
# measured in benchmarks/RESULTS.md, "Savings").
PROPOSE_CONFIDENCE = 0.5
OPEN_PROPOSE_CONFIDENCE = 0.95


@dataclass
class Arbiter:
    fast: FastPath | None = None
    slow_mean_steps: dict[str, float] = field(default_factory=dict)  # per skill, the slow path's own
    slow_mean_s: dict[str, float] = field(default_factory=dict)  # per skill, seconds per slow attempt
    # Evaluation: True, the fast path on every covered skill; a set of skill names, the fast
    # path on those alone and the slow path on every other (one skill measured in isolation).
    force_fast: bool | frozenset[str] = False
    # Evaluation of the plan level: the memory proposes wherever it covers the task, trusted or not.
    force_plan: bool = False
    # A fast attempt's steps, in multiples of the skill's mean slow steps (+ 20): a failed
    # attempt costs the agent those steps (measured in benchmarks/RESULTS.md).
    budget_factor: float = 1.5
    # The most a subgoal may cost the fast path, in multiples of the slow path's cost
    # (None: cost is not weighed).
    max_cost: float | None = MAX_COST
    plan_confidence: float = PROPOSE_CONFIDENCE
    open_plan_confidence: float = OPEN_PROPOSE_CONFIDENCE
    live: dict[str, list[float]] = field(default_factory=dict)  # skill -> [successes, attempts, steps, seconds] live
    live_plans: dict[str, list[int]] = field(default_factory=dict)  # task -> [successes, proposals] live
    _live_version: object = None

    @classmethod
    def from_store(cls, fast: FastPath | None, store, game: str, **kw) -> "Arbiter":
        """An arbiter whose cost rule weighs the slow path as the store has measured it."""
        costs = store.path_costs(game)
        slow = {skill: paths["slow"] for skill, paths in costs.items() if "slow" in paths}
        return cls(fast, {k: v[1] for k, v in slow.items()}, {k: v[2] for k, v in slow.items()}, **kw)

    # -- how to act on a subgoal --------------------------------------------------------------

    def path_for(self, skill: Skill, danger: bool = False) -> str:
        if self.fast is None or danger or not self.fast.covers(skill.category, "action"):
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
        gate = self.fast.confidence(skill.name, "action")
        wins, tries = self.live.get(skill.name, (0, 0, 0, 0.0))[:2]
        n = gate.attempts + tries
        return (gate.rate * gate.attempts + wins) / n if n else 0.0

    def affordable(self, skill: Skill) -> bool:
        """Whether a subgoal, as the fast path has done it at the gate and live, costs at most
        `max_cost` times what the slow path spends on it, in steps and (where both sides were
        timed) in seconds: the attempt's own cost, plus the slow path's when it fails and the
        slow path corrects. True until COST_TRIES attempts in all say otherwise."""
        self._sync()
        mean, mean_s = self.slow_mean_steps.get(skill.name), self.slow_mean_s.get(skill.name)
        wins, tries, steps, seconds = self.live.get(skill.name, (0, 0, 0, 0.0))
        gate = self.fast.confidence(skill.name, "action")
        timed = seconds > 0 or not tries  # every live attempt so far was timed
        if gate.steps is not None:
            wins, tries, steps = wins + gate.rate * gate.attempts, tries + gate.attempts, steps + gate.steps
            if gate.seconds is not None:
                seconds += gate.seconds
            else:
                timed = False
        if self.max_cost is None or not mean or tries < COST_TRIES:
            return True
        failed = 1 - wins / tries
        if steps / tries + failed * mean > self.max_cost * mean:
            return False
        return not (timed and mean_s and seconds / tries + failed * mean_s > self.max_cost * mean_s)

    def record(self, skill: Skill, outcome: str, steps: int = 0, seconds: float = 0.0) -> None:
        """A fast attempt's outcome, steps and seconds; "interrupted" (danger, a survival need)
        is no verdict."""
        if outcome == "interrupted":
            return
        self._sync()
        tally = self.live.setdefault(skill.name, [0, 0, 0, 0.0])
        tally[0] += outcome == "success"
        tally[1] += 1
        tally[2] += steps
        tally[3] += seconds

    # -- which subgoal next -------------------------------------------------------------------

    def propose(self, task: str, category: str, context: dict) -> Proposal | None:
        """The plan-level memory's next subgoal for `task` (of plan category `category`) where
        the arbiter trusts it: it covers the category, its held-out and live record on this task
        is adequate (a task the gate never measured is novel: the planner's), and it is sure
        enough of this very proposal: at least the arbiter's threshold and the one the memory's
        training calibrated for the task. None sends the decision to the planner."""
        if self.fast is None or not self.fast.covers(category, "plan"):
            return None
        if not self.force_plan and self.plan_trust(task) < ADEQUATE:
            return None
        proposal = self.fast.propose(context, category)
        sure = max(self.open_plan_confidence if category == OPEN else self.plan_confidence,
                   self.fast.confidence(task, "plan").sure or 0.0)
        if proposal is None or not proposal.subgoals or proposal.confidence < sure:
            return None
        return proposal

    def plan_trust(self, task: str) -> float:
        """The plan-level memory's proposals on this task that led to a successful subgoal: the
        gate's held-out share (as that many pseudo-proposals) pooled with the live ones."""
        self._sync()
        gate = self.fast.confidence(task, "plan")
        wins, tries = self.live_plans.get(task, (0, 0))
        n = gate.attempts + tries
        return (gate.rate * gate.attempts + wins) / n if n else 0.0

    def record_plan(self, task: str, outcome: str) -> None:
        """A memory-chosen subgoal's outcome; "interrupted" is no verdict on the choice."""
        if outcome == "interrupted":
            return
        self._sync()
        tally = self.live_plans.setdefault(task, [0, 0])
        tally[0] += outcome == "success"
        tally[1] += 1

    def _sync(self) -> None:
        """A newly loaded fast path (other experts) starts with a clean live record."""
        version = getattr(self.fast, "version", None)
        if version != self._live_version:
            self.live.clear()
            self.live_plans.clear()
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
