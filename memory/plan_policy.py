"""The plan-level memory: which subgoal next, answered by trained parameters instead of the slow
planner.

Read top to bottom, as data flows: what a decision is made from (`PlanSpec`, `features`), the
network (`PlanNet`, a small MLP whose `nn.Linear`s take LoRA experts), its file format (a frozen
base beside the action policy's), and `PlanMemory`, which loads the base with the promoted plan
expert of each task category and proposes a subgoal with its own probability.

A decision context is what the planner is shown (agent/planners/planner.py `PlanContext.as_record`),
as JSON: the task, the inventory, the cell kinds seen on screen and remembered nearby, the
skills achieved (as the agent saw them, never the game's counters) and failed this episode,
the previous subgoal and the daylight. Nothing of the world beyond what the player has seen. The same record is stored with every segment, so a
feature change never invalidates old experience.

PEAM's isolation holds here as for actions: one expert per task category over a frozen base,
each in its own PEFT-format file; MoRAM's rank-1 atoms serve as well (`routing="moram"`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from envs.errors import PeamError
from memory.columns import OPEN

PLAN_DIR = "plan"  # under the models directory: plan/base, plan/experts/<category>/<tag>
BASE_DIR, WEIGHTS, CONFIG = "base", "model.safetensors", "config.json"
PLAN_TARGETS = r"fc_in|fc_hidden\.\d+|head"  # the nn.Linear layers plan experts adapt (PEFT regex)
COUNT_CAP = 9  # inventory counts are scaled by Crafter's item maximum
# ... and also given as "at least n" flags for n = 1..THRESHOLDS: a recipe asks for "2 wood", and
# "held >= 2" must be one unit, not a small difference of a scaled count.
THRESHOLDS = 5
FAILURE_CAP = 3  # failed attempts beyond this many say nothing more


@dataclass(frozen=True)
class PlanSpec:
    """The names a plan network's inputs and outputs index, saved with its base."""

    game: str
    tasks: tuple[str, ...]  # every task it may be asked about (skills + the open-ended task)
    skills: tuple[str, ...]  # its outputs: the catalog's skills, in catalog order
    items: tuple[str, ...]
    cells: tuple[str, ...]

    @classmethod
    def of(cls, game: str) -> PlanSpec:
        from envs import make_env
        from envs.tasks import OPEN_ENDED

        env = make_env(game)
        names = tuple(env.catalog.names)
        return cls(game, names + (OPEN_ENDED,), names, tuple(env.catalog.items), tuple(env.cell_names))

    @property
    def n_features(self) -> int:
        t, s, i, c = len(self.tasks), len(self.skills), len(self.items), len(self.cells)
        return t + i * (1 + THRESHOLDS) + 2 * c + 3 * s + 1 + 1  # previous has a "none" slot


def features(context: dict, spec: PlanSpec) -> np.ndarray:
    """(n_features,) float32 for one decision context (`PlanContext.as_record()`)."""
    t, s, i, c = (len(spec.tasks), len(spec.skills), len(spec.items), len(spec.cells))
    out = np.zeros(spec.n_features, np.float32)
    task = spec.tasks.index(context["task"]) if context.get("task") in spec.tasks else None
    if task is not None:
        out[task] = 1.0  # an unknown task has no slot: the memory does not cover it
    o = t
    inventory = context.get("inventory") or {}
    for k, item in enumerate(spec.items):
        n = float(inventory.get(item, 0))
        out[o + k] = min(n, COUNT_CAP) / COUNT_CAP
        out[o + i + k * THRESHOLDS:o + i + k * THRESHOLDS + min(int(n), THRESHOLDS)] = 1.0
    o += i * (1 + THRESHOLDS)
    for block in ("known", "in_sight"):
        for kind in context.get(block) or ():
            if kind in spec.cells:
                out[o + spec.cells.index(kind)] = 1.0
        o += c
    # Segments stored before the agent kept its own record carry the game's counters as
    # "unlocked": still experience of the same kind, read the same way.
    for name in context.get("achieved", context.get("unlocked")) or ():
        if name in spec.skills:
            out[o + spec.skills.index(name)] = 1.0
    o += s
    for name, n in (context.get("failures") or {}).items():
        if name in spec.skills:
            out[o + spec.skills.index(name)] = min(float(n), FAILURE_CAP) / FAILURE_CAP
    o += s
    previous = context.get("previous")
    out[o + (spec.skills.index(previous) if previous in spec.skills else s)] = 1.0
    o += s + 1
    out[o] = float(context.get("daylight", 1.0))
    return out


def within_support(probs: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(..., S) probabilities restricted to the subgoals `allowed` (..., S) bool, renormalised:
    what the memory proposes from, and what its calibration measures (plan_training.py)."""
    probs = torch.where(allowed, probs, 0.0)
    return probs / probs.sum(-1, keepdim=True).clamp_min(1e-12)


def plan_category(task_name: str, catalog) -> str:
    """The task category whose plan expert answers for a task: its goal skill's category, or
    OPEN for the open-ended task."""
    from envs.tasks import OPEN_ENDED

    return OPEN if task_name == OPEN_ENDED else catalog[task_name].category


@dataclass
class PlanConfig:
    hidden: int = 256
    n_hidden: int = 1  # hidden-to-hidden layers after the input layer


class PlanNet(nn.Module):
    """features (B, F) -> logits over the spec's skills (B, S): which subgoal next."""

    def __init__(self, config: PlanConfig, n_features: int, n_skills: int):
        super().__init__()
        self.config = config
        self.fc_in = nn.Linear(n_features, config.hidden)
        self.fc_hidden = nn.ModuleList([nn.Linear(config.hidden, config.hidden) for _ in range(config.n_hidden)])
        self.head = nn.Linear(config.hidden, n_skills)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.gelu(self.fc_in(x))  # (B, hidden)
        for layer in self.fc_hidden:
            h = h + nn.functional.gelu(layer(h))  # (B, hidden), residual
        return self.head(h)  # (B, S)


# -- the base on disk ---------------------------------------------------------------------------

def has_plan_base(models_dir: str | Path) -> bool:
    return (Path(models_dir) / PLAN_DIR / BASE_DIR / WEIGHTS).is_file()


def plan_base_sha256(models_dir: str | Path) -> str:
    """The sha256 of the plan base's weights (what plan experts record as their base)."""
    import hashlib

    return hashlib.sha256((Path(models_dir) / PLAN_DIR / BASE_DIR / WEIGHTS).read_bytes()).hexdigest()


def save_plan_base(net: PlanNet, spec: PlanSpec, models_dir: str | Path, metrics: dict) -> Path:
    """`model.safetensors` + `config.json`, written atomically (temp dir, fsync, rename)."""
    from safetensors.torch import save_file

    from memory.expert_io import atomic_dir

    path = Path(models_dir) / PLAN_DIR / BASE_DIR
    doc = {"plan": asdict(net.config), "spec": asdict(spec), "metrics": metrics}
    with atomic_dir(path) as tmp:
        sd = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
        save_file(sd, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2))
    return path


def load_plan_base(models_dir: str | Path, device: str = "cpu") -> tuple[PlanNet, PlanSpec]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(models_dir) / PLAN_DIR / BASE_DIR
    if not (path / WEIGHTS).is_file() or not (path / CONFIG).is_file():
        raise PeamError(f"{path} holds no plan base: a plan consolidation job writes it "
                        "(`peam consolidate --plan --category CATEGORY`)")
    try:
        doc = json.loads((path / CONFIG).read_text())
        spec = PlanSpec(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in doc["spec"].items()})
        net = PlanNet(PlanConfig(**doc["plan"]), spec.n_features, len(spec.skills))
        net.load_state_dict(load_file(str(path / WEIGHTS)))
    except (ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise PeamError(f"the plan base at {path} is unreadable ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); delete {path} and run a plan "
                        "consolidation job again") from None
    net.requires_grad_(False)
    return net.to(device).eval(), spec


# -- proposing ----------------------------------------------------------------------------------

class PlanMemory:
    """The frozen plan base with the promoted plan expert of each task category.

    `propose(context)` routes to the category's expert and returns (skill, probability) for
    the most likely next subgoal; `None` where no expert covers the task's category. An expert
    proposes for a task only the subgoals the planner ever chose for it in its training data
    (its support, recorded at training): sibling tasks share every state but the goal, and a
    pickaxe chain must not end with the sword. A task outside the support is novel: None.
    """

    def __init__(self, models_dir: str | Path, experts: list, device: str = "cpu"):
        from memory.expert_io import load_expert, read_expert
        from memory.inject import add_expert, inject
        from memory.lora import LoraConfig

        from memory.registry import check_base, expert_dir

        self.net, self.spec = load_plan_base(models_dir, device)
        check_base(experts, plan_base_sha256(models_dir), "plan base")
        self.device = torch.device(device)
        self.experts = {e.category: e for e in experts}
        self.index: dict[str, int] = {}
        self.support: dict[str, dict[str, torch.Tensor]] = {}  # category -> task -> (S,) bool
        for e in experts:
            if e.support is not None:
                self.support[e.category] = {
                    task: torch.tensor([s in names for s in self.spec.skills], device=self.device)
                    for task, names in e.support.items()}
        self.routing = "category"
        if experts:
            _, cfg = read_expert(expert_dir(models_dir, experts[0].path))
            lora = (LoraConfig.from_dict(cfg["peam"]) if "peam" in cfg else
                    LoraConfig(r=cfg["r"], alpha=cfg["lora_alpha"], routing="category",
                               target_modules=PLAN_TARGETS))
            lora.target_modules = PLAN_TARGETS
            self.routing = lora.routing
            inject(self.net, lora)
            for i, ref in enumerate(experts):
                add_expert(self.net, ref.category)
                load_expert(self.net, expert_dir(models_dir, ref.path), ref.category, sha256=ref.sha256)
                self.index[ref.category] = i
        self.net.eval()

    def covers(self, category: str) -> bool:
        return category in self.index

    @torch.inference_mode()
    def probabilities(self, context: dict, category: str) -> torch.Tensor:
        """(S,) the expert's distribution over the spec's skills for one context."""
        from memory.inject import set_expert_indices

        x = torch.as_tensor(features(context, self.spec)[None], device=self.device)  # (1, F)
        if self.routing == "category":
            set_expert_indices(self.net, torch.tensor([self.index[category]], device=self.device))
        return torch.softmax(self.net(x)[0].float(), -1)  # (S,)

    def propose(self, context: dict, category: str) -> tuple[str, float] | None:
        if category not in self.index or context.get("task") not in self.spec.tasks:
            return None
        probs = self.probabilities(context, category)
        support = self.support.get(category)
        if support is not None:
            allowed = support.get(context["task"])
            if allowed is None or not bool(allowed.any()):
                return None
            probs = within_support(probs, allowed)
        best = int(probs.argmax())
        return self.spec.skills[best], float(probs[best])
