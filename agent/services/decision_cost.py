"""How long one fast decision takes, timed on this machine: the self-trigger weighs the seconds a
consolidated skill would save against it, so it is measured, never assumed (DESIGN: the
self-trigger is scale-free).

Two decisions are timed: acting (a forward pass of the policy, on the live fast path or on a
fresh policy of the shape a first expert would have) and proposing the next subgoal (a
forward pass of a plan network). The weights are untrained: the cost does not depend on them.
"""

from __future__ import annotations

import functools
import time

REPEATS = 5  # timed calls per measurement, after one untimed warm-up where it matters


def fast_decision_s(fast, env) -> float:
    """Seconds per fast action: timed on the live fast path when it covers the first skill's
    category, else on a fresh policy of the game's shape."""
    import numpy as np

    from envs.base import Observation

    obs = Observation(rgb=np.zeros((64, 64, 3), np.uint8), local_view=np.zeros(env.view_shape, np.int16),
                      inventory={k: 0 for k in env.catalog.items})
    skill = next(iter(env.catalog))
    if fast is not None and fast.covers(skill.category, "action"):
        act = fast.act
    else:
        act = _fresh_policy_act(tuple(env.view_shape), len(env.cell_names), tuple(env.catalog.items),
                                len(env.action_names), tuple(env.catalog.names))
    t0 = time.perf_counter()
    for _ in range(REPEATS):
        act(obs, skill)
    return (time.perf_counter() - t0) / REPEATS


def plan_proposal_s(game: str) -> float:
    """Seconds per plan-level proposal: a forward pass of a plan network of the shape a first
    plan expert would have (the same for every expert: LoRA adds no latency worth weighing
    against a planner call)."""
    import numpy as np
    import torch

    from memory.plan_policy import PlanConfig, PlanNet, PlanSpec

    spec = PlanSpec.of(game)
    net = PlanNet(PlanConfig(), spec.n_features, len(spec.skills)).eval()
    x = torch.as_tensor(np.zeros((1, spec.n_features), np.float32))  # (1, features)
    with torch.inference_mode():
        net(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(REPEATS):
            torch.softmax(net(x)[0], -1)
    return (time.perf_counter() - t0) / REPEATS


@functools.cache
def _fresh_policy_act(view_shape: tuple, n_cells: int, items: tuple, n_actions: int, skills: tuple):
    """A fresh policy's `act(obs, skill)` for a game's shape; built once per shape, because
    building it costs more than the timing it serves (seconds on a loaded CPU)."""
    import torch

    from memory.policy import PolicyConfig, build_policy

    policy = build_policy(PolicyConfig(view_shape=view_shape), n_cells, len(items), n_actions,
                          list(skills)).eval()

    @torch.inference_mode()
    def act(obs, skill):
        return policy(torch.as_tensor(obs.local_view[None]).long(),  # (1, rows, cols)
                      torch.tensor([[obs.inventory.get(k, 0) for k in items]]).float(),  # (1, items)
                      torch.tensor([obs.facing]).float(), policy.tokenizer.encode([skill.name]))

    return act
