"""The Minecraft backend: a real Minecraft Java-protocol server (flying-squid) and a mineflayer
bot, both in one Node child process per episode (`envs/minecraft_process.py`), behind the same
`Env` protocol and catalog contract as Crafter.

What the agent gets is what the bot perceives, never the server's world:

- `local_view`: 11x11 columns around the bot, indexed [x, z], the bot at the centre. A column
  shows the first block in the way at the bot's level that has a face open to the air (a log,
  stone, an ore, a placed table), else what is underfoot: `ground` to walk on, `water`, or `air`
  (a drop). A block hidden inside a pile shows as the pile's visible top.
- `inventory`: item counts by minecraft-data name; `facing`: the way the bot last turned;
  `extras["position"]`: (x, z) relative to the spawn, by the bot's own reckoning (what a
  player reads on the debug screen), and `extras["y"]`.

Actions are Voyager-style control primitives with timeouts (run in bot.js): a move one block
along x or z (a move towards a blocked column only turns, as in Crafter), `do` (dig the column
faced, with the best tool held), `place_<block>` on the ground faced, `craft_<item>` (performed
by the server from minecraft-data's recipes; 3x3 recipes need a crafting table within reach).
There are no pixels, mobs, combat, hunger or smelting: those skills are absent from the catalog.
Success is read from inventory changes: an item that grew credits the skills that give it, a
placement that the server confirms credits its `place_` skill.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from envs.base import Observation, StepResult
from envs.catalog import SkillCatalog
from envs.minecraft_catalog import MOVES, WORLD, minecraft_catalog, placeable

VIEW = 2 * WORLD["view_radius"] + 1
SPECIAL_CELLS = ("unknown", "ground", "air", "water", "lava", "other")
WALKABLE = ("ground",)


@functools.lru_cache(maxsize=1)
def cell_names() -> tuple[str, ...]:
    blocks = list(WORLD["features"]) + [b for b in placeable() if b not in WORLD["features"]]
    return SPECIAL_CELLS + tuple(blocks)


@functools.lru_cache(maxsize=1)
def action_names() -> tuple[str, ...]:
    catalog = minecraft_catalog()
    crafts = [s.name for s in catalog if s.category == "craft"]
    places = [s.name for s in catalog if s.places]
    return ("noop", *MOVES, "do", *places, *crafts)


class MinecraftEnv:
    """One episode = one Node process; `reset(seed=s)` starts a fresh server on the world of
    seed s (the process is restarted, so nothing of an earlier episode survives)."""

    name = "minecraft"
    walkable = WALKABLE
    view_shape = (VIEW, VIEW)

    def __init__(self, seed: int = 0):
        self.action_names = action_names()
        self.cell_names = cell_names()
        self._ids = {n: i for i, n in enumerate(self.cell_names)}
        self._seed = seed
        self._game = None
        self._achievements: dict[str, int] = {}
        self._inventory: dict[str, int] = {}

    @property
    def catalog(self) -> SkillCatalog:
        return minecraft_catalog()

    @property
    def pid(self) -> int | None:
        """The Node process of the running episode (tests watch it end)."""
        return self._game.pid if self._game is not None else None

    def reset(self, *, seed: int | None = None) -> tuple[Observation, dict[str, Any]]:
        from envs.minecraft_process import NodeGame

        self._seed = self._seed if seed is None else int(seed)
        self.close()
        self._game = NodeGame(self._seed)
        raw = self._game.hello["obs"]
        self._inventory = dict(raw["inventory"])
        self._achievements = {s.name: 0 for s in self.catalog}
        return self._observe(raw), {"achievements": dict(self._achievements)}

    def step(self, action: int) -> StepResult:
        if self._game is None:
            raise RuntimeError("call reset() before step()")
        name = self.action_names[int(action)]
        answer = self._game.request({"op": "act", "action": name})
        raw = answer["obs"]
        after = dict(raw["inventory"])
        for skill in credited(self.catalog, self._inventory, after, name, bool(answer.get("ok"))):
            self._achievements[skill] += 1
        self._inventory = after
        info = {"achievements": dict(self._achievements), "inventory": dict(after),
                "action_ok": bool(answer.get("ok")), "error": answer.get("error")}
        return StepResult(self._observe(raw), 0.0, False, False, info)

    def stats(self) -> dict:
        """The Node process's resident memory and id (benchmarks)."""
        return self._game.request({"op": "stats"}) if self._game is not None else {}

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
        self._game = None

    def _observe(self, raw: dict) -> Observation:
        view = np.array([[self._ids.get(n, self._ids["other"]) for n in row] for row in raw["view"]],
                        np.int16)  # (x, z)
        x, y, z = raw["position"]
        return Observation(
            rgb=np.zeros((1, 1, 3), np.uint8), local_view=view, inventory=dict(raw["inventory"]),
            facing=(int(raw["facing"][0]), int(raw["facing"][1])),
            extras={"position": (int(x), int(z)), "y": int(y)})


def credited(catalog: SkillCatalog, before: dict[str, int], after: dict[str, int], action: str,
             ok: bool) -> list[str]:
    """Skills whose effect shows in one step: an item that grew credits the skills that give
    it; a placement the server made credits its `place_` skill."""
    grown = {i for i, n in after.items() if n > before.get(i, 0)}
    out = [s.name for s in catalog if grown & set(s.gives)]
    if ok and action.startswith("place_") and action in catalog:
        out.append(action)
    return out
