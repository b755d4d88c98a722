"""The agent with its memory against the slow agent alone, on the same open-ended Crafter games.

Plays `--episodes` open-ended games of `--steps` steps twice per seed: once with the memory of
a store as the fast path (arbitrated as in a run: danger, gate measurements, live record),
once with the slow path alone. Reports both Crafter scores (Hafner 2021), their ratio, the mean
length of a game and the fast path's share of the steps. The Crafter score is a geometric mean
over 22 achievements, the rare ones included: one diamond more in 10 games moves it by ~10%,
hence the default of 120 games (on 40, the same memory scored 43–53% with
settings that made no difference on 120).

    python benchmarks/memory_score.py --db sqlite:///STORE/peam.db --models STORE/models

`peam bench continual` leaves its store and models in the directory it prints at the end
(`peam-continual-<memory>-*` under the system's temp dir).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import parse_args, record  # noqa: E402


@dataclass
class Args:
    db: str = ""
    models: str = ""
    memory: str = "peam"
    episodes: int = 120
    steps: int = 10_000
    seed: int = 90_000  # the continual benchmark's score seeds
    budget_factor: float = 1.5  # the arbiter's fast-attempt budget (agent/loop/arbiter.py)
    max_cost: float = 2.0  # the arbiter's live cost limit (agent/loop/arbiter.py); 0: not weighed
    jobs: int = 2
    slow: int = 1  # 0: play the memory arm alone (the slow arm is deterministic: reuse an earlier row)
    results: str = "benchmarks/RESULTS.md"


_FAST: dict = {}


def play(seed: int, args: Args, with_memory: bool) -> dict:
    from agent.loop.arbiter import Arbiter
    from agent.services.memory_modes import MemoryFastPath
    from agent.loop.runner import Runner
    from envs import make_env
    from envs.tasks import OPEN_ENDED, resolve_task
    from memory.store import Store

    env = make_env("crafter", length=args.steps)
    arbiter = Arbiter()
    if with_memory:
        if "memory" not in _FAST:  # once per worker process
            import torch

            # One thread per worker: two workers of two torch threads each on two cores played a
            # memory game 2.5x slower (14.2 s vs 5.6 s for the same game, another job running).
            torch.set_num_threads(1)
            store = Store.open(args.db)
            _FAST["memory"] = MemoryFastPath(args.memory, store, env, args.models)
        arbiter = _FAST["memory"].refresh()
        arbiter.live.clear()  # every game starts from the gate's measurements alone
        arbiter.budget_factor = args.budget_factor
        arbiter.max_cost = args.max_cost or None
    t0 = time.perf_counter()
    result = Runner(env, arbiter=arbiter).run_episode(resolve_task(OPEN_ENDED, env.catalog, args.steps), seed)
    return {"seed": seed, "memory": with_memory, "unlocked": result.unlocked, "steps": result.steps,
            "fast_steps": result.fast_steps, "died": result.died, "seconds": time.perf_counter() - t0}


def main() -> None:
    args = parse_args(Args, __doc__.splitlines()[0])
    if not args.db or not args.models:
        raise SystemExit("give --db (the store's URL) and --models (its models directory)")
    from envs.crafter import crafter_score, game_data

    achievements = list(game_data()["achievements"])
    jobs = [(s, m) for s in range(args.seed, args.seed + args.episodes) for m in ((True, False) if args.slow else (True,))]
    t0 = time.perf_counter()
    games = {True: [], False: []}
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(play, s, args, m) for s, m in jobs]
        for i, f in enumerate(futures, 1):
            g = f.result()
            games[g["memory"]].append(g)
            print(f"{i}/{len(jobs)} seed {g['seed']} {'memory' if g['memory'] else 'slow  '}: "
                  f"{len(g['unlocked'])} achievements, {g['steps']} steps, fast {g['fast_steps']}", flush=True)

    def summary(gs):
        rates = [100 * sum(a in g["unlocked"] for g in gs) / len(gs) for a in achievements]
        steps = sum(g["steps"] for g in gs)
        return {"score": crafter_score(rates), "rates": dict(zip(achievements, rates)),
                "mean_steps": steps / len(gs), "fast_share": sum(g["fast_steps"] for g in gs) / max(steps, 1),
                "died": sum(g["died"] for g in gs)}

    mem = summary(games[True])
    slow = summary(games[False]) if games[False] else None
    lines = [f"### The agent with its memory vs the slow agent alone, open-ended Crafter — {date.today().isoformat()}", "",
             f"`python benchmarks/memory_score.py --memory {args.memory} --episodes {args.episodes} "
             f"--steps {args.steps} --seed {args.seed} --budget_factor {args.budget_factor} --max_cost {args.max_cost}"
             f"{'' if args.slow else ' --slow 0'}` (store: the `peam bench continual --memory "
             f"{args.memory}` run's) on {platform.machine()}, {os.cpu_count()} cores; "
             f"{time.perf_counter() - t0:.0f} s wall. The same {args.episodes} seeds for both.", "",
             "| agent | Crafter score | mean steps | died | fast path share of steps |",
             "| --- | ---: | ---: | ---: | ---: |",
             f"| with its `{args.memory}` memory | **{mem['score']:.1f}%** | {mem['mean_steps']:.0f} | "
             f"{mem['died']}/{args.episodes} | {100 * mem['fast_share']:.0f}% |"]
    if slow is None:
        lines += ["| slow path alone | not replayed (`--slow 0`): see an earlier row on the same seeds | | | 0% |", ""]
    else:
        lines += [f"| slow path alone | **{slow['score']:.1f}%** | {slow['mean_steps']:.0f} | "
                  f"{slow['died']}/{args.episodes} | 0% |", "",
                  f"Memory / slow = {mem['score'] / max(slow['score'], 1e-9):.2f}×. Achievements where they differ "
                  "(memory vs slow, % of games): "
                  + (", ".join(f"{a} {mem['rates'][a]:.0f} vs {slow['rates'][a]:.0f}" for a in achievements
                               if mem["rates"][a] != slow["rates"][a]) or "none") + ".", ""]
    record(args.results, "\n".join(lines))


if __name__ == "__main__":
    main()
