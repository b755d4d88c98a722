"""The fast policy: a small transformer over what the player sees, conditioned on the subgoal.

Read top to bottom, as data flows (nanoGPT's `model.py`): the config, the subgoal tokenizer,
the trunk's blocks, then the policy that embeds every input as tokens and reads two heads off a
summary token. The attention and MLP projections are plain `nn.Linear`s named `attn.qkv`,
`attn.proj`, `mlp.fc`, `mlp.proj`, the default LoRA targets (`memory/lora.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from envs.errors import ConfigError
from memory.columns import MAP_RADIUS


@dataclass
class PolicyConfig:
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    view_shape: tuple[int, int] = (9, 7)  # Crafter's local view, agent-visible
    use_image: bool = False  # a small CNN over the rgb frame; off by default, for speed
    image_size: int = 64
    max_subgoal_words: int = 4
    map_radius: int = MAP_RADIUS  # the agent's own remembered map around it, (2r+1)² cells; 0 = off
    targets: bool = True  # a token per cell kind: where on that map its nearest cell lies (needs the map)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")


def resolve_device(name: str) -> torch.device:
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device {name!r}; use cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


class SubgoalTokenizer:
    """Words of skill names ("collect_wood" -> "collect", "wood"); deterministic, built once."""

    PAD, UNK = 0, 1

    def __init__(self, skill_names: list[str], max_words: int):
        words = sorted({w for name in skill_names for w in name.lower().split("_") if w})
        self.vocab = {w: i + 2 for i, w in enumerate(words)}
        self.max_words = max_words

    def __len__(self) -> int:
        return len(self.vocab) + 2

    def encode(self, skill_names: list[str]) -> torch.Tensor:
        rows = [[self.vocab.get(w, self.UNK) for w in n.lower().split("_") if w][: self.max_words] for n in skill_names]
        return torch.tensor([r + [self.PAD] * (self.max_words - len(r)) for r in rows], dtype=torch.long)  # (B, W)


class SelfAttention(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, queries: int | None = None) -> torch.Tensor:
        """`queries`: only the first that many tokens attend (the rest still serve as keys)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).unbind(2)  # 3 × (B, T, H, hd)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (B, H, T, hd)
        q = q[:, :, :queries]  # (B, H, Q, hd)
        mask = keep[:, None, None, :]  # (B, 1, 1, T): padding words are not attended to
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, q.shape[2], d))  # (B, Q, d)


class MLP(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block (GPT-2)."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(cfg.d_model), SelfAttention(cfg)
        self.ln_2, self.mlp = nn.LayerNorm(cfg.d_model), MLP(cfg)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, queries: int | None = None) -> torch.Tensor:
        """`queries`: compute the output of the first that many tokens only (the last block,
        whose only output read is the summary token's)."""
        x = x[:, :queries] + self.attn(self.ln_1(x), keep, queries)
        return x + self.mlp(self.ln_2(x))


class ImageEncoder(nn.Module):
    """A small CNN: the (B, S, S, 3) uint8 frame -> 4 tokens (a 2×2 grid of features)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=4, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.to_tokens = nn.Linear(32, d_model)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, S, S)
        return self.to_tokens(self.conv(x).flatten(2).transpose(1, 2))  # (B, 4, d)


class MapEncoder(nn.Module):
    """The agent's own map around it (ids, 0 = never seen) -> a 5×5 grid of tokens. What the
    slow path walks towards is often remembered, not on screen: without it, imitating the slow
    path is guessing (measured: 0% of collect_wood acting alone from the 9×7 view only)."""

    def __init__(self, n_cells: int, d_model: int, size: int):
        super().__init__()
        self.emb = nn.Embedding(n_cells, 16)
        self.conv = nn.Sequential(
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, d_model, 3, stride=2, padding=1),
        )
        side = (size + 3) // 4  # two stride-2 convolutions
        self.pos = nn.Parameter(torch.zeros(side * side, d_model))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        x = self.emb(cells.long()).permute(0, 3, 1, 2)  # (B, 16, S, S)
        return self.conv(x).flatten(2).transpose(1, 2) + self.pos  # (B, side², d)


class TargetEncoder(nn.Module):
    """A token per cell kind: where the nearest cell of that kind lies on the agent's own map
    (offset and its signs, distance, next to the agent, faced), all zero where the map holds
    none; "unknown" is a kind too, so the nearest unexplored cell has a token. Walking towards
    the subgoal's target is then one association to learn (subgoal words -> that kind's
    offset), not a search through 25 map tokens. Measured without it, the experts chose the
    slow path's action on 18% of their own states and succeeded by sampled exploration; with
    it, held-out gather success rose from 38% to 72% (benchmarks/data_scaling.py)."""

    FEATURES = 8

    def __init__(self, n_cells: int, d_model: int, size: int):
        super().__init__()
        r = size // 2
        coords = torch.arange(size, dtype=torch.float32) - r
        dx, dy = coords.view(size, 1).expand(size, size), coords.view(1, size).expand(size, size)
        self.register_buffer("dx", dx.reshape(-1).clone(), persistent=False)  # (M²,) x is the first axis
        self.register_buffer("dy", dy.reshape(-1).clone(), persistent=False)
        dist = (dx.abs() + dy.abs()).reshape(-1).clone()
        dist[r * size + r] = float("inf")  # the agent's own cell is no kind's nearest
        self.register_buffer("dist", dist, persistent=False)
        self.radius = r
        self.kind = nn.Parameter(torch.zeros(n_cells, d_model))
        self.features = nn.Linear(self.FEATURES, d_model)
        nn.init.normal_(self.kind, std=0.02)

    @staticmethod
    def nearest(cells: torch.Tensor, n_cells: int, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cells (B, M²) long -> (distance (B, K), flat index (B, K)) of each kind's nearest cell,
        distance inf where the kind is absent (ties: the first in row-major order)."""
        kinds = torch.arange(n_cells, device=cells.device).view(1, n_cells, 1)  # (1, K, 1)
        d = torch.where(cells.unsqueeze(1) == kinds, dist, torch.full_like(dist, float("inf")))  # (B, K, M²)
        return d.min(-1)  # (B, K), (B, K)

    def forward(self, cells: torch.Tensor, facing: torch.Tensor) -> torch.Tensor:
        """cells (B, M, M) long, the map centred on the agent; facing (B, 2) -> (B, K, d)."""
        b, k, r = cells.shape[0], self.kind.shape[0], float(self.radius)
        best, idx = self.nearest(cells.reshape(b, -1).long(), k, self.dist)  # (B, K)
        present = torch.isfinite(best)
        dx = torch.where(present, self.dx[idx], 0.0)  # (B, K)
        dy = torch.where(present, self.dy[idx], 0.0)
        fx, fy = facing[:, :1].float(), facing[:, 1:].float()  # (B, 1)
        feats = torch.stack([present.float(), dx / r, dy / r, torch.where(present, best, 0.0) / (2 * r),
                             (best == 1).float(), (present & (dx == fx) & (dy == fy)).float(),
                             dx.sign(), dy.sign()], -1)  # (B, K, 8)
        return self.kind + self.features(feats)  # (B, K, d)


class Policy(nn.Module):
    """Tokens: [summary, inventory, facing, 63 view cells, (4 image), (25 map), (one per cell
    kind: its nearest cell on the map), subgoal words].
    Heads on the summary token: action logits and the "subgoal done" logit."""

    def __init__(self, cfg: PolicyConfig, n_cells: int, n_items: int, n_actions: int, skill_names: list[str]):
        super().__init__()
        self.config, self.n_items = cfg, n_items
        self.tokenizer = SubgoalTokenizer(skill_names, cfg.max_subgoal_words)
        d, (w, h) = cfg.d_model, cfg.view_shape
        self.summary = nn.Parameter(torch.zeros(1, 1, d))
        self.cell_emb = nn.Embedding(n_cells, d)
        self.pos_x, self.pos_y = nn.Parameter(torch.zeros(w, 1, d)), nn.Parameter(torch.zeros(1, h, d))  # 2D position
        self.inventory_in = nn.Linear(n_items, d)
        self.facing_in = nn.Linear(2, d)
        self.word_emb = nn.Embedding(len(self.tokenizer), d)
        self.word_pos = nn.Parameter(torch.zeros(cfg.max_subgoal_words, d))
        self.image = ImageEncoder(d) if cfg.use_image else None
        self.map_size = 2 * cfg.map_radius + 1
        self.map = MapEncoder(n_cells, d, self.map_size) if cfg.map_radius > 0 else None
        self.targets = TargetEncoder(n_cells, d, self.map_size) if cfg.targets and cfg.map_radius > 0 else None
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(d)
        self.action_head = nn.Linear(d, n_actions)
        self.done_head = nn.Linear(d, 1)
        for p in (self.summary, self.pos_x, self.pos_y, self.word_pos):
            nn.init.normal_(p, std=0.02)

    def forward(self, view, inventory, facing, subgoal, image=None, map=None) -> tuple[torch.Tensor, torch.Tensor]:
        """view (B, W, H) long; inventory (B, n_items); facing (B, 2); subgoal (B, words) long
        from `tokenizer.encode`; image (B, S, S, 3) uint8 when `use_image`; map (B, M, M) long,
        the agent's own map around it, when `map_radius` > 0 (zeros, "never seen", if absent)."""
        b = view.shape[0]
        cells = (self.cell_emb(view.long()) + self.pos_x + self.pos_y).flatten(1, 2)  # (B, W*H, d)
        status = torch.stack([self.inventory_in(inventory.float()), self.facing_in(facing.float())], 1)  # (B, 2, d)
        words = self.word_emb(subgoal) + self.word_pos  # (B, words, d)
        parts = [self.summary.expand(b, -1, -1), status, cells]
        if self.image is not None:
            parts.append(self.image(image))  # (B, 4, d)
        if self.map is not None:
            if map is None:
                map = torch.zeros(b, self.map_size, self.map_size, dtype=torch.long, device=view.device)
            parts.append(self.map(map))  # (B, 25, d)
            if self.targets is not None:
                parts.append(self.targets(map, facing))  # (B, n_cells, d)
        x = torch.cat(parts + [words], dim=1)  # (B, T, d)
        n_fixed = x.shape[1] - words.shape[1]
        keep = torch.cat([torch.ones(b, n_fixed, dtype=torch.bool, device=x.device), subgoal != 0], 1)  # (B, T)
        for i, block in enumerate(self.blocks):
            x = block(x, keep, queries=1 if i == len(self.blocks) - 1 else None)  # last: the summary only
        z = self.ln_f(x[:, 0])  # (B, d) the summary token
        return self.action_head(z), self.done_head(z).squeeze(-1)  # (B, n_actions), (B,)


def build_policy(config: PolicyConfig, n_cells: int, n_items: int, n_actions: int, skill_names: list[str]) -> Policy:
    return Policy(config, n_cells, n_items, n_actions, skill_names).to(resolve_device(config.device))
