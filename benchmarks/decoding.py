"""How should the fast path pick its action from the policy's scores? One base and one gather
expert, trained on one store, measured on the same held-out seeds with each way of decoding:
sampling from the softmax or its argmax, each with and without the blocked-move mask
(agent/loop/fast_path.py: a move that changed neither the agent's cell nor its facing is not tried
again from there).

An argmax policy that stands next to its target without facing it pushes into the blocked
cell: the state never changes, so it repeats itself until the progress monitor hands over.
Sampling breaks that loop by chance; the mask breaks it by construction.

    python benchmarks/decoding.py --episodes 16 --eval_episodes 20
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

from benchmarks.common import parse_args, record  # noqa: E402

PLAY_SEED = 30_000  # skill j, episode k -> PLAY_SEED + 1000 j + k: never an evaluation seed
DECODINGS = {  # name -> (sample, unstick)
    "sample": (True, False),
    "sample + mask": (True, True),
    "argmax": (False, False),
    "argmax + mask": (False, True),
}


@dataclass
class Args:
    episodes: int = 16  # slow-path episodes per skill: the continual benchmark's stage
    eval_episodes: int = 20  # held-out episodes per skill per decoding
    skills: str = "collect_wood,collect_stone"  # the continual benchmark's gather stage
    decodings: str = ",".join(DECODINGS)
    epochs: int = 8
    device: str = "cpu"
    results: str = "benchmarks/RESULTS.md"


def _fast_share(res: dict) -> tuple[int, int]:
    wins = sum(v["successes"] for v in res.values())
    return wins, sum(v["attempts"] for v in res.values())


def main() -> None:
    args = parse_args(Args, __doc__.splitlines()[0])
    import torch

    from agent.services.evaluation import measure_fast
    from agent.loop.fast_path import FastPolicy
    from agent.loop.runner import Runner
    from consolidation.fit import FitConfig
    from consolidation.trainer import ExpertTrainingConfig, train_base, train_expert
    from envs import make_env
    from envs.tasks import resolve_task
    from memory.registry import ExpertRef
    from memory.store import Store

    skills = [s for s in args.skills.split(",") if s]
    decodings = [d.strip() for d in args.decodings.split(",") if d.strip()]
    unknown = [d for d in decodings if d not in DECODINGS]
    if unknown:
        raise SystemExit(f"decoding: unknown decoding {unknown[0]!r}; known: {', '.join(DECODINGS)}")
    env = make_env("crafter")
    missing = [s for s in skills if s not in env.catalog]
    if missing:
        raise SystemExit(f"decoding: unknown skill {missing[0]!r}")
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="peam-decoding-"))
    store = Store.open(f"sqlite:///{work}/peam.db")
    store.sync_skills(env.catalog)
    run_id = store.start_run(env="crafter", task="gather stage", planner="symbolic", memory_mode="none",
                             config={"episodes": args.episodes})
    runner = Runner(env, recorder=store, run_id=run_id)
    steps = sum(runner.run_episode(resolve_task(skill, env.catalog), PLAY_SEED + 1000 * j + k).steps
                for j, skill in enumerate(skills) for k in range(args.episodes))
    store.finish_run(run_id, "finished")
    print(f"slow play: {steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    t1 = time.perf_counter()
    models = work / "models"
    base = train_base(store, out_dir=models, game="crafter", progress=False,
                      config=FitConfig(epochs=args.epochs, device=args.device))
    cand = train_expert(store, models_dir=models, game="crafter", category="gather", tag="decoding",
                        config=ExpertTrainingConfig(device=args.device))
    train_s = time.perf_counter() - t1
    print(f"trained in {train_s:.0f} s: base val acc {base['val_accuracy']:.2f}, expert "
          f"{cand.metrics.get('val_accuracy') or 0:.2f}", flush=True)
    ref = ExpertRef("gather", cand.path, cand.expert_id)
    rows = []
    for name in decodings:
        sample, unstick = DECODINGS[name]
        t2 = time.perf_counter()
        fast = FastPolicy(models, [ref], args.device, sample=sample, seed=0, unstick=unstick)
        res = measure_fast(fast, store, env, skills, args.eval_episodes)
        rows.append((name, res, time.perf_counter() - t2))
        wins, tries = _fast_share(res)
        print(f"{name}: {wins}/{tries} " + ", ".join(f"{s} {v['successes']}/{v['attempts']}"
                                                     for s, v in res.items()), flush=True)

    lines = [f"### Fast-path decoding on one gather expert — {date.today().isoformat()}", "",
             f"`python benchmarks/decoding.py --episodes {args.episodes} --eval_episodes {args.eval_episodes}"
             + (f" --decodings '{args.decodings}'" if args.decodings != Args.decodings else "") + "` "
             f"on {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
             f"{time.perf_counter() - t0:.0f} s wall. {steps} slow steps ({args.episodes} episodes per skill); "
             f"base val. accuracy {base['val_accuracy']:.2f}, expert "
             f"{cand.metrics.get('val_accuracy') or 0:.2f}; held-out: {args.eval_episodes} episodes per "
             f"skill, the skill forced onto the fast path.", "",
             "| decoding | " + " | ".join(skills) + " | overall | eval s |",
             "| --- | " + " | ".join("---:" for _ in skills) + " | ---: | ---: |"]
    for name, res, secs in rows:
        wins, tries = _fast_share(res)
        cells = " | ".join(f"{res[s]['successes']}/{res[s]['attempts']}" for s in skills)
        lines.append(f"| {name} | {cells} | {100 * wins / max(tries, 1):.0f}% | {secs:.0f} |")
    lines.append("")
    record(args.results, "\n".join(lines))


if __name__ == "__main__":
    main()
