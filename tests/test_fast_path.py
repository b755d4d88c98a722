"""The fast path as the agent runs it: each category's expert folded into a copy of the base
decides exactly as the base routed through its MoE-LoRA layers."""

import torch

from agent.fast_path import FastPolicy
from agent.world_memory import WorldMemory
from consolidation.base_training import BASE_DIR, game_spec, save_base
from envs import make_env
from memory.expert_io import save_expert
from memory.inject import add_expert, inject, wrappers
from memory.lora import LoraConfig
from memory.policy import PolicyConfig, build_policy
from memory.registry import ExpertRef


def test_folded_experts_decide_as_the_routed_ones(tmp_path):
    env = make_env("crafter")
    torch.manual_seed(0)
    policy = build_policy(PolicyConfig(d_model=32, n_layers=2, n_heads=4), len(env.cell_names),
                          len(env.catalog.items), len(env.action_names), env.catalog.names)
    save_base(policy, tmp_path / BASE_DIR, game_spec("crafter"))
    inject(policy, LoraConfig(routing="category"))
    refs = []
    for category in ("gather", "build"):
        add_expert(policy, category)
        with torch.no_grad():  # a trained expert: B is no longer zero
            for layer in wrappers(policy).values():
                layer.lora_B[category].weight.normal_(0, 0.5)
        save_expert(policy, category, tmp_path / category)
        refs.append(ExpertRef(category, str(tmp_path / category)))
    folded = FastPolicy(tmp_path, refs, seed=3)
    routed = FastPolicy(tmp_path, refs, seed=3)
    routed.merged = {}
    assert set(folded.merged) == {"gather", "build"}
    obs, _ = env.reset(seed=0)
    memory = WorldMemory(env.cell_names, env.walkable)
    memory.observe(obs, None)
    folded.memory = routed.memory = memory
    for name in ("collect_wood", "place_table", "collect_stone", "place_stone") * 5:
        skill = env.catalog[name]
        assert folded.act(obs, skill) == routed.act(obs, skill), name
