"""Behavioural cloning of the slow path into the fast policy, then one LoRA expert per category.

`train_base` fits the whole policy on every successful slow-path step (cross-entropy on the
action + binary cross-entropy on "subgoal done"), keeps the weights of the epoch with the best
validation loss (early stopping) and writes them atomically to `out_dir/base/`.
`train_category_experts` loads that frozen base, injects category-routed LoRA
(`memory/inject.py`) and trains each category's expert alone on that category's segments; each
expert is saved with `save_expert` to `out_dir/experts/<category>/` and registered as a
candidate with the sha256 of its tensors file. The base file is never written again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from consolidation.dataset import SegmentDataset, Split, mirror_actions
from envs.errors import PeamError
from memory.expert_io import save_expert, sha256_of
from memory.inject import add_expert, expert_names, inject, set_expert_indices, trainable_only
from memory.lora import LoraConfig
from memory.policy import Policy, PolicyConfig, build_policy
from memory.registry import register_expert, stored_path

BASE_DIR, WEIGHTS, CONFIG = "base", "model.safetensors", "config.json"
LOCK = ".base.lock"  # under the models directory: one process at a time makes a base
NO_DATA = "no slow-path segments yet: run `peam run` or `peam demo` first"


def has_base(models_dir: str | Path) -> bool:
    """Whether `train_base` has written a base policy under `models_dir`."""
    return (Path(models_dir) / BASE_DIR / WEIGHTS).is_file()


@contextlib.contextmanager
def base_lock(models_dir: str | Path):
    """Hold the models directory's base lock (flock: released by the kernel if the holder
    dies), so two workers on an empty models directory train the base once and neither
    replaces it under the other (issue 19, item 4)."""
    models = Path(models_dir)
    made = not models.exists()
    models.mkdir(parents=True, exist_ok=True)
    with open(models / LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if made and [p.name for p in models.iterdir()] == [LOCK]:
                # Nothing was made (no data, say): leave no trace, as a refused command should.
                # A process waiting meanwhile keeps the lock's inode and re-checks the base.
                (models / LOCK).unlink()
                models.rmdir()
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_base(models_dir: str | Path, train: Callable[[], object]) -> bool:
    """Run `train` (which writes the base) unless a base exists, under the base lock; whether
    it trained."""
    with base_lock(models_dir):
        if has_base(models_dir):
            return False
        train()
        return True


def base_sha256(models_dir: str | Path) -> str:
    """The sha256 of the base's weights under `models_dir` (what experts record)."""
    return hashlib.sha256((Path(models_dir) / BASE_DIR / WEIGHTS).read_bytes()).hexdigest()


def experts_on_base(store, models_dir: str | Path) -> list:
    """The promoted action experts that stand on the base in `models_dir` (or on no recorded
    base): what replacing that base would orphan."""
    from memory.registry import experts

    if not has_base(models_dir):
        return []
    digest = base_sha256(models_dir)
    return [e for e in experts(store, status="promoted", kind="action")
            if e.base_sha256 in (None, digest)]


class NoDataError(PeamError):
    """The store holds nothing to learn from."""


@dataclass
class Fit:
    """What one training loop reports."""

    epochs_run: int
    best_epoch: int
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    val_done_accuracy: float | None


# -- the base -----------------------------------------------------------------------------------

def game_spec(game: str) -> dict:
    """What a base saved for `game` records of it: the names its inputs and outputs index."""
    from envs import make_env

    env = make_env(game)
    return {"game": game, "cell_names": list(env.cell_names), "action_names": list(env.action_names),
            "items": list(env.catalog.items), "skill_names": list(env.catalog.names),
            "view_shape": tuple(env.view_shape)}


def train_base(store, *, epochs: int = 3, batch_size: int = 64, lr: float = 3e-4,
               device: str = "cpu", out_dir: str | Path, game: str = "crafter",
               config: PolicyConfig | None = None, val_fraction: float = 0.2, patience: int = 2,
               seed: int = 0, console=None, progress: bool = True, mirror: bool = False) -> dict:
    """Fit the base policy on every successful slow-path step (and its mirror images, with
    `mirror`: see `SegmentDataset`); returns its metrics."""
    torch.manual_seed(seed)
    spec = game_spec(game)
    config = replace(config or PolicyConfig(), device=device, view_shape=spec["view_shape"])  # the game's
    policy = build_policy(config, len(spec["cell_names"]), len(spec["items"]),
                          len(spec["action_names"]), spec["skill_names"])
    data = SegmentDataset(store, policy.tokenizer, game=game, map_radius=config.map_radius,
                          mirror=mirror_actions(spec["action_names"]) if mirror else None)
    if len(data) == 0:
        raise NoDataError(NO_DATA)
    split = data.split(val_fraction, seed)
    params = [p for p in policy.parameters() if p.requires_grad]
    fit = _fit(policy, params, data, split, epochs=epochs, batch_size=batch_size, lr=lr,
               patience=patience, seed=seed, label="base", console=console, progress=progress)
    metrics = {**asdict(fit), "samples": len(data) // data.copies, "copies": data.copies,
               "segments": data.n_segments,
               "train_samples": len(split.train), "val_samples": len(split.val),
               "skills": sorted(set(data.skills))}
    path = Path(out_dir) / BASE_DIR
    save_base(policy, path, {**spec, "metrics": metrics})
    return {**metrics, "path": str(path), "sha256": sha256_of(path / WEIGHTS)}


def save_base(policy: Policy, path: str | Path, extra: dict) -> None:
    """`model.safetensors` + `config.json` into a temporary directory, fsynced, renamed into
    place: a crash leaves the old base or the new one whole."""
    from safetensors.torch import save_file

    from memory.expert_io import atomic_dir

    cfg = {k: v for k, v in asdict(policy.config).items() if k != "device"}
    doc = {"policy": cfg, "n_cells": policy.cell_emb.num_embeddings, "n_items": policy.n_items,
           "n_actions": policy.action_head.out_features, **extra}
    with atomic_dir(path) as tmp:
        sd = {k: v.detach().contiguous().cpu() for k, v in policy.state_dict().items()}
        save_file(sd, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2))


def load_base(path: str | Path, device: str = "cpu") -> tuple[Policy, dict]:
    """The base policy saved by `train_base` (directory `out_dir/base`) and its config.json,
    with `sha256`: the digest of the weights loaded (the bytes hashed are the bytes loaded)."""
    from safetensors.torch import load

    path = Path(path)
    if not (path / WEIGHTS).is_file() or not (path / CONFIG).is_file():
        raise PeamError(f"{path} holds no base policy: run `peam train-base` first")
    doc = json.loads((path / CONFIG).read_text())
    saved = {"map_radius": 0, "targets": False, **doc["policy"]}  # bases saved before these inputs had none
    cfg = PolicyConfig(**{**saved, "view_shape": tuple(saved["view_shape"]), "device": device})
    policy = build_policy(cfg, doc["n_cells"], doc["n_items"], doc["n_actions"], doc["skill_names"])
    data = (path / WEIGHTS).read_bytes()
    policy.load_state_dict(load(data))
    return policy, {**doc, "sha256": hashlib.sha256(data).hexdigest()}


# -- the experts --------------------------------------------------------------------------------

def train_category_experts(store, *, out_dir: str | Path, epochs: int = 3, batch_size: int = 64,
                           lr: float = 1e-3, device: str = "cpu", rank: int = 8,
                           alpha: float = 16.0, val_fraction: float = 0.2, patience: int = 2,
                           seed: int = 0, categories: list[str] | None = None, console=None,
                           progress: bool = True, mirror: bool = False) -> dict[str, dict]:
    """One category expert per category in the data, over the frozen base in `out_dir/base`.

    Returns {category: metrics (with `path`, `sha256`, `expert_id`, and the base's own
    validation numbers on that category for comparison)}.
    """
    policy, doc = load_base(Path(out_dir) / BASE_DIR, device)
    game = doc["game"]
    data = SegmentDataset(store, policy.tokenizer, game=game, map_radius=policy.config.map_radius,
                          mirror=mirror_actions(doc["action_names"]) if mirror else None)
    if len(data) == 0:
        raise NoDataError(NO_DATA)
    lora = LoraConfig(r=rank, alpha=alpha, routing="category")
    inject(policy, lora)
    frozen = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" not in n}
    results = {}
    for category in categories or sorted(set(data.categories)):
        segs = data.segments_of(category)
        if not segs:
            continue
        torch.manual_seed(seed)
        add_expert(policy, category)
        index = expert_names(policy).index(category)
        split = data.split(val_fraction, seed, segments=segs)
        before = _evaluate(policy, data, split.val, batch_size, route=None) if len(split.val) else None
        params = trainable_only(policy, category)
        fit = _fit(policy, params, data, split, epochs=epochs, batch_size=batch_size, lr=lr,
                   patience=patience, seed=seed, label=f"expert {category}", console=console,
                   progress=progress, route=index)
        policy.requires_grad_(False)
        path = Path(out_dir) / "experts" / category
        digest = save_expert(policy, category, path, lora)
        n_params = sum(p.numel() for p in params)
        metrics = {**asdict(fit), "samples": (len(split.train) + len(split.val)) // data.copies,
                   "train_samples": len(split.train), "segments": len(segs), "base_val_loss": before and before[0],
                   "base_val_accuracy": before and before[1]}
        expert_id = register_expert(store, game=game, category=category, routing="category",
                                    rank=rank, path=stored_path(out_dir, path), sha256=digest,
                                    params=n_params, metrics=metrics, base_sha256=doc["sha256"])
        results[category] = {**metrics, "path": str(path), "sha256": digest, "expert_id": expert_id,
                             "params": n_params}
    for n, p in policy.named_parameters():  # isolation: the base and earlier experts untouched
        if n in frozen and not torch.equal(frozen[n], p.detach()):
            raise RuntimeError(f"expert training changed the frozen base parameter {n}")
    return results


# -- one loop for both --------------------------------------------------------------------------

def _route(policy: nn.Module, index: int | None, n: int, device) -> None:
    if index is not None:
        set_expert_indices(policy, torch.full((n,), index, dtype=torch.long, device=device))
    elif expert_names(policy):
        set_expert_indices(policy, torch.full((n,), -1, dtype=torch.long, device=device))


def _losses(policy, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits, done_logit = policy(batch["view"], batch["inventory"], batch["facing"], batch["subgoal"],
                                map=batch.get("map"))
    ce = F.cross_entropy(logits, batch["action"])
    bce = F.binary_cross_entropy_with_logits(done_logit, batch["done"])
    return ce + bce, logits, done_logit


@torch.no_grad()
def _evaluate(policy, data: SegmentDataset, idx: torch.Tensor, batch_size: int,
              route: int | None) -> tuple[float, float, float]:
    """Mean loss, action accuracy and done accuracy over `idx`."""
    device = next(policy.parameters()).device
    was = policy.training
    policy.eval()
    total = correct = done_correct = 0.0
    for start in range(0, len(idx), batch_size):
        b = data.batch(idx[start:start + batch_size], device)
        n = len(b["action"])
        _route(policy, route, n, device)
        loss, logits, done_logit = _losses(policy, b)
        total += loss.item() * n
        correct += (logits.argmax(-1) == b["action"]).sum().item()
        done_correct += ((done_logit > 0).float() == b["done"]).sum().item()
    policy.train(was)
    n = max(len(idx), 1)
    return total / n, correct / n, done_correct / n


MIN_ROUND_STEPS = 25  # optimizer steps between two validations, however small the data


def passes_per_round(n_train: int, batch_size: int) -> int:
    """Passes over the training set in one round of training (a round ends with a validation
    and the early-stopping check). One pass on a large set; on a small one as many passes as
    make MIN_ROUND_STEPS optimizer steps. Counted in epochs alone, the 77 samples of a
    continual stage were 8 optimizer steps in all: the expert and the base barely moved off
    their initialisation, and the gate rejected what they could not do."""
    steps = max(1, math.ceil(n_train / batch_size))
    return max(1, math.ceil(MIN_ROUND_STEPS / steps))


def _fit(policy, params, data: SegmentDataset, split: Split, *, epochs: int, batch_size: int,
         lr: float, patience: int, seed: int, label: str, console=None, progress: bool = True,
         route: int | None = None) -> Fit:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if epochs < 1 or batch_size < 1:
        raise PeamError(f"epochs={epochs} and batch_size={batch_size} must be >= 1")
    device = next(policy.parameters()).device
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01 if route is None else 0.0)
    generator = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, stale = math.inf, None, 0, 0
    train_loss, val, epochs_run = math.nan, None, 0
    steps_per_epoch = math.ceil(len(split.train) / batch_size)
    passes = passes_per_round(len(split.train), batch_size)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not progress) as bar:
        task = bar.add_task(f"train {label}", total=epochs * passes * steps_per_epoch, info="")
        for epoch in range(1, epochs + 1):
            policy.train()
            running, seen = 0.0, 0
            for _ in range(passes):
                order = split.train[torch.randperm(len(split.train), generator=generator)]
                for start in range(0, len(order), batch_size):
                    b = data.batch(order[start:start + batch_size], device)
                    _route(policy, route, len(b["action"]), device)
                    loss, _, _ = _losses(policy, b)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    running += loss.item() * len(b["action"])
                    seen += len(b["action"])
                    bar.update(task, advance=1, info=f"round {epoch} loss {running / seen:.3f}")
            train_loss, epochs_run = running / max(seen, 1), epoch * passes
            val = _evaluate(policy, data, split.val, batch_size, route) if len(split.val) else None
            score = val[0] if val else train_loss
            if score < best:
                best, best_epoch, stale = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in policy.state_dict().items()}
            else:
                stale += 1
                if stale >= patience:
                    break
    if best_state is not None:
        policy.load_state_dict(best_state)
    val = _evaluate(policy, data, split.val, batch_size, route) if len(split.val) else None
    return Fit(epochs_run=epochs_run, best_epoch=best_epoch, train_loss=train_loss,
               val_loss=val[0] if val else None, val_accuracy=val[1] if val else None,
               val_done_accuracy=val[2] if val else None)
