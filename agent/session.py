"""Wires a run from validated options: the env, the task, the planner, the store, the runner.

Validation happens before anything is written, in the order a user would mend things:
env, task, planner, database. Progress is shown with rich progress bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from envs import make_env
from envs.errors import ConfigError
from envs.tasks import resolve_task


@dataclass(frozen=True)
class RunSpec:
    env: str = "crafter"
    task: str = "make_stone_pickaxe"
    episodes: int = 1
    seed: int = 0
    max_steps: Optional[int] = None
    planner: str = "symbolic"
    db: Optional[str] = None
    memory: str = "peam"  # agent.memory_modes.MODES
    consolidate: str = "auto"  # auto: the self-trigger runs jobs between episodes; off: never
    llm: object = None  # agent.llm_planner.LLMOptions for hf:/openai: planners
    workers: int = 0  # Ray runner actors; 0 = play in this process
    address: Optional[str] = None  # an existing Ray cluster (auto, HOST:PORT, ray://HOST:PORT)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def run_episodes(spec: RunSpec, console: Console | None = None, store=None):
    """Play `spec.episodes` episodes; returns the runner's results."""
    from agent.runner import Runner
    from memory.store import Store

    from agent.memory_modes import MemoryFastPath, auto_consolidate, check_mode
    from memory.db import data_home

    console = console or Console()
    env = make_env(spec.env)
    task = resolve_task(spec.task, env.catalog, spec.max_steps)
    check_mode(spec.memory)
    if spec.consolidate not in ("auto", "off"):
        raise ConfigError(f"unknown --consolidate {spec.consolidate!r}: use auto or off")
    pool = None
    if spec.workers > 0 or spec.address is not None:
        # Ray: the runners (or one planner actor) build the planner; a multi-node cluster with a
        # SQLite store is refused here, before anything is written.
        from agent.pool import RunnerPool

        url = store.engine.url.render_as_string(hide_password=False) if store else spec.db
        pool = RunnerPool(spec, spec.workers, spec.address, db_url=url)
    else:
        from agent.llm_planner import make_planner

        planner = make_planner(spec.planner, env.catalog, options=spec.llm)
    store = store or Store.open(spec.db)
    store.sync_skills(env.catalog)
    run_id = store.start_run(env=spec.env, task=task.name, planner=spec.planner,
                             memory_mode=spec.memory, config=spec.__dict__ | {"db": None, "llm": repr(spec.llm)})
    results, status = [], "failed"
    with _progress(console) as progress:
        eps = progress.add_task(f"{task.name}: episodes", total=spec.episodes)

        def report(result):
            results.append(result)
            progress.advance(eps)
            mark = "[green]✓" if result.success else "[red]✗"
            progress.console.print(
                f"{mark}[/] seed {result.seed}: {result.steps} steps, "
                f"{len(result.unlocked)} achievements{' (died)' if result.died else ''}"
                f"{f' ({result.error})' if result.error else ''}")

        try:
            if pool is not None:  # episodes complete as results come back, in any order
                progress.console.print(pool.describe())
                seeds = [spec.seed + i for i in range(spec.episodes)]
                pool.run(task, seeds, run_id, on_result=report)
                results.sort(key=lambda r: r.seed)
            else:
                steps = progress.add_task("steps", total=task.max_steps)
                runner = Runner(env, planner, store, run_id, on_step=lambda n: progress.advance(steps, n))
                memory = MemoryFastPath(spec.memory, store, env, data_home() / "models")
                for i in range(spec.episodes):
                    progress.reset(steps, total=task.max_steps)
                    runner.arbiter = memory.refresh()  # newly promoted experts, from now on
                    report(runner.run_episode(task, spec.seed + i))
                    if spec.consolidate == "auto" and spec.memory == "peam":
                        for job in auto_consolidate(store, env, data_home() / "models",
                                                    runner.arbiter.fast, progress.console):
                            progress.console.print(f"  job #{job.id} {job.target}: {job.status}")
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if pool is not None:
                pool.close()  # no runner writes after this point
            store.fail_running_episodes(run_id, f"run {status}")
            store.finish_run(run_id, status)
            env.close()  # a game in a child process (Minecraft) ends with the run
    wins = sum(r.success for r in results)
    console.print(f"[bold]{task.name}[/]: {wins}/{len(results)} episodes succeeded; "
                  f"store: {store.url}")
    return results
