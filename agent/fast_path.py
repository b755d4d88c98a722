"""The fast path: the frozen base policy carrying the promoted expert of each skill category.

One forward pass answers a decision. The category routing of PEAM picks the expert: a skill's
category indexes the expert that was trained on it, and a category without an expert is not
covered (the arbiter keeps the slow path for it). The action is the argmax of the policy's
scores, with the actions already taken from the current state in this segment masked out, and
the actions that cannot serve the skill.
"""

from __future__ import annotations

from pathlib import Path

import torch

from agent.world_memory import DIRS
from envs.base import Observation
from envs.catalog import Skill
from memory.registry import ExpertRef

SHARED = "shared"  # the one expert of the shared-LoRA baseline, serving every category
UNMASKED = ("noop", "sleep")  # repeated freely by a skill that sleeps (all skills where the game does not say)
CREATURES = ("cow", "zombie", "skeleton", "plant")  # "do" hurts them: hidden health, several hits
# Cells that kill whoever steps on them (Crafter: objects.py, Player.update); the slow path's
# walkable cells leave them out. A move into one is never taken: 3 of 40 open-ended games
# ended with the fast path walking into lava.
DEADLY = ("lava",)


class FastPolicy:
    def __init__(self, models_dir: str | Path, experts: list[ExpertRef], device: str = "cpu",
                 sample: bool = False, seed: int = 0, unstick: bool = True):
        from consolidation.base_training import BASE_DIR, load_base
        from memory.expert_io import load_expert, read_expert
        from memory.inject import add_expert, inject, merged_copy
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
        # Inference folds each category's expert into a copy of the base (W + s·BA): one
        # decision then costs the base network alone, with no routing (measured in
        # benchmarks/decision_latency.py). MoRAM's self-activated atoms cannot be folded.
        self.merged = {}
        if experts and "peam" not in cfg:
            self.merged = {name: merged_copy(self.policy, name).eval() for name in self.index}
        self._subgoals: dict[str, torch.Tensor] = {}
        # The argmax by default: with the mask below it succeeded on 91% of held-out gather
        # attempts against 52% for sampling from the softmax, 34% for the argmax alone
        # (benchmarks/decoding.py). Sampling stays an option (DAgger-style exploration).
        self.sample = sample
        self.generator = torch.Generator().manual_seed(seed)
        self.version = tuple(sorted((e.category, e.expert_id or 0) for e in experts))
        self.memory = None  # agent.world_memory.WorldMemory, set by the runner: the map input
        # Within a fast segment, an action already taken from the state the agent is in now
        # (its cell, its facing, the cell it faces) is not taken again: with the world as it
        # was, it would lead where it led before. This masks a move into a blocked cell, "do"
        # or "make" where they do nothing, and back-and-forth cycles, each of which an argmax
        # policy would repeat until the progress monitor or the budget handed over
        # (benchmarks/decoding.py). An item gained clears the record (the world moved on);
        # "do" facing the skill's own target or a creature is never masked (a cow takes several
        # hits, grass gives a sapling one time in ten), nor noop and sleep for the skill that
        # sleeps. Elsewhere a noop is an action like any other, taken once from a state (5–10
        # noops in a row before the progress monitor handed over, in traces of failed attempts).
        # And an action that cannot serve the skill at all (envs: `Skill.actions`) is never
        # taken: sleep in the open while collecting stone, a table that eats the wood just
        # collected; nor a move onto a cell that kills (DEADLY).
        self.unstick = unstick
        self.cell_names = list(doc.get("cell_names", ()))
        self._banned: dict[str, set[int]] = {}  # skill -> actions that cannot serve it
        self._do = self.action_names.index("do") if "do" in self.action_names else None
        self._moves = {n: i for i, n in enumerate(self.action_names) if n in DIRS}
        self._tried: dict[tuple, set[int]] = {}  # state -> actions taken from it in this segment
        self._last: tuple | None = None  # (map step, inventory) at the last decision

    def _expert_for(self, category: str) -> str | None:
        """The category's own expert, else a single expert shared by all (the baseline)."""
        if category in self.index:
            return category
        return SHARED if SHARED in self.index else None

    def reset(self, seed: int) -> None:
        """Reseed the action sampler: an episode replays the same for the same seed."""
        self.generator.manual_seed(seed)
        self._last, self._tried = None, {}

    def _masked(self, obs: Observation, skill: Skill) -> tuple[tuple, set[int]]:
        """The state the agent is in now (its cell, facing, the cell it faces) and the actions
        already taken from it in this segment."""
        cx, cy = obs.center
        faced = int(obs.local_view[cx + obs.facing[0], cy + obs.facing[1]])
        state = (self.memory.pos, tuple(obs.facing), faced)
        last = self._last
        if (last is None or last[0] + 1 != self.memory.step  # a new segment
                or any(n > last[1].get(k, 0) for k, n in obs.inventory.items())):  # an item gained
            self._tried = {}
        masked = self._tried.get(state, set())
        if self._do in masked and self._may_need_hits(faced, skill):
            masked = masked - {self._do}
        return state, masked | self._banned_for(skill) | self._deadly_moves(obs)

    def _deadly_moves(self, obs: Observation) -> set[int]:
        """The moves onto a cell that kills, as the agent sees its neighbours now."""
        cx, cy = obs.center
        return {self._moves[name] for name, (dx, dy) in DIRS.items() if name in self._moves
                and self._cell_name(int(obs.local_view[cx + dx, cy + dy])) in DEADLY}

    def _cell_name(self, cell: int) -> str:
        return self.cell_names[cell] if cell < len(self.cell_names) else ""

    def _banned_for(self, skill: Skill) -> set[int]:
        """The actions that cannot serve the skill (envs: `Skill.actions`; none where the game
        does not say)."""
        banned = self._banned.get(skill.name)
        if banned is None:
            banned = self._banned[skill.name] = (
                {i for i, n in enumerate(self.action_names) if n not in skill.actions} if skill.actions else set())
        return banned

    def _maskable(self, action: int, skill: Skill) -> bool:
        """Whether taking `action` is recorded against the state (noop and sleep repeat freely
        for a skill that sleeps, and where the game does not say which actions serve a skill)."""
        return not (self.action_names[action] in UNMASKED and (not skill.actions or "sleep" in skill.actions))

    def _may_need_hits(self, cell: int, skill: Skill) -> bool:
        """Whether "do" on this cell can work without changing anything visible at once."""
        name = self._cell_name(cell)
        return name in skill.target or name in CREATURES

    def covers(self, category: str) -> bool:
        return self._expert_for(category) is not None

    def confidence(self, skill: Skill) -> float:
        """The held-out success the gate measured for this skill; 0.0 for a skill it did not
        measure (the category's expert never showed it can do that one). An expert promoted
        with no gate at all (the continual baselines) carries no measurement and is trusted
        blindly, 1.0: what a naive fine-tuner does."""
        ref = self.experts.get(self._expert_for(skill.category) or "")
        if ref is None:
            return 0.0
        if ref.skill_success is None:
            return 1.0
        return ref.skill_success.get(skill.name, 0.0)

    def evidence(self, skill: Skill) -> int:
        """How many held-out attempts that rate stands on (1 where the registry does not say,
        0 where nothing was measured for this skill)."""
        ref = self.experts.get(self._expert_for(skill.category) or "")
        if ref is None:
            return 0
        if ref.skill_success is None:
            return 1
        if skill.name not in ref.skill_success:
            return 0
        return max(int((ref.skill_attempts or {}).get(skill.name, 1)), 1)

    def gate_cost(self, skill: Skill) -> tuple[int, int, int] | None:
        """(successes, attempts, steps) of the gate's held-out fast attempts at this skill: what
        a subgoal costs this expert before it has played one live. None where the gate did not
        count steps (a store from before it did, a baseline promoted without a gate)."""
        ref = self.experts.get(self._expert_for(skill.category) or "")
        if ref is None or not ref.skill_steps or skill.name not in ref.skill_steps:
            return None
        tries = int((ref.skill_attempts or {}).get(skill.name, 0))
        wins = round((ref.skill_success or {}).get(skill.name, 0.0) * tries)
        return wins, tries, int(ref.skill_steps[skill.name])

    @torch.inference_mode()
    def act(self, obs: Observation, skill: Skill) -> str:
        from memory.inject import set_expert_indices

        view = torch.as_tensor(obs.local_view[None], device=self.device).long()  # (1, W, H)
        inv = torch.tensor([[obs.inventory.get(k, 0) for k in self.items]], device=self.device).float()
        facing = torch.tensor([obs.facing], device=self.device).float()  # (1, 2)
        subgoal = self._subgoals.get(skill.name)
        if subgoal is None:
            subgoal = self._subgoals[skill.name] = self.policy.tokenizer.encode([skill.name]).to(self.device)  # (1, words)
        name = self._expert_for(skill.category) if self.index else None
        model = self.merged.get(name)
        if model is None:
            model = self.policy
            if self.index:
                expert = self.index[name] if name else -1
                set_expert_indices(self.policy, torch.tensor([expert], device=self.device))
        cells = None
        if model.map is not None and self.memory is not None:
            radius = model.config.map_radius
            cells = torch.as_tensor(self.memory.crop(radius)[None], device=self.device).long()  # (1, M, M)
        logits, _done = model(view, inv, facing, subgoal, map=cells)  # (1, n_actions), (1,)
        unstick = self.unstick and self.memory is not None
        if unstick:
            state, masked = self._masked(obs, skill)
            if masked:
                logits = logits.clone()
                logits[0, sorted(masked)] = float("-inf")
        if self.sample:
            probs = torch.softmax(logits[0].float().cpu(), -1)
            action = int(torch.multinomial(probs, 1, generator=self.generator))
        else:
            action = int(logits[0].argmax())
        if unstick:
            if self._maskable(action, skill):
                self._tried.setdefault(state, set()).add(action)
            self._last = (self.memory.step, dict(obs.inventory))
        return self.action_names[action]
