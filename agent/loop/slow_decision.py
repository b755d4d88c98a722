"""The slow path deciding on a game that a caller steps itself: the planner's next subgoal and
the deliberate executor's action, from what the agent sees and remembers, exactly as the
runner builds them. For benchmarks that time one decision, or let another policy act on the
subgoals the slow path chooses, without running the runner's whole episode loop."""

from __future__ import annotations

from envs.base import Env, Observation
from envs.catalog import Skill
from envs.tasks import Task


class SlowDecider:
    """`start(obs, info)` after each `env.reset`; then `context()`, `next_skill(ctx)` (None
    when the task needs nothing more) and `act(skill)`; `observe(step_result, action)` after
    each `env.step`; `fail(skill)` when an attempt at a subgoal gave up. `world` is the agent's
    own map, which the fast path reads too."""

    def __init__(self, env: Env, task: Task, planner=None):
        from agent.loop.runner import Runner

        self.env, self.task = env, task
        self._runner = Runner(env, planner)
        self._state = None  # the runner's episode state: what a plan context is built from

    def start(self, obs: Observation, info: dict | None = None) -> None:
        from agent.loop.episode import EpisodeState  # one state shape for the runner and here

        self._runner.executor.reset()
        self._runner.executor.observe(obs, None)
        self._state = EpisodeState(obs=obs, achievements=dict((info or {}).get("achievements", {})))

    @property
    def world(self):
        return self._runner.executor.memory

    @property
    def obs(self) -> Observation:
        return self._state.obs

    @property
    def steps(self) -> int:
        return self._state.steps

    @property
    def over(self) -> bool:
        return self._state.over

    def achieved(self, name: str) -> int:
        return self._state.achievements.get(name, 0)

    def failures(self, skill: str) -> int:
        return self._state.failures.get(skill, 0)

    def context(self):
        """What the planner is shown now (agent-visible only)."""
        return self._runner._context(self.task, self._state)

    def next_skill(self, ctx=None) -> Skill | None:
        plan = self._runner.planner.plan(ctx or self.context())
        return self.env.catalog[plan.subgoals[0].skill] if plan.subgoals else None

    def act(self, skill: Skill) -> str:
        return self._runner.executor.act(self._state.obs, skill)

    def observe(self, result, action: str) -> None:
        """One step's outcome: the agent's map, and what the step showed done (the agent's own
        record of what it achieved, as the runner keeps it)."""
        from agent.loop.achieved import seen_done

        seen = seen_done(self.env.catalog, self.env.cell_names, self._state.obs, result.observation, result.reward)
        self._runner.executor.observe(result.observation, action)
        self._state.advance(result, seen)

    def fail(self, skill: str) -> None:
        self._state.failures[skill] = self._state.failures.get(skill, 0) + 1
