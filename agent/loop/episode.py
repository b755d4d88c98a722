"""One episode as the runner plays it: the state it carries from step to step (what the agent
saw, did and paid), the plan cursor it walks, each subgoal decision, and the result it returns.
Plain data, shared by the runner and the slow path stepped by a caller (agent/loop/slow_decision.py)."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from agent.planners.planner import PlanContext, Subgoal, ready
from envs.base import Observation

@dataclass
class EpisodeResult:
    seed: int
    episode_id: int | None
    success: bool
    steps: int
    reward: float
    unlocked: list[str]
    died: bool
    segments: int
    planner_calls: int
    error: str | None = None
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (skill, outcome) per segment
    paths: list[str] = field(default_factory=list)  # "slow" / "fast" per segment
    segment_steps: list[int] = field(default_factory=list)  # steps per segment
    segment_s: list[float] = field(default_factory=list)  # wall seconds per segment
    fast_steps: int = 0
    slow_steps: int = 0
    corrections: int = 0  # fast-path failures the slow path took over
    # What the episode cost: the planner's seconds and tokens, the executor's and the fast
    # path's decision seconds, the whole episode's wall seconds (reset included), who decided
    # each subgoal (memory.columns.DECIDERS) and the planner answers that were unusable.
    planner_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    executor_s: float = 0.0
    fast_s: float = 0.0
    wall_s: float = 0.0
    decided_by: list[str] = field(default_factory=list)  # per segment
    fallbacks: int = 0

    @property
    def memory_decisions(self) -> int:
        return self.decided_by.count("memory")

    @property
    def decisions(self) -> Counter:
        return Counter(self.decided_by)


@dataclass
class Decision:
    """A chosen subgoal, who chose it, what choosing it cost, and the context it was made in."""

    skill: str
    decided_by: str
    context: dict
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0


class PlanCursor:
    """The rest of the current plan, walked in order."""

    def __init__(self):
        self.rest: deque[Subgoal] = deque()

    def load(self, subgoals) -> None:
        self.rest = deque(subgoals)

    def clear(self) -> None:
        self.rest.clear()

    def next(self, ctx: PlanContext, catalog) -> Subgoal | None:
        """The plan's next subgoal if it can start now; an empty cursor (and None) if it cannot:
        the plan no longer fits what the agent sees."""
        if not self.rest:
            return None
        subgoal = self.rest.popleft()
        if subgoal.skill not in catalog or not ready(catalog[subgoal.skill], ctx):
            self.clear()
            return None
        return subgoal


@dataclass
class EpisodeState:
    obs: Observation
    # The game's counters: its task-success signal, for the episode's result and the task's
    # end only (envs/base.py). Nothing the agent decides with reads them.
    achievements: dict[str, int]
    achieved: set[str] = field(default_factory=set)  # skills the agent saw itself do (agent/loop/achieved.py)
    steps: int = 0
    reward: float = 0.0
    over: bool = False
    died: bool = False
    failures: dict[str, int] = field(default_factory=dict)
    outcomes: list[tuple[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    decided_by: list[str] = field(default_factory=list)
    segment_steps: list[int] = field(default_factory=list)
    path_steps: dict[str, int] = field(default_factory=lambda: {"slow": 0, "fast": 0})
    act_s: dict[str, float] = field(default_factory=lambda: {"slow": 0.0, "fast": 0.0})
    segment_s: list[float] = field(default_factory=list)  # wall seconds per segment
    corrections: int = 0
    ask_planner: bool = False  # the last subgoal failed: the planner answers next
    rejected: str | None = None  # the memory's subgoal that failed, for the planner's answer to correct
    calls: int = 0
    planner_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    fallbacks: int = 0

    def charge(self, decision: Decision) -> None:
        """Count what a decision cost the planner."""
        self.calls += decision.calls
        self.planner_s += decision.seconds
        self.tokens_in += decision.tokens_in
        self.tokens_out += decision.tokens_out
        self.fallbacks += decision.decided_by == "fallback"

    def advance(self, res, seen: set[str] = frozenset()) -> None:
        self.obs = res.observation
        self.achieved |= seen
        self.steps += 1
        self.reward += res.reward
        self.achievements = dict(res.info.get("achievements", self.achievements))
        self.over = res.terminated or res.truncated
        self.died = res.terminated

    def unlocked(self, skill: str) -> bool:
        """The game's verdict on a task goal (its counters), for success and the task's end."""
        return self.achievements.get(skill, 0) > 0
