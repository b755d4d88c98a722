"""Forward+backward time of the Mixture-of-LoRA layer as experts are added.

Every token of a mixed batch uses its own expert(s). Compared, in one run, with medians of
repeats after warm-up, as ratios to a single plain LoRA on the same base layer:
  routed  - ours: `memory.moe_lora` (category = caller routes top-1, PEAM; topk = learned
            router, MixLoRA), one batched computation over stacked expert weights: the masked
            dense form for few experts, the grouped GEMM (or gather) for many; for category
            routing also each form forced, to show where the default switches;
  loop    - a naive Python loop over experts, one masked sub-batch each;
  peft    - PEFT's mixed-batch `adapter_names=` forward (top-1). PEFT refuses `adapter_names`
            in training mode, so it runs in eval mode with autograd on (no dropout here).
The input requires grad, as it does for a layer inside a network.

    .venv/bin/python benchmarks/moe_lora.py --repeats 5 [--device cuda]
"""

from __future__ import annotations

import argparse
import warnings
import datetime
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
from memory.lora import LoraConfig, LoraLinear
from memory.moe_lora import CategoryLoraLinear, TopkLoraLinear


@dataclass
class Args:
    tokens: int = 4096
    widths: str = "256,1024"
    experts: str = "1,4,16,64"
    r: int = 8
    repeats: int = 5
    warmup: int = 2
    device: str = "cpu"
    dtype: str = "float32"  # or bfloat16 (on CUDA the grouped GEMM wants it)
    peft: bool = True
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    results: str = "benchmarks/RESULTS.md"


def parse_args() -> Args:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in fields(Args):
        kind = (lambda s: s.lower() in ("1", "true", "yes")) if f.type in ("bool", bool) else type(f.default)
        p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    return Args(**vars(p.parse_args()))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_ms(steps: dict, args: Args) -> dict:
    """Round-robin: every repeat times each step once, so load from other processes on the
    machine falls on all of them alike and the ratios stay fair."""
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times = {label: [] for label in steps}
    for _ in range(args.repeats):
        for label, step in steps.items():
            sync(args.device)
            t0 = time.perf_counter()
            step()
            sync(args.device)
            times[label].append((time.perf_counter() - t0) * 1e3)
    return {label: statistics.median(t) for label, t in times.items()}


def fwd_bwd(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor, **kw):
    def step():
        x.grad = None
        for p in layer.parameters():
            p.grad = None
        layer(x, **kw).backward(grad)

    return step


def randomise_(layer: nn.Module) -> nn.Module:
    with torch.no_grad():
        for n, p in layer.named_parameters():
            if "lora" in n:
                p.normal_(std=0.02)
    return layer


def dense_limit(limit: float, step):
    """`step` with `routed_delta`'s dense form allowed up to `limit` (G·r): forced on with inf,
    off with 0, to compare the methods the default picks between."""
    from memory import moe_lora

    def run():
        saved = moe_lora.DENSE_MAX_RANKS
        moe_lora.DENSE_MAX_RANKS = {device: limit for device in saved}
        try:
            step()
        finally:
            moe_lora.DENSE_MAX_RANKS = saved

    return run


class LoopMoE(nn.Module):
    """The naive reference: a Python loop over experts, a masked sub-batch each."""

    def __init__(self, routed: CategoryLoraLinear, ids: torch.Tensor):
        super().__init__()
        self.routed, self.ids = routed, ids

    def forward(self, x):
        out = self.routed.base_layer(x)
        for e, name in enumerate(self.routed.expert_names()):
            rows = (self.ids == e).nonzero().squeeze(1)
            h = self.routed.lora_B[name](self.routed.lora_A[name](x[rows]))
            out = out.index_add(0, rows, h * self.routed.scaling)
        return out


def peft_step(base: nn.Linear, routed: CategoryLoraLinear, ids, x, grad, cfg: LoraConfig):
    """PEFT's mixed-batch forward with the same experts; None where PEFT cannot run it."""
    import copy

    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    model = nn.Sequential(copy.deepcopy(base))
    names = routed.expert_names()
    for name in names:
        pc = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, target_modules=["0"])
        model = inject_adapter_in_model(pc, model, adapter_name=name)
    layer = model[0]
    with torch.no_grad():
        for name in names:
            layer.lora_A[name].weight.copy_(routed.lora_A[name].weight)
            layer.lora_B[name].weight.copy_(routed.lora_B[name].weight)
    layer.to(x.dtype).eval().requires_grad_(True)
    layer.base_layer.requires_grad_(False)
    per_token = [names[i] for i in ids.tolist()]
    return fwd_bwd(layer, x, grad, adapter_names=per_token)


def measure_width(args: Args, d: int) -> list[dict]:
    torch.manual_seed(args.seed)
    dev, dtype = args.device, getattr(torch, args.dtype)
    base = nn.Linear(d, d).to(dev, dtype)
    x = torch.randn(args.tokens, d, device=dev, dtype=dtype, requires_grad=True)  # (tokens, d)
    grad = torch.randn(args.tokens, d, device=dev, dtype=dtype)  # (tokens, d)
    plain = LoraLinear(base, LoraConfig(r=args.r))
    plain.add_adapter("only")
    plain.to(dev, dtype)
    steps = {(1, "plain LoRA"): fwd_bwd(randomise_(plain), x, grad)}
    for n in (int(e) for e in args.experts.split(",")):
        cfg = LoraConfig(r=args.r, routing="category")
        routed = CategoryLoraLinear(base, cfg)
        for i in range(n):
            routed.add_expert(f"e{i}")
        randomise_(routed.to(dev, dtype))
        ids = torch.randint(0, n, (args.tokens,), device=dev)  # (tokens,) one expert per token
        routed.expert_indices = ids
        steps[n, "category (ours)"] = fwd_bwd(routed, x, grad)
        steps[n, "category, dense form"] = dense_limit(math.inf, fwd_bwd(routed, x, grad))
        steps[n, "category, grouped/gather"] = dense_limit(0, fwd_bwd(routed, x, grad))
        steps[n, "loop over experts"] = fwd_bwd(LoopMoE(routed, ids), x, grad)
        if args.peft:
            steps[n, "peft adapter_names"] = peft_step(base, routed, ids, x, grad, cfg)
        for k in (1, 2):
            topk = TopkLoraLinear(base, LoraConfig(r=args.r, routing="topk", num_experts=max(n, k), top_k=k)).to(dev, dtype)
            steps[n, f"topk (ours) k={k}"] = fwd_bwd(randomise_(topk), x, grad)
    ms = median_ms(steps, args)
    t_lora = ms[1, "plain LoRA"]
    return [dict(width=d, experts=n, mode=mode, ms=t, ratio=t / t_lora) for (n, mode), t in ms.items()]


def machine(device: str, dtype: str = "float32") -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name()}" if device.startswith("cuda") else ""
    cores = f"{os.cpu_count()} cores, torch using {torch.get_num_threads()} thread(s)"
    return f"{cpu}, {cores}{gpu}, torch {torch.__version__}, device {device}, {dtype}"


def table(rows: list[dict]) -> str:
    lines = ["| width | experts | mode | fwd+bwd ms | × plain LoRA |", "| ---: | ---: | --- | ---: | ---: |"]
    lines += [f"| {r['width']} | {r['experts']} | {r['mode']} | {r['ms']:.2f} | {r['ratio']:.2f} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Already found a `peft_config`")  # we add many adapters
    rows = []
    for d in args.widths.split(","):
        rows += measure_width(args, int(d))
        print(table(rows), flush=True)
    text = table(rows)
    header = (
        f"\n## MoE-LoRA layer, forward+backward, {args.tokens} tokens, r={args.r} "
        f"({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)\n\n"
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`\n"
        f"- machine: {machine(args.device, args.dtype)}\n"
        f"- medians of {args.repeats} repeats after {args.warmup} warm-up; each token routed to its own expert(s)\n\n"
    )
    with open(args.results, "a") as f:
        f.write(header + text + "\n")


if __name__ == "__main__":
    main()
