"""What any fast path offers the agent: the one typed protocol the arbiter and the runner use.

A fast path answers the agent's two repeated decisions from memory instead of deliberation:
*which subgoal next* (`propose`, the plan level) and *how to act on it* (`act`, the action
level). Each level says what it covers and what the gate measured of it (`covers`,
`confidence`), so the arbiter can weigh it against the slow path. Implemented by the
parametric memory (agent/loop/fast_path.py `FastPolicy`), the retrieval baseline
(memory/retrieval.py `SkillLibrary`) and the plan cache (memory/plan_cache.py `PlanCache`).
A level a memory does not have simply covers nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Literal, Protocol, runtime_checkable

Level = Literal["action", "plan"]


@dataclass(frozen=True)
class Proposal:
    """The next subgoals by memory, first first (the runner's plan cursor walks the rest), and
    the memory's own probability of the first."""

    subgoals: tuple[str, ...]
    confidence: float


@dataclass(frozen=True)
class Measured:
    """What the gate measured of one skill (action level) or one task (plan level) on held-out
    episodes: successes per attempt, and what those attempts cost in steps and seconds (None
    where it was not counted). `attempts == 0`: never measured, so nothing proves it.

    `sure` (plan level): the lowest probability of its own at which the memory's proposals for
    the task agreed with the planner's choices often enough on held-out decisions
    (consolidation/plan_training.py `calibrate`); the arbiter asks the planner below it. None:
    not calibrated (the arbiter's own threshold alone); `math.inf`: no probability was enough,
    so the planner answers every decision of the task."""

    rate: float = 0.0
    attempts: int = 0
    steps: int | None = None
    seconds: float | None = None
    sure: float | None = None


UNMEASURED = Measured()
# A memory promoted with no gate at all (the continual baselines, a cache that is right by
# construction) is trusted blindly, as one success in one attempt: what a naive system does.
BLIND = Measured(1.0, 1)


@runtime_checkable
class FastPath(Protocol):
    version: Hashable  # changes whenever the memory behind it changes (the live tally restarts)

    def reset(self, seed: int, world=None) -> None:
        """A new episode: reseed, forget per-episode state; `world` is the agent's own map
        (agent/loop/world_memory.py), which the action level may read."""

    def covers(self, category: str, level: Level = "action") -> bool:
        """Whether it has an answer for subgoals of a skill category (action) or tasks of a
        task category (plan)."""

    def confidence(self, name: str, level: Level = "action") -> Measured:
        """What the gate measured of a skill (action) or a task (plan)."""

    def act(self, obs, skill) -> str:
        """The action for `skill` now (an action name)."""

    def done(self) -> bool:
        """Whether the last `act` expected to complete its subgoal (the policy's done head)."""

    def propose(self, context: dict, category: str) -> Proposal | None:
        """Which subgoal next, from a decision context (`PlanContext.as_record()`) of a task of
        plan category `category`; None where it has no answer."""
