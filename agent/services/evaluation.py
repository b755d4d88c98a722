"""Measuring the fast path in the game, on held-out seeds.

Action level: each skill played as a task, the fast path forced on that skill alone (its
prerequisites on the slow path, which also corrects a failure); a skill's success is the share
of its fast-path attempts that succeeded. Plan level: each task played with the plan-level
memory proposing wherever it is sure and the executor acting; what counts is the task's
success (achievements, for the open-ended task) and the planner calls it saved."""

from __future__ import annotations

from pathlib import Path

from agent.loop.arbiter import Arbiter
from agent.loop.fast_path import FastPolicy
from memory.registry import ExpertRef
from agent.loop.runner import Runner
from envs import make_env
from envs.tasks import resolve_task

EVAL_SEED_BASE = 1_000_000  # held out: runs and benchmarks use small seeds
PRACTICE_SEED_BASE = 2_000_000  # consolidation's practice rounds: neither the gate's nor a run's
EVAL_STEPS = 400  # an evaluation episode's step limit: enough for the short skills


def fast_success(store, models_dir: str | Path, game: str, refs: list[ExpertRef],
                 skills: list[str], episodes: int, device: str = "cpu",
                 max_steps: int = EVAL_STEPS) -> dict[str, dict]:
    """{skill: {"attempts", "successes", "rate", "steps"}} for the experts `refs` over `episodes` seeds."""
    return measure_fast(FastPolicy(models_dir, refs, device, seed=0), store, make_env(game),
                        skills, episodes, max_steps)


def measure_fast(fast, store, env, skills: list[str], episodes: int,
                 max_steps: int = EVAL_STEPS) -> dict[str, dict]:
    """Any fast path's (experts, a skill library) held-out success per skill: the fast path
    forced on the measured skill alone, the slow path doing its prerequisites and correcting;
    a skill's rate is the share of its fast-path attempts that succeeded, "steps" what those
    attempts cost in all (what the arbiter weighs against the slow path). Forcing the fast
    path on the prerequisites too made the measure of one skill hang on the others: a weak
    collect_wood expert used up the episode before collect_stone was ever attempted (1 attempt
    in 4 episodes), and another category's new expert changed an old skill's score."""
    runner = Runner(env, arbiter=Arbiter.from_store(fast, store, env.name))
    out = {}
    for skill in skills:
        runner.arbiter.force_fast = frozenset({skill})
        attempts = successes = steps = 0
        seconds = 0.0
        task = resolve_task(skill, env.catalog, max_steps)
        for i in range(episodes):
            result = runner.run_episode(task, EVAL_SEED_BASE + i)
            for (name, outcome), path, n, t in zip(result.outcomes, result.paths, result.segment_steps,
                                                  result.segment_s):
                if name == skill and path == "fast" and outcome != "interrupted":
                    attempts += 1
                    successes += outcome == "success"
                    steps += n
                    seconds += t
        out[skill] = {"attempts": attempts, "successes": successes, "steps": steps, "seconds": seconds,
                      "rate": successes / attempts if attempts else 0.0}
    return out


def plan_success(store, models_dir: str | Path | None, game: str, refs: list[ExpertRef] | None,
                 tasks: list[str], episodes: int, device: str = "cpu",
                 seed_base: int = EVAL_SEED_BASE) -> dict[str, dict]:
    """{task: {"episodes", "successes", "unlocked", "proposals", "proposal_successes", "calls"}}
    for the plan experts `refs` (None: the slow agent alone, with its plan cursor) over
    `episodes` held-out seeds per task, the executor acting."""
    env = make_env(game)
    fast = FastPolicy(models_dir, [], device, plan_experts=refs) if refs else None
    return measure_plans(fast, store, env, tasks, episodes, seed_base)


def measure_plans(fast, store, env, tasks: list[str], episodes: int,
                  seed_base: int = EVAL_SEED_BASE) -> dict[str, dict]:
    """Any plan-level memory's (or none's) held-out record per task; see `plan_success`."""
    runner = Runner(env, arbiter=Arbiter(fast, force_plan=fast is not None))
    out = {}
    for task_name in tasks:
        task = resolve_task(task_name, env.catalog)
        row = {"episodes": 0, "successes": 0, "unlocked": 0, "proposals": 0, "proposal_successes": 0,
               "calls": 0}
        for i in range(episodes):
            result = runner.run_episode(task, seed_base + i)
            row["episodes"] += 1
            row["successes"] += result.success
            row["unlocked"] += len(result.unlocked)
            row["calls"] += result.planner_calls
            for (_, outcome), by in zip(result.outcomes, result.decided_by):
                if by == "memory" and outcome != "interrupted":
                    row["proposals"] += 1
                    row["proposal_successes"] += outcome == "success"
        out[task_name] = row
    return out


def practise_fast(store, models_dir: str | Path, game: str, refs: list[ExpertRef], skills: list[str],
                  episodes: int, *, seed: int, device: str = "cpu", max_steps: int = EVAL_STEPS,
                  label: str = "practice") -> int:
    """A DAgger round: each skill as a task on `episodes` practice seeds from `seed`, the fast
    path (the candidate among `refs`) forced on the category's skills, the slow path shadowing
    it and correcting its failures; everything is recorded in the store as a run of its own.
    Returns how many fast-path steps were recorded with the slow path's label."""
    env = make_env(game)
    fast = FastPolicy(models_dir, refs, device, seed=seed)
    run_id = store.start_run(env=game, task=label, planner="symbolic", memory_mode="peam",
                             config={"practice": True, "skills": skills, "episodes": episodes})
    runner = Runner(env, recorder=store, run_id=run_id, shadow=True,
                    arbiter=Arbiter.from_store(fast, store, game, force_fast=frozenset(skills)))
    steps = 0
    try:
        for j, skill in enumerate(skills):
            task = resolve_task(skill, env.catalog, max_steps)
            for i in range(episodes):
                steps += runner.run_episode(task, seed + 100 * j + i).fast_steps
    except BaseException:
        store.finish_run(run_id, "failed")
        raise
    store.finish_run(run_id, "finished")
    return steps


def run_job(store, job, heartbeat, *, device: str = "cpu", models_dir: str | Path | None = None,
            episodes: int = 4, config=None, eval_steps: int = EVAL_STEPS, plan_config=None):
    """The worker's `process`: the consolidation pipeline of the job's kind with the game-side
    evaluator. `config` (a ConsolidationConfig), `plan_config` (a PlanJobConfig) and
    `eval_steps` shrink the budgets, for tests."""
    from consolidation.pipeline import ConsolidationConfig, run_pipeline
    from consolidation.worker import check_device
    from memory.db import data_home

    check_device(device)  # a worker without the device gives the job back instead of failing it
    models = Path(models_dir) if models_dir else data_home() / "models"
    if job.kind == "plan":
        from consolidation.plan_pipeline import PlanJobConfig, run_plan_pipeline
        from consolidation.plan_training import PlanTrainingConfig

        def evaluate_plans(refs, tasks, n):
            return plan_success(store, models, job.game, refs, tasks, n, device)

        plan_config = plan_config or PlanJobConfig(eval_episodes=episodes,
                                                   training=PlanTrainingConfig(device=device))
        return run_plan_pipeline(store, job, heartbeat, evaluate=evaluate_plans, models_dir=models,
                                 config=plan_config)

    def evaluate(refs, skills, n):
        return fast_success(store, models, job.game, refs, skills, n, device, eval_steps)

    def practise(refs, skills, n, round_):
        return practise_fast(store, models, job.game, refs, skills, n, device=device, max_steps=eval_steps,
                             seed=PRACTICE_SEED_BASE + 10_000 * job.id + 1_000 * round_,
                             label=f"practice: job #{job.id}, round {round_}")

    return run_pipeline(store, job, heartbeat, evaluate=evaluate, models_dir=models, practise=practise,
                        config=config or ConsolidationConfig(device=device, eval_episodes=episodes,
                                                             practice_episodes=2 * episodes))
