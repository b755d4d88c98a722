"""The slow-only agent (symbolic planner + deliberate executor) on the Crafter benchmark.

Plays `--episodes` open-ended episodes of `--steps` steps and reports, per achievement, the
share of episodes that unlocked it, and the Crafter score (Hafner 2021: the geometric mean
of the success rates in percent, S = exp(mean(ln(1 + s_i))) - 1). Appends the table to
benchmarks/RESULTS.md with the command, the machine and the date.

    python benchmarks/slow_agent.py --episodes 20 --steps 10000 --jobs 2
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
    episodes: int = 20
    steps: int = 10_000
    seed: int = 1000  # seeds seed..seed+episodes-1, none of which the tests use
    jobs: int = 2
    results: str = "benchmarks/RESULTS.md"



def play(seed: int, steps: int) -> dict:
    from agent.loop.runner import Runner
    from envs import make_env
    from envs.tasks import OPEN_ENDED, resolve_task

    env = make_env("crafter", length=steps)
    t0 = time.perf_counter()
    result = Runner(env).run_episode(resolve_task(OPEN_ENDED, env.catalog, steps), seed)
    return {"seed": seed, "unlocked": result.unlocked, "steps": result.steps, "died": result.died,
            "seconds": time.perf_counter() - t0}


def main() -> None:
    args = parse_args(Args, __doc__.splitlines()[0])
    from envs.crafter import crafter_score, game_data

    achievements = list(game_data()["achievements"])
    seeds = list(range(args.seed, args.seed + args.episodes))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        episodes = []
        for ep in pool.map(play, seeds, [args.steps] * len(seeds)):
            episodes.append(ep)
            print(f"seed {ep['seed']}: {len(ep['unlocked'])} achievements, {ep['steps']} steps"
                  f"{' (died)' if ep['died'] else ''}, {ep['seconds']:.0f}s", flush=True)
    wall = time.perf_counter() - t0
    rates = {a: 100 * sum(a in ep["unlocked"] for ep in episodes) / len(episodes) for a in achievements}
    score = crafter_score(list(rates.values()))
    steps = sum(ep["steps"] for ep in episodes)
    lines = [
        f"### Slow-only agent on Crafter — {date.today().isoformat()}",
        "",
        f"`python benchmarks/slow_agent.py --episodes {args.episodes} --steps {args.steps} "
        f"--seed {args.seed} --jobs {args.jobs}` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; {wall:.0f} s wall, "
        f"{steps / wall:.0f} env steps/s with planning.",
        "",
        f"**Crafter score {score:.1f}%** over {len(episodes)} episodes "
        f"(mean length {steps / len(episodes):.0f} steps, "
        f"{sum(ep['died'] for ep in episodes)} died before the step limit). "
        "Reference points: human experts 50.5%, SPRING (GPT-4) 27.3%.",
        "",
        "| achievement | success rate |",
        "| --- | ---: |",
        *[f"| {a} | {r:.0f}% |" for a, r in sorted(rates.items(), key=lambda kv: -kv[1])],
        "",
    ]
    text = "\n".join(lines)
    record(args.results, text)


if __name__ == "__main__":
    main()
