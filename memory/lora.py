"""Plain LoRA: the config every routing mode shares, and a wrapper in PEFT's shape.

`LoraLinear` keeps `base_layer` untouched and frozen and holds its adapters in `nn.ModuleDict`s
keyed by adapter name (PEFT `tuners/lora/layer.py`), so an adapter's tensors are
`lora_A.<name>.weight` (r, d_in) and `lora_B.<name>.weight` (d_out, r) — the same names PEFT saves,
once the adapter name is dropped. The routed wrappers in `memory/moe_lora.py` build on it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from envs.errors import ConfigError

ROUTINGS = ("lora", "category", "topk", "moram")
# The policy network's (memory/policy.py) attention and MLP projections.
DEFAULT_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")


@dataclass
class LoraConfig:
    """One config for every routing mode; fields a mode does not use are ignored by it.

    target_modules: a list of names matched as exact dotted suffixes (PEFT), or one string
    matched as a regex against the whole qualified name (PEFT's `re.fullmatch`).
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | str = field(default_factory=lambda: list(DEFAULT_TARGETS))
    routing: str = "lora"  # 'lora' | 'category' (PEAM) | 'topk' (MixLoRA) | 'moram' (MoRAM)
    num_experts: int = 4  # topk: experts behind the learned router
    top_k: int = 1  # topk: experts per token; moram: atoms kept per token
    temperature: float = 1.0  # moram: τ of softmax(s / τ)
    threshold: float = 0.0  # moram: δ, at inference weights of atoms scoring s < δ are zeroed
    aux_loss_coef: float = 0.01  # topk: weight the trainer gives `layer.aux_loss` (MixLoRA)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.routing not in ROUTINGS:
            raise ConfigError(f"unknown routing {self.routing!r}; use one of {', '.join(ROUTINGS)}")
        if self.r < 1 or self.alpha <= 0:
            raise ConfigError(f"LoRA rank r={self.r} must be >= 1 and alpha={self.alpha} > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LoRA dropout={self.dropout} must lie in [0, 1)")
        if self.top_k < 1 or (self.routing == "topk" and self.top_k > self.num_experts):
            raise ConfigError(f"top_k={self.top_k} must lie in [1, num_experts={self.num_experts}]")
        if self.temperature <= 0:
            raise ConfigError(f"temperature={self.temperature} must be > 0")
        if not self.target_modules:
            raise ConfigError("target_modules is empty; name the nn.Linear layers to adapt")

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LoraConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def kaiming_init_(weight: torch.Tensor) -> torch.Tensor:
    """PEFT's (and nn.Linear's) init for lora_A: Kaiming-uniform with a = sqrt(5)."""
    return nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


class LoraLinear(nn.Module):
    """base_layer(x) + scaling · B_a A_a dropout(x) for the active adapter a (none: base only)."""

    def __init__(self, base_layer: nn.Linear, config: LoraConfig):
        super().__init__()
        self.base_layer = base_layer
        self.base_layer.requires_grad_(False)
        self.config = config
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.lora_A = nn.ModuleDict({})
        self.lora_B = nn.ModuleDict({})
        self.lora_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.scaling = config.scaling
        self.active_adapter: str | None = None

    # -- the expert store, shared by the routed subclasses ------------------------------------
    def add_adapter(self, name: str, r: int | None = None) -> None:
        """A fresh adapter: A Kaiming, B zero, so the layer's output is bit-identical."""
        if name in self.lora_A:
            raise ConfigError(f"adapter {name!r} already exists in this layer")
        r = r or self.config.r
        w = self.base_layer.weight
        a = nn.Linear(self.in_features, r, bias=False, device=w.device, dtype=w.dtype)
        b = nn.Linear(r, self.out_features, bias=False, device=w.device, dtype=w.dtype)
        kaiming_init_(a.weight)
        nn.init.zeros_(b.weight)
        self.lora_A[name], self.lora_B[name] = a, b
        if self.active_adapter is None:
            self.active_adapter = name

    def add_expert(self, name: str) -> None:
        self.add_adapter(name)

    def remove_expert(self, name: str) -> None:
        del self.lora_A[name], self.lora_B[name]
        if self.active_adapter == name:
            self.active_adapter = None

    def expert_names(self) -> list[str]:
        return list(self.lora_A.keys())

    def expert_tensors(self, name: str) -> dict[str, nn.Parameter]:
        """The expert's parameters under keys without its name (`lora_A.weight`) — PEFT's keys."""
        return {"lora_A.weight": self.lora_A[name].weight, "lora_B.weight": self.lora_B[name].weight}

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All experts' weights, in `expert_names()` order, for one batched computation.

        Each expert stays its own nn.Parameter, so a frozen expert gets no gradient and no
        optimizer ever touches it (PEAM: isolation); stacking E small (r, d) tensors is cheap.
        """
        names = self.expert_names()
        a = torch.stack([self.lora_A[n].weight for n in names])  # (E, r, d_in)
        b = torch.stack([self.lora_B[n].weight for n in names])  # (E, d_out, r)
        return a, b

    # -- plain LoRA forward --------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # (..., d_out)
        name = self.active_adapter
        if name is None or name not in self.lora_A:
            return out
        h = self.lora_A[name](self.lora_dropout(x))  # (..., r)
        return out + self.lora_B[name](h) * self.scaling

    def extra_repr(self) -> str:
        return f"routing={self.config.routing}, r={self.config.r}, experts={self.expert_names()}"
