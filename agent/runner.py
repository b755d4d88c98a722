"""The in-process episode runner: plan, execute subgoal by subgoal, record every segment.

A plain class (no Ray here): `Runner(make_env, planner, recorder).run(task, seeds)`.
`agent/pool.py` alone wraps it for Ray.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from agent.arbiter import Arbiter, ProgressMonitor
from agent.executor import DeliberateExecutor
from agent.planner import LOW_HEALTH, Plan, PlanContext, Planner, SymbolicPlanner
from envs.base import Env, Observation
from envs.catalog import Skill
from envs.tasks import Task
from memory import columns as C

KNOWN_RADIUS = 20  # cells: what the planner may treat as "remembered nearby" (a short walk)
DANGER_RADIUS = 3  # steps: a zombie this close reaches us within a step or two; an arrow flies 4


class Recorder(Protocol):
    """What the runner needs of the store (memory.store.Store implements it)."""

    def start_episode(self, run_id: int, *, env: str, task: str, seed: int) -> int: ...
    def add_segment(self, episode_id: int, seg) -> int: ...
    def finish_episode(self, episode_id: int, **kw) -> None: ...


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
    fast_steps: int = 0
    slow_steps: int = 0
    corrections: int = 0  # fast-path failures the slow path took over


def segment_budget(skill: Skill) -> int:
    """Steps the slow path may spend on one attempt before it counts as a timeout: the game's
    own figure for the skill when it has one (envs/), else by kind."""
    if skill.budget is not None:
        return skill.budget
    if skill.requires and skill.target:  # mountain resources: coal, iron, diamond, stone
        return 1_200
    return 600


class Runner:
    def __init__(self, env: Env, planner: Planner | None = None, recorder: Recorder | None = None,
                 run_id: int | None = None, on_step: Callable[[int], None] | None = None,
                 arbiter: Arbiter | None = None, shadow: bool = False):
        self.env = env
        self.catalog = env.catalog
        self.planner = planner or SymbolicPlanner(self.catalog)
        self.symbolic = self.planner if isinstance(self.planner, SymbolicPlanner) else SymbolicPlanner(self.catalog)
        self.recorder = recorder
        self.run_id = run_id
        self.on_step = on_step
        self.arbiter = arbiter or Arbiter()
        # The slow path shadows the fast one: at every fast step, what it would have done there
        # is recorded too (DAgger's label; consolidation's practice rounds). Off in runs: it
        # costs a slow-path decision per fast step.
        self.shadow = shadow
        self.items = list(self.catalog.items)
        self.action_index = {n: i for i, n in enumerate(env.action_names)}
        walkable = tuple(getattr(env, "walkable", ("grass", "sand", "path")))
        self.executor = DeliberateExecutor(self.catalog, env.cell_names, walkable)

    def run(self, task: Task, seeds: list[int]) -> list[EpisodeResult]:
        return [self.run_episode(task, s) for s in seeds]

    def run_episode(self, task: Task, seed: int) -> EpisodeResult:
        episode_id = None
        if self.recorder is not None:
            episode_id = self.recorder.start_episode(self.run_id, env=self.env.name, task=task.name, seed=seed)
        try:
            result = self._play(task, seed, episode_id)
        except Exception as exc:  # a crash is recorded, never dropped
            if self.recorder is not None:
                self.recorder.finish_episode(episode_id, status="failed", steps=0, reward=0.0,
                                             achievements={}, error=f"{type(exc).__name__}: {exc}")
            raise
        if self.recorder is not None:
            self.recorder.finish_episode(
                episode_id, status="success" if result.success else "failure", steps=result.steps,
                reward=result.reward, achievements={k: 1 for k in result.unlocked},
                planner_calls=result.planner_calls, planner_tokens=self._tokens,
                planner_latency_s=self._latency)
        return result

    def _play(self, task: Task, seed: int, episode_id: int | None) -> EpisodeResult:
        obs, info = self.env.reset(seed=seed)
        self.executor.reset(seed)
        if hasattr(self.arbiter.fast, "reset"):
            self.arbiter.fast.reset(seed)
        self.executor.observe(obs, None)
        self._tokens, self._latency = 0, 0.0
        state = _EpisodeState(obs=obs, achievements=dict(info.get("achievements", {})))
        calls = 0
        while state.steps < task.max_steps and not state.over:
            plan = self._plan(task, state)
            plan_calls = plan.calls if not isinstance(self.planner, SymbolicPlanner) else 1
            calls += plan_calls
            if not plan.subgoals:
                if not task.open_ended:
                    break
                plan = Plan([_idle_subgoal(self.catalog, state)])
            skill = self.catalog[plan.subgoals[0].skill]
            path = self.arbiter.path_for(skill, danger=self._danger(state))
            before = state.steps
            outcome, seg_id = self._attempt(task, skill, state, plan_calls, path, episode_id)
            if path == "fast":
                self.arbiter.record(skill, outcome, state.steps - before)
            if path == "fast" and outcome in ("failure", "timeout") and not state.over:
                # The slow path corrects from this very state: a failure–correction pair.
                state.corrections += 1
                outcome, _ = self._attempt(task, skill, state, 0, "slow", episode_id, corrects=seg_id)
            if outcome != "success":
                state.failures[skill.name] = state.failures.get(skill.name, 0) + 1
            if not task.open_ended and all(state.unlocked(g) for g in task.goals):
                break
        unlocked = sorted(k for k, v in state.achievements.items() if v > 0)
        return EpisodeResult(
            seed=seed, episode_id=episode_id, success=all(state.unlocked(g) for g in task.goals),
            steps=state.steps, reward=state.reward, unlocked=unlocked, died=state.died,
            segments=len(state.outcomes), planner_calls=calls, outcomes=state.outcomes,
            paths=state.paths, segment_steps=state.segment_steps, fast_steps=state.path_steps["fast"], slow_steps=state.path_steps["slow"],
            corrections=state.corrections)

    def _attempt(self, task, skill, state, calls, path, episode_id, corrects=None):
        """One segment on one path, recorded; returns its outcome and its store id."""
        before = state.steps
        outcome, record = self._segment(task, skill, state, calls, path)
        state.outcomes.append((skill.name, outcome))
        state.paths.append(path)
        state.segment_steps.append(state.steps - before)
        state.path_steps[path] += state.steps - before
        seg_id = None
        if self.recorder is not None and record is not None:
            record.corrects_segment_id = corrects
            seg_id = self.recorder.add_segment(episode_id, record)
        return outcome, seg_id

    def _plan(self, task: Task, state: "_EpisodeState") -> Plan:
        mem = self.executor.memory
        ctx = PlanContext(
            task=task, inventory=dict(state.obs.inventory),
            unlocked=frozenset(k for k, v in state.achievements.items() if v > 0),
            known=mem.known_kinds(KNOWN_RADIUS), in_sight=mem.known_kinds(4),
            failures=dict(state.failures),
            previous=state.outcomes[-1][0] if state.outcomes else None,
            daylight=state.obs.daylight)
        plan = self.planner.plan(ctx)
        self._tokens += plan.tokens
        self._latency += plan.latency_s
        return plan

    def _segment(self, task: Task, skill: Skill, state: "_EpisodeState", calls: int, path: str = "slow"):
        from memory.store import SegmentRecord  # the store's record type; SQLAlchemy-free import

        start_step, t0 = state.steps, time.perf_counter()
        before = state.achievements.get(skill.achievement, 0)
        views, maps, invs, facings, actions, rewards, teachers = [], [], [], [], [], [], []
        outcome = "timeout"
        budget = segment_budget(skill)
        if path == "fast":
            budget = self.arbiter.fast_budget(skill, budget)
            if hasattr(self.arbiter.fast, "memory"):
                self.arbiter.fast.memory = self.executor.memory  # its own map, as the policy sees it
            act, monitor = self.arbiter.fast.act, ProgressMonitor(state.obs)
        else:
            act, monitor = self.executor.act, None
        for _ in range(min(budget, task.max_steps - state.steps)):
            obs = state.obs
            name = act(obs, skill)
            if path == "fast" and self.shadow:  # what the slow path would do here (DAgger's label)
                teachers.append(self.action_index[self.executor.act(obs, skill)])
            views.append(obs.local_view)
            maps.append(self.executor.memory.crop(C.MAP_RADIUS))
            invs.append([obs.inventory.get(k, 0) for k in self.items])
            facings.append(obs.facing)
            actions.append(self.action_index[name])
            res = self.env.step(self.action_index[name])
            self.executor.observe(res.observation, name)
            state.advance(res)
            rewards.append(res.reward)
            if self.on_step is not None:
                self.on_step(1)
            if state.achievements.get(skill.achievement, 0) > before:
                outcome = "success"
                break
            if state.over:
                outcome = "failure"
                break
            if self._interrupted(task, skill, state):
                outcome = "interrupted"
                break
            if monitor is not None and not monitor.update(state.obs):
                outcome = "failure"  # stuck: hand over to the slow path
                break
            if path == "fast" and self._danger(state):
                outcome = "interrupted"  # the slow path's reflexes and shelters take over
                break
        data = {C.VIEW: np.asarray(views, np.int16), C.MAP: np.asarray(maps, np.int16),
                C.INVENTORY: np.asarray(invs, np.int16), C.FACING: np.asarray(facings, np.int8),
                C.ACTION: np.asarray(actions, np.int16), C.REWARD: np.asarray(rewards, np.float32)}
        if path == "fast" and self.shadow:
            data[C.TEACHER] = np.asarray(teachers, np.int16)
        record = SegmentRecord(
            skill=skill.name, category=skill.category, path=path, outcome=outcome,
            start_step=start_step, steps=state.steps - start_step,
            wall_s=time.perf_counter() - t0, planner_calls=calls, data=data)
        return outcome, record

    def _danger(self, state: "_EpisodeState") -> bool:
        """A hostile creature within reach, or health too low for one more mistake: the fast
        path knows no reflexes, so the arbiter keeps it out (agent/arbiter.py)."""
        return (self.executor.hostile_near(DANGER_RADIUS)
                or state.obs.inventory.get("health", LOW_HEALTH) < LOW_HEALTH)

    def _interrupted(self, task: Task, skill: Skill, state: "_EpisodeState") -> bool:
        """A survival need pre-empts any other subgoal (the planner's own `urgent` rule)."""
        if state.obs.sleeping:
            return False
        ctx = PlanContext(task=task, inventory=dict(state.obs.inventory), daylight=state.obs.daylight)
        need = self.symbolic.urgent(ctx)
        return need is not None and need.skill != skill.name


@dataclass
class _EpisodeState:
    obs: Observation
    achievements: dict[str, int]
    steps: int = 0
    reward: float = 0.0
    over: bool = False
    died: bool = False
    failures: dict[str, int] = field(default_factory=dict)
    outcomes: list[tuple[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    segment_steps: list[int] = field(default_factory=list)
    path_steps: dict[str, int] = field(default_factory=lambda: {"slow": 0, "fast": 0})
    corrections: int = 0

    def advance(self, res) -> None:
        self.obs = res.observation
        self.steps += 1
        self.reward += res.reward
        self.achievements = dict(res.info.get("achievements", self.achievements))
        self.over = res.terminated or res.truncated
        self.died = res.terminated

    def unlocked(self, skill: str) -> bool:
        return self.achievements.get(skill, 0) > 0


def _idle_subgoal(catalog, state: _EpisodeState):
    """An open-ended episode with every goal met: keep stocking the most useful material."""
    from agent.planner import Subgoal

    return Subgoal("collect_wood" if state.obs.inventory.get("wood", 0) < 5 else "collect_stone", "idle")
