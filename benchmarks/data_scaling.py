"""Does the fast path get better with more experience, or with the target tokens? The gather
expert at growing data sizes, with the policy's per-kind target tokens off and on.

For each size N, the slow agent plays each gather skill of the continual benchmark on N seeds
(nested: the 64-episode store holds the 16 episodes' seeds and 48 more), a fresh base and
gather expert are trained on that store alone with the default recipe (once per `--targets`
setting: `PolicyConfig.targets`, memory/policy.py's TargetEncoder), and the expert is
measured on the same held-out seeds for every size, each skill forced onto the fast path
(agent/services/evaluation.py), sampling from the softmax (the fast path's default before
benchmarks/decoding.py; no action mask) and a sharper one (softmax temperature 0.5:
an expert that learned where to walk should gain from it, one that succeeds by sampled
exploration loses). The continual benchmark's stage is 16 episodes per skill.

    python benchmarks/data_scaling.py --sizes 16,64 --targets off,on --eval_episodes 20
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import overall, parse_args, rates, record, sharpened  # noqa: E402
from benchmarks.expert_recipe import SKILLS  # noqa: E402

PLAY_SEED = 20_000  # skill j, episode k -> PLAY_SEED + 1000 j + k: never an evaluation seed


@dataclass
class Args:
    sizes: str = "16,64"  # slow-path episodes per skill
    targets: str = "off,on"  # the policy's target tokens; "on+mirror": also mirrored training steps
    eval_episodes: int = 20  # held-out episodes per skill per size
    epochs: int = 8  # the base's training rounds (early stopping on validation loss)
    temperature: float = 0.5
    device: str = "cpu"
    results: str = "benchmarks/RESULTS.md"


def main() -> None:
    args = parse_args(Args, __doc__.splitlines()[0])
    import torch

    from agent.loop.fast_path import FastPolicy
    from agent.loop.runner import Runner
    from consolidation.fit import FitConfig
    from consolidation.trainer import ExpertTrainingConfig, train_base, train_expert
    from envs import make_env
    from envs.tasks import resolve_task
    from agent.services.evaluation import measure_fast
    from memory.policy import PolicyConfig
    from memory.registry import ExpertRef
    from memory.store import Store

    sizes = [int(s) for s in args.sizes.split(",")]
    if any(n < 1 or n > 1000 for n in sizes):
        raise SystemExit("data_scaling: every size must be in 1..1000 (episodes per skill)")
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="peam-scaling-"))
    env = make_env("crafter")
    rows = []
    for n in sizes:
        t1 = time.perf_counter()
        store = Store.open(f"sqlite:///{work}/peam-{n}.db")
        store.sync_skills(env.catalog)
        run_id = store.start_run(env="crafter", task="gather stage", planner="symbolic",
                                 memory_mode="none", config={"episodes": n})
        runner = Runner(env, recorder=store, run_id=run_id)
        steps = sum(runner.run_episode(resolve_task(skill, env.catalog), PLAY_SEED + 1000 * j + k).steps
                    for j, skill in enumerate(SKILLS) for k in range(n))
        store.finish_run(run_id, "finished")
        play_s = time.perf_counter() - t1
        for targets in args.targets.split(","):
            t2 = time.perf_counter()
            models = work / f"models-{n}-{targets}"
            on, mirror = targets.startswith("on"), targets.endswith("+mirror")
            base = train_base(store, out_dir=models, game="crafter", progress=False,
                              config=FitConfig(epochs=args.epochs, device=args.device, mirror=mirror),
                              policy_config=PolicyConfig(targets=on))
            cand = train_expert(store, models_dir=models, game="crafter", category="gather",
                                tag=f"n{n}-{targets}",
                                config=ExpertTrainingConfig(device=args.device, mirror=mirror))
            train_s = time.perf_counter() - t2
            ref = ExpertRef("gather", cand.path, cand.expert_id)
            def sampling():  # this table's protocol: sampled actions, no action mask
                return FastPolicy(models, [ref], args.device, seed=0, sample=True, unstick=False)

            sampled = measure_fast(sampling(), store, env, list(SKILLS), args.eval_episodes)
            sharp = measure_fast(sharpened(sampling(), args.temperature), store, env, list(SKILLS),
                                 args.eval_episodes)
            rows.append((n, targets, steps, base, cand.metrics, sampled, sharp, play_s, train_s))
            print(f"{n} episodes/skill, targets {targets}: {steps} steps, base val acc "
                  f"{base['val_accuracy']:.2f}, expert {cand.metrics.get('val_accuracy') or 0:.2f}; "
                  f"T=1 {rates(sampled)}; T={args.temperature} {rates(sharp)} ({play_s:.0f} s play, "
                  f"{train_s:.0f} s train)", flush=True)
        store.close()

    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    lines = [f"### Data scaling of the gather expert — {date.today().isoformat()}", "",
             f"`python benchmarks/data_scaling.py --sizes {args.sizes} --targets {args.targets} --eval_episodes "
             f"{args.eval_episodes} --device {args.device}` on {platform.machine()}, {os.cpu_count()} "
             f"cores{gpu}, torch {torch.__version__}; {time.perf_counter() - t0:.0f} s wall. "
             f"Skills {', '.join(SKILLS)}; held-out: {args.eval_episodes} episodes per skill, the "
             f"skill forced onto the fast path.", "",
             f"| slow episodes per skill | target tokens | slow steps | base val. accuracy | expert val. accuracy | "
             f"fast successes, T=1 | overall | T={args.temperature} | overall | play s | train s |",
             "| ---: | --- | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: |"]
    for n, targets, steps, base, metrics, sampled, sharp, play_s, train_s in rows:
        acc = metrics.get("val_accuracy")
        lines.append(f"| {n} | {targets} | {steps} | {base['val_accuracy']:.2f} | "
                     f"{'—' if acc is None else f'{acc:.2f}'} | {rates(sampled)} | {overall(sampled):.0f}% | "
                     f"{rates(sharp)} | {overall(sharp):.0f}% | {play_s:.0f} | {train_s:.0f} |")
    lines.append("")
    record(args.results, "\n".join(lines))


if __name__ == "__main__":
    main()
