"""The MineDojo skill catalog: Minecraft's early tech tree, log to iron pickaxe, as data.

The recipes are Minecraft 1.11's (the version MineDojo runs) written once in `TECH_TREE`, the
way Crafter writes its rules in `data.yaml`; `minedojo_catalog()` reads them into `Skill`s.
Item names are MineDojo's inventory names with spaces as underscores (`crafting table` →
`crafting_table`). Smelting is fuelled with planks, which Minecraft accepts, so the tree needs
no coal branch.
"""

from __future__ import annotations

import dataclasses
import functools

import yaml

from envs.catalog import Skill, SkillCatalog
from envs.knowledge import GameKnowledge

TECH_TREE = yaml.safe_load("""
items:  # vitals start full (MineDojo life_stats); tools and materials start at 0
  health: {initial: 20, max: 20}
  food: {initial: 20, max: 20}
  oxygen: {initial: 300, max: 300}
  log: {initial: 0, max: 2304}
  planks: {initial: 0, max: 2304}
  stick: {initial: 0, max: 2304}
  crafting_table: {initial: 0, max: 64}
  wooden_pickaxe: {initial: 0, max: 1}
  cobblestone: {initial: 0, max: 2304}
  stone_pickaxe: {initial: 0, max: 1}
  furnace: {initial: 0, max: 64}
  iron_ore: {initial: 0, max: 2304}
  iron_ingot: {initial: 0, max: 2304}
  iron_pickaxe: {initial: 0, max: 1}

collect:  # skill: {target blocks, tool held, item received}
  collect_log: {category: gather, target: [log], require: {}, receive: {log: 1}}
  mine_cobblestone: {category: gather, target: [stone], require: {wooden_pickaxe: 1},
                     receive: {cobblestone: 1}}
  mine_iron_ore: {category: gather, target: [iron_ore], require: {stone_pickaxe: 1},
                  receive: {iron_ore: 1}}
  eat_cow: {category: survive, target: [cow], require: {}, receive: {food: 6}}

craft:  # item: {uses, gives, nearby}; a recipe of 4 cells or fewer needs no table
  planks: {uses: {log: 1}, gives: 4, nearby: []}
  stick: {uses: {planks: 2}, gives: 4, nearby: []}
  crafting_table: {uses: {planks: 4}, gives: 1, nearby: []}
  wooden_pickaxe: {uses: {planks: 3, stick: 2}, gives: 1, nearby: [crafting_table]}
  stone_pickaxe: {uses: {cobblestone: 3, stick: 2}, gives: 1, nearby: [crafting_table]}
  furnace: {uses: {cobblestone: 8}, gives: 1, nearby: [crafting_table]}
  iron_pickaxe: {uses: {iron_ingot: 3, stick: 2}, gives: 1, nearby: [crafting_table]}

smelt:
  iron_ingot: {uses: {iron_ore: 1, planks: 1}, gives: 1, nearby: [furnace]}

place:  # block: the cells at the feet level it may go into (free cells, ground below)
  crafting_table: {where: [air, tallgrass]}
  furnace: {where: [air, tallgrass]}

budget: {mine: 1200, other: 600}  # steps of one attempt: a walk to exposed rock, or an errand
deadly: [lava]  # a step into it burns the player to death
vitals: {health: health, low_health: 5}  # of 20 points: two creeper blasts from death
survival: {food: 4}  # hunger points under which eating pre-empts the task
idle: [[log, 5], [cobblestone, 64]]  # open-ended play with every goal met: keep these stocked
""")


@functools.lru_cache(maxsize=1)
def minedojo_catalog() -> SkillCatalog:
    data = TECH_TREE
    skills: list[Skill] = []
    for name, rule in data["collect"].items():
        skills.append(Skill(name, rule["category"], requires=dict(rule["require"]),
                            gives=dict(rule["receive"]), target=tuple(rule["target"])))
    for verb, table in (("craft", data["craft"]), ("smelt", data["smelt"])):
        for item, rule in table.items():
            skills.append(Skill(f"{verb}_{item}", "craft", requires=dict(rule["uses"]),
                                consumes=dict(rule["uses"]), gives={item: rule["gives"]},
                                nearby=tuple(rule["nearby"])))
    for block, rule in data["place"].items():
        skills.append(Skill(f"place_{block}", "build", requires={block: 1}, consumes={block: 1},
                            places=block, where=tuple(rule["where"])))
    budget = data["budget"]
    skills = [dataclasses.replace(s, budget=budget["mine"] if s.requires and s.target else budget["other"])
              for s in skills]
    return SkillCatalog(skills, dict(data["items"]), game="minedojo", knowledge=minedojo_knowledge())


def minedojo_knowledge() -> GameKnowledge:
    data = TECH_TREE
    return GameKnowledge(deadly=tuple(data["deadly"]), health=data["vitals"]["health"],
                         low_health=data["vitals"]["low_health"], survival=dict(data["survival"]),
                         idle=tuple((item, n) for item, n in data["idle"]))


def craftable_items() -> tuple[str, ...]:
    """Items made with MineDojo's craft action (functional action 4), smelting included."""
    return tuple(TECH_TREE["craft"]) + tuple(TECH_TREE["smelt"])


def placeable_items() -> tuple[str, ...]:
    return tuple(TECH_TREE["place"])
