"""The routed wrappers: PEAM category experts, MixLoRA top-k, MoRAM rank-1 atoms."""

import pytest
import torch
from torch import nn

from memory.inject import add_expert, inject, set_expert_indices, trainable_only
from memory.lora import LoraConfig
from memory.moe_lora import CategoryLoraLinear, MoramLinear, TopkLoraLinear, load_balancing_loss, routed_delta

D_IN, D_OUT = 12, 8  # row strides of 16 bytes, so the grouped GEMM path runs


def randomised(layer):
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in layer.named_parameters():
            if "lora" in n or "router" in n:
                p.normal_()
    return layer


def category_layer(n_experts=3, r=4):
    torch.manual_seed(0)
    layer = CategoryLoraLinear(nn.Linear(D_IN, D_OUT), LoraConfig(r=r, routing="category"))
    for i in range(n_experts):
        layer.add_expert(f"e{i}")
    return layer


@pytest.mark.parametrize("method", ["dense", "grouped", "gather", None])
def test_routed_delta_equals_a_per_row_loop(method):
    torch.manual_seed(0)
    x, a, b = torch.randn(40, D_IN), torch.randn(5, 4, D_IN), torch.randn(5, D_OUT, 4)
    ids, w = torch.randint(0, 5, (40, 2)), torch.rand(40, 2)
    ref = torch.stack([sum(w[n, j] * b[ids[n, j]] @ a[ids[n, j]] @ x[n] for j in range(2)) for n in range(40)])
    torch.testing.assert_close(routed_delta(x, a, b, ids, w, method=method), ref, rtol=1e-4, atol=1e-4)


def test_the_methods_agree_on_gradients_too():
    torch.manual_seed(2)
    leaves = [torch.randn(30, D_IN), torch.randn(5, 4, D_IN), torch.randn(5, D_OUT, 4), torch.rand(30, 2)]
    ids = torch.randint(0, 5, (30, 2))
    grads = {}
    for method in ("dense", "grouped", "gather"):
        ts = [t.clone().requires_grad_() for t in leaves]
        routed_delta(ts[0], ts[1], ts[2], ids, ts[3], method=method).square().sum().backward()
        grads[method] = [t.grad for t in ts]
    for method in ("grouped", "gather"):
        for got, ref in zip(grads[method], grads["dense"]):
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_float64_with_many_experts_takes_the_gather_path_the_grouped_gemm_refuses():
    """torch's grouped GEMM refuses float64 ("Expected mat_a to be Float32, BFloat16 or
    Float16"): found by the GPU tests' float64 reference, which crashed on the CPU."""
    torch.manual_seed(3)
    g, r = 40, 4  # G·r = 160: past the dense form
    x, a, b = (torch.randn(*s, dtype=torch.float64) for s in ((50, D_IN), (g, r, D_IN), (g, D_OUT, r)))
    ids = torch.randint(0, g, (50, 1))
    ref = torch.stack([b[ids[n, 0]] @ a[ids[n, 0]] @ x[n] for n in range(50)])
    torch.testing.assert_close(routed_delta(x, a, b, ids), ref)


@pytest.mark.parametrize("shape,r", [((7, D_IN), 4), ((7, 5, D_IN), 4), ((7, 5, D_IN), 3)])
def test_category_mixed_batch_equals_per_sample_loop(shape, r):
    layer = randomised(category_layer(r=r))  # r=3: unaligned for the grouped GEMM
    x = torch.randn(*shape)
    idx = torch.tensor([0, 2, -1, 1, 1, 0, -1])
    layer.expert_indices = idx
    out = layer(x)
    for i in range(7):
        base = layer.base_layer(x[i])
        if idx[i] < 0:
            ref = base
        else:
            e = f"e{idx[i]}"
            ref = base + layer.lora_B[e](layer.lora_A[e](x[i])) * layer.scaling
        torch.testing.assert_close(out[i], ref, rtol=1e-5, atol=1e-5)


def test_fresh_expert_leaves_outputs_bit_identical_in_every_routing():
    torch.manual_seed(0)
    x = torch.randn(6, D_IN)
    for routing in ("category", "topk", "moram"):
        net = nn.Sequential(nn.Linear(D_IN, D_OUT))
        before = net(x)
        inject(net, LoraConfig(r=4, routing=routing, target_modules=["0"], num_experts=4, top_k=2))
        if routing != "topk":
            add_expert(net, "fresh")
        set_expert_indices(net, torch.zeros(6, dtype=torch.long))
        assert torch.equal(net(x), before), routing


def test_category_gradients_reach_only_the_routed_expert():
    layer = randomised(category_layer())
    layer.requires_grad_(True)
    layer.base_layer.requires_grad_(False)
    layer.expert_indices = torch.tensor([2, 2, -1, 2])
    layer(torch.randn(4, D_IN)).pow(2).sum().backward()
    for name in ("e0", "e1"):
        assert layer.lora_A[name].weight.grad is None or not layer.lora_A[name].weight.grad.any()
    assert layer.lora_A["e2"].weight.grad.abs().sum() > 0 and layer.lora_B["e2"].weight.grad.abs().sum() > 0
    assert layer.base_layer.weight.grad is None


def test_training_one_category_expert_changes_no_other_parameter():
    net = nn.Sequential(nn.Linear(D_IN, D_OUT), nn.ReLU(), nn.Linear(D_OUT, D_OUT))
    inject(net, LoraConfig(r=4, routing="category", target_modules=["0", "2"]))
    for name in ("a", "b", "c"):
        add_expert(net, name)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.AdamW(trainable_only(net, "b"), lr=1e-2, weight_decay=0.1)
    set_expert_indices(net, torch.tensor([0, 1, 2, 1, -1]))  # a mixed batch
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, D_IN)).pow(2).mean().backward()
        opt.step()
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"0.lora_A.b.weight", "0.lora_B.b.weight", "2.lora_A.b.weight", "2.lora_B.b.weight"}


def test_topk_equals_a_per_token_reference():
    torch.manual_seed(0)
    cfg = LoraConfig(r=4, routing="topk", num_experts=4, top_k=2)
    layer = randomised(TopkLoraLinear(nn.Linear(D_IN, D_OUT), cfg))
    x = torch.randn(9, D_IN)
    out = layer(x)
    probs = torch.softmax(layer.router(x), -1)
    for n in range(9):
        w, ids = probs[n].topk(2)
        w = w / w.sum()
        delta = sum(w[j] * layer.lora_B[ids[j]] @ layer.lora_A[ids[j]] @ x[n] for j in range(2))
        torch.testing.assert_close(out[n], layer.base_layer(x[n]) + cfg.scaling * delta, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(layer.aux_loss)


def test_topk_aux_loss_is_minimal_when_balanced():
    n_experts = 4
    uniform = torch.full((8, n_experts), 1 / n_experts)
    balanced = load_balancing_loss(uniform, torch.arange(8).remainder(n_experts).unsqueeze(1))
    assert balanced.item() == pytest.approx(1.0)
    torch.manual_seed(0)
    for _ in range(20):
        probs = torch.softmax(3 * torch.randn(8, n_experts), -1)
        assert load_balancing_loss(probs, probs.topk(1).indices) >= balanced - 1e-6
    collapsed = torch.tensor([[0.97, 0.01, 0.01, 0.01]]).repeat(8, 1)
    assert load_balancing_loss(collapsed, torch.zeros(8, 1, dtype=torch.long)) > 3.5


def moram_reference(x, A, B, k, tau, delta, training):
    """MoRAM written naïvely, one token at a time (DESIGN.md "Routing modes")."""
    rows = []
    for xt in x:
        p = [float(A[i] @ xt) for i in range(A.shape[0])]
        norm = sum(v * v for v in p) ** 0.5
        s = [v / norm for v in p]
        kept = sorted(range(len(s)), key=lambda i: -s[i])[:k]
        z = sum(torch.exp(torch.tensor(s[i] / tau)) for i in kept)
        upd = torch.zeros(B.shape[0])
        for i in kept:
            w = torch.exp(torch.tensor(s[i] / tau)) / z
            if not training and s[i] < delta:
                w = 0.0
            upd += p[i] * w * B[:, i]
        rows.append(upd)
    return torch.stack(rows)


@pytest.mark.parametrize("training", [True, False])
def test_moram_matches_a_direct_reference(training):
    cfg = LoraConfig(r=3, routing="moram", top_k=3, temperature=0.5, threshold=0.1)
    layer = MoramLinear(nn.Linear(D_IN, D_OUT), cfg)
    layer.add_atoms()
    layer.add_atoms(r=2)
    randomised(layer).train(training)
    x = torch.randn(6, D_IN)
    A = torch.cat([layer.lora_A[n].weight for n in layer.expert_names()]).detach()  # (5, d_in)
    B = torch.cat([layer.lora_B[n].weight for n in layer.expert_names()], 1).detach()  # (d_out, 5)
    ref = layer.base_layer(x) + moram_reference(x, A, B, 3, 0.5, 0.1, training)
    torch.testing.assert_close(layer(x), ref, rtol=1e-4, atol=1e-5)


def test_moram_add_atoms_leaves_old_atoms_unchanged_after_training():
    torch.manual_seed(0)
    layer = MoramLinear(nn.Linear(D_IN, D_OUT), LoraConfig(r=2, routing="moram", top_k=2))
    first = layer.add_atoms()
    randomised(layer)
    old = {k: v.clone() for k, v in layer.state_dict().items()}
    second = layer.add_atoms()
    assert layer.expert_names() == [first, second]
    assert not layer.lora_A[first].weight.requires_grad and layer.lora_A[second].weight.requires_grad
    opt = torch.optim.AdamW([p for p in layer.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(8, D_IN)).pow(2).mean().backward()
        opt.step()
    for k, v in old.items():
        assert torch.equal(layer.state_dict()[k], v), k
    assert layer.lora_B[second].weight.abs().sum() > 0


def test_merged_copy_computes_what_the_routed_model_computes_and_leaves_it_untouched():
    from memory.inject import AdapterError, merged_copy, wrappers

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(D_IN, 16), nn.GELU(), nn.Linear(16, D_OUT))
    inject(net, LoraConfig(r=4, routing="category", target_modules=["0", "2"]))
    for name in ("gather", "build"):
        add_expert(net, name)
    randomised(net[0]), randomised(net[2])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(9, D_IN)
    for i, name in enumerate(("gather", "build")):
        merged = merged_copy(net, name)
        assert not wrappers(merged) and isinstance(merged[0], nn.Linear)
        set_expert_indices(net, torch.full((9,), i))
        torch.testing.assert_close(merged(x), net(x), rtol=1e-4, atol=1e-3)  # fp32 reassociation
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(AdapterError, match="not in layer"):
        merged_copy(net, "craft")
    moram = nn.Sequential(nn.Linear(D_IN, D_OUT))
    inject(moram, LoraConfig(r=4, routing="moram", target_modules=["0"], num_experts=4, top_k=2))
    with pytest.raises(AdapterError, match="merged"):
        merged_copy(moram, "fresh")
