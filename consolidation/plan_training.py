"""Consolidating "which subgoal next": the plan base and the plan experts.

The data are the slow planner's own decisions as the store recorded them: at each subgoal the
planner chose (or its plan's cursor walked to), the agent-visible context and the subgoal
(memory/plan_policy.py). Two recipes over one loop:

- `train_plan_base`: the whole `PlanNet` by behavioural cloning on every planner decision of
  the game, once (the first plan job of a store); frozen afterwards.
- `train_plan_expert`: one isolated expert for a task category over the frozen base: BC on that
  category's decisions, plus the DPO preference term on its plan-level failure–correction pairs
  (a subgoal the memory chose that failed, and what the planner chose instead from there),
  relative to the plan memory before this job. Only the new expert's tensors train; every
  other parameter is checked unchanged, and the expert is saved in PEFT's format and
  registered as a `plan` candidate for the gate.

Each expert is also calibrated (`calibrate`): per task, on the decisions of held-out episodes,
the lowest probability of its own above which its proposals agreed with the planner's choices
at least `agreement` of the time. The arbiter asks the planner below it. A validation accuracy
of 93% looks good and still lost a sixth of make_iron_pickaxe's successes: what the memory is
unsure of, it should leave to the planner (benchmarks/RESULTS.md, "Savings").
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from consolidation.dataset import NoDataError
from consolidation.preference import dpo_loss
from envs.errors import UnknownTaskError
from memory.expert_io import load_expert, save_expert
from memory.inject import add_expert, expert_names, inject, set_expert_indices, trainable_only
from memory.lora import LoraConfig
from memory.plan_policy import (PLAN_DIR, PLAN_TARGETS, PlanConfig, PlanNet, PlanSpec, features,
                                load_plan_base, plan_base_sha256, plan_category, save_plan_base,
                                within_support)
from memory.registry import expert_dir, register_expert, stored_path

PLANNED = ("planner", "cursor", "fallback")  # the slow planner's decisions (memory.columns.DECIDERS)
NO_DECISIONS = "no planner decisions recorded yet: run `peam run` (or `peam demo`) first"
CANDIDATE, REFERENCE = "candidate", "reference"
# The thresholds calibration chooses from: from the likely choice (0.5) up to near certainty.
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


@dataclass
class PlanTrainingConfig:
    hidden: int = 256
    epochs: int = 40  # rounds; early stopping on the validation loss ends most runs sooner
    batch_size: int = 128
    lr: float = 3e-3  # the base's; an expert's is `expert_lr`
    expert_lr: float = 5e-3
    rank: int = 8
    alpha: float = 16.0
    beta: float = 0.1  # DPO temperature
    preference_weight: float = 1.0
    patience: int = 6
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "cpu"
    routing: str = "category"  # or "moram": rank-1 atoms, earlier groups frozen
    # Calibration: the share of a task's held-out proposals above a threshold that must agree
    # with the planner (a threshold is refused on evidence of disagreement: with fewer than
    # 1 / (1 - agreement) decisions above it, one disagreement refuses it). On 300 unseen seeds
    # per iron chain, experts that agreed 94.8-96.5% at their threshold played at least as well
    # as the slow agent; one that agreed 93.0% lost 21 of 130 successes (benchmarks/RESULTS.md).
    agreement: float = 0.95


@dataclass
class PlanData:
    """Decisions as tensors: x (N, F) features, y (N,) subgoal index, episode (N,) for the split;
    pairs: px (P, F), chosen (P,), rejected (P,)."""

    x: torch.Tensor
    y: torch.Tensor
    episode: torch.Tensor
    tasks: list[str]
    px: torch.Tensor
    chosen: torch.Tensor
    rejected: torch.Tensor
    counts: dict[str, int] = field(default_factory=dict)  # decisions per task

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def support(self, spec: PlanSpec) -> dict[str, list[str]]:
        """Per task, the subgoals the planner ever chose for it: what the memory may propose."""
        seen: dict[str, set[int]] = {}
        for task, y in zip(self.tasks, self.y.tolist()):
            seen.setdefault(task, set()).add(y)
        return {task: [spec.skills[i] for i in sorted(ys)] for task, ys in sorted(seen.items())}

    def split(self, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Train / validation indices, split by episode (no episode on both sides)."""
        episodes = sorted(set(self.episode.tolist()))
        order = np.random.default_rng(seed).permutation(len(episodes))
        n_val = 0 if len(episodes) < 2 else max(1, round(val_fraction * len(episodes)))
        val_eps = torch.tensor([episodes[i] for i in order[:n_val]], dtype=torch.long)
        in_val = torch.isin(self.episode, val_eps)
        return torch.nonzero(~in_val).flatten(), torch.nonzero(in_val).flatten()


def plan_data(store, game: str, spec: PlanSpec, catalog, category: str | None = None) -> PlanData:
    """The slow planner's decisions in `game` (of tasks of plan category `category`, or all)."""
    xs, ys, eps, tasks, pairs = [], [], [], [], []
    counts: dict[str, int] = {}
    known: dict[str, str | None] = {}
    for seg in store.segments(game=game):
        context = seg.context
        if not context or seg.skill not in spec.skills or context.get("task") not in spec.tasks:
            continue
        task = context["task"]
        if task not in known:
            try:
                known[task] = plan_category(task, catalog)
            except UnknownTaskError:
                known[task] = None
        if known[task] is None or (category is not None and known[task] != category):
            continue
        if seg.decided_by in PLANNED:
            xs.append(features(context, spec))
            ys.append(spec.skills.index(seg.skill))
            eps.append(seg.episode_id)
            tasks.append(task)
            counts[task] = counts.get(task, 0) + 1
        rejected = context.get("rejected")
        if seg.decided_by in ("planner", "fallback") and rejected in spec.skills and rejected != seg.skill:
            pairs.append((features(context, spec), spec.skills.index(seg.skill), spec.skills.index(rejected)))
    n_features = spec.n_features
    x = torch.as_tensor(np.stack(xs)) if xs else torch.zeros(0, n_features)
    px = torch.as_tensor(np.stack([p[0] for p in pairs])) if pairs else torch.zeros(0, n_features)
    return PlanData(x, torch.tensor(ys, dtype=torch.long), torch.tensor(eps, dtype=torch.long), tasks,
                    px, torch.tensor([p[1] for p in pairs], dtype=torch.long),
                    torch.tensor([p[2] for p in pairs], dtype=torch.long), counts)


def train_plan_base(store, *, models_dir: str | Path, game: str, catalog,
                    config: PlanTrainingConfig | None = None) -> dict:
    """Fit the plan base on every planner decision of `game`; write it atomically."""
    cfg = config or PlanTrainingConfig()
    torch.manual_seed(cfg.seed)
    spec = PlanSpec.of(game)
    data = plan_data(store, game, spec, catalog)
    if len(data) == 0:
        raise NoDataError(NO_DECISIONS)
    net = PlanNet(PlanConfig(hidden=cfg.hidden), spec.n_features, len(spec.skills)).to(cfg.device)
    train, val = data.split(cfg.val_fraction, cfg.seed)
    t0 = time.perf_counter()
    fit = _fit(net, list(net.parameters()), data, train, val, cfg, lr=cfg.lr, route=None)
    metrics = {**fit, "decisions": len(data), "tasks": data.counts, "seconds": time.perf_counter() - t0}
    path = save_plan_base(net, spec, models_dir, metrics)
    return {**metrics, "path": str(path)}


@dataclass
class PlanCandidate:
    expert_id: int
    path: str
    sha256: str
    params: int
    metrics: dict


def train_plan_expert(store, *, models_dir: str | Path, game: str, catalog, category: str, tag: str,
                      current_path: str | None = None, previous: list[str] | None = None,
                      config: PlanTrainingConfig | None = None) -> PlanCandidate:
    """Train, save and register a `plan` candidate for task category `category`."""
    cfg = config or PlanTrainingConfig()
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    net, spec = load_plan_base(models_dir, cfg.device)
    data = plan_data(store, game, spec, catalog, category)
    if len(data) == 0:
        raise NoDataError(f"{NO_DECISIONS} (task category {category})")
    lora = LoraConfig(r=cfg.rank, alpha=cfg.alpha, routing=cfg.routing, target_modules=PLAN_TARGETS)
    inject(net, lora)
    for i, path in enumerate(previous or []):  # MoRAM: earlier groups of atoms, frozen
        add_expert(net, f"stage{i}")
        load_expert(net, expert_dir(models_dir, path), f"stage{i}")
    reference = -1
    if current_path is not None and cfg.routing == "category":
        add_expert(net, REFERENCE)
        load_expert(net, expert_dir(models_dir, current_path), REFERENCE)
        reference = expert_names(net).index(REFERENCE)
    add_expert(net, CANDIDATE)
    index = expert_names(net).index(CANDIDATE)
    frozen = {n: p.detach().clone() for n, p in net.named_parameters()}
    train, val = data.split(cfg.val_fraction, cfg.seed)
    before = _evaluate(net, data, val, reference if cfg.routing == "category" else None) if len(val) else None
    params = trainable_only(net, CANDIDATE)
    ref_logps = _pair_logps(net, data, reference).detach() if len(data.chosen) else None
    fit = _fit(net, params, data, train, val, cfg, lr=cfg.expert_lr, route=index, ref_logps=ref_logps)
    net.requires_grad_(False)
    for n, p in net.named_parameters():  # isolation, checked rather than assumed
        if CANDIDATE not in n and not torch.equal(frozen[n], p.detach()):
            raise RuntimeError(f"training the new plan expert changed {n}")
    support = data.support(spec)
    sure, agreed = calibrate(*_held_out_choices(net, data, val, index, support, spec), data.tasks,
                             val.tolist(), target=cfg.agreement)
    path = Path(models_dir) / PLAN_DIR / "experts" / category / tag
    digest = save_expert(net, CANDIDATE, path, lora)
    n_params = sum(p.numel() for p in params)
    metrics = {**fit, "seconds": time.perf_counter() - t0, "decisions": len(data), "tasks": data.counts,
               "support": support, "propose_above": sure, "calibration": agreed,
               "pairs": int(len(data.chosen)), "reference": str(current_path or "base"),
               "reference_val_loss": before and before[0], "reference_val_accuracy": before and before[1],
               "config": asdict(cfg)}
    expert_id = register_expert(store, game=game, category=category, routing=cfg.routing, rank=cfg.rank,
                                path=stored_path(models_dir, path), sha256=digest, params=n_params,
                                metrics=metrics, kind="plan", base_sha256=plan_base_sha256(models_dir))
    return PlanCandidate(expert_id, str(path), digest, n_params, metrics)


# -- calibration --------------------------------------------------------------------------------

def calibrate(confidence: torch.Tensor, agrees: torch.Tensor, tasks: list[str], idx: list[int], *,
              target: float) -> tuple[dict[str, float | None], dict[str, list[int]]]:
    """Per task among the decisions `idx`: the lowest of THRESHOLDS at which at least `target`
    of the decisions with a confidence at or above it agreed with the planner (None: no
    threshold did, the planner keeps the task); and what it stands on, [decisions at or above
    it, of which agreed, held-out decisions of the task]. A threshold is refused only on
    evidence: a task with no held-out decision keeps the lowest (the gate still measures it in
    the game). `confidence` (N,) and `agrees` (N,) are indexed like `tasks`."""
    by_task: dict[str, list[int]] = {}
    for i in idx:
        by_task.setdefault(tasks[i], []).append(i)
    sure: dict[str, float | None] = {}
    shown: dict[str, list[int]] = {}
    for task in sorted(set(tasks)):
        rows = by_task.get(task, [])
        c, a = confidence[rows], agrees[rows]
        sure[task], shown[task] = None, [0, 0, len(rows)]
        for threshold in THRESHOLDS:
            above = c >= threshold
            n, k = int(above.sum()), int(a[above].sum())
            if k >= target * n:
                sure[task], shown[task] = threshold, [n, k, len(rows)]
                break
    return sure, shown


@torch.no_grad()
def _held_out_choices(net, data: PlanData, idx: torch.Tensor, route: int, support: dict[str, list[str]],
                      spec: PlanSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) the expert's probability of its choice and (N,) whether it was the planner's, for
    every decision (those outside `idx` are left 0), its choice restricted to the task's
    support as the plan memory restricts it (memory/plan_policy.py `PlanMemory.propose`)."""
    confidence = torch.zeros(len(data))
    agrees = torch.zeros(len(data), dtype=torch.bool)
    if not len(idx):
        return confidence, agrees
    device = next(net.parameters()).device
    was = net.training
    net.eval()
    _route(net, route, len(idx))
    probs = torch.softmax(net(data.x[idx].to(device)).float(), -1).cpu()  # (n, S)
    net.train(was)
    allowed = torch.tensor([[s in support.get(data.tasks[i], ()) for s in spec.skills] for i in idx.tolist()])
    best, choice = within_support(probs, allowed).max(-1)
    confidence[idx], agrees[idx] = best, choice == data.y[idx]
    return confidence, agrees


# -- one loop for both --------------------------------------------------------------------------

def _route(net, index: int | None, n: int) -> None:
    """Category routing: every row through expert `index` (-1: the base alone)."""
    if index is not None and expert_names(net):
        set_expert_indices(net, torch.full((n,), index, dtype=torch.long, device=next(net.parameters()).device))


def _pair_logps(net, data: PlanData, route: int | None) -> torch.Tensor:
    """(2, P) log-probabilities of the chosen and the rejected subgoal of every pair."""
    device = next(net.parameters()).device
    _route(net, route, len(data.chosen))
    logp = torch.log_softmax(net(data.px.to(device)).float(), -1)  # (P, S)
    rows = torch.arange(len(data.chosen), device=device)
    return torch.stack([logp[rows, data.chosen.to(device)], logp[rows, data.rejected.to(device)]])


@torch.no_grad()
def _evaluate(net, data: PlanData, idx: torch.Tensor, route: int | None) -> tuple[float, float]:
    """Validation cross-entropy and accuracy of the subgoal choice."""
    device = next(net.parameters()).device
    was = net.training
    net.eval()
    _route(net, route, len(idx))
    logits = net(data.x[idx].to(device))  # (n, S)
    y = data.y[idx].to(device)
    net.train(was)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(-1) == y).float().mean())


def _fit(net, params, data: PlanData, train: torch.Tensor, val: torch.Tensor, cfg: PlanTrainingConfig,
         *, lr: float, route: int | None, ref_logps: torch.Tensor | None = None) -> dict:
    device = next(net.parameters()).device
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)
    best, best_state, stale, rounds, pref = math.inf, None, 0, 0, None
    steps = max(1, math.ceil(len(train) / cfg.batch_size))
    passes = max(1, math.ceil(25 / steps))  # a round is at least 25 optimizer steps (consolidation/fit.py)
    for _ in range(cfg.epochs):
        net.train()
        for _ in range(passes):
            order = train[torch.randperm(len(train), generator=generator)]
            for start in range(0, max(len(order), 1), cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                loss = torch.zeros((), device=device)
                if len(idx):
                    _route(net, route, len(idx))
                    loss = loss + F.cross_entropy(net(data.x[idx].to(device)), data.y[idx].to(device))
                if ref_logps is not None:
                    logps = _pair_logps(net, data, route)
                    pref = dpo_loss(logps[0], logps[1], ref_logps[0], ref_logps[1], cfg.beta)
                    loss = loss + cfg.preference_weight * pref
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
        rounds += 1
        score = _evaluate(net, data, val, route)[0] if len(val) else float(loss)
        if score < best - 1e-6:
            best, stale = score, 0
            best_state = [p.detach().clone() for p in params]
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        with torch.no_grad():
            for p, saved in zip(params, best_state):
                p.copy_(saved)
    val_loss, val_acc = _evaluate(net, data, val, route) if len(val) else (None, None)
    train_acc = _evaluate(net, data, train, route)[1] if len(train) else None
    return {"rounds": rounds, "val_loss": val_loss, "val_accuracy": val_acc, "train_accuracy": train_acc,
            "preference_loss": None if pref is None else float(pref.detach())}
