"""The fast path as the agent runs it: each category's expert folded into a copy of the base
decides exactly as the base routed through its MoE-LoRA layers."""

import torch

from agent.loop.fast_path import FastPolicy
from agent.loop.world_memory import WorldMemory
from envs import make_env
from memory.base_io import BASE_DIR, game_spec, save_base
from memory.expert_io import save_expert
from memory.inject import add_expert, inject, wrappers
from memory.lora import LoraConfig
from memory.policy import PolicyConfig, build_policy
from memory.registry import ExpertRef


def test_folded_experts_decide_as_the_routed_ones(tmp_path):
    env = make_env("crafter")
    torch.manual_seed(0)
    policy = build_policy(PolicyConfig(d_model=32, n_layers=2, n_heads=4), len(env.cell_names),
                          len(env.catalog.items), len(env.action_names), env.catalog.names)
    save_base(policy, tmp_path / BASE_DIR, game_spec("crafter"))
    inject(policy, LoraConfig(routing="category"))
    refs = []
    for category in ("gather", "build"):
        add_expert(policy, category)
        with torch.no_grad():  # a trained expert: B is no longer zero
            for layer in wrappers(policy).values():
                layer.lora_B[category].weight.normal_(0, 0.5)
        save_expert(policy, category, tmp_path / category)
        refs.append(ExpertRef(category, str(tmp_path / category)))
    folded = FastPolicy(tmp_path, refs, seed=3)
    routed = FastPolicy(tmp_path, refs, seed=3)
    routed.merged = {}
    assert set(folded.merged) == {"gather", "build"}
    obs, _ = env.reset(seed=0)
    memory = WorldMemory(env.cell_names, env.walkable, env.catalog.knowledge)
    memory.observe(obs, None)
    folded.memory = routed.memory = memory
    for name in ("collect_wood", "place_table", "collect_stone", "place_stone") * 5:
        skill = env.catalog[name]
        assert folded.act(obs, skill) == routed.act(obs, skill), name


def _biased_fast_path(tmp_path, env, favourite: str, sample: bool = False, unstick: bool = True):
    """A fast path with no expert whose base all but always picks `favourite`."""
    torch.manual_seed(0)
    policy = build_policy(PolicyConfig(d_model=32, n_layers=1, n_heads=4), len(env.cell_names),
                          len(env.catalog.items), len(env.action_names), env.catalog.names)
    with torch.no_grad():
        policy.action_head.weight.zero_()
        policy.action_head.bias.fill_(0.0)
        policy.action_head.bias[env.action_names.index(favourite)] = 20.0
        policy.action_head.bias[env.action_names.index("noop")] = 10.0  # the runner-up
    save_base(policy, tmp_path / BASE_DIR, game_spec("crafter"))
    return FastPolicy(tmp_path, [], sample=sample, unstick=unstick)


def _at_start(tmp_path, favourite: str, unstick: bool = True):
    """The real game at seed 0, and a biased fast path reading the agent's own map of it."""
    env = make_env("crafter")
    fast = _biased_fast_path(tmp_path, env, favourite, unstick=unstick)
    obs, _ = env.reset(seed=0)
    memory = WorldMemory(env.cell_names, env.walkable, env.catalog.knowledge)
    memory.observe(obs, None)
    fast.memory = memory
    return env, fast, obs, memory


def test_a_move_that_changed_nothing_is_not_tried_again_from_the_same_place(tmp_path):
    env, fast, obs, memory = _at_start(tmp_path, "move_left")
    skill = env.catalog["collect_wood"]
    assert fast.act(obs, skill) == "move_left"
    memory.step += 1  # the move left nothing changed: same cell, same facing
    assert fast.act(obs, skill) == "noop"
    memory.step += 1  # still there: the move stays masked, and so does the noop (taken once)
    assert fast.act(obs, skill) == "move_right"  # the next best, all scores equal: the first in order
    memory.step += 1
    memory.pos = (memory.pos[0], memory.pos[1] + 1)  # moved (something else acted): unmasked
    assert fast.act(obs, skill) == "move_left"
    memory.step += 5  # a later segment, not the next step: no verdict on the last move
    assert fast.act(obs, skill) == "move_left"


def test_the_mask_is_off_when_asked_and_cleared_by_a_new_episode(tmp_path):
    for unstick, second in ((False, "move_left"), (True, "noop")):
        env, fast, obs, memory = _at_start(tmp_path, "move_left", unstick=unstick)
        skill = env.catalog["collect_wood"]
        assert fast.act(obs, skill) == "move_left"
        memory.step += 1
        assert fast.act(obs, skill) == second
    fast.reset(1)  # a new episode: nothing is known to be blocked
    memory.step += 1
    assert fast.act(obs, skill) == "move_left"


def test_the_mask_frees_a_policy_stuck_against_a_wall_in_the_game(tmp_path):
    """In the real game: a policy that only wants to walk left reaches something it cannot
    enter, and then does something else instead of pushing into it (or waiting) for ever."""
    env, fast, obs, memory = _at_start(tmp_path, "move_left")
    skill = env.catalog["collect_wood"]
    actions, cells = [], []
    for _ in range(80):
        name = fast.act(obs, skill)
        actions.append(name)
        obs = env.step(env.action_names.index(name)).observation
        memory.observe(obs, name)
        cells.append(memory.pos)
    assert "noop" in actions, "never blocked in 80 steps left: pick another seed"
    first = actions.index("noop")
    assert actions[first - 1] == "move_left" and cells[first - 1] == cells[first - 2]  # blocked
    assert actions[first + 1] != "noop"  # one noop from a state, then something else
    assert len(set(cells[first:])) > 2  # it walks on, round what blocked it


def test_do_on_a_useless_cell_is_masked_but_never_on_the_skills_own_target(tmp_path):
    """Facing grass: "do" there changes nothing for collect_wood, and is masked after one
    try; for collect_sapling grass is the target (a sapling one time in ten): never masked."""
    env, fast, obs, memory = _at_start(tmp_path, "do")
    cx, cy = obs.center
    assert env.cell_names[obs.local_view[cx + obs.facing[0], cy + obs.facing[1]]] == "grass"
    wood, sapling = env.catalog["collect_wood"], env.catalog["collect_sapling"]
    assert [fast.act(obs, wood), _next(memory) or fast.act(obs, wood)] == ["do", "noop"]
    fast.reset(0)
    actions = []
    for _ in range(4):
        actions.append(fast.act(obs, sapling))
        memory.step += 1
    assert actions == ["do"] * 4


def _next(memory) -> None:
    memory.step += 1


def test_an_action_already_taken_from_a_state_in_this_segment_is_not_taken_again(tmp_path):
    """A back-and-forth cycle: back in a state it has acted from, the policy takes another action
    (the world unchanged, the same one would lead round the same cycle); an item gained clears it."""
    env, fast, obs, memory = _at_start(tmp_path, "move_left")
    skill = env.catalog["collect_wood"]
    start = memory.pos
    assert fast.act(obs, skill) == "move_left"
    memory.step, memory.pos = memory.step + 1, (start[0] - 1, start[1])  # moved
    assert fast.act(obs, skill) == "move_left"
    memory.step, memory.pos = memory.step + 1, start  # back where it was: a cycle
    assert fast.act(obs, skill) == "noop"
    memory.step += 1
    richer = type(obs)(**{**obs.__dict__, "inventory": {**obs.inventory, "wood": obs.inventory.get("wood", 0) + 1}})
    assert fast.act(richer, skill) == "move_left"  # an item gained: the world moved on


def test_an_action_that_cannot_serve_the_skill_is_never_taken(tmp_path):
    """A policy that would rather place a table while collecting wood (the table eats the wood)
    or sleep in the open while collecting stone takes what the skill can use instead; the skill
    that sleeps may sleep, and wait, as long as it likes."""
    env, fast, obs, memory = _at_start(tmp_path, "place_table")
    assert fast.act(obs, env.catalog["collect_wood"]) == "noop"
    assert fast.act(obs, env.catalog["place_table"]) == "place_table"
    env, fast, obs, memory = _at_start(tmp_path, "sleep")
    assert fast.act(obs, env.catalog["collect_stone"]) == "noop"
    wake = env.catalog["wake_up"]
    actions = []
    for _ in range(3):
        actions.append(fast.act(obs, wake))
        memory.step += 1  # nothing changed: sleep is not masked for the skill that sleeps
    assert actions == ["sleep"] * 3


def test_a_move_onto_lava_is_never_taken(tmp_path):
    """Lava kills whoever steps on it: a policy that wants to walk left with lava there goes
    elsewhere, and walks left again once the cell is safe."""
    env, fast, obs, memory = _at_start(tmp_path, "move_left")
    cx, cy = obs.center
    view = obs.local_view.copy()
    view[cx - 1, cy] = env.cell_names.index("lava")
    lava = type(obs)(**{**obs.__dict__, "local_view": view})
    skill = env.catalog["collect_stone"]
    assert fast.act(lava, skill) == "noop"
    fast.reset(0)
    assert fast.act(obs, skill) == "move_left"
