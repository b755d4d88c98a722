"""The fast policy alone, after behavioural cloning of the slow agent on the demo ladder.

Collects slow-agent segments for the demo ladder tasks (`agent/services/demo.py` DEMO_LADDER) into a
temporary store, trains the base policy and one category expert each
(`consolidation/trainer.py`), then lets the policy act ALONE: the symbolic planner still
picks the subgoal, the policy picks every action (sampled, or argmax with --sample 0), a subgoal ends when the game's
achievement counter rises (success) or after `--budget` steps (failure). Prints per-skill
success for the base alone and the base + its category experts, and appends the table to
benchmarks/RESULTS.md with the command, the machine and the date.

    python benchmarks/imitation.py --episodes 4 --epochs 10 --eval_seeds 3
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import parse_args  # noqa: E402


@dataclass
class Args:
    episodes: int = 4  # slow-agent training episodes per ladder task
    epochs: int = 10
    batch_size: int = 64
    eval_seeds: int = 3  # evaluation episodes per ladder task, seeds 5000.. (unseen)
    budget: int = 100  # steps the policy may spend on one subgoal
    max_failures: int = 3  # failed attempts of one skill that end an evaluation episode
    device: str = "cpu"
    sample: int = 1  # 1: sample actions (as the fast path does), 0: argmax
    results: str = "benchmarks/RESULTS.md"


def collect(store, episodes: int) -> tuple[int, float]:
    from agent.loop.runner import Runner
    from agent.services.demo import DEMO_LADDER
    from envs import make_env
    from envs.tasks import resolve_task

    env = make_env("crafter")
    store.sync_skills(env.catalog)
    t0, steps = time.perf_counter(), 0
    for i, name in enumerate(DEMO_LADDER):
        run_id = store.start_run(env="crafter", task=name, planner="symbolic", memory_mode="none",
                                 config={})
        runner = Runner(env, recorder=store, run_id=run_id)
        results = runner.run(resolve_task(name, env.catalog), seeds=list(range(100 * i, 100 * i + episodes)))
        steps += sum(r.steps for r in results)
        store.finish_run(run_id, "finished")
    return steps, time.perf_counter() - t0


def load_policy(out_dir, store, device: str, with_experts: bool):
    from memory.base_io import load_base
    from memory.expert_io import load_expert
    from memory.inject import inject
    from memory.lora import LoraConfig
    from memory.registry import expert_dir, experts

    policy, _ = load_base(os.path.join(out_dir, "base"), device)
    if with_experts:
        rows = experts(store, "crafter")
        inject(policy, LoraConfig(r=rows[0].rank, routing="category"))
        for row in rows:
            load_expert(policy, expert_dir(out_dir, row.path), row.category)
    return policy.eval()


def evaluate(policy, args: Args) -> dict[str, list[int]]:
    """{skill: [attempts, successes]} of the policy acting alone on the ladder tasks."""
    import torch

    from agent.services.demo import DEMO_LADDER
    from agent.loop.slow_decision import SlowDecider
    from envs import make_env
    from envs.tasks import resolve_task
    from memory.inject import expert_names, set_expert_indices

    env = make_env("crafter")
    items = list(env.catalog.items)
    names = expert_names(policy)
    device = next(policy.parameters()).device
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    gen = torch.Generator().manual_seed(0)
    for task_name in DEMO_LADDER:
        task = resolve_task(task_name, env.catalog)
        slow_path = SlowDecider(env, task)  # chooses the subgoals; the policy acts alone
        for seed in range(5000, 5000 + args.eval_seeds):
            slow_path.start(*env.reset(seed=seed))
            while slow_path.steps < task.max_steps and not slow_path.over:
                skill = slow_path.next_skill()
                if skill is None or slow_path.failures(skill.name) >= args.max_failures:
                    break
                subgoal = policy.tokenizer.encode([skill.name]).to(device)
                route = names.index(skill.category) if skill.category in names else -1
                if names:
                    set_expert_indices(policy, torch.tensor([route], device=device))
                before = slow_path.achieved(skill.achievement)
                won = False
                for _ in range(min(args.budget, task.max_steps - slow_path.steps)):
                    o = slow_path.obs
                    with torch.no_grad():
                        cells = slow_path.world.crop(policy.config.map_radius)  # its own map
                        logits, _ = policy(
                            torch.as_tensor(o.local_view, device=device)[None].long(),
                            torch.tensor([[o.inventory.get(k, 0) for k in items]], device=device),
                            torch.tensor([o.facing], device=device), subgoal,
                            map=torch.as_tensor(cells, device=device)[None].long())
                    if args.sample:  # as the fast path acts: argmax falls into loops
                        action = int(torch.multinomial(torch.softmax(logits[0], -1), 1, generator=gen))
                    else:
                        action = int(logits.argmax(-1))
                    slow_path.observe(env.step(action), env.action_names[action])
                    if slow_path.achieved(skill.achievement) > before:
                        won = True
                        break
                    if slow_path.over:
                        break
                tally[skill.name][0] += 1
                tally[skill.name][1] += int(won)
                if not won:
                    slow_path.fail(skill.name)
                if all(slow_path.achieved(g) > 0 for g in task.goals):
                    break
    return dict(tally)


def main() -> None:
    args = parse_args(Args, __doc__.splitlines()[0])
    import torch

    from consolidation.fit import FitConfig
    from consolidation.trainer import CATEGORY_EXPERTS, train_base, train_category_experts
    from memory.store import Store

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="peam-imitation-") as tmp:
        store = Store.open(f"sqlite:///{tmp}/peam.db")
        steps, collect_s = collect(store, args.episodes)
        print(f"collected {steps} slow-agent steps in {collect_s:.0f}s", flush=True)
        t1 = time.perf_counter()
        base = train_base(store, out_dir=tmp, progress=False,
                          config=FitConfig(epochs=args.epochs, batch_size=args.batch_size, device=args.device))
        found = train_category_experts(store, models_dir=tmp, progress=False, config=replace(
            CATEGORY_EXPERTS, epochs=args.epochs, batch_size=args.batch_size, device=args.device))
        train_s = time.perf_counter() - t1
        print(f"trained base (val acc {base['val_accuracy']:.3f}) + {len(found)} experts "
              f"in {train_s:.0f}s", flush=True)
        modes = {}
        for label, with_experts in (("base", False), ("base + experts", True)):
            modes[label] = evaluate(load_policy(tmp, store, args.device, with_experts), args)
        store.close()
    wall = time.perf_counter() - t0
    skills = sorted({s for tally in modes.values() for s in tally})

    def cell(tally, s):
        a, w = tally.get(s, (0, 0))
        return f"{w}/{a} ({100 * w / a:.0f}%)" if a else "—"

    lines = [
        f"## Fast policy alone after behavioural cloning, demo ladder "
        f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)",
        "",
        "- command: `python benchmarks/imitation.py " + " ".join(
            f"--{f.name} {getattr(args, f.name)}"
            for f in fields(Args) if f.name != "results") + "`",
        f"- machine: {platform.processor() or platform.machine()} ({os.cpu_count()} cores), "
        f"torch {torch.__version__}, device {args.device}; {wall:.0f} s wall",
        f"- data: {steps} slow-agent steps, {base['segments']} successful segments; base val action "
        f"accuracy {base['val_accuracy']:.3f}, done accuracy {base['val_done_accuracy']:.3f}; "
        + ", ".join(f"{c} expert val acc {m['base_val_accuracy'] or 0:.3f} -> {m['val_accuracy'] or 0:.3f}"
                    for c, m in found.items()),
        f"- evaluation: {args.eval_seeds} unseen seeds per ladder task; symbolic planner picks the "
        f"subgoal, the policy ({'sampled' if args.sample else 'argmax'}, with its own map) every action; a subgoal fails after {args.budget} steps",
        "",
        "| skill | " + " | ".join(modes) + " |",
        "| --- | " + " | ".join("---:" for _ in modes) + " |",
        *[f"| {s} | " + " | ".join(cell(t, s) for t in modes.values()) + " |" for s in skills],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with open(args.results, "a") as fh:
        fh.write("\n" + text)


if __name__ == "__main__":
    main()
