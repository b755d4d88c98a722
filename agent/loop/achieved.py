"""What the agent knows it achieved: read off the screen, step by step, never off the game's
counters.

The game's achievement counters (`info["achievements"]`) are its task-success signal: the runner
scores episodes and tasks with them (envs/base.py). What the agent plans with is what a player
could tell from one step to the next — the inventory, the cell in front of it, whether it
sleeps, and the reward. `seen_done` names the skills one step showed done; it reads only the
catalog's data (gives, consumes, places, target), so it types no game's names.
"""

from __future__ import annotations

from envs.base import Observation
from envs.catalog import Skill, SkillCatalog

# A game that pays for a first achievement pays at least this in the step it happens. Crafter
# (Hafner 2021) pays 1 per first achievement plus a tenth per point of health gained or lost: a
# zombie's hit costs 0.2, a night's recovery brings 0.1, so a step of 0.5 or more paid for one.
FIRST_ACHIEVEMENT_REWARD = 0.5


def faced(obs: Observation, cell_names: tuple[str, ...]) -> str:
    """The kind of cell the player faces (its action's target)."""
    (cx, cy), (dx, dy) = obs.center, obs.facing
    w, h = obs.local_view.shape
    x, y = cx + dx, cy + dy
    return cell_names[int(obs.local_view[x, y])] if 0 <= x < w and 0 <= y < h else "unknown"


def _inventory_change(before: Observation, after: Observation, vitals: set[str]) -> dict[str, int]:
    """Items (vitals aside) whose count changed, by how much."""
    names = (set(before.inventory) | set(after.inventory)) - vitals
    change = {i: after.inventory.get(i, 0) - before.inventory.get(i, 0) for i in names}
    return {i: d for i, d in change.items() if d}


def _spent_exactly(skill: Skill, change: dict[str, int]) -> bool:
    return change == {i: -n for i, n in skill.consumes.items() if n}


def shows_done(skill: Skill, catalog: SkillCatalog, cell_names: tuple[str, ...],
               before: Observation, after: Observation) -> bool:
    """Whether one step, from `before` to `after`, shows `skill`'s effect."""
    vitals = set(catalog.vitals)
    if skill.places:
        # Exactly its inputs left the inventory (a tool crafted from the same stone also gives
        # the tool) and the placed thing stands in front.
        return (_spent_exactly(skill, _inventory_change(before, after, vitals))
                and faced(after, cell_names) == skill.places)
    if not skill.target and skill.gives and set(skill.gives) <= vitals:
        # Resting (Crafter's wake_up): the skill is the rest's end with the vital full, not each
        # point it restores; woken early by a hit, the vital is not full.
        return before.sleeping and not after.sleeping and all(
            after.inventory.get(v, 0) >= catalog.items[v].get("max", 9) for v in skill.gives)
    grew = {i for i in skill.gives if after.inventory.get(i, 0) > before.inventory.get(i, 0)}
    if grew and grew <= vitals and skill.target:
        # A vital has several sources (a cow or a plant for food): what was in front says which.
        return faced(before, cell_names) in skill.target
    return bool(grew)


def seen_done(catalog: SkillCatalog, cell_names: tuple[str, ...], before: Observation,
              after: Observation, reward: float) -> set[str]:
    """Every skill one step showed done."""
    done = {s.name for s in catalog if shows_done(s, catalog, cell_names, before, after)}
    if done or reward < FIRST_ACHIEVEMENT_REWARD:
        return done
    # The game paid for a first achievement whose effect does not show. Inputs that left the
    # inventory name the placement (in Crafter an arrow can turn a furnace placed this very
    # step into path); else a full inventory hid a gain, or a fight gave nothing: the skill is
    # the one that acts on what was in front.
    change = _inventory_change(before, after, set(catalog.vitals))
    if change:
        return {s.name for s in catalog if s.places and _spent_exactly(s, change)}
    target = faced(before, cell_names)
    return {s.name for s in catalog if target in s.target}
