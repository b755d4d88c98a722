"""The MineDojo backend: its translations on recorded observation dictionaries (shaped as
docs.minedojo.org "Observation Space" and MineDojo's handlers define them), its tech-tree
catalog, and the real env where MineDojo is installed."""

from __future__ import annotations

import numpy as np
import pytest

from agent.planners.planner import PlanContext, SymbolicPlanner
from envs import make_env
from envs.catalog import CATEGORIES
from envs.errors import PeamError
from envs.minedojo import (
    ACTION_NAMES, CAMERA_CENTRE, CELL_NAMES, INSTALL_HINT, WALKABLE, action_to_minedojo,
    credited_skills, facing_from_yaw, observation_from_minedojo,
)
from envs.minedojo_catalog import minedojo_catalog
from envs.tasks import resolve_task

# A slice of MineDojo's `mc.ALL_CRAFT_SMELT_ITEMS` order (hand, table-only, smelt lists).
CRAFT_ITEMS = ("crafting_table", "planks", "stick", "furnace", "iron_pickaxe", "stone_pickaxe",
               "wooden_pickaxe", "iron_ingot")


def recorded_obs(*, inventory=(("log", 3), ("planks", 4)), yaw=0.0, feet=None, below="grass"):
    """One observation as MineDojo returns it (native 3x3x3 voxels, 36 inventory slots)."""
    names = np.array(["air"] * 36, dtype=object)
    qty = np.zeros(36, dtype=np.float32)
    for slot, (name, n) in enumerate(inventory):
        names[slot], qty[slot] = name.replace("_", " "), n  # MineDojo writes names with spaces
    blocks = np.full((3, 3, 3), "air", dtype=object)  # (x, y, z), ascending, player at centre
    blocks[:, 0, :] = below
    for (x, z), block in (feet or {}).items():
        blocks[x, 1, z] = block
    rgb = np.zeros((3, 8, 12), dtype=np.uint8)  # (3, H, W)
    rgb[0] = 200  # red channel
    return {
        "rgb": rgb,
        "inventory": {"name": names, "quantity": qty, "variant": np.zeros(36, np.int64),
                      "max_durability": np.full(36, -1.0, np.float32),
                      "cur_durability": np.full(36, -1.0, np.float32)},
        "equipment": {"name": np.array([names[0], "air", "air", "air", "air", "air"], object),
                      "quantity": np.array([qty[0], 0, 0, 0, 0, 0], np.int64),
                      "variant": np.zeros(6, np.int64),
                      "max_durability": np.full(6, -1.0, np.float32),
                      "cur_durability": np.full(6, -1.0, np.float32)},
        "voxels": {"block_name": blocks, "block_meta": np.zeros((3, 3, 3), np.int64),
                   "is_collidable": blocks != "air", "is_solid": blocks != "air",
                   "is_liquid": np.zeros((3, 3, 3), bool),
                   "cos_look_vec_angle": np.zeros((3, 3, 3), np.float32)},
        "life_stats": {"life": np.array([17.0], np.float32), "armor": np.array([0.0], np.float32),
                       "food": np.array([19.0], np.float32),
                       "saturation": np.array([5.0], np.float32),
                       "xp": np.array([0.0], np.float32), "oxygen": np.array([300.0], np.float32),
                       "is_sleeping": 0},
        "location_stats": {"pos": np.array([120.5, 64.0, -33.5], np.float32),
                           "yaw": np.array([yaw], np.float32), "pitch": np.array([0.0], np.float32),
                           "biome_id": np.array(4), "rainfall": np.array([0.8], np.float32),
                           "temperature": np.array([0.7], np.float32),
                           "sun_brightness": np.array([0.94], np.float32),
                           "sky_light_level": np.array([0.71], np.float32),
                           "light_level": np.array([15.0], np.float32),
                           "can_see_sky": np.array(1), "is_raining": np.array(0),
                           "sea_level": np.array([63.0], np.float32)},
        "compass": {"angle": np.array(35.0, np.float32)},
        "nearby_tools": {"table": np.array(False), "furnace": np.array(False)},
    }


# -- observations -----------------------------------------------------------------------------

def test_rgb_is_transposed_from_channels_first():
    obs = observation_from_minedojo(recorded_obs())
    assert obs.rgb.shape == (8, 12, 3) and obs.rgb.dtype == np.uint8
    assert (obs.rgb[..., 0] == 200).all() and (obs.rgb[..., 1] == 0).all()


def test_inventory_sums_slots_and_adds_vitals():
    obs = observation_from_minedojo(recorded_obs(
        inventory=(("log", 3), ("planks", 4), ("log", 2), ("crafting_table", 1))))
    assert obs.inventory == {"log": 5, "planks": 4, "crafting_table": 1,
                             "health": 17, "food": 19, "oxygen": 300}


def test_local_view_is_the_ring_of_blocks_at_the_feet():
    raw = recorded_obs(feet={(2, 1): "log", (0, 0): "crafting table", (1, 2): "log2"})
    raw["voxels"]["block_name"][0, 0, 2] = "water"
    obs = observation_from_minedojo(raw)
    assert obs.local_view.shape == (3, 3) and obs.local_view.dtype == np.int16
    assert obs.center == (1, 1)
    name = lambda x, z: CELL_NAMES[obs.local_view[x, z]]  # noqa: E731
    assert (name(2, 1), name(0, 0), name(1, 2)) == ("log", "crafting_table", "log")
    assert name(1, 1) == "air" and "air" in WALKABLE  # free to walk into
    assert name(0, 2) == "water"  # air over water shows the water


def test_unlisted_blocks_are_other():
    obs = observation_from_minedojo(recorded_obs(feet={(0, 0): "mossy_cobblestone"}))
    assert CELL_NAMES[obs.local_view[0, 0]] == "other"


@pytest.mark.parametrize("yaw, facing", [(0, (0, 1)), (90, (-1, 0)), (180, (0, -1)),
                                         (-90, (1, 0)), (-170, (0, -1)), (44, (0, 1))])
def test_facing_is_the_nearest_cardinal_of_minecraft_yaw(yaw, facing):
    assert facing_from_yaw(yaw) == facing
    assert observation_from_minedojo(recorded_obs(yaw=yaw)).facing == facing


def test_absolute_position_is_not_exposed():
    obs = observation_from_minedojo(recorded_obs())
    assert "pos" not in obs.extras and 120.5 not in obs.extras.values()
    assert obs.extras["equipped"] == "log" and obs.extras["compass_angle"] == 35.0
    assert obs.daylight == pytest.approx(0.94) and not obs.sleeping


# -- actions ----------------------------------------------------------------------------------

def test_noop_and_movement_vectors():
    assert action_to_minedojo("noop").tolist() == [0, 0, 0, CAMERA_CENTRE, CAMERA_CENTRE, 0, 0, 0]
    assert action_to_minedojo("forward")[0] == 1 and action_to_minedojo("back")[0] == 2
    assert action_to_minedojo("right")[1] == 2 and action_to_minedojo("sprint")[2] == 3
    assert action_to_minedojo("look_up")[3] == CAMERA_CENTRE - 1
    assert action_to_minedojo("turn_right")[4] == CAMERA_CENTRE + 1


def test_functional_actions():
    assert action_to_minedojo("attack")[5] == 3 and action_to_minedojo("use")[5] == 1
    vec = action_to_minedojo("craft_stick", craft_items=CRAFT_ITEMS)
    assert (vec[5], vec[6]) == (4, CRAFT_ITEMS.index("stick"))
    held = ["air", "log", "crafting table"]
    vec = action_to_minedojo("place_crafting_table", inventory_names=held)
    assert (vec[5], vec[7]) == (6, 2)


def test_equipping_an_item_not_held_is_a_noop():
    assert (action_to_minedojo("equip_iron_pickaxe", inventory_names=["log"])
            == action_to_minedojo("noop")).all()


def test_every_env_action_maps_to_a_valid_vector():
    nvec = np.array([3, 3, 4, 25, 25, 8, len(CRAFT_ITEMS), 36])
    for name in ACTION_NAMES:
        vec = action_to_minedojo(name, craft_items=CRAFT_ITEMS,
                                 inventory_names=["wooden pickaxe", "crafting table", "furnace"])
        assert vec.shape == (8,) and ((0 <= vec) & (vec < nvec)).all(), name


def test_unknown_action_is_a_bug():
    with pytest.raises(ValueError):
        action_to_minedojo("teleport")


# -- catalog and success ----------------------------------------------------------------------

def test_catalog_uses_the_shared_categories():
    catalog = minedojo_catalog()
    assert {s.category for s in catalog} <= set(CATEGORIES)
    assert catalog["craft_wooden_pickaxe"].nearby == ("crafting_table",)


def test_symbolic_planner_chains_log_to_iron_pickaxe():
    catalog = minedojo_catalog()
    ctx = PlanContext(resolve_task("craft_iron_pickaxe", catalog),
                      {"health": 20, "food": 20, "oxygen": 300})
    chain = [s.skill for s in SymbolicPlanner(catalog).chain("craft_iron_pickaxe", ctx)]
    order = ["collect_log", "craft_planks", "craft_crafting_table", "place_crafting_table",
             "craft_stick", "craft_wooden_pickaxe", "mine_cobblestone", "craft_stone_pickaxe",
             "mine_iron_ore", "smelt_iron_ingot", "craft_furnace", "place_furnace",
             "craft_iron_pickaxe"]
    assert set(chain) == set(order)
    first = {name: chain.index(name) for name in order}
    assert first["collect_log"] < first["craft_planks"] < first["craft_crafting_table"]
    assert first["place_crafting_table"] < first["craft_wooden_pickaxe"] < first["mine_cobblestone"]
    assert first["craft_stone_pickaxe"] < first["mine_iron_ore"] < first["smelt_iron_ingot"]
    assert first["place_furnace"] < first["smelt_iron_ingot"] and chain[-1] == "craft_iron_pickaxe"
    assert chain.count("smelt_iron_ingot") == 3  # the pickaxe takes three ingots


def test_success_is_credited_from_what_the_player_sees_change():
    catalog = minedojo_catalog()
    assert credited_skills({"log": 1}, {"log": 0, "planks": 4}, set(), catalog) == ["craft_planks"]
    assert credited_skills({"crafting_table": 1}, {}, {"crafting_table"}, catalog) == [
        "place_crafting_table"]
    assert credited_skills({"crafting_table": 1}, {}, {"air"}, catalog) == []


# -- the real game ----------------------------------------------------------------------------

def test_make_env_without_minedojo_is_a_one_line_peam_error():
    try:
        import minedojo  # noqa: F401
    except ImportError:
        with pytest.raises(PeamError) as e:
            make_env("minedojo")
        assert str(e.value) == INSTALL_HINT and "\n" not in str(e.value)
    else:
        pytest.skip("MineDojo is installed here")


def test_real_minedojo_env_resets_and_steps():
    pytest.importorskip("minedojo", reason="MineDojo is not installed (optional extra: "
                                           "pip install 'peam[minedojo]', needs Java 8)")
    env = make_env("minedojo", image_size=(64, 64))
    try:
        obs, info = env.reset(seed=1)
        assert obs.rgb.shape == (64, 64, 3) and obs.local_view.shape == (3, 3)
        step = env.step(ACTION_NAMES.index("forward"))
        assert set(step.info["achievements"]) == set(env.catalog.names)
    finally:
        env.close()
