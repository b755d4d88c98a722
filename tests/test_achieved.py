"""What the agent knows it achieved, read off two successive screens (agent/loop/achieved.py)."""

import numpy as np

from agent.loop.achieved import seen_done
from envs.base import Observation
from envs.crafter import cell_names, crafter_catalog

CATALOG, CELLS = crafter_catalog(), cell_names()
VITALS = {"health": 9, "food": 9, "drink": 9, "energy": 9}


def screen(front: str, sleeping=False, **inventory) -> Observation:
    """A 9x7 view of grass with `front` in the cell the player faces (below it)."""
    view = np.full((9, 7), CELLS.index("grass"), np.int16)
    view[4, 4] = CELLS.index(front)
    return Observation(rgb=np.zeros((1, 1, 3), np.uint8), local_view=view,
                       inventory={**VITALS, **inventory}, facing=(0, 1), sleeping=sleeping)


def seen(before, after, reward=0.0):
    return seen_done(CATALOG, CELLS, before, after, reward)


def test_an_item_that_grew_from_what_was_in_front_shows_its_collect_skill():
    assert seen(screen("tree"), screen("tree", wood=1)) == {"collect_wood"}
    assert seen(screen("tree", wood=1), screen("tree", wood=1)) == set()


def test_a_crafted_tool_shows_its_make_skill_and_not_the_placements_that_share_its_wood():
    before = screen("grass", wood=3)
    assert seen(before, screen("grass", wood=2, wood_pickaxe=1)) == {"make_wood_pickaxe"}


def test_a_placement_shows_when_its_inputs_left_and_the_thing_stands_in_front():
    cost = CATALOG["place_table"].consumes["wood"]  # the game's own recipe
    assert seen(screen("grass", wood=cost + 1), screen("table", wood=1)) == {"place_table"}
    assert seen(screen("grass", wood=cost + 1), screen("grass", wood=1)) == set()


def test_food_shows_the_meal_that_was_in_front():
    assert seen(screen("cow", food=2), screen("grass", food=8)) == {"eat_cow"}
    assert seen(screen("plant_ripe", food=2), screen("plant", food=6)) == {"eat_plant"}


def test_waking_with_full_energy_shows_wake_up_and_a_hit_that_wakes_does_not():
    assert seen(screen("grass", sleeping=True, energy=8), screen("grass", energy=9)) == {"wake_up"}
    assert seen(screen("grass", sleeping=True, energy=5), screen("grass", energy=5, health=7)) == set()
    assert seen(screen("grass", sleeping=True, energy=4), screen("grass", sleeping=True, energy=5)) == set()


def test_a_first_achievement_reward_names_what_was_in_front_when_nothing_else_explains_it():
    assert seen(screen("zombie"), screen("grass"), reward=1.0) == {"defeat_zombie"}
    assert seen(screen("water"), screen("water"), reward=1.0) == {"collect_drink"}  # drink was full
    assert seen(screen("zombie"), screen("grass"), reward=0.1) == set()  # health came back, no more


def test_a_reward_explained_by_a_visible_effect_is_not_credited_to_what_is_in_front():
    before = screen("tree", wood=1)  # crafting at a table while facing a tree
    assert seen(before, screen("tree", wood=0, wood_sword=1), reward=1.0) == {"make_wood_sword"}


def test_a_tool_crafted_from_a_stone_is_not_a_stone_placed_in_front():
    before = screen("stone", wood=1, stone=1)
    assert seen(before, screen("stone", stone_pickaxe=1)) == {"make_stone_pickaxe"}
    assert seen(screen("grass", stone=2), screen("stone", stone=1)) == {"place_stone"}


def test_a_placement_destroyed_in_the_same_step_is_told_by_its_spent_inputs_and_the_reward():
    cost = CATALOG["place_furnace"].consumes["stone"]
    before = screen("grass", stone=cost + 1)  # an arrow turns the new furnace into path at once
    assert seen(before, screen("path", stone=1), reward=1.0) == {"place_furnace"}
    assert seen(before, screen("path", stone=1), reward=0.0) == set()
