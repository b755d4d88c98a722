"""The one training loop of the fast policy: behavioural cloning with early stopping.

`fit` serves the base (every parameter trainable) and each expert (only its LoRA parameters
trainable, the batch routed to it) alike; an optional `extra_loss` adds the expert's
preference term to every optimizer step. A round is one pass over the training set or, on a
small set, as many passes as make MIN_ROUND_STEPS optimizer steps; each round ends with a
validation, and the parameters of the best round are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from consolidation.dataset import SegmentDataset, Split
from envs.errors import ConfigError
from memory import columns as C
from memory.inject import expert_names, set_expert_indices

MIN_ROUND_STEPS = 25  # optimizer steps between two validations, however small the data


@dataclass(frozen=True)
class FitConfig:
    """The loop's settings; the defaults are the base's (`peam train-base`)."""

    epochs: int = 3  # rounds at most (early stopping may end sooner)
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    patience: int = 2  # rounds without improvement before stopping
    min_delta: float = 0.0  # how much lower a validation loss must be to count as better
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "cpu"
    mirror: bool = False  # every step also mirrored left–right and top–bottom (consolidation/dataset.py)

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs={self.epochs} and batch_size={self.batch_size} must be >= 1")
        if self.patience < 1:
            raise ConfigError(f"patience={self.patience} must be >= 1")


@dataclass
class Fit:
    """What one training loop reports."""

    epochs_run: int
    best_epoch: int
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    val_done_accuracy: float | None
    preference_loss: float | None = None  # the extra term's last value, when there is one


def route_to(policy: nn.Module, index: int | None, n: int, device) -> None:
    """Send the next `n` samples through expert `index`; None: through the base alone."""
    if index is not None:
        set_expert_indices(policy, torch.full((n,), index, dtype=torch.long, device=device))
    elif expert_names(policy):
        set_expert_indices(policy, torch.full((n,), -1, dtype=torch.long, device=device))


def bc_loss(policy, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy on the action + binary cross-entropy on "subgoal done", and both logits."""
    logits, done_logit = policy(batch[C.VIEW], batch[C.INVENTORY], batch[C.FACING], batch[C.SUBGOAL],
                                map=batch.get(C.MAP))
    ce = F.cross_entropy(logits, batch[C.ACTION])
    bce = F.binary_cross_entropy_with_logits(done_logit, batch[C.DONE])
    return ce + bce, logits, done_logit


@torch.no_grad()
def evaluate(policy, data: SegmentDataset, idx: torch.Tensor, batch_size: int,
             route: int | None) -> tuple[float, float, float] | None:
    """Mean loss, action accuracy and done accuracy over `idx`; None when `idx` is empty."""
    if len(idx) == 0:
        return None
    device = next(policy.parameters()).device
    was = policy.training
    policy.eval()
    total = correct = done_correct = 0.0
    for start in range(0, len(idx), batch_size):
        b = data.batch(idx[start:start + batch_size], device)
        n = len(b[C.ACTION])
        route_to(policy, route, n, device)
        loss, logits, done_logit = bc_loss(policy, b)
        total += loss.item() * n
        correct += (logits.argmax(-1) == b[C.ACTION]).sum().item()
        done_correct += ((done_logit > 0).float() == b[C.DONE]).sum().item()
    policy.train(was)
    return total / len(idx), correct / len(idx), done_correct / len(idx)


def passes_per_round(n_train: int, batch_size: int) -> int:
    """Passes over the training set in one round of training (a round ends with a validation
    and the early-stopping check). One pass on a large set; on a small one as many passes as
    make MIN_ROUND_STEPS optimizer steps. Counted in epochs alone, the 77 samples of a
    continual stage were 8 optimizer steps in all: the expert and the base barely moved off
    their initialisation, and the gate rejected what they could not do."""
    steps = max(1, math.ceil(n_train / batch_size))
    return max(1, math.ceil(MIN_ROUND_STEPS / steps))


class BestRound:
    """Early stopping: the parameters of the round with the lowest score so far, and whether
    `patience` rounds since brought nothing lower by more than `min_delta`."""

    def __init__(self, params: list, patience: int, min_delta: float):
        self.params, self.patience, self.min_delta = params, patience, min_delta
        self.score, self.epoch, self.stale, self.saved = math.inf, 0, 0, None

    def should_stop(self, score: float, epoch: int) -> bool:
        if score < self.score - self.min_delta:
            self.score, self.epoch, self.stale = score, epoch, 0
            # Only `params` move (the rest is frozen and the buffers are constants).
            self.saved = [p.detach().clone() for p in self.params]
            return False
        self.stale += 1
        return self.stale >= self.patience

    @torch.no_grad()
    def restore(self) -> None:
        """Put the best round's values back (no round scored: leave the parameters as they are)."""
        for p, saved in zip(self.params, self.saved or ()):
            p.copy_(saved)


# extra_loss(generator) -> a loss added to every optimizer step (the expert's preference term)
ExtraLoss = Callable[[torch.Generator], torch.Tensor]


def fit(policy, params: list, data: SegmentDataset, split: Split, cfg: FitConfig, *, label: str,
        route: int | None = None, extra_loss: ExtraLoss | None = None, console=None,
        progress: bool = True) -> Fit:
    """Train `params` of `policy` on `split.train` (routed to expert `route`), keep the best
    round's parameters by validation loss (by training loss without a validation split)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cfg.validate()
    device = next(policy.parameters()).device
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    best = BestRound(params, cfg.patience, cfg.min_delta)
    train_loss, epochs_run, extra = math.nan, 0, None
    n_train = len(split.train)
    passes = passes_per_round(n_train, cfg.batch_size)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not progress) as bar:
        steps_per_pass = max(1, math.ceil(n_train / cfg.batch_size))
        task = bar.add_task(f"train {label}", total=cfg.epochs * passes * steps_per_pass, info="")
        for epoch in range(1, cfg.epochs + 1):
            policy.train()
            running, seen = 0.0, 0
            for _ in range(passes):
                order = split.train[torch.randperm(n_train, generator=generator)] if n_train else split.train
                # With no samples (only preference pairs) a pass is still one step of the extra term.
                for start in range(0, max(n_train, 1), cfg.batch_size):
                    loss, n = torch.zeros((), device=device), 1
                    if n_train:
                        b = data.batch(order[start:start + cfg.batch_size], device)
                        n = len(b[C.ACTION])
                        route_to(policy, route, n, device)
                        loss = loss + bc_loss(policy, b)[0]
                    if extra_loss is not None:
                        extra = extra_loss(generator)
                        loss = loss + extra
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    running, seen = running + loss.item() * n, seen + n
                    bar.update(task, advance=1, info=f"round {epoch} loss {running / seen:.3f}")
            train_loss, epochs_run = running / max(seen, 1), epoch * passes
            val = evaluate(policy, data, split.val, cfg.batch_size, route)
            if best.should_stop(val[0] if val else train_loss, epoch):
                break
    best.restore()
    val = evaluate(policy, data, split.val, cfg.batch_size, route)
    return Fit(epochs_run=epochs_run, best_epoch=best.epoch, train_loss=train_loss,
               val_loss=val[0] if val else None, val_accuracy=val[1] if val else None,
               val_done_accuracy=val[2] if val else None,
               preference_loss=None if extra is None else float(extra.detach()))
