"""What a GPU buys consolidation: training the base and the experts on the CPU and on CUDA.

The slow agent plays the demo ladder into one store; then, on each device in turn, the same
training runs on it: the base (`train_base`, no early stopping, a fixed number of rounds) and
every category's expert over it (`train_category_experts`), at the default batch size and at a
larger one; the experts a second time with `routed_delta`'s dense form off (the grouped
GEMM, or the gather where the device has none: CUDA in float32). Reports training samples per second (samples × passes / wall time) per device and
batch size, and the ratio to the CPU, side by side in one run.

    python benchmarks/training_throughput.py --episodes 4 --devices cpu,cuda
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import parse_args, record  # noqa: E402


@dataclass
class Args:
    episodes: int = 4  # slow-agent episodes per ladder task
    epochs: int = 3  # training rounds, each run to the end (no early stopping)
    batch_sizes: str = "64,512"
    devices: str = "cpu,cuda"
    results: str = "benchmarks/RESULTS.md"


def main() -> None:
    args = parse_args(Args, __doc__.splitlines()[0])
    import torch

    from agent.services.demo import DEMO_LADDER
    from agent.loop.runner import Runner
    from consolidation.fit import FitConfig
    from consolidation.trainer import CATEGORY_EXPERTS, train_base, train_category_experts
    from envs import make_env
    from envs.tasks import resolve_task
    from memory import moe_lora
    from memory.store import Store

    dense = moe_lora.DENSE_MAX_RANKS
    devices = args.devices.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("training_throughput: --devices names cuda but no CUDA GPU is visible")
    work = Path(tempfile.mkdtemp(prefix="peam-throughput-"))
    store = Store.open(f"sqlite:///{work}/peam.db")
    env = make_env("crafter")
    store.sync_skills(env.catalog)
    run_id = store.start_run(env="crafter", task="ladder", planner="symbolic", memory_mode="none", config={})
    runner = Runner(env, recorder=store, run_id=run_id)
    t0 = time.perf_counter()
    for i, name in enumerate(DEMO_LADDER):
        runner.run(resolve_task(name, env.catalog), seeds=list(range(100 * i, 100 * i + args.episodes)))
    store.finish_run(run_id, "finished")
    print(f"slow play: {time.perf_counter() - t0:.0f} s", flush=True)

    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for device in devices:
            models = work / f"{device}-{batch}"
            if device == "cuda":
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            base = train_base(store, out_dir=models, progress=False, config=FitConfig(
                epochs=args.epochs, batch_size=batch, patience=args.epochs + 1, device=device))
            t2 = time.perf_counter()
            experts_config = replace(CATEGORY_EXPERTS, epochs=args.epochs, batch_size=batch,
                                     patience=args.epochs + 1, device=device)
            experts = train_category_experts(store, models_dir=models, config=experts_config, progress=False)
            t3 = time.perf_counter()
            moe_lora.DENSE_MAX_RANKS = {d: 0 for d in dense}  # the experts again, through the grouped GEMM or gather
            try:
                train_category_experts(store, models_dir=models, config=experts_config, progress=False)
            finally:
                moe_lora.DENSE_MAX_RANKS = dense
            t4 = time.perf_counter()
            base_n = base["train_samples"] * base["epochs_run"]
            expert_n = sum(m["train_samples"] * m["epochs_run"] for m in experts.values())
            rows.append((batch, device, base_n / (t2 - t1), t2 - t1, expert_n / (t3 - t2), t3 - t2,
                         expert_n / (t4 - t3), base["val_accuracy"]))
            print(f"batch {batch} {device}: base {rows[-1][2]:.0f} samples/s ({t2 - t1:.1f} s), "
                  f"experts {rows[-1][4]:.0f} samples/s ({t3 - t2:.1f} s), without the dense form "
                  f"{rows[-1][6]:.0f}", flush=True)

    cpu = {batch: (b, e) for batch, device, b, _, e, _, _, _ in rows if device == "cpu"}
    gpu = f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""
    lines = [f"### Training throughput, CPU vs GPU — {date.today().isoformat()}", "",
             f"`python benchmarks/training_throughput.py --episodes {args.episodes} --epochs {args.epochs} "
             f"--batch_sizes {args.batch_sizes} --devices {args.devices}` on {platform.machine()}, "
             f"{os.cpu_count()} cores{gpu}, torch {torch.__version__} ({torch.get_num_threads()} CPU "
             f"threads); one store of {base['samples']} slow-path steps, the default policy "
             f"(d_model 128, 3 layers). Experts: one per category, rank 8.", "",
             "| batch | device | base samples/s | base s (wall, data included) | × CPU | experts samples/s | experts s | × CPU | experts samples/s without the dense form | base val. accuracy |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for batch, device, b, bs, e, es, e_old, acc in rows:
        rb, re = (f"{b / cpu[batch][0]:.1f}", f"{e / cpu[batch][1]:.1f}") if batch in cpu else ("—", "—")
        lines.append(f"| {batch} | {device} | {b:.0f} | {bs:.1f} | {rb} | {e:.0f} | {es:.1f} | {re} | {e_old:.0f} | {acc:.2f} |")
    lines.append("")
    record(args.results, "\n".join(lines))


if __name__ == "__main__":
    main()
