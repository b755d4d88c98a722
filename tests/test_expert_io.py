"""Experts on disk: atomic PEFT-format directories, exact round trips, clear errors."""

import copy
import json
import warnings

import pytest
import torch
from torch import nn

from memory.expert_io import CONFIG_NAME, WEIGHTS_NAME, load_expert, save_expert, sha256_of
from memory.inject import (
    AdapterError,
    adapter_state_dict,
    add_expert,
    inject,
    set_active_adapter,
    set_expert_indices,
    trainable_only,
)
from memory.lora import LoraConfig


class TinyNet(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.proj = nn.Linear(d, 8)

    def forward(self, x):
        return self.proj(torch.relu(self.fc(x)))


def trained(net, expert, steps=3):  # routes by the indices set on net
    opt = torch.optim.AdamW(trainable_only(net, expert), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(6, 16)).pow(2).mean().backward()
        opt.step()
    return net


def category_net(experts=("a", "b", "c")):
    torch.manual_seed(0)
    net = inject(TinyNet(), LoraConfig(r=4, routing="category", target_modules=["fc", "proj"]))
    for e in experts:
        add_expert(net, e)
    return net


def test_save_writes_peft_keys_without_expert_name(tmp_path):
    net = category_net()
    save_expert(net, "b", tmp_path / "b", net.fc.config)
    from safetensors.torch import load_file

    keys = sorted(load_file(tmp_path / "b" / WEIGHTS_NAME))
    assert keys == [f"base_model.model.{m}.lora_{x}.weight" for m in ("fc", "proj") for x in "AB"]
    assert json.loads((tmp_path / "b" / CONFIG_NAME).read_text())["peft_type"] == "LORA"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary directory left behind


def test_training_expert_k_changes_no_byte_of_other_experts_nor_base(tmp_path):
    net = category_net()
    before = {e: save_expert(net, e, tmp_path / e, net.fc.config) for e in ("a", "c")}
    base_before = {k: v.clone() for k, v in net.state_dict().items() if "base_layer" in k}
    set_expert_indices(net, torch.tensor([0, 1, 2, 1, 1, -1]))
    trained(net, "b")
    after = {e: save_expert(net, e, tmp_path / e, net.fc.config) for e in ("a", "c")}
    assert after == before
    assert all(torch.equal(net.state_dict()[k], v) for k, v in base_before.items())
    assert sha256_of(tmp_path / "a") == before["a"]


@pytest.mark.parametrize("routing", ["lora", "category", "moram", "topk"])
def test_save_then_load_round_trips_exactly(tmp_path, routing):
    cfg = LoraConfig(r=4, routing=routing, target_modules=["fc", "proj"], num_experts=3, top_k=2)
    torch.manual_seed(0)
    net = inject(TinyNet(), cfg)
    name = "mixture" if routing == "topk" else "e"
    if routing != "topk":
        add_expert(net, name)
    with torch.no_grad():
        for p in trainable_only(net, name):
            p.normal_()
    save_expert(net, name, tmp_path / "e", cfg)
    other = inject(TinyNet(), cfg)
    other.load_state_dict({k: v for k, v in net.state_dict().items() if "base_layer" in k}, strict=False)
    load_expert(other, tmp_path / "e", name, cfg)
    expected = adapter_state_dict(net, name)
    assert all(torch.equal(v, expected[k]) for k, v in adapter_state_dict(other, name).items())
    x = torch.randn(5, 16)
    set_expert_indices(net, torch.zeros(5, dtype=torch.long))
    set_expert_indices(other, torch.zeros(5, dtype=torch.long))
    assert torch.equal(other(x), net(x))


def test_plain_lora_expert_loads_into_peft_with_the_same_outputs(tmp_path):
    from peft import PeftModel

    net = category_net(("wood",))
    set_expert_indices(net, torch.zeros(6, dtype=torch.long))
    trained(net, "wood")
    save_expert(net, "wood", tmp_path / "wood", net.fc.config)
    base = TinyNet()
    base.fc.load_state_dict(net.fc.base_layer.state_dict())
    base.proj.load_state_dict(net.proj.base_layer.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our config holds only fields PEFT knows
        peft_model = PeftModel.from_pretrained(base, str(tmp_path / "wood"))
    x = torch.randn(5, 16)
    set_expert_indices(net, torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(peft_model(x), net(x), rtol=1e-6, atol=1e-6)


def test_tiny_llama_expert_round_trips_through_peft(tmp_path):
    from peft import PeftModel
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32)
    torch.manual_seed(0)
    base = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (2, 7))
    ours = inject(copy.deepcopy(base), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    add_expert(ours, "e")
    with torch.no_grad():
        for p in trainable_only(ours, "e"):
            p.normal_(std=0.1)
    set_active_adapter(ours, "e")
    save_expert(ours, "e", tmp_path / "e", LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "e")).eval()
    torch.testing.assert_close(peft_model(ids).logits, ours(ids).logits, rtol=1e-5, atol=1e-5)


def test_truncated_file_raises_adapter_error(tmp_path):
    net = category_net()
    save_expert(net, "a", tmp_path / "a", net.fc.config)
    f = tmp_path / "a" / WEIGHTS_NAME
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(AdapterError, match="corrupt or truncated"):
        load_expert(category_net(()), tmp_path / "a", "a", net.fc.config)


def test_garbage_file_raises_adapter_error(tmp_path):
    net = category_net()
    save_expert(net, "a", tmp_path / "a", net.fc.config)
    (tmp_path / "a" / WEIGHTS_NAME).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(AdapterError, match="corrupt or truncated"):
        load_expert(category_net(()), tmp_path / "a", "a", net.fc.config)


def test_mismatched_rank_or_routing_raises_adapter_error(tmp_path):
    net = category_net()
    save_expert(net, "a", tmp_path / "a", net.fc.config)
    other_cfg = LoraConfig(r=2, routing="category", target_modules=["fc", "proj"])
    with pytest.raises(AdapterError, match="r=4"):
        load_expert(inject(TinyNet(), other_cfg), tmp_path / "a", "a", other_cfg)
    moram_cfg = LoraConfig(r=4, routing="moram", target_modules=["fc", "proj"])
    with pytest.raises(AdapterError, match="routes by 'moram'"):
        load_expert(inject(TinyNet(), moram_cfg), tmp_path / "a", "a", moram_cfg)


def test_mismatched_network_raises_adapter_error(tmp_path):
    net = category_net()
    save_expert(net, "a", tmp_path / "a", net.fc.config)
    cfg = net.fc.config
    wider = inject(TinyNet(d=32), cfg)
    with pytest.raises(AdapterError, match="shape"):
        load_expert(wider, tmp_path / "a", "a", cfg)


def test_missing_directory_raises_adapter_error(tmp_path):
    net = category_net()
    with pytest.raises(AdapterError, match="not an expert directory"):
        load_expert(net, tmp_path / "nope", "a", net.fc.config)
