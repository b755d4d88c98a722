"""Which training recipe makes the better expert? One store, several recipes, the same game.

The slow agent plays the gather stage of the continual benchmark (its seeds); one practice
round (consolidation/pipeline.py) lets a first expert play those skills forced onto the fast
path while the slow path shadows it, so the store also holds fast-path steps labelled with the
slow path's choice. Then, per recipe, a fresh base and gather expert are trained on that same
store and measured on the same held-out seeds, each skill forced onto the fast path alone
(agent/services/evaluation.py). Recipes:

  plain    behavioural cloning on the slow path's successful steps (the default)
  mirror   the same, every step also mirrored left–right, top–bottom and both
  teacher  the slow path's steps and the shadowed fast-path steps with the slow path's labels
           (DAgger's aggregate, Ross et al. 2011)

Recipes are measured with the fast path's default decoding (the argmax with the action mask
since benchmarks/decoding.py; sampling before, in the tables recorded until then). It also
plays the `plain` expert sampling with a sharper softmax (temperature < 1), and reports how
often the shadowed fast path agreed with the slow path.

    python benchmarks/expert_recipe.py --episodes 16 --eval_episodes 20
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

SKILLS = ("collect_wood", "collect_stone")
RECIPES = {"plain": (False, False), "mirror": (True, False), "teacher": (False, True)}


@dataclass
class Args:
    episodes: int = 16  # slow-path episodes per skill (the continual benchmark's stage)
    practice_episodes: int = 8  # per skill, for the shadowed practice round
    eval_episodes: int = 20  # held-out episodes per skill per recipe
    recipes: str = "plain,mirror,teacher"
    temperatures: str = "0.5,0.25"  # sharper sampling tried on the plain expert
    results: str = "benchmarks/RESULTS.md"


def main() -> None:
    args = parse_args(Args, __doc__.splitlines()[0])
    import numpy as np

    from agent.bench.continual import SEED_BASE
    from agent.services.evaluation import PRACTICE_SEED_BASE, fast_success, measure_fast, practise_fast
    from agent.loop.fast_path import FastPolicy
    from agent.loop.runner import Runner
    from consolidation.fit import FitConfig
    from consolidation.trainer import ExpertTrainingConfig, train_base, train_expert
    from envs import make_env
    from envs.tasks import resolve_task
    from memory import columns as C
    from memory.registry import ExpertRef
    from memory.store import Store

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="peam-recipe-"))
    store = Store.open(f"sqlite:///{work}/peam.db")
    env = make_env("crafter")
    store.sync_skills(env.catalog)
    run_id = store.start_run(env="crafter", task="gather stage", planner="symbolic", memory_mode="none", config={})
    runner = Runner(env, recorder=store, run_id=run_id)
    for j, skill in enumerate(SKILLS):
        for k in range(args.episodes):
            runner.run_episode(resolve_task(skill, env.catalog), SEED_BASE + 100 * j + k)
    store.finish_run(run_id, "finished")
    print(f"slow play: {time.perf_counter() - t0:.0f} s", flush=True)

    def trained(name: str, mirror: bool, teacher: bool) -> tuple[Path, ExpertRef, dict]:
        models = work / name
        train_base(store, out_dir=models, game="crafter", progress=False, config=FitConfig(epochs=8, mirror=mirror))
        cand = train_expert(store, models_dir=models, game="crafter", category="gather", tag=name,
                            config=ExpertTrainingConfig(teacher=teacher, mirror=mirror))
        return models, ExpertRef("gather", cand.path, cand.expert_id), cand.metrics

    first, first_ref, _ = trained("first", False, False)
    practise_fast(store, first, "crafter", [first_ref], list(SKILLS), args.practice_episodes,
                  seed=PRACTICE_SEED_BASE)
    agree = total = 0
    for seg in store.segments(path="fast"):
        steps = store.load_steps(seg.id)
        agree += int(np.sum(steps[C.ACTION] == steps[C.TEACHER]))
        total += len(steps[C.ACTION])
    print(f"practice: {total} shadowed fast steps, {time.perf_counter() - t0:.0f} s", flush=True)

    rows = []
    for name in args.recipes.split(","):
        t1 = time.perf_counter()
        models, ref, metrics = trained(name, *RECIPES[name])
        train_s = time.perf_counter() - t1
        res = fast_success(store, models, "crafter", [ref], list(SKILLS), args.eval_episodes)
        rows.append((name, res, metrics, train_s))
        print(f"{name}: {rates(res)} ({train_s:.0f} s training)", flush=True)
        if name == "plain":
            for t in (float(x) for x in args.temperatures.split(",") if x):
                fast = sharpened(FastPolicy(models, [ref], sample=True, unstick=False), t)
                res_t = measure_fast(fast, store, env, list(SKILLS), args.eval_episodes)
                rows.append((f"plain, temperature {t}", res_t, None, None))
                print(f"plain at temperature {t}: {rates(res_t)}", flush=True)

    lines = [f"### Expert training recipes on one store, gather — {date.today().isoformat()}", "",
             f"`python benchmarks/expert_recipe.py --episodes {args.episodes} --practice_episodes "
             f"{args.practice_episodes} --eval_episodes {args.eval_episodes}` on {platform.machine()}, "
             f"{os.cpu_count()} cores; {time.perf_counter() - t0:.0f} s wall. Slow play: {args.episodes} "
             f"episodes per skill; one shadowed practice round of {args.practice_episodes} per skill: "
             f"{total} fast-path steps, of which the fast path chose the slow path's action on "
             f"**{100 * agree / max(total, 1):.0f}%**.", "",
             "| recipe | held-out fast-path successes / attempts | overall | val. accuracy | training s |",
             "| --- | --- | ---: | ---: | ---: |"]
    for name, res, metrics, train_s in rows:
        acc = f"{metrics['val_accuracy']:.2f}" if metrics and metrics.get("val_accuracy") is not None else "—"
        lines.append(f"| {name} | {rates(res)} | {overall(res):.0f}% | {acc} | "
                     f"{'—' if train_s is None else f'{train_s:.0f}'} |")
    lines.append("")
    record(args.results, "\n".join(lines))


if __name__ == "__main__":
    main()
