"""Before and after consolidation: what the fast path takes over, and what training costs.

Phase 1: the slow agent alone plays the task ladder on seeds S (experience).
Phase 2: one consolidation job per skill category practised (train, gate in the game, promote).
Phase 3: the same ladder on fresh seeds with the fast path (arbiter: fast where a promoted
expert covers the category, slow correction on failure).
Reports per skill the success before/after, the share of steps on the fast path, planner calls
per episode, and the training throughput (samples/s) of each job. Appends to RESULTS.md.

    python benchmarks/consolidation.py --episodes 4
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import parse_args, record  # noqa: E402

LADDER = ("collect_wood", "place_table", "make_wood_pickaxe", "collect_drink", "collect_stone",
          "make_stone_pickaxe", "place_stone", "collect_coal")


@dataclass
class Args:
    episodes: int = 4  # per ladder task and phase
    eval_episodes: int = 3  # per skill at the gate
    device: str = "cpu"
    results: str = "benchmarks/RESULTS.md"


def play(store, env, arbiter, seeds_from: int, episodes: int):
    from agent.loop.runner import Runner
    from envs.tasks import resolve_task

    run_id = store.start_run(env=env.name, task="ladder", planner="symbolic", memory_mode="peam", config={})
    runner = Runner(env, recorder=store, run_id=run_id, arbiter=arbiter)
    per_skill = defaultdict(lambda: [0, 0])  # skill -> [successes, attempts] of its own task
    steps = fast = calls = n = 0
    for i, name in enumerate(LADDER):
        for k in range(episodes):
            r = runner.run_episode(resolve_task(name, env.catalog), seeds_from + 100 * i + k)
            per_skill[name][0] += r.success
            per_skill[name][1] += 1
            steps, fast, calls, n = steps + r.steps, fast + r.fast_steps, calls + r.planner_calls, n + 1
    return per_skill, fast / max(steps, 1), calls / max(n, 1)


def main() -> None:
    args = parse_args(Args, __doc__.splitlines()[0])
    from agent.loop.arbiter import Arbiter
    from agent.services.evaluation import run_job
    from agent.services.memory_modes import expert_fast_path
    from consolidation.queue import enqueue
    from consolidation.worker import Worker
    from envs import make_env
    from memory.store import Store

    root = tempfile.mkdtemp(prefix="peam-bench-")
    store, env, models = Store.open(f"sqlite:///{root}/peam.db"), make_env("crafter"), f"{root}/models"
    store.sync_skills(env.catalog)
    t0 = time.perf_counter()
    before, _, calls_before = play(store, env, Arbiter(), 0, args.episodes)
    categories = sorted({env.catalog[s].category for s in LADDER})
    for c in categories:
        enqueue(store, game="crafter", category=c, reason="benchmark")
    worker = Worker(store, lambda job, beat: run_job(store, job, beat, device=args.device,
                                                     models_dir=models, episodes=args.eval_episodes),
                    lease_s=3600, name="bench")
    jobs = []
    while (job := worker.run_once()) is not None:
        jobs.append(job)
        print(f"job {job.target}: {job.status} {job.error or ''}", flush=True)
    fast = expert_fast_path("peam", store, "crafter", models, args.device)
    after, share, calls_after = play(store, env, Arbiter.from_store(fast, store, "crafter"), 50_000, args.episodes)
    wall = time.perf_counter() - t0
    rows = {r.name: r for r in store.skill_table("crafter")}
    lines = [
        f"### Consolidation: before and after — {date.today().isoformat()}", "",
        f"`python benchmarks/consolidation.py --episodes {args.episodes} --eval_episodes "
        f"{args.eval_episodes} --device {args.device}` on {platform.machine()}, {os.cpu_count()} cores; "
        f"{wall:.0f} s wall in all.", "",
        f"Fast-path share of steps after consolidation: **{100 * share:.0f}%** "
        f"(0% before). Planner calls per episode: {calls_before:.1f} before, {calls_after:.1f} after "
        "(the symbolic planner still decomposes every task; the fast path replaces the "
        "executor's step-by-step deliberation, not the plan).", "",
        "| skill (task) | category | success before | success after | fast-path success (all attempts) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name in LADDER:
        b, a, r = before[name], after[name], rows.get(name)
        fast_rate = "—" if not r or r.fast_success_rate is None else f"{100 * r.fast_success_rate:.0f}% of {r.fast_attempts}"
        lines.append(f"| {name} | {env.catalog[name].category} | {b[0]}/{b[1]} | {a[0]}/{a[1]} | {fast_rate} |")
    lines += ["", "| job | status | candidate / current held-out success | samples | training s | samples/s |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for j in jobs:
        m = j.metrics or {}
        lines.append(f"| {j.target} | {j.status} | {100 * (m.get('candidate_success') or 0):.0f}% / "
                     f"{100 * (m.get('current_success') or 0):.0f}% | {m.get('samples', '—')} | "
                     f"{m.get('train_seconds', 0):.1f} | {m.get('samples_per_s', 0):.0f} |")
    lines.append("")
    record(args.results, "\n".join(lines))


if __name__ == "__main__":
    main()
