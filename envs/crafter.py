"""The Crafter backend (embedded default): the game, its skill catalog from its own data.yaml,
and the agent-visible observation.

The catalog is read from Crafter's `data.yaml` (collect / place / make rules), so a change of
the game's rules changes our skills. Five achievements have no rule there — Crafter's engine
hard-codes them in `objects.py` — and are listed in `_ENGINE_SKILLS` with that source.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from envs.base import Observation, StepResult
from envs.catalog import Skill, SkillCatalog

VIEW = (9, 9)  # Crafter's default: a 9x9 grid of which the bottom rows show the inventory
OBJECT_CELLS = ("player", "cow", "zombie", "skeleton", "arrow", "plant", "plant_ripe")

# Achievements the engine hard-codes (crafter/objects.py: Player._do_object, Player.update).
_ENGINE_SKILLS = (
    Skill("defeat_zombie", "combat", target=("zombie",)),
    Skill("defeat_skeleton", "combat", target=("skeleton",)),
    Skill("eat_cow", "survive", target=("cow",), gives={"food": 6}),
    Skill("eat_plant", "survive", target=("plant_ripe",), gives={"food": 4}, after=("place_plant",)),
    Skill("wake_up", "survive", gives={"energy": 1}),
)


# Attempts that are mostly a long search or a wait (steps; the runner's defaults are 600 for the
# surface, 1,200 for the mountain): a sapling ripens over hundreds of steps, skeletons live
# only in the dark tunnels, diamonds are the rarest cell of the map.
_LONG_ATTEMPTS = {"eat_plant": 2_000, "defeat_skeleton": 2_000, "collect_diamond": 2_000}


@functools.lru_cache(maxsize=1)
def game_data() -> dict[str, Any]:
    """Crafter's rules, exactly as the installed game reads them."""
    from crafter import constants

    keys = ("actions", "materials", "walkable", "items", "collect", "place", "make", "achievements")
    return {k: getattr(constants, k) for k in keys}


@functools.lru_cache(maxsize=1)
def crafter_catalog() -> SkillCatalog:
    data = game_data()
    vitals = {n for n, v in data["items"].items() if v["initial"] > 0}
    skills: list[Skill] = []
    for material, rule in data["collect"].items():
        for item, amount in rule["receive"].items():
            skills.append(Skill(
                f"collect_{item}", "survive" if item in vitals else "gather",
                requires=dict(rule["require"]), gives={item: amount}, target=(material,)))
    for name, rule in data["place"].items():
        skills.append(Skill(
            f"place_{name}", "build", requires=dict(rule["uses"]), consumes=dict(rule["uses"]),
            places=name, where=tuple(rule["where"])))
    for name, rule in data["make"].items():
        skills.append(Skill(
            f"make_{name}", "craft", requires=dict(rule["uses"]), consumes=dict(rule["uses"]),
            gives={name: rule["gives"]}, nearby=tuple(rule["nearby"])))
    skills += _ENGINE_SKILLS
    skills = [dataclasses.replace(s, budget=_LONG_ATTEMPTS.get(s.name), actions=_skill_actions(s, data["actions"]))
              for s in skills]
    order = {name: i for i, name in enumerate(data["achievements"])}
    missing = set(order) - {s.name for s in skills}
    assert not missing, f"achievements without a skill: {missing}"  # a new Crafter release
    skills = [s for s in skills if s.name in order]
    return SkillCatalog(skills, dict(data["items"]), game="crafter")


def _skill_actions(skill: Skill, game_actions: list[str]) -> frozenset[str]:
    """The actions that can serve `skill` in Crafter: walking (and waiting), "do" on what it
    acts on, its own place or make action, and sleep for the skill that restores energy. Any
    other action only spends a step, or worse: a table placed while collecting wood eats the
    wood, sleeping in the open invites a zombie's 7-point hit."""
    actions = {a for a in game_actions if a.startswith("move_")} | {"noop"}
    if skill.target:
        actions.add("do")
    if skill.places:
        actions.add(f"place_{skill.places}")
    if skill.name in game_actions:  # make_*
        actions.add(skill.name)
    if "energy" in skill.gives:
        actions.add("sleep")
    return frozenset(actions)


def crafter_score(rates_percent: list[float]) -> float:
    """The Crafter paper's score (Hafner 2021): the geometric mean of the achievements'
    success rates in percent, S = exp(mean(ln(1 + s_i))) − 1."""
    import math

    return math.exp(sum(math.log(1 + r) for r in rates_percent) / len(rates_percent)) - 1


@functools.lru_cache(maxsize=1)
def cell_names() -> tuple[str, ...]:
    return ("unknown",) + tuple(game_data()["materials"]) + OBJECT_CELLS


@functools.lru_cache(maxsize=1)
def _ordered_world_class():
    """Crafter keeps each chunk's creatures in a set, ordered by memory address, and picks the
    one to despawn from that order with its seeded generator: the same seed and the same
    actions then give different games. Listing them by position makes a seed replay exactly."""
    from crafter import engine

    class OrderedWorld(engine.World):
        @property
        def chunks(self):
            return {k: sorted(v, key=lambda o: (int(o.pos[0]), int(o.pos[1])))
                    for k, v in self._chunks.items()}

    return OrderedWorld


class CrafterEnv:
    """Crafter behind the `Env` protocol. `reset(seed=s)` gives the same world for the same s."""

    name = "crafter"

    def __init__(self, length: int = 10_000, size: int = 64, seed: int = 0):
        import crafter  # noqa: F401  (fail early with the real import error)

        self.length = length
        self.size = size
        self.action_names: tuple[str, ...] = tuple(game_data()["actions"])
        self.cell_names = cell_names()
        self.walkable: tuple[str, ...] = tuple(game_data()["walkable"])
        self._ids = {n: i for i, n in enumerate(self.cell_names)}
        self._seed = seed
        self._game = None
        self._textures = None

    @property
    def catalog(self) -> SkillCatalog:
        return crafter_catalog()

    @property
    def view_shape(self) -> tuple[int, int]:
        return VIEW[0], VIEW[1] - 2

    def reset(self, *, seed: int | None = None) -> tuple[Observation, dict[str, Any]]:
        import crafter

        self._seed = self._seed if seed is None else int(seed)
        # A fresh game per reset: Crafter seeds its world from (seed, episode index), so a
        # reused game would give a different world for the same seed.
        self._game = crafter.Env(size=(self.size, self.size), view=VIEW, length=self.length,
                                 reward=True, seed=self._seed)
        if self._textures is not None:  # textures are immutable files: share them
            self._game._textures = self._textures
            self._game._local_view._textures = self._textures
            self._game._item_view._textures = self._textures
        self._textures = self._game._textures
        self._game._world.__class__ = _ordered_world_class()
        rgb = self._game.reset()
        return self._observe(rgb), {"achievements": dict(self._game._player.achievements)}

    def step(self, action: int) -> StepResult:
        if self._game is None:
            raise RuntimeError("call reset() before step()")
        rgb, reward, done, info = self._game.step(int(action))
        dead = info["discount"] == 0
        out = {"achievements": info["achievements"], "inventory": info["inventory"]}
        return StepResult(self._observe(rgb), float(reward), bool(dead), bool(done and not dead), out)

    def close(self) -> None:
        self._game = None

    # -- what is on screen ------------------------------------------------------------------

    def _observe(self, rgb: np.ndarray) -> Observation:
        """The frame plus what it shows, cell by cell: the 9x7 window around the player, the
        inventory bar, the player sprite's direction, the night's darkness. Reading the
        engine here is the game's side of the contract; agents only get the result."""
        player = self._game._player
        world = self._game._world
        w, h = self.view_shape
        view = np.zeros((w, h), np.int16)
        x0, y0 = player.pos[0] - w // 2, player.pos[1] - h // 2
        for x in range(w):
            for y in range(h):
                material, obj = world[(x0 + x, y0 + y)]
                if obj is not None:
                    name = type(obj).__name__.lower()
                    if name == "plant" and obj.ripe:
                        name = "plant_ripe"
                    view[x, y] = self._ids.get(name, 0)
                elif material is not None:
                    view[x, y] = self._ids[material]
        return Observation(
            rgb=rgb, local_view=view, inventory=dict(player.inventory),
            facing=(int(player.facing[0]), int(player.facing[1])),
            sleeping=bool(player.sleeping), daylight=float(world.daylight))
