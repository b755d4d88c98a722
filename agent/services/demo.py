"""`peam demo`: the whole loop on a small budget.

1. The slow agent (symbolic planner + deliberate executor, walking each plan with its cursor)
   practises a ladder of tasks; every planner call is counted.
2. Consolidation: per skill category practised, an isolated action expert; per task category,
   an isolated plan expert that answers "which subgoal next" instead of the planner. Each is
   measured in the game against the current state of the art (for plans: the slow agent on the
   same seeds) and promoted only if it is not worse.
3. The agent plays the ladder again, on new seeds: the plan-level memory chooses the subgoals
   it is sure of (the planner is asked only where it is not, or after a failure), and the fast
   policy acts where it costs no more than the executor.
4. `peam skills` shows slow and fast success side by side; `peam dashboard` shows the rest.
"""

from __future__ import annotations

from rich.console import Console

from agent.loop.arbiter import Arbiter
from agent.loop.runner import Runner
from envs import make_env
from envs.tasks import resolve_task

DEMO_LADDER = ("collect_wood", "place_table", "make_wood_pickaxe", "collect_drink",
               "collect_stone", "make_stone_pickaxe")


def _play(store, env, arbiter, episodes: int, seed0: int, console: Console, label: str) -> dict:
    """Play the ladder; returns {task: (successes, planner calls)} and prints a line per task."""
    run_id = store.start_run(env=env.name, task="demo ladder", planner="symbolic",
                             memory_mode="peam", config={"phase": label})
    runner = Runner(env, recorder=store, run_id=run_id, arbiter=arbiter)
    out = {}
    for i, name in enumerate(DEMO_LADDER):
        results = runner.run(resolve_task(name, env.catalog), [seed0 + 100 * i + k for k in range(episodes)])
        fast = sum(r.fast_steps for r in results)
        steps = sum(r.steps for r in results)
        wins = sum(r.success for r in results)
        calls = sum(r.planner_calls for r in results)
        by_memory = sum(r.memory_decisions for r in results)
        corrected = sum(r.corrections for r in results)
        out[name] = (wins, calls)
        console.print(f"  {name:<19} {wins}/{len(results)} succeeded, {steps:>4} steps, planner calls {calls:>2} "
                      f"({1000 * sum(r.planner_s for r in results):.1f} ms), subgoals by memory {by_memory:>2}, "
                      f"fast path {100 * fast / max(steps, 1):3.0f}% of steps"
                      + (f", {corrected} corrected" if corrected else ""))
    store.finish_run(run_id, "finished")
    return out


def _consolidate(store, env, models_dir, console: Console) -> None:
    from agent.services.evaluation import run_job
    from consolidation.queue import enqueue
    from consolidation.worker import Worker

    from memory.plan_policy import plan_category

    for category in sorted({env.catalog[s].category for s in DEMO_LADDER}):
        enqueue(store, game=env.name, category=category, reason="demo")
    for category in sorted({plan_category(s, env.catalog) for s in DEMO_LADDER}):
        enqueue(store, game=env.name, category=category, reason="demo", kind="plan")
    worker = Worker(store, lambda job, beat: run_job(store, job, beat, models_dir=models_dir, episodes=3),
                    lease_s=600, name="demo-worker")
    with console.status("training and evaluating experts…"):
        while (job := worker.run_once()) is not None:
            m = job.metrics or {}
            cand, cur = m.get("candidate_success"), m.get("current_success")
            if m.get("kind") == "plan" and "candidate_score" in m:
                detail = (f"held-out score {m['candidate_score']} vs the slow agent's {m['slow_score']} "
                          f"({m['proposals']} subgoals proposed), {m.get('decisions', 0)} planner "
                          f"decisions, {m.get('train_seconds', 0):.0f} s training")
            elif cand is not None:
                detail = (f"held-out fast success {100 * cand:.0f}% vs current {100 * cur:.0f}%, "
                          f"{m.get('samples', 0)} samples, {m.get('train_seconds', 0):.0f} s training")
            else:
                detail = job.error or ""
            console.print(f"  job #{job.id} {job.target:<18} [bold]{job.status}[/] — {detail}")


def demo(db: str | None = None, episodes: int = 2, console: Console | None = None) -> None:
    from agent.services.memory_modes import expert_fast_path
    from agent.services.views import jobs_table, skills_table
    from memory.db import data_home
    from memory.store import Store

    console = console or Console()
    store = Store.open(db)
    env = make_env("crafter")
    store.sync_skills(env.catalog)
    models_dir = data_home() / "models"
    console.rule("[bold]1 · the slow agent practises")
    before = _play(store, env, Arbiter(), episodes, 0, console, "practice")
    console.rule("[bold]2 · consolidation: isolated experts for acting and for choosing subgoals")
    _consolidate(store, env, models_dir, console)
    console.rule("[bold]3 · the agent again, on new seeds: the memory takes over what was consolidated")
    fast = expert_fast_path("peam", store, env.name, models_dir)
    acting = sorted(fast.index) if fast else []
    planning = sorted(fast.plan_experts) if fast else []
    console.print(f"  promoted experts: acting {', '.join(acting) or 'none'}; "
                  f"choosing subgoals {', '.join(planning) or 'none'}")
    after = _play(store, env, Arbiter.from_store(fast, store, env.name), episodes, 50_000, console,
                  "after consolidation")
    calls = (sum(c for _, c in before.values()), sum(c for _, c in after.values()))
    wins = (sum(w for w, _ in before.values()), sum(w for w, _ in after.values()))
    console.print(f"  [bold]planner calls {calls[0]} -> {calls[1]}[/] "
                  f"({100 * (1 - calls[1] / max(calls[0], 1)):.0f}% fewer); "
                  f"successes {wins[0]} -> {wins[1]} of {episodes * len(DEMO_LADDER)}")
    console.rule("[bold]4 · what the agent knows (`peam skills`, `peam jobs`)")
    console.print(skills_table(store.skill_table(env.name)))
    from consolidation.queue import jobs

    console.print(jobs_table(jobs(store, 10)))
    console.print(f"Data: {store.url}; experts under {models_dir}. "
                  "Next: `peam dashboard`, `peam run --task make_iron_pickaxe`.")
