"""Wall time of one decision on each path, measured side by side in one run.

Slow path: the symbolic planner's plan + the deliberate executor's action, timed on real
Crafter states. Fast path: one forward pass of the fast policy (batch 1, with its category
expert injected), for the same states. Appends a table to benchmarks/RESULTS.md.

    python benchmarks/decision_latency.py --steps 400
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import parse_args, record  # noqa: E402


@dataclass
class Args:
    steps: int = 400
    seed: int = 2000
    results: str = "benchmarks/RESULTS.md"



def main() -> None:
    import torch

    from agent.planner import PlanContext, SymbolicPlanner
    from agent.runner import KNOWN_RADIUS, Runner
    from envs import make_env
    from envs.tasks import OPEN_ENDED, resolve_task
    from memory.inject import inject, add_expert, set_expert_indices
    from memory.lora import LoraConfig
    from memory.policy import PolicyConfig, build_policy

    args = parse_args(Args, __doc__.splitlines()[0])
    torch.set_num_threads(1)
    env = make_env("crafter")
    runner = Runner(env)
    planner: SymbolicPlanner = runner.planner
    task = resolve_task(OPEN_ENDED, env.catalog)
    obs, _ = env.reset(seed=args.seed)
    runner.executor.reset()
    runner.executor.observe(obs, None)
    policy = build_policy(PolicyConfig(), len(env.cell_names), len(env.catalog.items),
                          len(env.action_names), env.catalog.names).eval()
    inject(policy, LoraConfig(routing="category", num_experts=5))
    for category in ("gather", "build", "craft", "combat", "survive"):
        add_expert(policy, category)
    items = list(env.catalog.items)
    slow, fast = [], []
    for _ in range(args.steps):
        mem = runner.executor.memory
        t0 = time.perf_counter()
        ctx = PlanContext(task, dict(obs.inventory), known=mem.known_kinds(KNOWN_RADIUS))
        plan = planner.plan(ctx)
        skill = env.catalog[plan.subgoals[0].skill if plan.subgoals else "collect_wood"]
        action = runner.executor.act(obs, skill)
        slow.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.inference_mode():
            view = torch.as_tensor(obs.local_view[None]).long()
            inv = torch.tensor([[obs.inventory.get(k, 0) for k in items]])
            facing = torch.tensor([obs.facing])
            set_expert_indices(policy, torch.tensor([0]))
            logits, _done = policy(view, inv, facing, policy.tokenizer.encode([skill.name]))
            int(logits.argmax())
        fast.append(time.perf_counter() - t0)
        res = env.step(env.action_names.index(action))
        runner.executor.observe(res.observation, action)
        obs = res.observation
        if res.terminated or res.truncated:
            obs, _ = env.reset(seed=args.seed + 1)
            runner.executor.reset()
            runner.executor.observe(obs, None)
    ms = lambda xs: 1000 * statistics.median(xs)  # noqa: E731
    text = "\n".join([
        f"### Decision latency, slow vs fast path — {date.today().isoformat()}", "",
        f"`python benchmarks/decision_latency.py --steps {args.steps}` on "
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} (1 thread), CPU; "
        "medians over the same real Crafter states.", "",
        "| path | median ms / decision | p90 ms |", "| --- | ---: | ---: |",
        f"| slow: symbolic planner + deliberate executor | {ms(slow):.3f} | "
        f"{1000 * statistics.quantiles(slow, n=10)[-1]:.3f} |",
        f"| fast: policy forward with its category expert (batch 1) | {ms(fast):.3f} | "
        f"{1000 * statistics.quantiles(fast, n=10)[-1]:.3f} |",
        "", f"Slow / fast = {ms(slow) / ms(fast):.2f}×.", ""])
    record(args.results, text)


if __name__ == "__main__":
    main()
