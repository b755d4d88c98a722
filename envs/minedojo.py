"""The MineDojo backend (optional extra): Minecraft behind the `Env` protocol.

MineDojo itself is imported only when an env is built; without it, `MineDojoEnv()` raises a
one-line `PeamError`. The two translations are pure functions, tested on recorded
observation dictionaries shaped as MineDojo documents them (docs.minedojo.org, "Observation
Space"; `minedojo/sim/handlers/agent/observations/*.py`):

- `observation_from_minedojo(obs)`: MineDojo's observation dict → our `Observation`.
- `action_to_minedojo(name, ...)`: one of our action names → MineDojo's MultiDiscrete(8) vector
  (`minedojo/sim/wrappers/ar_nn/nn_action_space_wrapper.py`).

Skill success is read from counters this module keeps (`info["achievements"]`), derived from
what the player sees change: an item count that grows credits the skills that give it, a block
placed credits its placer. MineDojo's own achievements are the game's, not our skills'.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from envs.base import Observation, StepResult
from envs.catalog import SkillCatalog
from envs.errors import PeamError
from envs.minedojo_catalog import craftable_items, minedojo_catalog, placeable_items

INSTALL_HINT = ("MineDojo is not installed: pip install 'peam[minedojo]' (needs Java 8 and its "
                "gradle build, which downloads Minecraft)")

# Blocks the local view names; anything else is "other". Minecraft 1.11 block ids, as the
# voxel observation spells them (spaces normalised to underscores).
CELL_NAMES = ("unknown", "air", "other", "grass", "dirt", "sand", "gravel", "stone", "bedrock",
              "log", "leaves", "tallgrass", "water", "lava", "planks", "cobblestone",
              "crafting_table", "furnace", "coal_ore", "iron_ore")
WALKABLE = ("air", "tallgrass")  # passable blocks at the feet level
_ALIASES = {"log2": "log", "leaves2": "leaves", "flowing_water": "water",
            "flowing_lava": "lava", "lit_furnace": "furnace", "double_plant": "tallgrass"}

# MultiDiscrete(8) of MineDojo's NN action space: forward/back, left/right, jump/sneak/sprint,
# camera pitch, camera yaw, functional, craft argument, inventory-slot argument.
CAMERA_INTERVAL = 15  # degrees per camera bin, MineDojo's default
CAMERA_CENTRE = (math.ceil(360 / CAMERA_INTERVAL) + 1 - 1) // 2  # bin 12 = no turn
FUNCTIONAL = {"noop": 0, "use": 1, "drop": 2, "attack": 3, "craft": 4, "equip": 5, "place": 6,
              "destroy": 7}
_MOVES = {"forward": (0, 1), "back": (0, 2), "left": (1, 1), "right": (1, 2), "jump": (2, 1),
          "sneak": (2, 2), "sprint": (2, 3)}
_CAMERA = {"look_up": (3, -1), "look_down": (3, 1), "turn_left": (4, -1), "turn_right": (4, 1)}
_TOOLS = ("wooden_pickaxe", "stone_pickaxe", "iron_pickaxe")

ACTION_NAMES: tuple[str, ...] = (
    ("noop", *_MOVES, *_CAMERA, "attack", "use", "drop")
    + tuple(f"craft_{i}" for i in craftable_items())
    + tuple(f"equip_{t}" for t in _TOOLS)
    + tuple(f"place_{p}" for p in placeable_items())
)


def noop_vector() -> np.ndarray:
    return np.array([0, 0, 0, CAMERA_CENTRE, CAMERA_CENTRE, 0, 0, 0], dtype=np.int64)  # (8,)


def action_to_minedojo(name: str, *, craft_items: Sequence[str] = (),
                       inventory_names: Sequence[str] = ()) -> np.ndarray:
    """MineDojo's action vector for our action `name`.

    `craft_items` is MineDojo's `mc.ALL_CRAFT_SMELT_ITEMS` (the craft argument indexes it);
    `inventory_names` is the last `obs["inventory"]["name"]` (equip/place take a slot). Equipping
    or placing an item not held is a no-op, as an impossible action is in Crafter.
    """
    vec = noop_vector()
    if name in _MOVES:
        index, value = _MOVES[name]
        vec[index] = value
    elif name in _CAMERA:
        index, step = _CAMERA[name]
        vec[index] = CAMERA_CENTRE + step  # pitch bin < centre looks up (Minecraft pitch < 0)
    elif name in ("attack", "use", "drop"):
        vec[5] = FUNCTIONAL[name]
    elif name.startswith("craft_"):
        item = name.removeprefix("craft_")
        if item not in craft_items:
            raise ValueError(f"{item!r} is not in MineDojo's craft list")
        vec[5], vec[6] = FUNCTIONAL["craft"], list(craft_items).index(item)
    elif name.startswith(("equip_", "place_")):
        verb, _, item = name.partition("_")
        held = [_norm(n) for n in inventory_names]
        if item in held:
            vec[5], vec[7] = FUNCTIONAL[verb], held.index(item)
    elif name != "noop":
        raise ValueError(f"unknown MineDojo action {name!r}")
    return vec


def observation_from_minedojo(obs: dict[str, Any]) -> Observation:
    """Our `Observation` from MineDojo's observation dictionary.

    The local view is the 3x3 ring of blocks at the player's feet, indexed [x, z] (the voxel
    grid is (x, y, z), ascending, the player at its centre): a block there is in the way (a
    log, a table, a wall of stone to mine), air is free to walk into, except over water or
    lava, which the cell then shows. The absolute position (`location_stats["pos"]`) is left
    out: agents see only what a player sees.
    """
    rgb = np.ascontiguousarray(np.transpose(obs["rgb"], (1, 2, 0)))  # (3, H, W) -> (H, W, 3)
    names = np.vectorize(_norm, otypes=[object])(obs["voxels"]["block_name"])  # (x, y, z)
    feet, below = names[:, names.shape[1] // 2, :], names[:, names.shape[1] // 2 - 1, :]
    seen = np.where((feet == "air") & np.isin(below, ("water", "lava")), below, feet)  # (x, z)
    ids = {n: i for i, n in enumerate(CELL_NAMES)}
    local_view = np.vectorize(lambda n: ids.get(n, ids["other"]), otypes=[np.int16])(seen)

    inventory: dict[str, int] = {}
    for name, qty in zip(obs["inventory"]["name"], obs["inventory"]["quantity"]):
        name = _norm(name)
        if name != "air" and qty > 0:
            inventory[name] = inventory.get(name, 0) + int(qty)
    life, loc = obs["life_stats"], obs["location_stats"]
    inventory.update(health=_scalar(life["life"]), food=_scalar(life["food"]),
                     oxygen=_scalar(life["oxygen"]))

    yaw = float(np.asarray(loc["yaw"]).reshape(-1)[0])
    extras = {"yaw": yaw, "pitch": float(np.asarray(loc["pitch"]).reshape(-1)[0]),
              "equipped": _norm(obs["equipment"]["name"][0])}
    if "compass" in obs:
        extras["compass_angle"] = float(np.asarray(obs["compass"]["angle"]).reshape(-1)[0])
    return Observation(
        rgb=rgb, local_view=local_view, inventory=inventory, facing=facing_from_yaw(yaw),
        sleeping=bool(_scalar(life.get("is_sleeping", 0))),
        daylight=float(np.clip(np.asarray(loc.get("sun_brightness", 1.0)).reshape(-1)[0], 0, 1)),
        extras=extras)


def facing_from_yaw(yaw: float) -> tuple[int, int]:
    """(dx, dz) of the cardinal direction nearest to Minecraft's yaw (0 = +z south, 90 = -x)."""
    rad = math.radians(yaw)
    dx, dz = -math.sin(rad), math.cos(rad)
    return (int(round(dx)), 0) if abs(dx) > abs(dz) else (0, int(round(dz)))


def credited_skills(before: dict[str, int], after: dict[str, int], view: set[str],
                    catalog: SkillCatalog) -> list[str]:
    """Skills whose effect shows between two observations: their item grew, or their block
    left the inventory and is now in view."""
    out = []
    for skill in catalog:
        gained = any(after.get(i, 0) > before.get(i, 0) for i in skill.gives)
        block = skill.places
        placed = (block is not None and after.get(block, 0) < before.get(block, 0)
                  and block in view)
        if gained or placed:
            out.append(skill.name)
    return out


class MineDojoEnv:
    """MineDojo behind the `Env` protocol; `reset(seed=s)` rebuilds the world for a new seed."""

    name = "minedojo"
    action_names = ACTION_NAMES
    cell_names = CELL_NAMES
    walkable = WALKABLE
    view_shape = (3, 3)  # MineDojo's native voxel observation is 3x3x3

    def __init__(self, task_id: str = "open-ended", image_size: tuple[int, int] = (64, 64),
                 seed: int = 0):
        try:
            import minedojo  # noqa: F401
        except ImportError:
            raise PeamError(INSTALL_HINT) from None
        from minedojo.sim.mc_meta import mc

        self.task_id, self.image_size, self._seed = task_id, tuple(image_size), seed
        self._craft_items = tuple(mc.ALL_CRAFT_SMELT_ITEMS)
        self._env = None
        self._env_seed: int | None = None
        self._last: dict[str, Any] | None = None
        self._achievements: dict[str, int] = {}

    @property
    def catalog(self) -> SkillCatalog:
        return minedojo_catalog()

    def reset(self, *, seed: int | None = None) -> tuple[Observation, dict[str, Any]]:
        import minedojo

        self._seed = self._seed if seed is None else int(seed)
        # Minecraft takes minutes to start: keep the process, rebuild only for a new world.
        if self._env is None or self._env_seed != self._seed:
            self.close()
            self._env = minedojo.make(task_id=self.task_id, image_size=self.image_size,
                                      world_seed=self._seed, seed=self._seed)
            self._env_seed = self._seed
        raw = self._env.reset()
        self._last = raw
        self._achievements = {s.name: 0 for s in self.catalog}
        return observation_from_minedojo(raw), {"achievements": dict(self._achievements)}

    def step(self, action: int) -> StepResult:
        if self._env is None or self._last is None:
            raise RuntimeError("call reset() before step()")
        vec = action_to_minedojo(self.action_names[int(action)], craft_items=self._craft_items,
                                 inventory_names=self._last["inventory"]["name"])
        before = observation_from_minedojo(self._last)
        raw, reward, done, info = self._env.step(vec)
        after = observation_from_minedojo(raw)
        view = {self.cell_names[i] for i in np.unique(after.local_view)}
        for name in credited_skills(before.inventory, after.inventory, view, self.catalog):
            self._achievements[name] += 1
        self._last = raw
        dead = after.inventory["health"] <= 0
        out = {"achievements": dict(self._achievements), "inventory": dict(after.inventory),
               "minedojo": info}
        return StepResult(after, float(reward), dead, bool(done and not dead), out)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
        self._env = None


def _norm(name: Any) -> str:
    name = str(name).strip().lower().replace(" ", "_").removeprefix("minecraft:")
    return _ALIASES.get(name, name)


def _scalar(value: Any) -> int:
    return int(round(float(np.asarray(value).reshape(-1)[0])))
