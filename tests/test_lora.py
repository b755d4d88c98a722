"""Plain LoRA and injection: the wrapper in PEFT's shape, and moving one expert in and out."""

import pytest
import torch
from torch import nn

from envs.errors import ConfigError
from memory.inject import (
    AdapterError,
    adapter_state_dict,
    add_expert,
    inject,
    load_adapter_state_dict,
    set_active_adapter,
    trainable_only,
    wrappers,
)
from memory.lora import LoraConfig, LoraLinear


class TinyNet(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.blocks = nn.ModuleList([nn.ModuleDict({"fc": nn.Linear(d, d), "proj": nn.Linear(d, d)}) for _ in range(2)])
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        for b in self.blocks:
            x = x + b["proj"](torch.relu(b["fc"](x)))
        return self.head(x)


def test_config_rejects_unknown_routing_with_a_clear_error():
    with pytest.raises(ConfigError, match="unknown routing"):
        LoraConfig(routing="dense")


def test_fresh_adapter_leaves_outputs_bit_identical():
    torch.manual_seed(0)
    net, x = TinyNet(), torch.randn(5, 16)
    before = net(x)
    inject(net, LoraConfig(r=4, target_modules=["fc", "proj"]))
    add_expert(net, "a")
    assert torch.equal(net(x), before)


def test_wrapper_keeps_base_layer_untouched_and_frozen():
    base = nn.Linear(8, 8)
    w = base.weight.detach().clone()
    layer = LoraLinear(base, LoraConfig(r=2))
    layer.add_adapter("a")
    assert layer.base_layer is base and not base.weight.requires_grad
    assert torch.equal(base.weight, w)
    assert layer.lora_A["a"].weight.shape == (2, 8) and torch.all(layer.lora_B["a"].weight == 0)


def test_inject_matches_exact_suffixes_and_regexes():
    net = inject(TinyNet(), LoraConfig(target_modules=["fc"]))
    assert list(wrappers(net)) == ["blocks.0.fc", "blocks.1.fc"]
    net = inject(TinyNet(), LoraConfig(target_modules=r"blocks\.1\..*"))
    assert list(wrappers(net)) == ["blocks.1.fc", "blocks.1.proj"]


def test_inject_without_matching_layer_raises():
    with pytest.raises(AdapterError, match="no nn.Linear matches"):
        inject(TinyNet(), LoraConfig(target_modules=["nothing"]))


def test_state_dict_keys_carry_no_expert_name_and_load_under_another_name():
    torch.manual_seed(0)
    net = inject(TinyNet(), LoraConfig(r=4, target_modules=["fc"]))
    add_expert(net, "wood")
    for p in trainable_only(net, "wood"):
        nn.init.normal_(p)
    sd = adapter_state_dict(net, "wood")
    assert sorted(sd) == [f"blocks.{i}.fc.lora_{m}.weight" for i in (0, 1) for m in "AB"]
    x = torch.randn(3, 16)
    out = net(x)
    other = inject(TinyNet(), LoraConfig(r=4, target_modules=["fc"]))
    other.load_state_dict(net.state_dict(), strict=False)  # same base weights
    load_adapter_state_dict(other, sd, "stone")
    set_active_adapter(other, "stone")
    assert torch.equal(other(x), out)


def test_trainable_only_leaves_one_expert_trainable():
    net = inject(TinyNet(), LoraConfig(r=2, target_modules=["fc", "proj"]))
    add_expert(net, "a")
    add_expert(net, "b")
    params = trainable_only(net, "b")
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert len(params) == 8 and trainable == {n for n in trainable if ".b." in n} and trainable


def test_load_with_wrong_shape_raises_and_leaves_no_half_made_expert():
    net = inject(TinyNet(), LoraConfig(r=4, target_modules=["fc"]))
    add_expert(net, "a")
    sd = adapter_state_dict(net, "a")
    bad = inject(TinyNet(), LoraConfig(r=2, target_modules=["fc"]))
    with pytest.raises(AdapterError, match="shape"):
        load_adapter_state_dict(bad, sd, "a")
    assert all(w.expert_names() == [] for w in wrappers(bad).values())
