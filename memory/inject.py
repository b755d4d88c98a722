"""Put LoRA / MoE-LoRA wrappers into any `nn.Module` and move one expert's tensors in and out.

An expert's state dict is keyed by module path + parameter, never by the expert's name
(`blocks.0.mlp.fc.lora_A.weight`), so a saved expert loads under any name (PEFT's
`get_peft_model_state_dict`; STYLE.md #14).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from envs.errors import PeamError
from memory.lora import LoraConfig, LoraLinear
from memory.moe_lora import CategoryLoraLinear, MoramLinear, TopkLoraLinear

WRAPPERS = {"lora": LoraLinear, "category": CategoryLoraLinear, "topk": TopkLoraLinear, "moram": MoramLinear}
Wrapper = LoraLinear | TopkLoraLinear


class AdapterError(PeamError):
    """An adapter file or state dict that does not fit: corrupt, truncated, or mismatched."""


def matches(name: str, target_modules: list[str] | str) -> bool:
    """PEFT's rule: a string is a regex over the whole name; a list holds exact dotted suffixes."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def inject(model: nn.Module, config: LoraConfig) -> nn.Module:
    """Replace every matching `nn.Linear` by the wrapper of `config.routing`, in place.

    Base weights are frozen and left untouched. 'lora', 'category' and 'moram' layers start with
    no expert (`add_expert`); a 'topk' layer starts with its whole mixture.
    """
    config.validate()
    wrapper = WRAPPERS[config.routing]
    targets = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and matches(n, config.target_modules)]
    if not targets:
        raise AdapterError(f"no nn.Linear matches target_modules={config.target_modules!r}; check the module names")
    model.requires_grad_(False)
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, wrapper(getattr(parent, child), config))
    return model


def wrappers(model: nn.Module) -> dict[str, Wrapper]:
    """The injected layers by qualified name, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (LoraLinear, TopkLoraLinear))}


def add_expert(model: nn.Module, name: str) -> None:
    """A fresh expert in every wrapper (B zero, so the model's outputs do not change)."""
    for layer in wrappers(model).values():
        layer.add_expert(name)


def expert_names(model: nn.Module) -> list[str]:
    layers = list(wrappers(model).values())
    return layers[0].expert_names() if layers else []


def set_active_adapter(model: nn.Module, name: str | None) -> None:
    """Plain-LoRA layers: the adapter every sample goes through (None: base only)."""
    for layer in wrappers(model).values():
        layer.active_adapter = name


def set_expert_indices(model: nn.Module, idx: torch.Tensor | None) -> None:
    """Category routing (PEAM): per-sample indices into `expert_names(model)`, -1 = base only."""
    n = len(expert_names(model))
    if idx is not None:
        if idx.dtype != torch.long:
            raise AdapterError(f"expert indices must be a LongTensor, got {idx.dtype}")
        if idx.numel() and (int(idx.max()) >= n or int(idx.min()) < -1):
            raise AdapterError(f"expert indices must lie in [-1, {n - 1}]; this model holds {n} experts")
    for layer in wrappers(model).values():
        if isinstance(layer, CategoryLoraLinear):
            layer.expert_indices = idx


def merged_copy(model: nn.Module, expert: str) -> nn.Module:
    """A copy of `model` with `expert` folded into the base weights, W + scaling · B A, and every
    wrapper replaced by a plain `nn.Linear` (PEFT's `merge_and_unload`): the same function of
    its input as the model routed to `expert`, at the cost of the base alone. For inference; the
    model itself (base and every expert) is left untouched. Plain-LoRA and category-routed
    layers only: a MixLoRA or MoRAM layer picks its experts per token and cannot be folded."""
    import copy

    layers = wrappers(model)
    if any(not isinstance(layer, LoraLinear) or isinstance(layer, MoramLinear) for layer in layers.values()):
        raise AdapterError("only plain-LoRA and category-routed layers can be merged")
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, layer in layers.items():
            if expert not in layer.expert_names():
                raise AdapterError(f"expert {expert!r} is not in layer {name}; it holds {layer.expert_names()}")
            base = layer.base_layer
            plain = nn.Linear(layer.in_features, layer.out_features, bias=base.bias is not None,
                              device=base.weight.device, dtype=base.weight.dtype)
            delta = layer.lora_B[expert].weight @ layer.lora_A[expert].weight  # (d_out, d_in)
            plain.weight.copy_(base.weight + layer.scaling * delta)
            if base.bias is not None:
                plain.bias.copy_(base.bias)
            plain.requires_grad_(False)
            parent_name, _, child = name.rpartition(".")
            setattr(out.get_submodule(parent_name), child, plain)
    return out


def _expert_params(model: nn.Module, expert: str) -> dict[str, nn.Parameter]:
    params = {}
    for mod_name, layer in wrappers(model).items():
        if expert not in layer.expert_names():
            raise AdapterError(f"expert {expert!r} is not in layer {mod_name}; it holds {layer.expert_names()}")
        for key, p in layer.expert_tensors(expert).items():
            params[f"{mod_name}.{key}"] = p
    return params


def trainable_only(model: nn.Module, expert: str) -> list[nn.Parameter]:
    """Freeze everything but `expert`'s tensors; return those, for the optimizer."""
    model.requires_grad_(False)
    params = list(_expert_params(model, expert).values())
    for p in params:
        p.requires_grad_(True)
    return params


def adapter_state_dict(model: nn.Module, expert: str) -> dict[str, torch.Tensor]:
    """`expert`'s tensors, detached, keyed without its name: `blocks.0.mlp.fc.lora_A.weight`."""
    return {k: p.detach() for k, p in _expert_params(model, expert).items()}


def load_adapter_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], expert: str) -> None:
    """Copy `sd` into `expert` (created when missing); keys and shapes must match exactly."""
    created = expert not in expert_names(model)
    if created:
        add_expert(model, expert)
    try:
        _copy_checked(_expert_params(model, expert), sd)
    except AdapterError:
        if created:  # no partial writes: a failed load leaves no half-made expert behind
            for layer in wrappers(model).values():
                layer.remove_expert(expert)
        raise


def _copy_checked(params: dict[str, nn.Parameter], sd: dict[str, torch.Tensor]) -> None:
    missing, unexpected = sorted(set(params) - set(sd)), sorted(set(sd) - set(params))
    if missing or unexpected:
        raise AdapterError(
            f"adapter does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}; "
            "was it trained for another network or target_modules?"
        )
    for key, p in params.items():
        if tuple(sd[key].shape) != tuple(p.shape):
            raise AdapterError(
                f"adapter tensor {key} has shape {tuple(sd[key].shape)}, the model wants {tuple(p.shape)}; "
                "check the rank r and the network's width"
            )
    with torch.no_grad():
        for key, p in params.items():
            p.copy_(sd[key])
