"""The preference (DPO) component of the consolidation objective, and its use in the trainer."""

import numpy as np
import torch

from consolidation import trainer
from consolidation.pairs import FailureCorrectionPair
from consolidation.preference import batch_pairs, dpo_loss, pair_logps, pair_subset, reference_logps, sequence_logp
from envs.crafter import cell_names, crafter_catalog, game_data
from memory import columns as C
from memory.inject import add_expert, expert_names, inject, trainable_only
from memory.lora import LoraConfig
from memory.policy import PolicyConfig, build_policy


def test_sequence_logp_sums_each_sequences_steps():
    logits = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]))
    actions = torch.tensor([0, 1, 0])
    owner = torch.tensor([0, 0, 1])
    got = sequence_logp(logits, actions, owner, 2)
    assert torch.allclose(got, torch.log(torch.tensor([0.5 * 0.75, 0.9])))


def test_dpo_loss_falls_as_the_policy_prefers_the_correction_more_than_the_reference_does():
    ref_c, ref_r = torch.tensor([-2.0]), torch.tensor([-2.0])
    neutral = dpo_loss(torch.tensor([-2.0]), torch.tensor([-2.0]), ref_c, ref_r)
    better = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), ref_c, ref_r)
    worse = dpo_loss(torch.tensor([-3.0]), torch.tensor([-1.0]), ref_c, ref_r)
    assert better < neutral < worse
    assert torch.isclose(neutral, torch.log(torch.tensor(2.0)))  # −log σ(0)


def _steps(n, action):
    return {C.VIEW: np.full((n, 9, 7), 2, np.int16), C.MAP: np.zeros((n, 17, 17), np.int16),
            C.INVENTORY: np.zeros((n, 16), np.int16), C.FACING: np.zeros((n, 2), np.int8),
            C.ACTION: np.full(n, action, np.int16), C.REWARD: np.zeros(n, np.float32)}


def test_preference_training_moves_only_the_new_expert_towards_the_correction():
    torch.manual_seed(0)
    catalog = crafter_catalog()
    policy = build_policy(PolicyConfig(d_model=32, n_layers=1, n_heads=2), len(cell_names()),
                          len(catalog.items), len(game_data()["actions"]), catalog.names)
    inject(policy, LoraConfig(r=4, alpha=8, routing="category"))
    add_expert(policy, trainer.CANDIDATE)
    index = expert_names(policy).index(trainer.CANDIDATE)
    pair = FailureCorrectionPair("collect_wood", "gather", 1, 2, failure=_steps(4, 0), correction=_steps(4, 5))
    batch = batch_pairs([pair], policy, max_steps=32)
    ref = reference_logps(policy, batch, -1)
    base = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" not in n}
    params = trainable_only(policy, trainer.CANDIDATE)
    opt = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(20):  # several steps: the reference must not hold a graph (a past bug)
        logps = pair_logps(policy, batch, index)
        loss = dpo_loss(logps[0::2], logps[1::2], ref[0::2], ref[1::2], beta=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    after = pair_logps(policy, batch, index).detach()
    assert after[0] - after[1] > ref[0] - ref[1]  # the correction gained on the failure
    for n, p in policy.named_parameters():
        if n in base:
            assert torch.equal(base[n], p.detach()), n


def test_a_subset_of_pairs_scores_each_of_its_sequences_as_the_whole_batch_does():
    """The trainer draws a few pairs per step: their log-likelihoods must be those the whole
    batch gives them (renumbered, chosen before rejected), and the chunked reference equal
    to one pass over everything."""
    torch.manual_seed(0)
    catalog = crafter_catalog()
    policy = build_policy(PolicyConfig(d_model=32, n_layers=1, n_heads=2), len(cell_names()),
                          len(catalog.items), len(game_data()["actions"]), catalog.names).eval()
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(5):
        fail, corr = _steps(int(rng.integers(2, 6)), i % 3), _steps(int(rng.integers(2, 6)), 4 + i % 2)
        fail[C.VIEW] = rng.integers(0, 10, fail[C.VIEW].shape).astype(np.int16)
        pairs.append(FailureCorrectionPair("collect_wood", "gather", 2 * i, 2 * i + 1, fail, corr))
    batch = batch_pairs(pairs, policy, max_steps=32)
    with torch.no_grad():
        whole = pair_logps(policy, batch, -1)  # (10,)
        chosen = torch.tensor([3, 0])
        sub = pair_logps(policy, pair_subset(batch, chosen), -1)
    assert torch.allclose(sub, whole[[6, 7, 0, 1]], atol=1e-5)
    assert torch.allclose(reference_logps(policy, batch, -1, chunk=2), whole, atol=1e-5)


def test_a_pair_batch_carries_each_steps_recorded_map_and_at_most_max_steps_of_each_side():
    """The preference term sees what behavioural cloning sees: the remembered map around the
    player (it once got a 1×1 crop of zeros), for the first `max_steps` steps of each side."""
    catalog = crafter_catalog()
    policy = build_policy(PolicyConfig(d_model=32, n_layers=1, n_heads=2), len(cell_names()),
                          len(catalog.items), len(game_data()["actions"]), catalog.names)
    side = 2 * policy.config.map_radius + 1
    rng = np.random.default_rng(0)
    failure, correction = _steps(6, 0), _steps(3, 5)
    for steps in (failure, correction):
        steps[C.MAP] = rng.integers(1, 10, (len(steps[C.ACTION]), side, side)).astype(np.int16)
    batch = batch_pairs([FailureCorrectionPair("collect_wood", "gather", 1, 2, failure, correction)],
                       policy, max_steps=4)
    assert batch.owner.tolist() == [0, 0, 0, 1, 1, 1, 1]  # the correction's 3 steps, the failure's first 4
    assert torch.equal(batch.steps[C.MAP][:3], torch.from_numpy(correction[C.MAP]).long())
    assert torch.equal(batch.steps[C.MAP][3:], torch.from_numpy(failure[C.MAP][:4]).long())
    assert batch.steps[C.SUBGOAL].shape[0] == 7
