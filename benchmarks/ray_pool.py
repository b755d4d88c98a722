"""Throughput of the Ray runner pool against the in-process runner, measured in one run.

The same seeds of the same task are played in-process (0 workers) and by pools of 1 and 2
runner actors, each writing every segment to its own SQLite store. Ray's start-up and the
actors' construction are excluded: a pool is timed only once every runner is ready.
Medians of `repeats` runs; appends a table to benchmarks/RESULTS.md.

    python benchmarks/ray_pool.py --task make_stone_pickaxe --episodes 8 --repeats 3
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import parse_args, record  # noqa: E402


@dataclass
class Args:
    task: str = "make_stone_pickaxe"
    episodes: int = 8
    seed: int = 0
    max_steps: int = 1000
    repeats: int = 3
    workers: str = "1,2"  # pool sizes to compare with in-process
    results: str = "benchmarks/RESULTS.md"


def timed(play) -> tuple[float, int, int]:
    """(seconds, episodes, env steps) of one call of `play() -> results`."""
    t0 = time.perf_counter()
    results = play()
    return time.perf_counter() - t0, len(results), sum(r.steps for r in results)


def in_process(spec, seeds, url, repeats):
    from agent.loop.runner import Runner
    from envs import make_env
    from envs.tasks import resolve_task
    from memory.store import Store

    env = make_env(spec.env)
    task = resolve_task(spec.task, env.catalog, spec.max_steps)
    store = Store.open(url)
    store.sync_skills(env.catalog)
    runner = Runner(env, recorder=store)
    runs = []
    for _ in range(repeats):
        runner.run_id = store.start_run(env=spec.env, task=task.name, planner="symbolic",
                                        memory_mode="none", config={})
        runs.append(timed(lambda: runner.run(task, seeds)))
    store.close()
    return runs


def pooled(spec, seeds, url, repeats, workers):
    from agent.services.pool import RunnerPool
    from envs import make_env
    from envs.tasks import resolve_task
    from memory.store import Store

    env = make_env(spec.env)
    task = resolve_task(spec.task, env.catalog, spec.max_steps)
    store = Store.open(url)
    store.sync_skills(env.catalog)
    runs = []
    with RunnerPool(spec, workers, db_url=url) as pool:  # start-up: not timed
        for _ in range(repeats):
            run_id = store.start_run(env=spec.env, task=task.name, planner="symbolic",
                                     memory_mode="none", config={})
            runs.append(timed(lambda: pool.run(task, seeds, run_id)))
    store.close()
    return runs


def main() -> None:
    import ray

    from agent.services.session import RunSpec

    args = parse_args(Args, __doc__.splitlines()[0])
    spec = RunSpec(task=args.task, max_steps=args.max_steps)
    seeds = list(range(args.seed, args.seed + args.episodes))
    sizes = [int(w) for w in args.workers.split(",") if w.strip()]
    rows, load = {}, os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows[0] = in_process(spec, seeds, f"sqlite:///{tmp}/w0.db", args.repeats)
        for n in sizes:
            rows[n] = pooled(spec, seeds, f"sqlite:///{tmp}/w{n}.db", args.repeats, n)
    base = statistics.median(s for s, _, _ in rows[0])
    lines = [
        f"## Ray runner pool throughput ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
        f"- command: `python benchmarks/ray_pool.py --task {args.task} --episodes {args.episodes} "
        f"--max_steps {args.max_steps} --repeats {args.repeats} --workers {args.workers}`",
        f"- machine: {platform.machine()} ({os.cpu_count()} cores), Python "
        f"{platform.python_version()}, ray {ray.__version__}; symbolic planner, each segment "
        f"committed to a SQLite file",
        f"- {args.episodes} seeds per run, median of {args.repeats} runs; Ray start-up and actor "
        f"construction excluded (timed once every runner is ready)", "",
        "| workers | s / run | episodes/s | env steps/s | speed-up vs in-process |",
        "| --- | ---: | ---: | ---: | ---: |"]
    for n, runs in rows.items():
        secs = statistics.median(s for s, _, _ in runs)
        steps_per_s = statistics.median(steps / s for s, _, steps in runs)
        label = "0 (in-process)" if n == 0 else str(n)
        lines.append(f"| {label} | {secs:.2f} | {runs[0][1] / secs:.2f} | {steps_per_s:.0f} | "
                     f"{base / secs:.2f}× |")
    lines += ["", f"Load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f} (this "
              f"benchmark itself adds 1–2; more means other jobs share the cores). Some seeds do "
              f"not replay to the same step count twice, so env steps/s is the fairer figure."]
    record(args.results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
