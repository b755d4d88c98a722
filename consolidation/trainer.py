"""The consolidation recipe: train one new, isolated expert for a skill category.

Behavioural cloning on the category's successful slow-path segments, plus the DPO preference
term on its failure–correction pairs (`consolidation/preference.py`), relative to the policy
before this job: the frozen base with the category's current expert, if it has one. Only the
new expert's parameters are trainable; the base and every other expert are checked unchanged.
The expert is saved to a fresh directory (atomic: temp, fsync, rename) and registered as a
candidate; the gate decides later whether it is promoted.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from consolidation.base_training import BASE_DIR, NO_DATA, NoDataError, _evaluate, _losses, _route, load_base, passes_per_round
from consolidation.dataset import SegmentDataset, mirror_actions
from consolidation.pairs import FailureCorrectionPair, mine_pairs
from consolidation.preference import dpo_loss, sequence_logp
from memory import columns as C
from memory.expert_io import load_expert, save_expert
from memory.inject import add_expert, expert_names, inject, set_expert_indices, trainable_only
from memory.lora import LoraConfig
from memory.registry import expert_dir, register_expert, stored_path

CANDIDATE, REFERENCE = "candidate", "reference"


@dataclass
class ExpertTrainingConfig:
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    rank: int = 8
    alpha: float = 16.0
    beta: float = 0.1  # DPO temperature
    preference_weight: float = 1.0
    max_pair_steps: int = 32  # steps of each side of a pair that enter the preference term
    pair_batch: int = 2  # pairs in the preference term of one optimizer step (drawn at random)
    patience: int = 3
    moram_top_k: int = 4  # MoRAM: atoms kept per token (of all stages' atoms)
    # DAgger: the fast path's own steps join the data, labelled with the slow path's action in
    # the same state (consolidation/dataset.py)
    teacher: bool = True
    mirror: bool = False  # every step also mirrored left–right and top–bottom (consolidation/dataset.py)
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "cpu"


@dataclass
class Candidate:
    expert_id: int
    path: str
    sha256: str
    params: int
    metrics: dict


def train_expert(store, *, models_dir: str | Path, game: str, category: str, tag: str,
                 current_path: str | None = None, config: ExpertTrainingConfig | None = None,
                 progress: bool = False, data_category: str | None = None,
                 init_from: str | None = None, routing: str = "category",
                 previous: list[str] | None = None) -> Candidate:
    """Train, save and register a candidate expert for `category`; `tag` names its directory.

    The baselines reuse this recipe: `data_category` trains on another category's data than the
    expert is registered for, and `init_from` starts from an existing expert's weights instead
    of a fresh one (a single shared LoRA fine-tuned stage after stage: the forgetting
    baseline). `routing="moram"` trains the next group of rank-1 atoms of MoRAM instead: the
    atom groups of earlier stages (`previous`, in order) are loaded frozen, and the new group
    is the only trainable part; no router, the atoms self-activate."""
    cfg = config or ExpertTrainingConfig()
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    policy, doc = load_base(Path(models_dir) / BASE_DIR, cfg.device)
    if routing == "moram":
        lora = LoraConfig(r=cfg.rank, alpha=cfg.alpha, routing="moram", top_k=cfg.moram_top_k)
    else:
        lora = LoraConfig(r=cfg.rank, alpha=cfg.alpha, routing="category")
    inject(policy, lora)
    ref_index = -1  # no current expert: the reference is the base alone
    for i, path in enumerate(previous or []):  # MoRAM: earlier stages' atoms, frozen
        add_expert(policy, f"stage{i}")
        load_expert(policy, expert_dir(models_dir, path), f"stage{i}")
    if current_path is not None and routing != "moram":
        add_expert(policy, REFERENCE)
        load_expert(policy, expert_dir(models_dir, current_path), REFERENCE)
        ref_index = expert_names(policy).index(REFERENCE)
    add_expert(policy, CANDIDATE)
    if init_from is not None:
        load_expert(policy, expert_dir(models_dir, init_from), CANDIDATE)
    index = expert_names(policy).index(CANDIDATE)
    frozen = {n: p.detach().clone() for n, p in policy.named_parameters()}

    data_category = data_category or category
    data = SegmentDataset(store, policy.tokenizer, game=game, category=data_category,
                          map_radius=policy.config.map_radius, teacher=cfg.teacher,
                          mirror=mirror_actions(doc["action_names"]) if cfg.mirror else None)
    pairs = _pair_batch(mine_pairs(store, game=game, category=data_category), policy, cfg)
    if len(data) == 0 and pairs is None:
        raise NoDataError(f"{NO_DATA} (category {category})")
    split = data.split(cfg.val_fraction, cfg.seed)
    before = _evaluate(policy, data, split.val, cfg.batch_size, ref_index) if len(split.val) else None
    params = trainable_only(policy, CANDIDATE)
    ref_logps = reference_logps(policy, pairs, ref_index) if pairs is not None else None
    fit = _fit(policy, params, data, split, pairs, ref_logps, index, cfg, progress)

    policy.requires_grad_(False)
    for n, p in policy.named_parameters():  # isolation, checked rather than assumed
        if CANDIDATE not in n and not torch.equal(frozen[n], p.detach()):
            raise RuntimeError(f"training the new expert changed {n}")
    path = Path(models_dir) / "experts" / category / tag
    digest = save_expert(policy, CANDIDATE, path, lora)
    n_params = sum(p.numel() for p in params)
    seconds = time.perf_counter() - t0
    metrics = {**fit, "seconds": seconds, "samples": len(data) // data.copies, "copies": data.copies,
               "relabelled": data.relabelled,
               "pairs": 0 if pairs is None else pairs["n"],
               "reference": "base" if current_path is None else str(current_path),
               "reference_val_loss": before and before[0], "reference_val_accuracy": before and before[1],
               "config": asdict(cfg)}
    expert_id = register_expert(store, game=game, category=category, routing=routing,
                                rank=cfg.rank, path=stored_path(models_dir, path), sha256=digest,
                                params=n_params, metrics=metrics, base_sha256=doc["sha256"])
    return Candidate(expert_id, str(path), digest, n_params, metrics)


def _pair_batch(pairs: list[FailureCorrectionPair], policy, cfg: ExpertTrainingConfig):
    """Both sides of every pair as one concatenated batch; `owner` says which sequence a step
    belongs to: 2i is pair i's correction (chosen), 2i+1 its failure (rejected)."""
    if not pairs:
        return None
    from consolidation.dataset import _map_of

    side = 2 * policy.config.map_radius + 1
    parts = {k: [] for k in ("view", "map", "inventory", "facing", "subgoal", "action", "owner")}
    for i, pair in enumerate(pairs):
        for side, steps in ((0, pair.correction), (1, pair.failure)):
            n = min(len(steps[C.ACTION]), cfg.max_pair_steps)
            parts["view"].append(torch.as_tensor(steps[C.VIEW][:n]).long())
            parts["map"].append(torch.as_tensor(_map_of(steps, len(steps[C.ACTION]), side)[:n]).long())
            parts["inventory"].append(torch.as_tensor(steps[C.INVENTORY][:n]).float())
            parts["facing"].append(torch.as_tensor(steps[C.FACING][:n]).float())
            parts["action"].append(torch.as_tensor(steps[C.ACTION][:n]).long())
            parts["subgoal"].append(policy.tokenizer.encode([pair.skill] * n))
            parts["owner"].append(torch.full((n,), 2 * i + side, dtype=torch.long))
    device = next(policy.parameters()).device
    batch = {k: torch.cat(v).to(device) for k, v in parts.items()}
    batch["n"] = len(pairs)
    return batch


def _pair_subset(pairs: dict, chosen: torch.Tensor) -> dict:
    """The pairs `chosen` (indices) alone, their sequences renumbered: 2j is the j-th chosen
    pair's correction, 2j+1 its failure."""
    old = torch.stack([2 * chosen, 2 * chosen + 1], 1).flatten()  # (2k,) old sequence numbers
    remap = torch.full((2 * pairs["n"],), -1, dtype=torch.long, device=old.device)
    remap[old] = torch.arange(len(old), device=old.device)
    keep = remap[pairs["owner"]] >= 0
    sub = {k: v[keep] for k, v in pairs.items() if k != "n"}
    sub["owner"] = remap[sub["owner"]]
    sub["n"] = len(chosen)
    return sub


@torch.no_grad()
def reference_logps(policy, pairs, route: int, chunk: int = 64) -> torch.Tensor:
    """The pairs' log-likelihoods under the policy before this job: a constant of the DPO
    objective. Without no_grad they would keep a graph through the stacked experts (the new
    one included), and the second optimiser step would backpropagate through it again."""
    device = pairs["action"].device
    parts = [_pair_logps(policy, _pair_subset(pairs, torch.arange(i, min(i + chunk, pairs["n"]), device=device)), route)
             for i in range(0, pairs["n"], chunk)]
    return torch.cat(parts)  # (2 × pairs,) in the pairs' own order


def _pair_logps(policy, pairs, route: int) -> torch.Tensor:
    """(2 × pairs,) summed log-likelihoods of both sides under `route`."""
    n = len(pairs["action"])
    set_expert_indices(policy, torch.full((n,), route, dtype=torch.long, device=pairs["action"].device))
    logits, _ = policy(pairs["view"], pairs["inventory"], pairs["facing"], pairs["subgoal"], map=pairs["map"])
    return sequence_logp(logits, pairs["action"], pairs["owner"], 2 * pairs["n"])


def _round(n_train: int, batch_size: int, passes: int):
    """Batch starts of one training round: `passes` passes over the data (see
    `passes_per_round`); a start of 0 begins a pass (a fresh shuffle)."""
    for _ in range(passes):
        yield from range(0, max(n_train, 1), batch_size)


def _fit(policy, params, data, split, pairs, ref_logps, index, cfg, progress) -> dict:
    from rich.progress import Progress

    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)
    best, best_state, stale, epochs_run, pref = math.inf, None, 0, 0, None
    n_train = len(split.train)
    steps = max(1, math.ceil(n_train / cfg.batch_size))
    passes = passes_per_round(n_train, cfg.batch_size)
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"expert {data.categories[0] if data.categories else ''}", total=cfg.epochs * passes * steps)
        for epoch in range(1, cfg.epochs + 1):
            policy.train()
            for start in _round(n_train, cfg.batch_size, passes):
                if start == 0:
                    order = split.train[torch.randperm(n_train, generator=generator)] if n_train else split.train
                loss = torch.zeros((), device=next(policy.parameters()).device)
                if n_train:
                    b = data.batch(order[start:start + cfg.batch_size], loss.device)
                    _route(policy, index, len(b["action"]), loss.device)
                    loss = loss + _losses(policy, b)[0]
                if pairs is not None:
                    # A few pairs per step: all of them in every step made a step cost as many
                    # forward passes as there were pairs (a practice round records dozens).
                    chosen = torch.randperm(pairs["n"], generator=generator)[:cfg.pair_batch]
                    sub = _pair_subset(pairs, chosen.to(loss.device))
                    logps = _pair_logps(policy, sub, index)
                    ref = ref_logps[torch.stack([2 * chosen, 2 * chosen + 1], 1).flatten().to(loss.device)]
                    pref = dpo_loss(logps[0::2], logps[1::2], ref[0::2], ref[1::2], cfg.beta)
                    loss = loss + cfg.preference_weight * pref
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                bar.advance(task)
            epochs_run = epoch * passes
            val = _evaluate(policy, data, split.val, cfg.batch_size, index) if len(split.val) else None
            score = val[0] if val else float(loss)
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
    val = _evaluate(policy, data, split.val, cfg.batch_size, index) if len(split.val) else None
    return {"epochs_run": epochs_run, "val_loss": val and val[0], "val_accuracy": val and val[1],
            "preference_loss": None if pref is None else float(pref.detach())}
