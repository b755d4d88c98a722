"""Wall time of one decision on each path, measured side by side in one run.

Slow path: the symbolic planner's plan + the deliberate executor's action, timed on real
Crafter states. Fast path: the real `FastPolicy.act` (observation and own map in, sampled
action out; batch 1) with one expert per category, for the same states, twice: with each
expert folded into the base (what the agent runs) and routed through the MoE-LoRA layers.
The weights are untrained: the cost of a decision does not depend on their values.
With `--llm SHAPE`, the slow path with an LLM planner too: the real `hf:` planner (loaded
from disk by `make_planner`) over a causal LM with the dimensions of a real model and random
weights (no model can be downloaded here; a forward pass costs the same whatever the weights
hold), answering the real planning prompt of the same states; generation runs to
`--llm_tokens` new tokens. One planner call is one slow-path decision: the planner is asked
once per subgoal.

Appends a table to benchmarks/RESULTS.md.

    python benchmarks/decision_latency.py --steps 400
    python benchmarks/decision_latency.py --steps 200 --llm qwen2.5-0.5b --llm_calls 3
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import parse_args, record  # noqa: E402

CATEGORIES = ("gather", "build", "craft", "combat", "survive")
# Published dimensions of real models (their config.json), as a Llama-architecture config.
LLM_SHAPES = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151_936,
                         tie_word_embeddings=True),
    "tinyllama-1.1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                           num_attention_heads=32, num_key_value_heads=4, vocab_size=32_000,
                           tie_word_embeddings=False),
}


@dataclass
class Args:
    steps: int = 400
    seed: int = 2000
    llm: str = ""  # one of LLM_SHAPES: time the hf planner too
    llm_calls: int = 3
    llm_tokens: int = 32
    device: str = "cpu"  # the fast path's (and the LLM's) device: cpu or cuda
    results: str = "benchmarks/RESULTS.md"


def fast_paths(env, models: Path, device: str = "cpu"):
    """The agent's fast path over a fresh base with one expert per category: (folded, routed)."""
    from agent.loop.fast_path import FastPolicy
    from memory.base_io import BASE_DIR, game_spec, save_base
    from memory.expert_io import save_expert
    from memory.inject import add_expert, inject
    from memory.lora import LoraConfig
    from memory.policy import PolicyConfig, build_policy
    from memory.registry import ExpertRef

    policy = build_policy(PolicyConfig(), len(env.cell_names), len(env.catalog.items),
                          len(env.action_names), env.catalog.names)
    save_base(policy, models / BASE_DIR, game_spec(env.name))
    inject(policy, LoraConfig(routing="category"))
    refs = []
    for category in CATEGORIES:
        add_expert(policy, category)
        save_expert(policy, category, models / category)
        refs.append(ExpertRef(category, str(models / category)))
    folded = FastPolicy(models, refs, device)
    routed = FastPolicy(models, refs, device)
    routed.merged = {}  # every decision through the routed MoE-LoRA layers
    return folded, routed


def llm_planner(shape: str, catalog, prompts: list[str], root: Path, tokens: int, device: str = "cpu"):
    """The `hf:` planner over a random-weight model with `shape`'s dimensions, saved and
    loaded back like any local model; its tokenizer is a byte-level BPE trained on the prompts."""
    from agent.planners.llm_planner import LLMOptions, make_planner
    from agent.planners.sim_llm import random_causal_lm

    path = random_causal_lm(root / shape, prompts, dims=dict(LLM_SHAPES[shape]), vocab_size=4000, stops=False)
    planner = make_planner(f"hf:{path}", catalog, options=LLMOptions(
        max_new_tokens=tokens, device=device, dtype="float32" if device == "cpu" else "bfloat16"))
    params = sum(p.numel() for p in planner.model.parameters())
    return planner, params


def main() -> None:
    import torch

    from agent.loop.slow_decision import SlowDecider
    from envs import make_env
    from envs.tasks import OPEN_ENDED, resolve_task

    args = parse_args(Args, __doc__.splitlines()[0])
    torch.set_num_threads(1)
    env = make_env("crafter")
    slow_path = SlowDecider(env, resolve_task(OPEN_ENDED, env.catalog))
    folded, routed = fast_paths(env, Path(tempfile.mkdtemp(prefix="peam-latency-")), args.device)
    slow, fast, fast_routed, contexts = [], [], [], []
    seed = args.seed
    slow_path.start(*env.reset(seed=seed))
    folded.memory = routed.memory = slow_path.world  # the fast paths read the agent's own map
    for _ in range(args.steps):
        t0 = time.perf_counter()
        ctx = slow_path.context()
        skill = slow_path.next_skill(ctx) or env.catalog["collect_wood"]
        action = slow_path.act(skill)
        slow.append(time.perf_counter() - t0)
        contexts.append(ctx)
        for path, sink in ((folded, fast), (routed, fast_routed)):
            t0 = time.perf_counter()
            path.act(slow_path.obs, skill)
            sink.append(time.perf_counter() - t0)
        slow_path.observe(env.step(env.action_names.index(action)), action)
        if slow_path.over:
            seed += 1
            slow_path.start(*env.reset(seed=seed))
            folded.memory = routed.memory = slow_path.world
    ms = lambda xs: 1000 * statistics.median(xs)  # noqa: E731
    llm_rows = []
    if args.llm:
        from agent.planners.prompts import build_messages

        if args.llm not in LLM_SHAPES:
            raise SystemExit(f"--llm must be one of {', '.join(LLM_SHAPES)}")
        picked = contexts[:: max(1, len(contexts) // args.llm_calls)][: args.llm_calls]
        messages = [build_messages(c, env.catalog) for c in picked]
        print(f"building a random {args.llm}-shaped model ...", flush=True)
        planner, params = llm_planner(args.llm, env.catalog, [m["content"] for ms_ in messages for m in ms_],
                                      Path(tempfile.mkdtemp(prefix="peam-llm-")), args.llm_tokens, args.device)
        calls, prompt_tokens = [], []
        if args.device != "cpu":
            planner.complete(messages[0])  # warm-up: CUDA's kernels load on the first call
        for i, m in enumerate(messages):
            t0 = time.perf_counter()
            _text, used, _new = planner.complete(m)  # one model call: the prompt in, llm_tokens out
            calls.append(time.perf_counter() - t0)
            prompt_tokens.append(used)
            print(f"  call {i + 1}/{len(messages)}: {calls[-1]:.2f} s", flush=True)
        llm_rows = [f"| slow: `hf:` planner call, {args.llm}-shaped random model ({params / 1e6:.0f} M "
                    f"parameters, {'fp32' if args.device == 'cpu' else 'bf16'}), prompt {min(prompt_tokens)}–{max(prompt_tokens)} tokens, "
                    f"{args.llm_tokens} new | {ms(calls):.0f} | {1000 * max(calls):.0f} (max) |"]
        llm_ratio = f" LLM planner call / fast = {ms(calls) / ms(fast):,.0f}×."
    text = "\n".join([
        f"### Decision latency, slow vs fast path — {date.today().isoformat()}", "",
        f"`python benchmarks/decision_latency.py --steps {args.steps}"
        + (f" --llm {args.llm} --llm_calls {args.llm_calls} --llm_tokens {args.llm_tokens}" if args.llm else "")
        + (f" --device {args.device}" if args.device != "cpu" else "") + "` on "
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} (1 thread), "
        + (f"fast path and LLM on {torch.cuda.get_device_name()}; " if args.device != "cpu" else "CPU; ")
        + "medians over the same real Crafter states.", "",
        "| path | median ms / decision | p90 ms |", "| --- | ---: | ---: |",
        f"| slow: symbolic planner + deliberate executor | {ms(slow):.3f} | "
        f"{1000 * statistics.quantiles(slow, n=10)[-1]:.3f} |",
        *llm_rows,
        f"| fast: `FastPolicy.act`, expert folded into the base | {ms(fast):.3f} | "
        f"{1000 * statistics.quantiles(fast, n=10)[-1]:.3f} |",
        f"| fast: `FastPolicy.act`, routed through the MoE-LoRA layers | {ms(fast_routed):.3f} | "
        f"{1000 * statistics.quantiles(fast_routed, n=10)[-1]:.3f} |",
        "", f"Symbolic slow / fast = {ms(slow) / ms(fast):.2f}× (a ratio above 1: the fast path is faster); "
        f"routed / folded = {ms(fast_routed) / ms(fast):.2f}×." + (llm_ratio if args.llm else ""), ""])
    record(args.results, text)


if __name__ == "__main__":
    main()
