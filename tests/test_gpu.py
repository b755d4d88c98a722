"""On a CUDA GPU: the layers, the policy, training and the fast path compute on the GPU what
they compute on the CPU. Skipped where no GPU is visible (CI's machines); run on a lent GPU."""

import pytest
import torch

from memory.inject import add_expert, inject, set_expert_indices, wrappers
from memory.lora import LoraConfig
from memory.moe_lora import routed_delta
from memory.policy import PolicyConfig, build_policy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")

SKILLS = ["collect_wood", "place_table", "make_wood_pickaxe"]


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double().cpu() - ref).norm() / ref.norm()).item()


def reference_delta(x, a, b, ids) -> torch.Tensor:
    """Σ B A x per row, one row at a time, in float64 on the CPU."""
    x, a, b = x.double().cpu(), a.double().cpu(), b.double().cpu()
    return torch.stack([sum(b[e] @ (a[e] @ x[n]) for e in ids[n].tolist()) for n in range(len(x))])


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.bfloat16, 2e-2)])
def test_routed_delta_on_the_gpu_matches_a_float64_reference(dtype, tol):
    g = torch.Generator().manual_seed(0)
    n, d_in, d_out, r, experts = 96, 64, 48, 8, 5
    x = torch.randn(n, d_in, generator=g)
    a, b = torch.randn(experts, r, d_in, generator=g), torch.randn(experts, d_out, r, generator=g)
    ids = torch.randint(0, experts, (n, 2), generator=g)
    ref = reference_delta(x, a, b, ids)
    cuda = lambda t: t.to("cuda", dtype)  # noqa: E731
    methods = ("dense", "gather", "grouped") if dtype == torch.bfloat16 else ("dense", "gather")
    for method in methods:  # CUDA's grouped GEMM wants bf16
        out = routed_delta(cuda(x), cuda(a), cuda(b), ids.cuda(), method=method)
        assert out.device.type == "cuda" and out.dtype == dtype
        assert torch.isfinite(out).all()
        assert rel_err(out, ref) < tol, (method, rel_err(out, ref))


def test_routed_delta_gradients_on_the_gpu_match_the_cpu():
    g = torch.Generator().manual_seed(1)
    x, a, b = torch.randn(64, 32, generator=g), torch.randn(4, 8, 32, generator=g), torch.randn(4, 16, 8, generator=g)
    ids = torch.randint(0, 4, (64, 1), generator=g)
    grads = []
    for device, dtype in (("cpu", torch.float64), ("cuda", torch.bfloat16)):
        leaves = [t.to(device, dtype).requires_grad_() for t in (x, a, b)]
        routed_delta(*leaves, ids.to(device)).square().sum().backward()
        grads.append([t.grad for t in leaves])
    for got, ref in zip(grads[1], grads[0]):
        assert rel_err(got, ref) < 3e-2


def test_the_policy_with_experts_decides_on_the_gpu_as_on_the_cpu():
    torch.manual_seed(0)
    cpu = build_policy(PolicyConfig(d_model=64, n_layers=2, n_heads=4), 20, 16, 17, SKILLS)
    inject(cpu, LoraConfig(routing="category"))
    for category in ("gather", "build"):
        add_expert(cpu, category)
    with torch.no_grad():
        for layer in wrappers(cpu).values():
            for category in ("gather", "build"):
                layer.lora_B[category].weight.normal_(0, 0.2)
    gpu = build_policy(PolicyConfig(d_model=64, n_layers=2, n_heads=4, device="cuda"), 20, 16, 17, SKILLS)
    inject(gpu, LoraConfig(routing="category"))
    for category in ("gather", "build"):
        add_expert(gpu, category)
    gpu.load_state_dict(cpu.state_dict())
    cpu.eval(), gpu.eval()
    g = torch.Generator().manual_seed(2)
    batch = dict(view=torch.randint(0, 20, (8, 9, 7), generator=g), inventory=torch.rand(8, 16, generator=g),
                 facing=torch.randn(8, 2, generator=g), subgoal=cpu.tokenizer.encode(SKILLS * 2 + SKILLS[:2]),
                 map=torch.randint(0, 20, (8, 17, 17), generator=g))
    experts = torch.tensor([0, 1, -1, 0, 1, -1, 0, 1])
    set_expert_indices(cpu, experts)
    set_expert_indices(gpu, experts.cuda())
    with torch.no_grad():
        ref_logits, ref_done = cpu(**batch)
        logits, done = gpu(**{k: v.cuda() for k, v in batch.items()})
    assert logits.device.type == "cuda"
    assert rel_err(logits, ref_logits.double()) < 1e-3 and rel_err(done, ref_done.double()) < 1e-3
    assert torch.equal(logits.argmax(-1).cpu(), ref_logits.argmax(-1))


def test_training_on_the_gpu_writes_a_base_and_experts_the_cpu_loads(tmp_path):
    from dataclasses import replace

    from agent.loop.fast_path import FastPolicy
    from agent.loop.runner import Runner
    from agent.loop.world_memory import WorldMemory
    from consolidation.fit import FitConfig
    from consolidation.trainer import CATEGORY_EXPERTS, train_base, train_category_experts
    from envs import make_env
    from envs.tasks import resolve_task
    from memory.base_io import load_base
    from memory.expert_io import sha256_of
    from memory.registry import ExpertRef
    from memory.store import Store

    store = Store.open(f"sqlite:///{tmp_path}/peam.db")
    env = make_env("crafter")
    store.sync_skills(env.catalog)
    run_id = store.start_run(env="crafter", task="make_wood_pickaxe", planner="symbolic",
                             memory_mode="none", config={})
    Runner(env, recorder=store, run_id=run_id).run(resolve_task("make_wood_pickaxe", env.catalog), seeds=[0])
    models = tmp_path / "models"
    tiny = PolicyConfig(d_model=32, n_layers=1, n_heads=4)
    base = train_base(store, out_dir=models, config=FitConfig(epochs=2, device="cuda"), policy_config=tiny,
                      progress=False)
    assert base["val_loss"] is not None and base["val_loss"] == base["val_loss"]  # not NaN
    digest = sha256_of(models / "base" / "model.safetensors")
    experts = train_category_experts(store, models_dir=models, progress=False,
                                     config=replace(CATEGORY_EXPERTS, epochs=2, device="cuda"))
    assert set(experts) >= {"gather", "build", "craft"}
    assert sha256_of(models / "base" / "model.safetensors") == digest  # the base stays frozen
    policy, _ = load_base(models / "base", "cpu")  # saved as CPU tensors
    assert next(policy.parameters()).device.type == "cpu"
    refs = [ExpertRef(c, m["path"], m["expert_id"]) for c, m in experts.items()]
    fast = FastPolicy(models, refs, device="cuda")
    obs, _ = env.reset(seed=0)
    fast.memory = WorldMemory(env.cell_names, env.walkable, env.catalog.knowledge)
    fast.memory.observe(obs, None)
    assert fast.act(obs, env.catalog["collect_wood"]) in env.action_names
    store.close()
