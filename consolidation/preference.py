"""The preference term of the consolidation objective (DPO, Rafailov et al. 2023).

From a failure state, the slow path's correction is preferred over what the fast path did,
relative to the policy before this job (the reference): with per-trajectory log-likelihoods
log π(y) summed over steps,

    loss = −log σ( β · [(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))] ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
