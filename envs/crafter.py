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
from envs.knowledge import GameKnowledge, Threat

VIEW = (9, 9)  # Crafter's default: a 9x9 grid of which the bottom rows show the inventory
CREATURES = ("player", "cow", "zombie", "skeleton", "arrow")  # objects.py: the objects that move
STILL_OBJECTS = ("plant", "plant_ripe")  # a sapling: an object, so nothing walks through it
OBJECT_CELLS = CREATURES + STILL_OBJECTS

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
MOUNTAIN_ATTEMPT, SURFACE_ATTEMPT = 1_200, 600

# How Crafter's monsters hurt (objects.py), as extra path costs: a zombie walks one cell a step
# and hits whoever stands next to it; a skeleton shoots along its row and column (4 cells
# priced), and its arrow flies on along its line (we cannot see which way).
THREATS = {"zombie": Threat(melee=(8.0, 8.0, 3.0)),
           "skeleton": Threat(shoots=4, shot_cost=4.0),
           "arrow": Threat(shoots=4, shot_cost=4.0, in_flight=True)}
DIG_COST = 3.0  # one `do` to break a cell, one move to step in, and the item it drops is a bonus


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
    skills = [dataclasses.replace(s, budget=_budget(s), actions=_skill_actions(s, data["actions"]))
              for s in skills]
    order = {name: i for i, name in enumerate(data["achievements"])}
    missing = set(order) - {s.name for s in skills}
    assert not missing, f"achievements without a skill: {missing}"  # a new Crafter release
    skills = [s for s in skills if s.name in order]
    return SkillCatalog(skills, dict(data["items"]), game="crafter", knowledge=crafter_knowledge())


def _budget(skill: Skill) -> int:
    """Steps one attempt may take: a long search or wait, a walk to the mountains for a
    material behind a tool (stone, coal, iron), or a surface errand."""
    if skill.name in _LONG_ATTEMPTS:
        return _LONG_ATTEMPTS[skill.name]
    return MOUNTAIN_ATTEMPT if skill.requires and skill.target else SURFACE_ATTEMPT


@functools.lru_cache(maxsize=1)
def crafter_knowledge() -> GameKnowledge:
    """What Crafter's agent must know besides its skills, from data.yaml where it says so and
    from the engine's code (objects.py, worldgen.py) where it does not."""
    data = game_data()
    walkable = data["walkable"]
    # A collect that leaves a walkable cell opens a way through (a tree leaves grass, rock a
    # path); a tree is worth more standing (wood for later): a step dearer than rock.
    digs = {m: DIG_COST for m, rule in data["collect"].items() if rule["leaves"] in walkable and m not in walkable}
    digs["tree"] = DIG_COST + 1
    # A station that a recipe needs beside an earlier one goes next to it (iron tools: a
    # furnace beside the table).
    near: dict[str, tuple[str, ...]] = {}
    for rule in data["make"].values():
        for i, cell in enumerate(rule["nearby"]):
            near[cell] = tuple(dict.fromkeys(near.get(cell, ()) + tuple(rule["nearby"][:i])))
    return GameKnowledge(
        creatures=CREATURES, ground="grass",  # zombies and cows roam the grass
        sturdy=("cow", "zombie", "skeleton", "plant"),  # objects.py: health 3, 5, 3, and a sapling's 1
        deadly=("lava",),  # objects.py Player._move: health 0 on lava
        solid=tuple(m for m in data["materials"] if m not in walkable) + STILL_OBJECTS,  # Object.is_free
        threats=THREATS,
        danger_radius=3,  # a zombie this close reaches us within a step or two; an arrow flies 4
        lairs={"skeleton": ("path",)},  # worldgen.py: skeletons spawn only in the dark tunnels
        rock=("stone", "path", "coal", "iron", "diamond"),  # worldgen.py: the mountains and their tunnels
        dig_costs=digs, place_near={c: n for c, n in near.items() if n},
        wall="stone", rest="energy", health="health",
        low_health=5,  # rest before two more zombie hits or arrows can kill
        night=0.35,  # the screen is dark and zombies spawn on grass (env.py: daylight)
        # Food drains every ~25 steps, drink every ~20 and energy every ~30; health is lost once
        # any of them reaches zero (objects.py Player.update).
        survival={"drink": 4, "food": 4, "energy": 3},
        weapons=("wood_sword", "stone_sword", "iron_sword"),  # Player._do_object: damage 2, 3, 5
        idle=(("wood", 5), ("stone", data["items"]["stone"]["max"])),
    )


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
