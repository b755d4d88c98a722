"""The fast path: the frozen base policy carrying the promoted expert of each skill category,
and the plan-level memory carrying the promoted plan expert of each task category
(memory/plan_policy.py). It implements memory/protocol.py's `FastPath`.

One forward pass answers a decision. The category routing of PEAM picks the expert: a skill's
category indexes the expert that was trained on it, and a category without an expert is not
covered (the arbiter keeps the slow path for it). The action is the argmax of the policy's
scores, with the actions already taken from the current state in this segment masked out, and
the actions that cannot serve the skill.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch

from agent.loop.world_memory import DIRS
from envs.base import Observation
from envs.catalog import Skill
from envs.knowledge import GameKnowledge
from memory.protocol import BLIND, UNMEASURED, Level, Measured, Proposal
from memory.registry import ExpertRef

SHARED = "shared"  # the one expert of the shared-LoRA baseline, serving every category
UNMASKED = ("noop", "sleep")  # repeated freely by a skill that sleeps (all skills where the game does not say)
DONE_P = 0.5  # the done head's probability above which the policy holds its subgoal complete


class FastPolicy:
    def __init__(self, models_dir: str | Path, experts: list[ExpertRef], device: str = "cpu",
                 sample: bool = False, seed: int = 0, unstick: bool = True,
                 plan_experts: list[ExpertRef] | None = None):
        from memory.plan_policy import PlanMemory

        self.plans = PlanMemory(models_dir, plan_experts, device) if plan_experts else None
        self.plan_experts = {e.category: e for e in plan_experts or ()}
        self.version = (tuple(sorted((e.category, e.expert_id or 0) for e in experts)),
                        tuple(sorted((e.category, e.expert_id or 0) for e in plan_experts or ())))
        self.experts = {e.category: e for e in experts}
        self.index: dict[str, int] = {}
        self.merged = {}
        self.memory = None  # agent.loop.world_memory.WorldMemory, set by `reset`: the map input
        self._done = False
        self.category_of: dict[str, str] = {}  # skill -> its category, from the base's game
        self.knowledge = GameKnowledge()  # the base's game's cells that kill or take several hits
        self.acts = bool(experts) or not plan_experts  # a plan-only memory loads no action base
        if self.acts:
            self._load_actions(models_dir, experts, device, sample, seed, unstick)

    def _load_actions(self, models_dir, experts: list[ExpertRef], device: str, sample: bool, seed: int,
                      unstick: bool) -> None:
        from memory.base_io import BASE_DIR, load_base
        from memory.expert_io import load_expert, read_expert
        from memory.inject import add_expert, inject, merged_copy
        from memory.lora import LoraConfig
        from memory.registry import check_base, expert_dir

        self.policy, doc = load_base(Path(models_dir) / BASE_DIR, device)
        check_base(experts, doc["sha256"])  # each expert on the base it was trained on, unaltered
        from envs import make_env

        catalog = make_env(doc.get("game", "crafter")).catalog
        self.category_of = {s.name: s.category for s in catalog}
        self.knowledge = catalog.knowledge
        self.items = list(doc["items"])
        self.action_names = list(doc["action_names"])
        self.device = next(self.policy.parameters()).device
        if experts:
            _, cfg = read_expert(expert_dir(models_dir, experts[0].path))
            if "peam" in cfg:  # a non-plain routing (MoRAM): its own config travels with it
                inject(self.policy, LoraConfig.from_dict(cfg["peam"]))
            else:
                inject(self.policy, LoraConfig(r=cfg["r"], alpha=cfg["lora_alpha"], routing="category"))
            for i, ref in enumerate(experts):
                add_expert(self.policy, ref.category)
                load_expert(self.policy, expert_dir(models_dir, ref.path), ref.category, sha256=ref.sha256)
                self.index[ref.category] = i
        self.policy.eval()
        # Inference folds each category's expert into a copy of the base (W + s·BA): one
        # decision then costs the base network alone, with no routing (measured in
        # benchmarks/decision_latency.py). MoRAM's self-activated atoms cannot be folded.
        if experts and "peam" not in cfg:
            self.merged = {name: merged_copy(self.policy, name).eval() for name in self.index}
        self._subgoals: dict[str, torch.Tensor] = {}
        # The argmax by default: with the mask below it beats both sampling from the softmax
        # and the bare argmax on held-out attempts (benchmarks/decoding.py, its section in
        # RESULTS.md). Sampling stays an option (DAgger-style exploration).
        self.sample = sample
        self.generator = torch.Generator().manual_seed(seed)
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
        # collected; nor a move onto a cell that kills (the game's `deadly` cells: in Crafter, 3
        # of 40 open-ended games ended with the fast path walking into lava).
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

    def reset(self, seed: int, world=None) -> None:
        """A new episode: reseed the action sampler (an episode replays the same for the same
        seed) and read the agent's own map `world` from now on."""
        self.memory = world
        self._done = False
        if self.acts:
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
                and self._cell_name(int(obs.local_view[cx + dx, cy + dy])) in self.knowledge.deadly}

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
        """Whether "do" on this cell can work without changing anything visible at once: the
        skill's own target, or a cell with hidden health (the game's `sturdy` cells)."""
        name = self._cell_name(cell)
        return name in skill.target or name in self.knowledge.sturdy

    def covers(self, category: str, level: Level = "action") -> bool:
        if level == "plan":
            return self.plans is not None and self.plans.covers(category)
        return bool(self.index) and self._expert_for(category) is not None

    def confidence(self, name: str, level: Level = "action") -> Measured:
        """What the gate measured: for a skill (action), its held-out fast success, attempts,
        steps and seconds; for a task (plan), the share of the plan expert's held-out proposals
        that led to a successful subgoal. Unmeasured where the gate never saw it (the expert
        never showed it can do that one); an expert promoted with no gate at all (the continual
        baselines) is trusted blindly: what a naive fine-tuner does."""
        if level == "plan":
            refs = self.plan_experts.values()
            ref = next((e for e in refs if e.skill_success is None or name in e.skill_success), None)
            return _with_threshold(_measured(ref, name), ref, name) if ref is not None else UNMEASURED
        category = self.category_of.get(name)
        ref = self.experts.get(self._expert_for(category) or "") if category else None
        return _measured(ref, name) if ref is not None else UNMEASURED

    def propose(self, context: dict, category: str) -> Proposal | None:
        if self.plans is None:
            return None
        answer = self.plans.propose(context, category)
        return None if answer is None else Proposal((answer[0],), answer[1])

    def done(self) -> bool:
        return self._done

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
        logits, done = model(view, inv, facing, subgoal, map=cells)  # (1, n_actions), (1,)
        self._done = float(torch.sigmoid(done[0])) > DONE_P
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


def _with_threshold(measured: Measured, ref: ExpertRef, task: str) -> Measured:
    """A plan expert's record for a task with the threshold its training calibrated (None where
    it calibrated none: an expert trained before calibration; inf where none was enough)."""
    if ref.propose_above is None:
        return measured
    sure = ref.propose_above.get(task, None)
    return replace(measured, sure=math.inf if sure is None else float(sure))


def _measured(ref: ExpertRef, name: str) -> Measured:
    """A registry row's gate record for one skill or task."""
    if ref.skill_success is None:
        return BLIND
    if name not in ref.skill_success:
        return UNMEASURED
    attempts = max(int((ref.skill_attempts or {}).get(name, 1)), 1)
    steps = (ref.skill_steps or {}).get(name)
    seconds = (ref.skill_seconds or {}).get(name)
    return Measured(float(ref.skill_success[name]), attempts,
                    None if steps is None else int(steps), None if seconds is None else float(seconds))
