"""Mixture-of-LoRA wrappers around an `nn.Linear`, one small class per routing mode.

- `CategoryLoraLinear` (PEAM): one isolated expert per skill category; the caller routes.
- `TopkLoraLinear` (MixLoRA): a learned router, softmax top-k, a load-balancing loss.
- `MoramLinear` (MoRAM): rank-1 atoms, no router; new atoms are added, old ones frozen.

A mixed batch, where every token may use a different expert, runs as one batched computation
(`routed_delta`): with few experts, every row goes through every expert's factors and a mask
keeps its own (two plain matmuls); with many, rows are sorted by expert and both LoRA factors
are applied with a grouped matmul over the stacked expert weights. No Python loop over
experts either way, so the cost stays nearly flat as experts are added.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from envs.errors import ConfigError
from memory.lora import LoraConfig, LoraLinear, kaiming_init_


class _GroupedMM(torch.autograd.Function):
    """out[rows of group g] = x[rows of group g] @ w[g], with a backward that tolerates the
    expanded (stride-0) gradients `torch.nn.functional.grouped_mm`'s own backward rejects."""

    @staticmethod
    def forward(ctx, x, w, offs):  # x (N, K), w (G, K, M), offs (G,) int32 group ends
        ctx.save_for_backward(x, w, offs)
        return F.grouped_mm(x, w, offs=offs)  # (N, M)

    @staticmethod
    def backward(ctx, g):  # g (N, M)
        x, w, offs = ctx.saved_tensors
        g = g.contiguous()
        gx = F.grouped_mm(g, w.transpose(1, 2), offs=offs) if ctx.needs_input_grad[0] else None
        gw = F.grouped_mm(x.t(), g, offs=offs) if ctx.needs_input_grad[1] else None  # (G, K, M)
        return gx, gw, None


def _grouped_mm_supported(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> bool:
    # The grouped GEMM runs on CPU in float32, bf16 and fp16 (not float64); on CUDA its kernels
    # want bf16 (SM >= 80). Either way every row stride must be a multiple of 16 bytes.
    if not hasattr(F, "grouped_mm"):
        return False
    aligned = all(n * x.element_size() % 16 == 0 for n in (a.shape[1], a.shape[2], b.shape[1]))
    cpu_ok = x.dtype in (torch.float32, torch.bfloat16, torch.float16)
    device_ok = (x.device.type == "cpu" and cpu_ok) or (x.device.type == "cuda" and x.dtype == torch.bfloat16)
    return aligned and device_ok


# G·r up to which `routed_delta` takes the masked dense form, per device type. Measured in
# benchmarks/moe_lora.py (2026-11-25): on the 2-core CPU (one run, cores shared with other work)
# the grouped GEMM won from 16 experts of rank 8 on (width 256: 125 vs 160 ms; 4 experts: dense
# 74 vs 81); on an H100 (RESULTS.md) the dense form wins up to 64 (float32 and bf16) and
# float32 has no grouped GEMM there, only the gather: 14–34× a plain LoRA with one expert.
DENSE_MAX_RANKS = {"cpu": 128, "cuda": 1024}


def routed_delta(
    x: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    expert_ids: torch.Tensor,
    weights: torch.Tensor | None = None,
    method: str | None = None,
) -> torch.Tensor:
    """Σ_j w_j · B_{e_j} A_{e_j} x for every row, all experts in one batched computation.

    x (N, d_in); a (G, r, d_in); b (G, d_out, r); expert_ids (N, k) in [0, G); weights (N, k)
    or None (all ones). Returns (N, d_out). Three loop-free methods compute the same sum:
      dense    every row through every expert's A (one (N, G·r) matmul), the responses of the
               experts a row is not routed to multiplied by 0, then one matmul through all B:
               G times the LoRA arithmetic, but two plain matmuls forward and backward (no
               sort, gather or scatter); the default while G·r <= DENSE_MAX_RANKS[device type],
               where the LoRA part stays small next to the base layer;
      grouped  rows sorted by expert, a grouped GEMM per factor (where the device has one:
               CPU float32/bf16/fp16, CUDA bf16); the default for more experts;
      gather   each row's own A and B gathered, a batched matmul (any device, more memory).
    Measured side by side in benchmarks/moe_lora.py.
    """
    n, k = expert_ids.shape
    if method is None:
        if a.shape[0] * a.shape[1] <= DENSE_MAX_RANKS.get(x.device.type, 128):
            method = "dense"
        else:
            method = "grouped" if _grouped_mm_supported(x, a, b) else "gather"
    if method == "dense":
        g, r, _ = a.shape
        ones = weights if weights is not None else x.new_ones(n, k)
        gate = x.new_zeros(n, g).scatter_add(1, expert_ids, ones)  # (N, G) a row's weight per expert
        h = (x @ a.reshape(g * r, -1).T).view(n, g, r) * gate.unsqueeze(-1)  # (N, G, r)
        return h.reshape(n, g * r) @ b.transpose(1, 2).reshape(g * r, -1)  # (N, d_out)
    if method == "gather":
        h = torch.einsum("nd,nkrd->nkr", x, a[expert_ids])  # (N, k, r)
        if weights is not None:
            h = h * weights.unsqueeze(-1)
        return torch.einsum("nkr,nkor->no", h, b[expert_ids])  # (N, d_out)
    if method != "grouped":
        raise ValueError(f"unknown method {method!r}; use dense, grouped or gather")
    flat = expert_ids.reshape(-1)  # (N*k,)
    order = torch.argsort(flat, stable=True)  # (N*k,) rows sorted by expert
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=x.device))
    groups = torch.arange(a.shape[0], device=x.device)
    offs = torch.searchsorted(flat[order], groups, right=True).to(torch.int32)  # (G,) group ends
    rows = x if k == 1 else x.repeat_interleave(k, dim=0)  # (N*k, d_in), row n*k+j for choice j
    h = _GroupedMM.apply(_Permute.apply(rows, order, inverse), a.transpose(1, 2), offs)  # (N*k, r)
    if weights is not None:
        h = h * weights.reshape(-1)[order].unsqueeze(-1)
    y = _GroupedMM.apply(h, b.transpose(1, 2), offs)  # (N*k, d_out), sorted by expert
    y = _Permute.apply(y, inverse, order)  # (N*k, d_out), back in row order
    return y if k == 1 else y.view(n, k, -1).sum(dim=1)  # (N, d_out)


class _Permute(torch.autograd.Function):
    """t[perm] whose backward is the gather g[inverse], not autograd's scatter-add: both ways
    are plain row gathers, which matters on CPU, where index_put with accumulate is slow."""

    @staticmethod
    def forward(ctx, t, perm, inverse):  # t (M, d), perm and inverse (M,) permutations
        ctx.save_for_backward(inverse)
        return t.index_select(0, perm)

    @staticmethod
    def backward(ctx, g):
        (inverse,) = ctx.saved_tensors
        return g.index_select(0, inverse), None, None


class CategoryLoraLinear(LoraLinear):
    """PEAM: one plain-LoRA expert per skill category, chosen by the caller, never learned.

    `expert_indices` is a LongTensor (batch,) or (batch, tokens) of indices into
    `expert_names()`; -1 routes a sample to the base layer alone. Gradients reach only the
    experts a sample was routed to, and a frozen expert (requires_grad False) none at all.
    """

    def __init__(self, base_layer: nn.Linear, config: LoraConfig):
        super().__init__(base_layer, config)
        self.expert_indices: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # (..., d_out)
        idx = self.expert_indices
        if idx is None or len(self.lora_A) == 0:
            return out
        lead = x.shape[:-1]
        ids = idx.view(*idx.shape, *[1] * (len(lead) - idx.dim())).expand(lead)  # (...)
        a, b = self.stacked()  # (E, r, d_in), (E, d_out, r)
        null = len(self.lora_A)  # a zero expert at the end stands for "base only"
        a = torch.cat([a, a.new_zeros(1, *a.shape[1:])])  # (E+1, r, d_in)
        b = torch.cat([b, b.new_zeros(1, *b.shape[1:])])  # (E+1, d_out, r)
        ids = torch.where(ids < 0, null, ids).reshape(-1, 1)  # (N, 1)
        xf = self.lora_dropout(x).reshape(-1, self.in_features)  # (N, d_in)
        delta = routed_delta(xf, a, b, ids)  # (N, d_out)
        return out + delta.view(*lead, self.out_features) * self.scaling


def load_balancing_loss(probs: torch.Tensor, expert_ids: torch.Tensor) -> torch.Tensor:
    """Switch Transformer / MixLoRA auxiliary loss E · Σ_i f_i · P_i, equal to 1 when balanced.

    probs (N, E) router probabilities; expert_ids (N, k) the chosen experts. f_i is the fraction
    of dispatches to expert i, P_i its mean router probability.
    """
    n_experts = probs.shape[-1]
    counts = torch.zeros(n_experts, device=probs.device, dtype=probs.dtype)
    counts = counts.index_add(0, expert_ids.reshape(-1), torch.ones_like(expert_ids.reshape(-1), dtype=probs.dtype))
    f = counts / expert_ids.numel()  # (E,)
    p = probs.mean(dim=0)  # (E,)
    return n_experts * (f * p).sum()


class TopkLoraLinear(nn.Module):
    """MixLoRA: a linear router over the input picks top-k of `num_experts` LoRA experts per
    token. The experts and the router train together as one adapter (this baseline shares them,
    so it claims no isolation); their weights are stacked parameters. After each forward
    `aux_loss` holds the load-balancing loss, which the trainer adds times `aux_loss_coef`."""

    def __init__(self, base_layer: nn.Linear, config: LoraConfig, name: str = "mixture"):
        super().__init__()
        self.base_layer = base_layer.requires_grad_(False)
        self.config, self.name = config, name
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        e, r, w = config.num_experts, config.r, base_layer.weight
        self.router = nn.Linear(self.in_features, e, bias=False, device=w.device, dtype=w.dtype)
        self.lora_A = nn.Parameter(torch.empty(e, r, self.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(e, self.out_features, r, device=w.device, dtype=w.dtype))
        for a in self.lora_A.data:
            kaiming_init_(a)
        self.lora_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.scaling = config.scaling
        self.aux_loss: torch.Tensor | None = None

    def add_expert(self, name: str) -> None:
        raise ConfigError("topk routing has a fixed set of experts; set num_experts in LoraConfig")

    def remove_expert(self, name: str) -> None:
        raise ConfigError("topk routing has a fixed set of experts")

    def expert_names(self) -> list[str]:
        return [self.name]

    def expert_tensors(self, name: str) -> dict[str, nn.Parameter]:
        if name != self.name:
            raise KeyError(name)
        return {"router.weight": self.router.weight, "lora_A.weight": self.lora_A, "lora_B.weight": self.lora_B}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # (..., d_out)
        xf = x.reshape(-1, self.in_features)  # (N, d_in)
        probs = torch.softmax(self.router(xf), dim=-1)  # (N, E)
        w, ids = probs.topk(self.config.top_k, dim=-1)  # (N, k)
        w = w / w.sum(dim=-1, keepdim=True)  # MixLoRA/Mixtral: renormalise over the kept experts
        self.aux_loss = load_balancing_loss(probs, ids)
        delta = routed_delta(self.lora_dropout(xf), self.lora_A, self.lora_B, ids, w)  # (N, d_out)
        return out + delta.view(*x.shape[:-1], self.out_features) * self.scaling


class MoramLinear(LoraLinear):
    """MoRAM: a router-free, self-activated sparse mixture of rank-1 atoms.

    Atom i is row A[i] (d_in,) and column B[:, i] (d_out,). Each `add_atoms` call appends a
    group of r atoms stored as its own named expert, so groups are saved and frozen apart.
    """

    def add_atoms(self, r: int | None = None, name: str | None = None) -> str:
        """Freeze every existing atom, then append r fresh ones (A Kaiming, B zero)."""
        for p in [*self.lora_A.parameters(), *self.lora_B.parameters()]:
            p.requires_grad_(False)
        name = name or f"atoms_{len(self.lora_A)}"
        self.add_adapter(name, r)
        return name

    def add_expert(self, name: str) -> None:
        self.add_atoms(name=name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # (..., d_out)
        if len(self.lora_A) == 0:
            return out
        names = self.expert_names()
        a = torch.cat([self.lora_A[n].weight for n in names])  # (atoms, d_in)
        b = torch.cat([self.lora_B[n].weight for n in names], dim=1)  # (d_out, atoms)
        p = self.lora_dropout(x) @ a.T  # (..., atoms) atom responses
        s = p / p.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # MoRAM: scores L2-normalised across atoms
        top_s, top_i = s.topk(min(self.config.top_k, a.shape[0]), dim=-1)  # (..., k)
        w = torch.softmax(top_s / self.config.temperature, dim=-1)  # (..., k)
        if not self.training:  # MoRAM: at inference, atoms scoring below δ stay silent
            w = w * (top_s >= self.config.threshold)
        weights = torch.zeros_like(s).scatter(-1, top_i, w)  # (..., atoms), zero off the top-k
        return out + (p * weights) @ b.T
