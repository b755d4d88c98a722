"""The in-process episode runner: the two-level loop of DESIGN.md, recorded segment by segment.

A plain class (no Ray here): `Runner(env, planner, recorder).run(task, seeds)`; `agent/services/pool.py`
alone wraps it for Ray. Two decisions repeat until the task is done:

1. **Which subgoal next.** A survival reflex first (a cheap rule, never the planner). Then the
   plan cursor: the rest of the last plan, walked in order while each subgoal's preconditions
   hold (`agent.planners.planner.ready`). When the cursor is empty or breaks, the plan-level memory
   proposes the next subgoal, if the arbiter trusts it for this task; otherwise, and always
   right after a failed subgoal, the slow planner makes a new plan (the expensive call).
2. **How to act on it.** The fast path's policy or the deliberate executor, as the arbiter
   decides; a fast failure is corrected by the slow path from that very state.

Every decision's cost is counted where it is paid (planner calls, tokens and seconds; executor
and fast-path seconds) and stored with its segment, with the agent-visible context it was made
in: the plan-level memory learns "which subgoal next" from those.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

import numpy as np

from agent.loop.achieved import seen_done
from agent.loop.arbiter import Arbiter, ProgressMonitor
from agent.loop.episode import Decision, EpisodeResult, EpisodeState, PlanCursor
from agent.loop.executor import DeliberateExecutor
from agent.planners.planner import Plan, PlanContext, Planner, Subgoal, SymbolicPlanner, ready
from envs.base import Env
from envs.catalog import Skill
from envs.errors import GameCrashedError
from envs.tasks import Task
from memory import columns as C
from memory.plan_policy import plan_category

KNOWN_RADIUS = 20  # cells: what the planner may treat as "remembered nearby" (a short walk)
DEFAULT_BUDGET = 600  # steps of one attempt, for a skill whose game gives no figure


class Recorder(Protocol):
    """What the runner needs of the store (memory.store.Store implements it)."""

    def start_episode(self, run_id: int, *, env: str, task: str, seed: int) -> int: ...
    def add_segment(self, episode_id: int, seg) -> int: ...
    def finish_episode(self, episode_id: int, **kw) -> None: ...


def segment_budget(skill: Skill) -> int:
    """Steps the slow path may spend on one attempt before it counts as a timeout: the game's
    own figure for the skill (envs/), else `DEFAULT_BUDGET`."""
    return DEFAULT_BUDGET if skill.budget is None else skill.budget


class Runner:
    def __init__(self, env: Env, planner: Planner | None = None, recorder: Recorder | None = None,
                 run_id: int | None = None, on_step: Callable[[int], None] | None = None,
                 arbiter: Arbiter | None = None, shadow: bool = False, cursor: bool = True):
        self.env = env
        # The plan cursor: walk the planner's plan instead of asking again at every subgoal.
        # Off only to measure what it saves (benchmarks: the slow agent "before the cursor").
        self.cursor = cursor
        self.catalog = env.catalog
        self.planner = planner or SymbolicPlanner(self.catalog)
        # Survival reflexes, arming and stocking stone are cheap rules every planner shares (the
        # LLM planners answer them without asking the model): the runner applies them itself.
        self.reflexes = self.planner if isinstance(self.planner, SymbolicPlanner) else SymbolicPlanner(self.catalog)
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
        self.executor = DeliberateExecutor(self.catalog, env.cell_names, tuple(env.walkable))

    def run(self, task: Task, seeds: list[int]) -> list[EpisodeResult]:
        return [self.run_episode(task, s) for s in seeds]

    def run_episode(self, task: Task, seed: int) -> EpisodeResult:
        episode_id = None
        if self.recorder is not None:
            episode_id = self.recorder.start_episode(self.run_id, env=self.env.name, task=task.name, seed=seed)
        t0 = time.perf_counter()
        try:
            result = self._play(task, seed, episode_id)
        except Exception as exc:  # a crash is recorded, never dropped
            if self.recorder is not None:
                self.recorder.finish_episode(episode_id, status="failed", steps=0, reward=0.0,
                                             achievements={}, error=f"{type(exc).__name__}: {exc}")
            if isinstance(exc, GameCrashedError):  # the game died, not the agent: the run goes on
                return EpisodeResult(seed, episode_id, False, 0, 0.0, [], False, 0, 0, error=str(exc),
                                     wall_s=time.perf_counter() - t0)
            raise
        result.wall_s = time.perf_counter() - t0
        if self.recorder is not None:
            self.recorder.finish_episode(
                episode_id, status="success" if result.success else "failure", steps=result.steps,
                reward=result.reward, achievements={k: 1 for k in result.unlocked},
                planner_calls=result.planner_calls, planner_tokens=result.tokens_in + result.tokens_out,
                planner_tokens_in=result.tokens_in, planner_tokens_out=result.tokens_out,
                planner_latency_s=result.planner_s, memory_decisions=result.memory_decisions,
                planner_fallbacks=result.fallbacks, executor_s=result.executor_s,
                fast_s=result.fast_s, wall_s=result.wall_s)
        return result

    # -- the episode --------------------------------------------------------------------------

    def _play(self, task: Task, seed: int, episode_id: int | None) -> EpisodeResult:
        obs, info = self.env.reset(seed=seed)
        self.executor.reset(seed)
        if self.arbiter.fast is not None:
            self.arbiter.fast.reset(seed, self.executor.memory)
        self.executor.observe(obs, None)
        state = EpisodeState(obs=obs, achievements=dict(info.get("achievements", {})))
        cursor = PlanCursor()
        while state.steps < task.max_steps and not state.over:
            decision = self._decide(task, state, cursor)
            if decision is None:
                break
            skill = self.catalog[decision.skill]
            state.charge(decision)
            path = self.arbiter.path_for(skill, danger=self._danger(state))
            before = state.steps
            outcome, seg_id = self._attempt(task, skill, state, decision, path, episode_id)
            if path == "fast":
                self.arbiter.record(skill, outcome, state.steps - before, state.segment_s[-1])
            if path == "fast" and outcome in ("failure", "timeout") and not state.over:
                # The slow path corrects from this very state: a failure–correction pair.
                state.corrections += 1
                outcome, _ = self._attempt(task, skill, state, None, "slow", episode_id, corrects=seg_id)
            if decision.decided_by == "memory":
                self.arbiter.record_plan(task.name, outcome)
            if outcome != "success":
                cursor.clear()  # the plan no longer holds: decide afresh
                if outcome != "interrupted":  # a failure goes to the planner
                    state.failures[skill.name] = state.failures.get(skill.name, 0) + 1
                    state.ask_planner = True
                    state.rejected = skill.name if decision.decided_by == "memory" else None
            if not task.open_ended and all(state.unlocked(g) for g in task.goals):
                break
        unlocked = sorted(k for k, v in state.achievements.items() if v > 0)
        return EpisodeResult(
            seed=seed, episode_id=episode_id, success=all(state.unlocked(g) for g in task.goals),
            steps=state.steps, reward=state.reward, unlocked=unlocked, died=state.died,
            segments=len(state.outcomes), planner_calls=state.calls, outcomes=state.outcomes,
            paths=state.paths, segment_steps=state.segment_steps, segment_s=state.segment_s, fast_steps=state.path_steps["fast"],
            slow_steps=state.path_steps["slow"], corrections=state.corrections,
            planner_s=state.planner_s, tokens_in=state.tokens_in, tokens_out=state.tokens_out,
            executor_s=state.act_s["slow"], fast_s=state.act_s["fast"], decided_by=state.decided_by,
            fallbacks=state.fallbacks)

    # -- which subgoal next -------------------------------------------------------------------

    def _context(self, task: Task, state: EpisodeState) -> PlanContext:
        mem = self.executor.memory
        return PlanContext(
            task=task, inventory=dict(state.obs.inventory),
            achieved=frozenset(state.achieved),
            known=mem.known_kinds(KNOWN_RADIUS), in_sight=mem.known_kinds(4),
            failures=dict(state.failures),
            previous=state.outcomes[-1][0] if state.outcomes else None,
            daylight=state.obs.daylight)

    def _decide(self, task: Task, state: EpisodeState, cursor: PlanCursor) -> Decision | None:
        """The next subgoal: a reflex, the plan cursor, the plan-level memory or the planner, in
        that order of cost; None when the task needs nothing more."""
        ctx = self._context(task, state)
        record = ctx.as_record()
        reflex = self.reflexes.urgent(ctx)
        if reflex is not None:
            return Decision(reflex.skill, "reflex", record)
        subgoal = cursor.next(ctx, self.catalog)
        if subgoal is not None:
            return Decision(subgoal.skill, "cursor", record)
        if not state.ask_planner:
            proposal = self.arbiter.propose(task.name, plan_category(task.name, self.catalog), record)
            if proposal is not None and ready(self.catalog[proposal.subgoals[0]], ctx):
                cursor.load(Subgoal(s, "memory") for s in proposal.subgoals[1:])
                return Decision(proposal.subgoals[0], "memory", {**record, "confidence": round(proposal.confidence, 4)})
        state.ask_planner = False
        plan, decided_by = self._ask(ctx)
        if state.rejected is not None:  # the memory's failed choice: a plan-level preference pair
            record["rejected"], state.rejected = state.rejected, None
        record["plan"] = [s.skill for s in plan.subgoals]
        decision = Decision("", decided_by, record, plan.calls, plan.tokens_in, plan.tokens_out, plan.latency_s)
        if not plan.subgoals:
            if not task.open_ended:
                state.charge(decision)
                return None
            idle = _idle_subgoal(state.obs.inventory, self.catalog)
            if idle is None:  # the game names nothing to do when idle: the episode is over
                state.charge(decision)
                return None
            plan = Plan([idle])
        if self.cursor:
            cursor.load(plan.subgoals[1:])
        decision.skill = plan.subgoals[0].skill
        return decision

    def _ask(self, ctx: PlanContext) -> tuple[Plan, str]:
        """The slow planner's plan, counted. A plan that names a skill outside the catalog (or
        is empty while the task is not done) is replaced by the symbolic plan, counted as a
        fallback: one bad answer never stops the agent."""
        plan = self.planner.plan(ctx)
        calls = plan.calls if not isinstance(self.planner, SymbolicPlanner) else 1
        plan.calls = calls
        unusable = (not isinstance(plan.subgoals, list)
                    or any(getattr(s, "skill", None) not in self.catalog for s in plan.subgoals)
                    or (not plan.subgoals and self.reflexes.next_goal(ctx) is not None))
        if unusable or plan.fallback:
            if unusable:
                symbolic = self.reflexes.plan(ctx)
                plan = Plan(symbolic.subgoals, calls=calls, tokens=plan.tokens, latency_s=plan.latency_s,
                            tokens_in=plan.tokens_in, tokens_out=plan.tokens_out, fallback=True)
            return plan, "fallback"
        return plan, "planner"

    # -- how to act ---------------------------------------------------------------------------

    def _attempt(self, task, skill, state, decision: Decision | None, path, episode_id, corrects=None):
        """One segment on one path, recorded; returns its outcome and its store id. A correction
        (`decision` None) is the same decision's second attempt: it costs no new planning."""
        before = state.steps
        outcome, record = self._segment(task, skill, state, path)
        state.outcomes.append((skill.name, outcome))
        state.paths.append(path)
        state.decided_by.append(decision.decided_by if decision else "cursor")
        state.segment_steps.append(state.steps - before)
        state.path_steps[path] += state.steps - before
        seg_id = None
        if self.recorder is not None and record is not None:
            record.corrects_segment_id = corrects
            if decision is not None:
                record.decided_by, record.context = decision.decided_by, decision.context
                record.planner_calls, record.planner_s = decision.calls, decision.seconds
                record.planner_tokens = decision.tokens_in + decision.tokens_out
            else:
                record.decided_by = "cursor"
            seg_id = self.recorder.add_segment(episode_id, record)
        return outcome, seg_id

    def _segment(self, task: Task, skill: Skill, state: EpisodeState, path: str = "slow"):
        from memory.store import SegmentRecord  # the store's record type; SQLAlchemy-free import

        start_step, t0 = state.steps, time.perf_counter()
        views, maps, invs, facings, actions, rewards, teachers = [], [], [], [], [], [], []
        outcome = "timeout"
        budget = segment_budget(skill)
        fast = self.arbiter.fast
        if path == "fast":
            budget = self.arbiter.fast_budget(skill, budget)
            act, monitor = fast.act, ProgressMonitor(state.obs)
        else:
            act, monitor = self.executor.act, None
        acting = 0.0
        for _ in range(min(budget, task.max_steps - state.steps)):
            obs = state.obs
            t_act = time.perf_counter()
            name = act(obs, skill)
            acting += time.perf_counter() - t_act
            if path == "fast" and self.shadow:  # what the slow path would do here (DAgger's label)
                teachers.append(self.action_index[self.executor.act(obs, skill)])
            views.append(obs.local_view)
            maps.append(self.executor.memory.crop(C.MAP_RADIUS))
            invs.append([obs.inventory.get(k, 0) for k in self.items])
            facings.append(obs.facing)
            actions.append(self.action_index[name])
            res = self.env.step(self.action_index[name])
            self.executor.observe(res.observation, name)
            seen = seen_done(self.catalog, self.env.cell_names, obs, res.observation, res.reward)
            state.advance(res, seen)
            rewards.append(res.reward)
            if self.on_step is not None:
                self.on_step(1)
            if skill.name in seen:  # success as the agent sees it, never the game's counter
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
            if path == "fast" and fast.done():
                outcome = "failure"  # the policy believes the subgoal done, the game shows no success
                break
            if path == "fast" and self._danger(state):
                outcome = "interrupted"  # the slow path's reflexes and shelters take over
                break
        state.act_s[path] += acting
        state.segment_s.append(time.perf_counter() - t0)
        data = {C.VIEW: np.asarray(views, np.int16), C.MAP: np.asarray(maps, np.int16),
                C.INVENTORY: np.asarray(invs, np.int16), C.FACING: np.asarray(facings, np.int8),
                C.ACTION: np.asarray(actions, np.int16), C.REWARD: np.asarray(rewards, np.float32)}
        if path == "fast" and self.shadow:
            data[C.TEACHER] = np.asarray(teachers, np.int16)
        record = SegmentRecord(
            skill=skill.name, category=skill.category, path=path, outcome=outcome,
            start_step=start_step, steps=state.steps - start_step,
            wall_s=time.perf_counter() - t0, data=data)
        return outcome, record

    def _danger(self, state: EpisodeState) -> bool:
        """A hostile creature within reach, or health too low for one more mistake (the game's
        `danger_radius` and `low_health`): the fast path knows no reflexes, so the arbiter keeps
        it out (agent/loop/arbiter.py)."""
        k = self.catalog.knowledge
        return (self.executor.hostile_near(k.danger_radius)
                or state.obs.inventory.get(k.health, k.low_health) < k.low_health)

    def _interrupted(self, task: Task, skill: Skill, state: EpisodeState) -> bool:
        """A survival need pre-empts any other subgoal (the reflexes' `urgent` rule)."""
        if state.obs.sleeping:
            return False
        ctx = PlanContext(task=task, inventory=dict(state.obs.inventory), daylight=state.obs.daylight)
        need = self.reflexes.urgent(ctx)
        return need is not None and need.skill != skill.name


def _idle_subgoal(inventory: dict[str, int], catalog) -> Subgoal | None:
    """An open-ended episode with every goal met: keep the game's `idle` items stocked, the
    first one short of its count, else the last; None where the game names none."""
    stock = [item for item, _ in catalog.knowledge.idle if catalog.producers(item)]
    if not stock:
        return None
    short = [item for item, n in catalog.knowledge.idle if item in stock and inventory.get(item, 0) < n]
    return Subgoal(catalog.producers((short or stock[-1:])[0])[0].name, "idle")
