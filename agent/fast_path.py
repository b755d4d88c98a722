"""The fast path: the frozen base policy carrying the promoted expert of each skill category.

One forward pass answers a decision. The category routing of PEAM picks the expert: a skill's
category indexes the expert that was trained on it, and a category without an expert is not
covered (the arbiter keeps the slow path for it).
"""

from __future__ import annotations

from pathlib import Path

import torch

from envs.base import Observation
from envs.catalog import Skill
from memory.registry import ExpertRef

SHARED = "shared"  # the one expert of the shared-LoRA baseline, serving every category


class FastPolicy:
    def __init__(self, models_dir: str | Path, experts: list[ExpertRef], device: str = "cpu",
                 sample: bool = True, seed: int = 0):
        from consolidation.base_training import BASE_DIR, load_base
        from memory.expert_io import load_expert, read_expert
        from memory.inject import add_expert, inject
        from memory.lora import LoraConfig

        self.policy, doc = load_base(Path(models_dir) / BASE_DIR, device)
        self.items = list(doc["items"])
        self.action_names = list(doc["action_names"])
        self.device = next(self.policy.parameters()).device
        self.experts = {e.category: e for e in experts}
        self.index: dict[str, int] = {}
        if experts:
            _, cfg = read_expert(experts[0].path)
            if "peam" in cfg:  # a non-plain routing (MoRAM): its own config travels with it
                inject(self.policy, LoraConfig.from_dict(cfg["peam"]))
            else:
                inject(self.policy, LoraConfig(r=cfg["r"], alpha=cfg["lora_alpha"], routing="category"))
            for i, ref in enumerate(experts):
                add_expert(self.policy, ref.category)
                load_expert(self.policy, ref.path, ref.category)
                self.index[ref.category] = i
        self.policy.eval()
        self.sample = sample  # sampling breaks the ties and loops an argmax policy falls into
        self.generator = torch.Generator().manual_seed(seed)
        self.version = tuple(sorted((e.category, e.expert_id or 0) for e in experts))
        self.memory = None  # agent.world_memory.WorldMemory, set by the runner: the map input

    def _expert_for(self, category: str) -> str | None:
        """The category's own expert, else a single expert shared by all (the baseline)."""
        if category in self.index:
            return category
        return SHARED if SHARED in self.index else None

    def reset(self, seed: int) -> None:
        """Reseed the action sampler: an episode replays the same for the same seed."""
        self.generator.manual_seed(seed)

    def covers(self, category: str) -> bool:
        return self._expert_for(category) is not None

    def confidence(self, skill: Skill) -> float:
        """The held-out success the gate measured for this skill (1.0 when it measured the
        category but not this skill: the expert was promoted for the category as a whole)."""
        ref = self.experts.get(self._expert_for(skill.category) or "")
        if ref is None:
            return 0.0
        return (ref.skill_success or {}).get(skill.name, 1.0)

    @torch.inference_mode()
    def act(self, obs: Observation, skill: Skill) -> str:
        from memory.inject import set_expert_indices

        view = torch.as_tensor(obs.local_view[None], device=self.device).long()  # (1, W, H)
        inv = torch.tensor([[obs.inventory.get(k, 0) for k in self.items]], device=self.device).float()
        facing = torch.tensor([obs.facing], device=self.device).float()  # (1, 2)
        subgoal = self.policy.tokenizer.encode([skill.name]).to(self.device)  # (1, words)
        if self.index:
            name = self._expert_for(skill.category)
            expert = self.index[name] if name else -1
            set_expert_indices(self.policy, torch.tensor([expert], device=self.device))
        cells = None
        if self.policy.map is not None and self.memory is not None:
            radius = self.policy.config.map_radius
            cells = torch.as_tensor(self.memory.crop(radius)[None], device=self.device).long()  # (1, M, M)
        logits, _done = self.policy(view, inv, facing, subgoal, map=cells)  # (1, n_actions), (1,)
        if self.sample:
            probs = torch.softmax(logits[0].float().cpu(), -1)
            action = int(torch.multinomial(probs, 1, generator=self.generator))
        else:
            action = int(logits[0].argmax())
        return self.action_names[action]
