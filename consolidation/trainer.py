"""The one trainer of the fast policy: the frozen base, then isolated LoRA experts over it.

`train_base` fits the whole policy on every successful slow-path step (cross-entropy on the
action + binary cross-entropy on "subgoal done") and writes it atomically in the base's file
format (`memory/base_io.py`). An expert learns by behavioural cloning on a category's
successful slow-path segments, plus the DPO preference term on its failure–correction pairs
(`consolidation/preference.py`), relative to the policy before this job: the frozen base with
the category's current expert, if it has one. Only the new expert's parameters are trainable;
the base and every other expert are checked unchanged. Each expert is saved atomically (temp,
fsync, rename) and registered as a candidate; the gate decides later whether it is promoted.

All of it runs the one loop of `consolidation/fit.py`. Two entry points share the per-expert
training: `train_expert` is the consolidation job's (one category, `consolidation/pipeline.py`),
`train_category_experts` makes `peam train-base`'s first expert of every category.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from consolidation.dataset import NO_DATA, NoDataError, SegmentDataset, Split, mirror_actions
from consolidation.fit import Fit, FitConfig, evaluate, fit
from consolidation.pairs import mine_pairs
from consolidation.preference import PairBatch, batch_pairs, dpo_loss, pair_logps, pair_subset, reference_logps
from memory.base_io import BASE_DIR, WEIGHTS, game_spec, load_base, save_base
from memory.expert_io import load_expert, save_expert, sha256_of
from memory.inject import add_expert, expert_names, inject, trainable_only
from memory.lora import LoraConfig
from memory.policy import PolicyConfig, build_policy
from memory.registry import expert_dir, register_expert, stored_path

CANDIDATE, REFERENCE = "candidate", "reference"


@dataclass(frozen=True)
class ExpertTrainingConfig(FitConfig):
    """An expert's training; the defaults are the consolidation job's."""

    epochs: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.0  # the experts were tuned without it (the base with 0.01)
    patience: int = 3
    min_delta: float = 1e-6
    rank: int = 8
    alpha: float = 16.0
    beta: float = 0.1  # DPO temperature
    preference_weight: float = 1.0
    max_pair_steps: int = 32  # steps of each side of a pair that enter the preference term
    pair_batch: int = 2  # pairs in the preference term of one optimizer step (drawn at random)
    moram_top_k: int = 4  # MoRAM: atoms kept per token (of all stages' atoms)
    # DAgger: the fast path's own steps join the data, labelled with the slow path's action in
    # the same state (consolidation/dataset.py)
    teacher: bool = True


# `peam train-base`'s first experts keep the settings they were measured with: fewer rounds,
# a lower rate, and no DAgger data (there is no fast path before them).
CATEGORY_EXPERTS = ExpertTrainingConfig(epochs=3, lr=1e-3, patience=2, min_delta=0.0, teacher=False)


@dataclass
class Candidate:
    expert_id: int
    path: str
    sha256: str
    params: int
    metrics: dict


def train_base(store, *, out_dir: str | Path, game: str = "crafter", config: FitConfig | None = None,
               policy_config: PolicyConfig | None = None, console=None, progress: bool = True) -> dict:
    """Fit the base policy (shaped by `policy_config`) on every successful slow-path step (and
    its mirror images, with `config.mirror`: see `SegmentDataset`); returns its metrics."""
    cfg = config or FitConfig()
    cfg.validate()
    torch.manual_seed(cfg.seed)
    spec = game_spec(game)
    shape = replace(policy_config or PolicyConfig(), device=cfg.device, view_shape=spec["view_shape"])  # the game's
    policy = build_policy(shape, len(spec["cell_names"]), len(spec["items"]),
                          len(spec["action_names"]), spec["skill_names"])
    data = SegmentDataset(store, policy.tokenizer, game=game, map_radius=shape.map_radius,
                          mirror=mirror_actions(spec["action_names"]) if cfg.mirror else None)
    if len(data) == 0:
        raise NoDataError(NO_DATA)
    split = data.split(cfg.val_fraction, cfg.seed)
    params = [p for p in policy.parameters() if p.requires_grad]
    trained = fit(policy, params, data, split, cfg, label="base", console=console, progress=progress)
    metrics = {**asdict(trained), "samples": len(data) // data.copies, "copies": data.copies,
               "segments": data.n_segments,
               "train_samples": len(split.train), "val_samples": len(split.val),
               "skills": sorted(set(data.skills))}
    path = Path(out_dir) / BASE_DIR
    save_base(policy, path, {**spec, "metrics": metrics})
    return {**metrics, "path": str(path), "sha256": sha256_of(path / WEIGHTS)}


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
    cfg.validate()
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    policy, doc, lora, ref_index = _with_candidate(models_dir, cfg, routing, current_path, init_from, previous)
    data_category = data_category or category
    data = SegmentDataset(store, policy.tokenizer, game=game, category=data_category,
                          map_radius=policy.config.map_radius, teacher=cfg.teacher,
                          mirror=mirror_actions(doc["action_names"]) if cfg.mirror else None)
    pairs = batch_pairs(mine_pairs(store, game=game, category=data_category), policy, cfg.max_pair_steps)
    if len(data) == 0 and pairs is None:
        raise NoDataError(f"{NO_DATA} (category {category})")
    split = data.split(cfg.val_fraction, cfg.seed)
    trained, before, n_params = _train_one(policy, CANDIDATE, data, split, cfg, reference=ref_index,
                                           pairs=pairs, progress=progress)
    path = Path(models_dir) / "experts" / category / tag
    metrics = {**asdict(trained), "samples": len(data) // data.copies, "copies": data.copies,
               "relabelled": data.relabelled, "pairs": 0 if pairs is None else pairs.n,
               "reference": "base" if current_path is None else str(current_path),
               "reference_val_loss": before and before[0], "reference_val_accuracy": before and before[1],
               "config": asdict(cfg)}
    expert_id, digest = _save_and_register(store, policy, CANDIDATE, path, lora, models_dir=models_dir,
                                           game=game, category=category, n_params=n_params,
                                           metrics=metrics, base_sha256=doc["sha256"], t0=t0)
    return Candidate(expert_id, str(path), digest, n_params, metrics)


def _with_candidate(models_dir, cfg: ExpertTrainingConfig, routing: str, current_path: str | None,
                    init_from: str | None, previous: list[str] | None):
    """The frozen base with the experts a job stands on and a new CANDIDATE expert:
    (policy, the base's config.json, the LoRA config, the reference route)."""
    policy, doc = load_base(Path(models_dir) / BASE_DIR, cfg.device)
    top_k = {"top_k": cfg.moram_top_k} if routing == "moram" else {}
    lora = LoraConfig(r=cfg.rank, alpha=cfg.alpha, routing="moram" if routing == "moram" else "category", **top_k)
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
    return policy, doc, lora, ref_index


def train_category_experts(store, *, models_dir: str | Path, config: ExpertTrainingConfig = CATEGORY_EXPERTS,
                           categories: list[str] | None = None, console=None,
                           progress: bool = True) -> dict[str, dict]:
    """One expert per category in the data (or of `categories`), over the frozen base in
    `models_dir/base`, each saved to `models_dir/experts/<category>`.

    Returns {category: metrics (with `path`, `sha256`, `expert_id`, `params`, and the base's own
    validation numbers on that category for comparison)}.
    """
    config.validate()
    policy, doc = load_base(Path(models_dir) / BASE_DIR, config.device)
    data = SegmentDataset(store, policy.tokenizer, game=doc["game"], map_radius=policy.config.map_radius,
                          mirror=mirror_actions(doc["action_names"]) if config.mirror else None)
    if len(data) == 0:
        raise NoDataError(NO_DATA)
    lora = LoraConfig(r=config.rank, alpha=config.alpha, routing="category")
    inject(policy, lora)
    results = {}
    for category in categories or sorted(set(data.categories)):
        segments = data.segments_of(category)
        if not segments:
            continue
        t0 = time.perf_counter()
        torch.manual_seed(config.seed)
        add_expert(policy, category)
        split = data.split(config.val_fraction, config.seed, segments=segments)
        trained, before, n_params = _train_one(policy, category, data, split, config, reference=None,
                                               console=console, progress=progress)
        path = Path(models_dir) / "experts" / category
        metrics = {**asdict(trained), "samples": (len(split.train) + len(split.val)) // data.copies,
                   "train_samples": len(split.train), "segments": len(segments),
                   "base_val_loss": before and before[0], "base_val_accuracy": before and before[1]}
        expert_id, digest = _save_and_register(store, policy, category, path, lora, models_dir=models_dir,
                                               game=doc["game"], category=category, n_params=n_params,
                                               metrics=metrics, base_sha256=doc["sha256"], t0=t0)
        results[category] = {**metrics, "path": str(path), "sha256": digest, "expert_id": expert_id,
                             "params": n_params}
    return results


def _train_one(policy, name: str, data: SegmentDataset, split: Split, cfg: ExpertTrainingConfig, *,
               reference: int | None, pairs: PairBatch | None = None, console=None,
               progress: bool = True) -> tuple[Fit, tuple | None, int]:
    """Train expert `name` alone (the reference route: the policy before it, None or -1 the
    base alone); (the fit, the reference's validation numbers, its parameter count). Every
    other parameter is checked unchanged afterwards."""
    frozen = {n: p.detach().clone() for n, p in policy.named_parameters()}
    before = evaluate(policy, data, split.val, cfg.batch_size, reference)
    params = trainable_only(policy, name)
    index = expert_names(policy).index(name)
    extra = _preference_term(policy, pairs, reference, index, cfg) if pairs is not None else None
    trained = fit(policy, params, data, split, cfg, label=f"expert {name}", route=index, extra_loss=extra,
                  console=console, progress=progress)
    policy.requires_grad_(False)
    moved = {id(p) for p in params}
    for n, p in policy.named_parameters():  # isolation, checked rather than assumed
        if id(p) not in moved and not torch.equal(frozen[n], p.detach()):
            raise RuntimeError(f"training expert {name} changed {n}")
    return trained, before, sum(p.numel() for p in params)


def _preference_term(policy, pairs: PairBatch, reference: int | None, index: int, cfg: ExpertTrainingConfig):
    """The DPO term of one optimizer step, on `cfg.pair_batch` pairs drawn at random: all of
    them in every step made a step cost as many forward passes as there were pairs (a practice
    round records dozens)."""
    ref_logps = reference_logps(policy, pairs, -1 if reference is None else reference)  # (2 × pairs,)

    def term(generator: torch.Generator) -> torch.Tensor:
        device = pairs.owner.device
        chosen = torch.randperm(pairs.n, generator=generator)[:cfg.pair_batch]
        logps = pair_logps(policy, pair_subset(pairs, chosen.to(device)), index)
        ref = ref_logps[torch.stack([2 * chosen, 2 * chosen + 1], 1).flatten().to(device)]
        return cfg.preference_weight * dpo_loss(logps[0::2], logps[1::2], ref[0::2], ref[1::2], cfg.beta)

    return term


def _save_and_register(store, policy, name: str, path: Path, lora: LoraConfig, *, models_dir, game: str,
                       category: str, n_params: int, metrics: dict, base_sha256: str,
                       t0: float) -> tuple[int, str]:
    """Save expert `name` to `path` (atomic) and register it as a candidate for `category`;
    (its id, its tensors' sha256)."""
    digest = save_expert(policy, name, path, lora)
    metrics["seconds"] = time.perf_counter() - t0
    expert_id = register_expert(store, game=game, category=category, routing=lora.routing, rank=lora.r,
                                path=stored_path(models_dir, path), sha256=digest, params=n_params,
                                metrics=metrics, base_sha256=base_sha256)
    return expert_id, digest
