"""The Minecraft skill catalog, derived from minecraft-data (the data the server itself runs on)
and from what the world generator puts in reach (`minecraft_node/world.json`).

Nothing here is typed by hand but the names Crafter gives the same things (its tasks are
aliases). What can be had is found as a fixed point:

- gather: a block in reach gives what its loot table drops to a player without silk touch,
  once one of its harvest tools can be had (stone needs a pickaxe and drops cobblestone);
- craft: a crafting recipe whose ingredients can all be had; one larger than 2x2 needs a
  crafting table nearby (the server checks the same rule);
- build: a full block that can be had can be placed on the ground.

The backend has no smelting, mobs, combat or hunger (flying-squid implements none), so no skill
needs them: iron ore can be mined, an iron pickaxe never appears.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from envs.catalog import Skill, SkillCatalog
from envs.knowledge import GameKnowledge

WORLD = json.loads((Path(__file__).with_name("minecraft_node") / "world.json").read_text())
VERSION = WORLD["version"]
MOVES = ("move_left", "move_right", "move_up", "move_down")
TABLE = "crafting_table"
# Attempts per skill kind, in actions: a gather may need a walk to find its block; a craft or a
# placement is one action once its inputs are held (and a few steps to a table).
BUDGETS = {"gather": 250, "craft": 60, "build": 60}
# Crafter's words for the same things: its task names resolve to these skills.
CRAFTER_WORDS = {"wood": "oak_log", "stone": "cobblestone", "coal": "coal", "iron": "iron_ore",
                 "table": TABLE, "furnace": "furnace", "wood_pickaxe": "wooden_pickaxe",
                 "stone_pickaxe": "stone_pickaxe", "wood_sword": "wooden_sword",
                 "stone_sword": "stone_sword"}
# Open-ended play with every goal met: logs, then cobblestone (a stack), the two materials
# most recipes of the early tree start from.
IDLE = (("oak_log", 5), ("cobblestone", 64))


def _load(kind: str):
    from envs.minecraft_process import data_dir

    return json.loads(data_dir(VERSION)[kind].read_text())


def _drops(loot_entry: dict) -> list[str]:
    """Items a player without silk touch gets from a block."""
    return [d["item"] for d in loot_entry.get("drops", [])
            if not d.get("silkTouch") and (d.get("dropChance", 1) >= 1 or d.get("noSilkTouch"))]


def _recipe_needs(recipe: dict) -> tuple[dict[int, int], bool]:
    """Ingredient counts by item id, and whether the recipe needs a 3x3 grid (a table)."""
    if "inShape" in recipe:
        cells = [c for row in recipe["inShape"] for c in row]
        big = len(recipe["inShape"]) > 2 or any(len(row) > 2 for row in recipe["inShape"])
    else:
        cells, big = recipe["ingredients"], len(recipe["ingredients"]) > 4
    counts: dict[int, int] = {}
    for c in cells:
        if c is not None:
            key = c["id"] if isinstance(c, dict) else c
            counts[key] = counts.get(key, 0) + 1
    return counts, big


def reachable() -> dict[str, int]:
    """Every item that can be had in this world, with the round of the fixed point it was
    reached in (0: by hand; higher: behind more tools and recipes)."""
    return _derive()[0]


@functools.lru_cache(maxsize=1)
def _derive():
    items = {i["id"]: i for i in _load("items")}
    blocks = {b["name"]: b for b in _load("blocks")}
    loot = {e["block"]: e for e in _load("blockLoot")}
    recipes = _load("recipes")
    have: dict[str, int] = {}
    gathers: dict[str, dict] = {}  # item -> {"targets": [...], "tool": name | None}
    crafts: dict[str, dict] = {}  # item -> {"needs": {name: n}, "table": bool, "count": n}
    for rnd in range(20):
        added = {}
        for block in WORLD["reachable"]:
            tools = [items[int(t)]["name"] for t in (blocks[block].get("harvestTools") or {})]
            usable = [t for t in tools if t in have]
            if tools and not usable:
                continue
            tool = min(usable, key=lambda t: (have[t], t)) if usable else None
            for item in _drops(loot.get(block, {})):
                entry = gathers.setdefault(item, {"targets": [], "tool": tool})
                if block not in entry["targets"]:
                    entry["targets"].append(block)
                if item not in have:
                    added[item] = rnd
        for rid, options in recipes.items():
            name = items[int(rid)]["name"]
            if name in have or name in added:
                continue
            for recipe in options:
                counts, big = _recipe_needs(recipe)
                needs = {items[i]["name"]: n for i, n in counts.items()}
                if all(n in have for n in needs) and (not big or TABLE in have):
                    crafts[name] = {"needs": needs, "table": big, "count": recipe["result"]["count"]}
                    added[name] = rnd
                    break
        if not added:
            break
        have.update(added)
    return have, gathers, crafts, blocks


@functools.lru_cache(maxsize=1)
def minecraft_catalog() -> SkillCatalog:
    have, gathers, crafts, blocks = _derive()
    skills: list[Skill] = []
    for item, g in sorted(gathers.items(), key=lambda kv: (have[kv[0]], kv[0])):
        skills.append(Skill(f"collect_{item}", "gather", requires={g["tool"]: 1} if g["tool"] else {},
                            gives={item: 1}, target=tuple(g["targets"]), budget=BUDGETS["gather"],
                            actions=frozenset(MOVES + ("do", "noop"))))
    for item, c in sorted(crafts.items(), key=lambda kv: (have[kv[0]], kv[0])):
        name = f"craft_{item}"
        skills.append(Skill(name, "craft", requires=dict(c["needs"]), consumes=dict(c["needs"]),
                            gives={item: c["count"]}, nearby=(TABLE,) if c["table"] else (),
                            budget=BUDGETS["craft"], actions=frozenset(MOVES + ("noop", name))))
    for item in sorted(placeable(), key=lambda i: (have[i], i)):
        name = f"place_{item}"
        skills.append(Skill(name, "build", requires={item: 1}, consumes={item: 1}, places=item,
                            where=("ground",), budget=BUDGETS["build"],
                            actions=frozenset(MOVES + ("noop", name))))
    items_meta = {name: {"initial": 0, "max": 64} for name in sorted(have, key=lambda i: (have[i], i))}
    return SkillCatalog(skills, items_meta, game="minecraft", aliases=crafter_aliases(skills),
                        knowledge=minecraft_knowledge(skills))


def minecraft_knowledge(skills: list[Skill]) -> GameKnowledge:
    """What the agent must know of this world: lava kills; the blocks a gather needs a tool
    for lie in the rock, where exploring for them goes. No mobs, hunger or sleep (the
    backend has none), and no digging through: a dug column may show the block above it."""
    rock = tuple(dict.fromkeys(t for s in skills if s.category == "gather" and s.requires for t in s.target))
    have = {i for s in skills for i in s.gives}
    return GameKnowledge(deadly=("lava",), rock=rock,
                         idle=tuple((item, n) for item, n in IDLE if item in have))


def placeable() -> list[str]:
    """Items that can be had and are full cubes: what `place_*` stands on the ground (a door,
    a ladder or a slab wants more than a patch of ground)."""
    have, _, _, blocks = _derive()
    shapes = _load("blockCollisionShapes")
    full = {i for i, box in shapes["shapes"].items() if box == [[0, 0, 0, 1, 1, 1]]}

    def cube(name: str) -> bool:
        ref = shapes["blocks"].get(name)
        return all(str(r) in full for r in ref) if isinstance(ref, list) else str(ref) in full

    return [i for i in have if i in blocks and blocks[i].get("boundingBox") == "block" and cube(i)]


def crafter_aliases(skills: list[Skill]) -> dict[str, str]:
    """Crafter's task names for the skills that exist here (collect_wood -> collect_oak_log)."""
    from envs.crafter import crafter_catalog

    names, crafter = {s.name for s in skills}, set(crafter_catalog().names)
    verbs = {"collect": "collect", "place": "place", "make": "craft"}
    out = {}
    for word, item in CRAFTER_WORDS.items():
        for crafter_verb, verb in verbs.items():
            if f"{verb}_{item}" in names and f"{crafter_verb}_{word}" in crafter:
                out[f"{crafter_verb}_{word}"] = f"{verb}_{item}"
    return out
