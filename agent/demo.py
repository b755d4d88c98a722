"""`peam demo`: the whole loop on a small budget.

1. The slow agent (symbolic planner + deliberate executor) practises a ladder of skills.
2. A consolidation job per skill category practised trains an isolated expert, measures it in
   the game against the current one and promotes it only if it is not worse.
3. The agent plays the ladder again: the fast path takes the subgoals whose category now has
   a promoted expert; the slow path corrects what the fast path fails.
4. `peam skills` shows slow and fast success side by side; `peam dashboard` shows the rest.
"""

from __future__ import annotations

from rich.console import Console

from agent.arbiter import Arbiter
from agent.runner import Runner
from envs import make_env
from envs.tasks import resolve_task

DEMO_LADDER = ("collect_wood", "place_table", "make_wood_pickaxe", "collect_drink",
               "collect_stone", "make_stone_pickaxe")


def _play(store, env, arbiter, episodes: int, seed0: int, console: Console, label: str) -> None:
    run_id = store.start_run(env=env.name, task="demo ladder", planner="symbolic",
                             memory_mode="peam", config={"phase": label})
    runner = Runner(env, recorder=store, run_id=run_id, arbiter=arbiter)
    for i, name in enumerate(DEMO_LADDER):
        results = runner.run(resolve_task(name, env.catalog), [seed0 + 100 * i + k for k in range(episodes)])
        fast = sum(r.fast_steps for r in results)
        steps = sum(r.steps for r in results)
        wins = sum(r.success for r in results)
        corrected = sum(r.corrections for r in results)
        console.print(f"  {name:<20} {wins}/{len(results)} succeeded, {steps:>4} steps, "
                      f"fast path {100 * fast / max(steps, 1):3.0f}% of steps"
                      + (f", {corrected} fast-path failures corrected by the slow path" if corrected else ""))
    store.finish_run(run_id, "finished")


def _consolidate(store, env, models_dir, console: Console) -> None:
    from agent.evaluation import run_job
    from consolidation.queue import enqueue
    from consolidation.worker import Worker

    categories = sorted({env.catalog[s].category for s in DEMO_LADDER})
    for category in categories:
        enqueue(store, game=env.name, category=category, reason="demo")
    worker = Worker(store, lambda job, beat: run_job(store, job, beat, models_dir=models_dir, episodes=3),
                    lease_s=600, name="demo-worker")
    with console.status("training and evaluating experts…"):
        while (job := worker.run_once()) is not None:
            m = job.metrics or {}
            cand, cur = m.get("candidate_success"), m.get("current_success")
            detail = (f"held-out fast success {100 * cand:.0f}% vs current {100 * cur:.0f}%, "
                      f"{m.get('samples', 0)} samples, {m.get('train_seconds', 0):.0f} s training"
                      if cand is not None else job.error or "")
            console.print(f"  job #{job.id} {job.target:<18} [bold]{job.status}[/] — {detail}")


def demo(db: str | None = None, episodes: int = 2, console: Console | None = None) -> None:
    from agent.memory_modes import expert_fast_path
    from agent.views import jobs_table, skills_table
    from memory.db import data_home
    from memory.store import Store

    console = console or Console()
    store = Store.open(db)
    env = make_env("crafter")
    store.sync_skills(env.catalog)
    models_dir = data_home() / "models"
    console.rule("[bold]1 · the slow agent practises")
    _play(store, env, Arbiter(), episodes, 0, console, "practice")
    console.rule("[bold]2 · consolidation: one isolated expert per skill category")
    _consolidate(store, env, models_dir, console)
    console.rule("[bold]3 · the agent again: the fast path takes over what was consolidated")
    fast = expert_fast_path("peam", store, env.name, models_dir)
    slow_mean = store.mean_steps(env.name)
    covered = sorted(fast.index) if fast else []
    console.print(f"  promoted experts: {', '.join(covered) or 'none'}")
    _play(store, env, Arbiter(fast, slow_mean), episodes, 50_000, console, "after consolidation")
    console.rule("[bold]4 · what the agent knows (`peam skills`, `peam jobs`)")
    console.print(skills_table(store.skill_table(env.name)))
    from consolidation.queue import jobs

    console.print(jobs_table(jobs(store, 10)))
    console.print(f"Data: {store.url}; experts under {models_dir}. "
                  "Next: `peam dashboard`, `peam run --task make_iron_pickaxe`.")
