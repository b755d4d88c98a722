"""Wires a run from validated options: the env, the task, the planner, the store, the runner.

Validation happens before anything is written, in the order a user would mend things:
env, task, planner, database. Progress is shown with rich progress bars.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
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
    memory: str = "peam"  # agent.services.memory_modes.MODES
    consolidate: str = "auto"  # auto: the self-trigger runs jobs between episodes; off: never
    llm: object = None  # agent.planners.llm_planner.LLMOptions for hf:/openai: planners
    workers: int = 0  # Ray runner actors; 0 = play in this process
    address: Optional[str] = None  # an existing Ray cluster (auto, HOST:PORT, ray://HOST:PORT)


SEED_MAX = 2**31 - 1  # the store's seed column is a 32-bit integer (PostgreSQL INTEGER)


def check_seeds(seed: int, episodes: int) -> None:
    """Episode i plays seed + i: every one of them must fit the store and the game."""
    if not 0 <= seed <= SEED_MAX or seed + episodes - 1 > SEED_MAX:
        raise ConfigError(f"--seed {seed} with --episodes {episodes} gives seeds beyond "
                          f"0..{SEED_MAX}: choose a seed in that range (episode i plays seed + i)")


def check_models(models_dir: Path) -> None:
    """The frozen bases a run may load (for acting, for choosing subgoals) must be readable
    safetensors files; a damaged one is reported before the run's row is written."""
    from safetensors import safe_open

    from memory.base_io import BASE_DIR, WEIGHTS
    from memory.plan_policy import PLAN_DIR

    for path in (models_dir / BASE_DIR / WEIGHTS, models_dir / PLAN_DIR / BASE_DIR / WEIGHTS):
        if not path.exists():
            continue
        try:
            with safe_open(str(path), framework="numpy"):
                pass
        except Exception as e:  # SafetensorError, OSError: the header cannot be read
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"the base model {path} is not a readable safetensors file "
                              f"({reason}): restore it from a backup, or move {path.parent} "
                              f"away and run `peam train-base`") from None


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (`kill`, a scheduler stopping the job) ends the run as Ctrl-C does: the run and
    its episode are marked interrupted on the way out, not left `running` (issue 19, item 2)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_episodes(spec: RunSpec, console: Console | None = None, store=None):
    """Play `spec.episodes` episodes; returns the runner's results."""
    from agent.loop.runner import Runner
    from memory.store import Store

    from agent.services.memory_modes import MemoryFastPath, check_mode
    from agent.services.self_trigger import auto_consolidate
    from memory.db import data_home
    from memory.runs import interrupt_run, sweep_stale_runs

    console = console or Console()
    env = make_env(spec.env)
    task = resolve_task(spec.task, env.catalog, spec.max_steps)
    check_mode(spec.memory)
    if spec.consolidate not in ("auto", "off"):
        raise ConfigError(f"unknown --consolidate {spec.consolidate!r}: use auto or off")
    check_seeds(spec.seed, spec.episodes)
    check_models(data_home() / "models")
    pool = None
    if spec.workers > 0 or spec.address is not None:
        # Ray: the runners (or one planner actor) build the planner; a multi-node cluster with a
        # SQLite store is refused here, before anything is written.
        from agent.services.pool import RunnerPool

        url = store.engine.url.render_as_string(hide_password=False) if store else spec.db
        pool = RunnerPool(spec, spec.workers, spec.address, db_url=url)
    else:
        from agent.planners.llm_planner import make_planner

        planner = make_planner(spec.planner, env.catalog, options=spec.llm)
    store = store or Store.open(spec.db)
    store.sync_skills(env.catalog)
    memory = None
    if pool is None:  # experts that fail their checks (digest, base) are refused before a run row
        memory = MemoryFastPath(spec.memory, store, env, data_home() / "models")
        memory.refresh()
    sweep_stale_runs(store)  # runs whose process was killed: interrupted, not running forever
    run_id = store.start_run(env=spec.env, task=task.name, planner=spec.planner,
                             memory_mode=spec.memory, config=spec.__dict__ | {"db": None, "llm": repr(spec.llm)})
    results, status = [], "failed"
    with sigterm_as_interrupt(), _progress(console) as progress:
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
            def consolidate(fast) -> None:  # the self-trigger, between episodes
                if spec.consolidate == "auto" and spec.memory == "peam":
                    for job in auto_consolidate(store, env, data_home() / "models", fast,
                                                progress.console):
                        progress.console.print(f"  job #{job.id} {job.target}: {job.status}")

            if pool is not None:  # episodes complete as results come back, in any order
                progress.console.print(pool.describe())
                seeds = [spec.seed + i for i in range(spec.episodes)]
                # The driver runs the jobs as results come in; the runners load what was
                # promoted at the start of their next episode (issue 19, item 8).
                pool.run(task, seeds, run_id, on_result=lambda r: (report(r), consolidate(None)))
                results.sort(key=lambda r: r.seed)
            else:
                steps = progress.add_task("steps", total=task.max_steps)
                runner = Runner(env, planner, store, run_id, on_step=lambda n: progress.advance(steps, n))
                for i in range(spec.episodes):
                    progress.reset(steps, total=task.max_steps)
                    runner.arbiter = memory.refresh()  # newly promoted experts, from now on
                    report(runner.run_episode(task, spec.seed + i))
                    consolidate(runner.arbiter.fast)
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if pool is not None:
                pool.close()  # no runner writes after this point
            if status == "interrupted":
                interrupt_run(store, run_id, "run interrupted")
            else:
                store.fail_running_episodes(run_id, f"run {status}")
                store.finish_run(run_id, status)
            env.close()  # a game in a child process (Minecraft) ends with the run
    wins = sum(r.success for r in results)
    console.print(f"[bold]{task.name}[/]: {wins}/{len(results)} episodes succeeded; "
                  f"store: {store.url}")
    return results
