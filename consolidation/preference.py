"""The preference term of the consolidation objective (DPO, Rafailov et al. 2023).

From a failure state, the slow path's correction is preferred over what the fast path did,
relative to the policy before this job (the reference): with per-trajectory log-likelihoods
log π(y) summed over steps,

    loss = −log σ( β · [(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))] ).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from consolidation.dataset import step_arrays
from consolidation.pairs import FailureCorrectionPair
from memory import columns as C
from memory.inject import set_expert_indices


def sequence_logp(logits: torch.Tensor, actions: torch.Tensor, owner: torch.Tensor,
                  n_sequences: int) -> torch.Tensor:
    """Sum of log π(a_t | s_t) per sequence.

    logits (N, n_actions) over the concatenated steps of all sequences; actions (N,) long;
    owner (N,) long: which sequence (0..n_sequences-1) each step belongs to.
    """
    logp = torch.log_softmax(logits.float(), -1).gather(1, actions[:, None]).squeeze(1)  # (N,)
    return torch.zeros(n_sequences, device=logits.device).index_add(0, owner, logp)  # (S,)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """Mean DPO loss over pairs; every argument is (pairs,) summed log-likelihoods."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)  # (pairs,)
    return -F.logsigmoid(beta * margin).mean()


@dataclass
class PairBatch:
    """Both sides of every pair, their steps concatenated (policy inputs keyed by column)."""

    steps: dict[str, torch.Tensor]  # C.VIEW, C.MAP, C.INVENTORY, C.FACING, C.SUBGOAL, C.ACTION: (N, ...)
    owner: torch.Tensor  # (N,) long: the sequence of each step; 2i is pair i's correction, 2i+1 its failure
    n: int  # pairs


def batch_pairs(pairs: list[FailureCorrectionPair], policy, max_steps: int) -> PairBatch | None:
    """The first `max_steps` steps of both sides of every pair, on the policy's device; None
    without pairs."""
    if not pairs:
        return None
    side = 2 * policy.config.map_radius + 1
    parts: dict[str, list[torch.Tensor]] = {}
    owners = []
    for i, pair in enumerate(pairs):
        for chosen_or_rejected, recorded in ((0, pair.correction), (1, pair.failure)):
            steps = {k: torch.from_numpy(v) for k, v in step_arrays(recorded, side, max_steps).items()}
            n = len(steps[C.ACTION])
            steps[C.SUBGOAL] = policy.tokenizer.encode([pair.skill] * n)  # (n, words)
            for k, v in steps.items():
                parts.setdefault(k, []).append(v)
            owners.append(torch.full((n,), 2 * i + chosen_or_rejected, dtype=torch.long))
    device = next(policy.parameters()).device
    return PairBatch({k: torch.cat(v).to(device) for k, v in parts.items()}, torch.cat(owners).to(device),
                     len(pairs))


def pair_subset(pairs: PairBatch, chosen: torch.Tensor) -> PairBatch:
    """The pairs `chosen` (indices) alone, their sequences renumbered: 2j is the j-th chosen
    pair's correction, 2j+1 its failure."""
    old = torch.stack([2 * chosen, 2 * chosen + 1], 1).flatten()  # (2k,) old sequence numbers
    remap = torch.full((2 * pairs.n,), -1, dtype=torch.long, device=old.device)
    remap[old] = torch.arange(len(old), device=old.device)
    keep = remap[pairs.owner] >= 0
    return PairBatch({k: v[keep] for k, v in pairs.steps.items()}, remap[pairs.owner[keep]], len(chosen))


def pair_logps(policy, pairs: PairBatch, route: int) -> torch.Tensor:
    """(2 × pairs,) summed log-likelihoods of both sides under expert `route` (-1: the base)."""
    steps = pairs.steps
    n = len(steps[C.ACTION])
    set_expert_indices(policy, torch.full((n,), route, dtype=torch.long, device=steps[C.ACTION].device))
    logits, _ = policy(steps[C.VIEW], steps[C.INVENTORY], steps[C.FACING], steps[C.SUBGOAL], map=steps[C.MAP])
    return sequence_logp(logits, steps[C.ACTION], pairs.owner, 2 * pairs.n)


@torch.no_grad()
def reference_logps(policy, pairs: PairBatch, route: int, chunk: int = 64) -> torch.Tensor:
    """The pairs' log-likelihoods under the policy before this job: a constant of the DPO
    objective. Without no_grad they would keep a graph through the stacked experts (the new
    one included), and the second optimiser step would backpropagate through it again."""
    device = pairs.owner.device
    parts = [pair_logps(policy, pair_subset(pairs, torch.arange(i, min(i + chunk, pairs.n), device=device)), route)
             for i in range(0, pairs.n, chunk)]
    return torch.cat(parts)  # (2 × pairs,) in the pairs' own order
