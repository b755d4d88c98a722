"""The fast policy: shapes, the subgoal tokenizer, and LoRA experts injected into it."""

import pytest
import torch

from envs.errors import ConfigError
from memory.inject import add_expert, inject, set_expert_indices, trainable_only, wrappers
from memory.lora import LoraConfig
from memory.policy import PolicyConfig, SubgoalTokenizer, build_policy

SKILLS = ["collect_wood", "place_table", "make_wood_pickaxe", "collect_stone"]
N_CELLS, N_ITEMS, N_ACTIONS = 20, 16, 17


def batch(policy, b=3, image=False):
    torch.manual_seed(0)
    return dict(
        view=torch.randint(0, N_CELLS, (b, 9, 7)),
        inventory=torch.randint(0, 9, (b, N_ITEMS)),
        facing=torch.tensor([[0, 1]] * b),
        subgoal=policy.tokenizer.encode((SKILLS * b)[:b]),
        image=torch.randint(0, 256, (b, 64, 64, 3), dtype=torch.uint8) if image else None,
    )


def small(**kw):
    return PolicyConfig(d_model=32, n_layers=2, n_heads=4, **kw)


def test_tokenizer_is_deterministic_and_splits_skill_names_into_words():
    tok = SubgoalTokenizer(list(reversed(SKILLS)), max_words=4)
    assert tok.vocab == SubgoalTokenizer(SKILLS, max_words=4).vocab
    ids = tok.encode(["collect_wood", "make_unknown_thing"])
    assert ids.shape == (2, 4) and ids[0, 2:].tolist() == [0, 0]
    assert ids[0, 0] == tok.vocab["collect"] and ids[1, 1] == tok.UNK


@pytest.mark.parametrize("use_image", [False, True])
def test_policy_outputs_action_logits_and_done_logit(use_image):
    policy = build_policy(small(use_image=use_image), N_CELLS, N_ITEMS, N_ACTIONS, SKILLS)
    logits, done = policy(**batch(policy, image=use_image))
    assert logits.shape == (3, N_ACTIONS) and done.shape == (3,)
    assert torch.isfinite(logits).all() and torch.isfinite(done).all()


def test_padding_words_do_not_change_the_output():
    policy = build_policy(small(max_subgoal_words=4), N_CELLS, N_ITEMS, N_ACTIONS, SKILLS).eval()
    longer = build_policy(small(max_subgoal_words=6), N_CELLS, N_ITEMS, N_ACTIONS, SKILLS).eval()
    longer.load_state_dict({k: v for k, v in policy.state_dict().items() if k != "word_pos"}, strict=False)
    with torch.no_grad():
        longer.word_pos[:4] = policy.word_pos
    x = batch(policy)
    y = dict(x, subgoal=longer.tokenizer.encode(SKILLS[:3]))
    torch.testing.assert_close(policy(**x)[0], longer(**y)[0], rtol=1e-5, atol=1e-5)


def test_the_last_block_computing_the_summary_token_alone_changes_nothing():
    """Only the summary token is read off the last block; the other tokens' outputs there are
    skipped (a third less work per decision) and must not have mattered."""
    policy = build_policy(small(), N_CELLS, N_ITEMS, N_ACTIONS, SKILLS).eval()
    x = batch(policy)
    fast = policy(**x)
    last = policy.blocks[-1]
    full = last.forward
    last.forward = lambda h, keep, queries=None: full(h, keep, None)  # every token, as before
    torch.testing.assert_close(policy(**x), fast, rtol=1e-5, atol=1e-5)


def test_default_lora_targets_are_the_trunks_projections():
    policy = inject(build_policy(small(), N_CELLS, N_ITEMS, N_ACTIONS, SKILLS), LoraConfig(routing="category"))
    assert sorted(wrappers(policy)) == sorted(
        f"blocks.{i}.{m}" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
    )


def test_category_expert_trains_inside_the_policy_and_leaves_the_base_alone():
    policy = build_policy(small(), N_CELLS, N_ITEMS, N_ACTIONS, SKILLS)
    x = batch(policy)
    before_out = policy(**x)[0].detach()
    inject(policy, LoraConfig(r=4, routing="category"))
    add_expert(policy, "collect")
    set_expert_indices(policy, torch.tensor([0, -1, 0]))
    assert torch.equal(policy(**x)[0], before_out)
    base = {k: v.clone() for k, v in policy.state_dict().items() if "lora_" not in k}
    opt = torch.optim.AdamW(trainable_only(policy, "collect"), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(policy(**x)[0], torch.tensor([1, 2, 3])).backward()
        opt.step()
    assert all(torch.equal(policy.state_dict()[k], v) for k, v in base.items())
    after = policy(**x)[0].detach()
    assert torch.equal(after[1], before_out[1]) and not torch.equal(after[0], before_out[0])


def test_unavailable_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        build_policy(small(device="cuda"), N_CELLS, N_ITEMS, N_ACTIONS, SKILLS)


def test_target_tokens_say_where_each_kinds_nearest_cell_lies():
    from memory.policy import TargetEncoder

    enc = TargetEncoder(N_CELLS, 8, 17)
    cells = torch.zeros(2, 17, 17, dtype=torch.long)  # all "unknown" (kind 0)
    cells[:, 6:11, 6:11] = 2  # grass around the agent
    cells[:, 8, 8] = 13  # the agent itself, at the centre
    cells[0, 10, 7] = 6  # a tree 2 right, 1 up: the nearest of two
    cells[0, 3, 8] = 6
    cells[1, 8, 9] = 6  # a tree right below the agent, which faces it
    best, idx = TargetEncoder.nearest(cells.reshape(2, -1), N_CELLS, enc.dist)
    assert best[0, 6] == 3 and enc.dx[idx[0, 6]] == 2 and enc.dy[idx[0, 6]] == -1
    assert best[1, 6] == 1 and torch.isinf(best[0, 7])  # no lava anywhere
    assert best[0, 13] == float("inf")  # the agent's own cell is no kind's nearest
    assert best[0, 0] == 3  # the nearest unexplored cell: 3 steps off
    captured = {}
    enc.features.register_forward_hook(lambda m, i, o: captured.update(feats=i[0]))
    tokens = enc(cells, torch.tensor([[0, 1], [0, 1]]))
    assert tokens.shape == (2, N_CELLS, 8)
    f = captured["feats"]  # present, dx/r, dy/r, distance/2r, adjacent, faced, sign dx, sign dy
    assert f[0, 6].tolist() == pytest.approx([1, 2 / 8, -1 / 8, 3 / 16, 0, 0, 1, -1])
    assert f[1, 6].tolist() == pytest.approx([1, 0, 1 / 8, 1 / 16, 1, 1, 0, 1])
    assert f[0, 7].tolist() == [0, 0, 0, 0, 0, 0, 0, 0]


def test_mirrored_maps_give_mirrored_target_offsets():
    """The dataset's mirrored copies flip the map and the facing; the target tokens follow."""
    from memory.policy import TargetEncoder

    enc = TargetEncoder(N_CELLS, 8, 17)
    cells = torch.randint(1, N_CELLS, (4, 17, 17))
    _, idx = TargetEncoder.nearest(cells.reshape(4, -1), N_CELLS, enc.dist)
    best_f, idx_f = TargetEncoder.nearest(cells.flip(1).reshape(4, -1), N_CELLS, enc.dist)
    best, _ = TargetEncoder.nearest(cells.reshape(4, -1), N_CELLS, enc.dist)
    assert torch.equal(best, best_f)  # the same distances, whichever way round
    present = torch.isfinite(best)
    # ties may pick another cell at the same distance: compare where the nearest is unique
    for b in range(4):
        for k in range(N_CELLS):
            d = (cells[b].reshape(-1) == k) & (enc.dist == best[b, k])
            if present[b, k] and d.sum() == 1:
                assert enc.dx[idx_f[b, k]] == -enc.dx[idx[b, k]] and enc.dy[idx_f[b, k]] == enc.dy[idx[b, k]]


def test_a_base_saved_without_target_tokens_loads_without_them(tmp_path):
    import json

    from memory.base_io import load_base, save_base

    policy = build_policy(small(targets=False), N_CELLS, N_ITEMS, N_ACTIONS, SKILLS)
    save_base(policy, tmp_path / "base", {"skill_names": SKILLS})
    doc = json.loads((tmp_path / "base" / "config.json").read_text())
    del doc["policy"]["targets"]  # as written before the option existed
    (tmp_path / "base" / "config.json").write_text(json.dumps(doc))
    loaded, _ = load_base(tmp_path / "base")
    assert loaded.targets is None and build_policy(small(), N_CELLS, N_ITEMS, N_ACTIONS, SKILLS).targets is not None
