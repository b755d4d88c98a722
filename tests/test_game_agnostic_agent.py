"""The agent pieces a second game needs, on tiny real things (no Node): a position the game
reports, a craft that needs no station, skills listed by game."""

from __future__ import annotations

import numpy as np

from agent.loop.executor import DeliberateExecutor
from agent.loop.world_memory import SIZE, WorldMemory
from envs.base import Observation
from envs.catalog import Skill, SkillCatalog
from envs.tasks import resolve_task

CELLS = ("unknown", "ground", "oak_log", "crafting_table")


def _obs(position=None) -> Observation:
    view = np.ones((5, 5), np.int16)  # ground all round
    extras = {} if position is None else {"position": position}
    return Observation(rgb=np.zeros((1, 1, 3), np.uint8), local_view=view, inventory={"oak_log": 1},
                       extras=extras)


def _catalog(game: str = "blocks") -> SkillCatalog:
    skills = [Skill("collect_oak_log", "gather", gives={"oak_log": 1}, target=("oak_log",)),
              Skill("craft_oak_planks", "craft", requires={"oak_log": 1}, consumes={"oak_log": 1},
                    gives={"oak_planks": 4}, actions=frozenset({"noop", "craft_oak_planks"}))]
    return SkillCatalog(skills, {"oak_log": {}, "oak_planks": {}}, game=game,
                        aliases={"make_planks": "craft_oak_planks", "collect_oak_log": "collect_oak_log"})


def test_world_memory_takes_the_position_the_game_reports():
    mem = WorldMemory(CELLS, ("ground",))
    mem.observe(_obs((3, -2)), None)
    assert mem.pos == (SIZE // 2 + 3, SIZE // 2 - 2)
    mem.observe(_obs((4, -2)), "move_up")  # the report wins over dead reckoning from the action
    assert mem.pos == (SIZE // 2 + 4, SIZE // 2 - 2)


def test_a_craft_without_a_station_is_done_by_its_own_action():
    catalog = _catalog()
    ex = DeliberateExecutor(catalog, CELLS, ("ground",))
    ex.observe(_obs((0, 0)), None)
    assert ex.act(_obs((0, 0)), catalog["craft_oak_planks"]) == "craft_oak_planks"


def test_an_alias_resolves_to_its_skill_and_never_shadows_a_skill():
    catalog = _catalog()
    assert resolve_task("make_planks", catalog).goals == ("craft_oak_planks",)
    assert catalog.aliases == {"make_planks": "craft_oak_planks"}


def test_skills_are_listed_by_game_in_the_api(tmp_path):
    from fastapi.testclient import TestClient

    from agent.dashboard.app import create_app
    from envs.crafter import crafter_catalog
    from memory.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'peam.db'}")
    store.sync_skills(crafter_catalog())
    store.sync_skills(_catalog("minecraft"))
    client = TestClient(create_app(store, token=None, read_only_bind=False), base_url="http://127.0.0.1")  # the dashboard answers loopback names only
    rows = client.get("/api/skills", params={"game": "minecraft", "limit": 500}).json()
    assert sorted(r["name"] for r in rows) == ["collect_oak_log", "craft_oak_planks"]
    assert {r["game"] for r in client.get("/api/skills", params={"limit": 500}).json()} == {"crafter", "minecraft"}
    page = client.get("/skills", params={"game": "minecraft"}).text
    assert "craft_oak_planks" in page and "collect_wood" not in page


# -- game knowledge: declared by the game (envs/), read by the agent -------------------------

# Crafter names the agent code may still spell, and why. Everything else of Crafter's
# (its cells, items and skills) must come from the game's catalog and `GameKnowledge`.
ALLOWED_CRAFTER_NAMES = {
    "agent/services/demo.py": "the demo ladder is a walk through Crafter's own tasks",
    "agent/bench/continual.py": "the continual benchmark is a sequence of Crafter tasks",
    ("agent/cli.py", "make_stone_pickaxe"): "the default task; every game resolves it (aliases)",
    ("agent/services/session.py", "make_stone_pickaxe"): "the default task; every game resolves it (aliases)",
}
# Crafter's words that are also ordinary words of the agent's own: the slow or fast "path" (and
# file paths), the env contract's "unknown" cell 0, the "player" drawn at the map's centre.
GENERIC_WORDS = {"path", "unknown", "player"}


def _string_literals(source: str):
    """(line, text) of every string constant in `source` that is not a docstring."""
    import ast

    tree = ast.parse(source)
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs]


def _crafter_names() -> set[str]:
    from envs.crafter import cell_names, crafter_catalog

    catalog = crafter_catalog()
    return (set(cell_names()) | set(catalog.names) | set(catalog.items)) - GENERIC_WORDS


def test_agent_code_spells_no_crafter_cell_item_or_skill():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    names, found = _crafter_names(), []
    for path in sorted((root / "agent").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in ALLOWED_CRAFTER_NAMES:
            continue
        for line, text in _string_literals(path.read_text()):
            if text in names and (rel, text) not in ALLOWED_CRAFTER_NAMES:
                found.append(f"{rel}:{line}: {text!r}")
    assert not found, "Crafter's knowledge typed in agent/ (declare it in envs/):\n" + "\n".join(found)


def test_the_literal_scan_sees_code_strings_and_skips_docstrings():
    source = '"""A lava lake."""\ndef f():\n    """No lava here."""\n    return x in ("lava",)\n'
    assert [text for _, text in _string_literals(source) if text in _crafter_names()] == ["lava"]


def test_crafter_derives_its_knowledge_from_its_own_data():
    from envs.crafter import STILL_OBJECTS, crafter_catalog, game_data

    data, knowledge = game_data(), crafter_catalog().knowledge
    assert set(knowledge.solid) == set(data["materials"]) - set(data["walkable"]) | set(STILL_OBJECTS)
    # Breaking a cell opens a way only where its collect rule leaves a walkable cell behind.
    assert set(knowledge.dig_costs) == {"tree", "stone", "coal", "iron", "diamond"}
    assert knowledge.place_near == {"furnace": ("table",)}  # iron tools need both within reach
    assert knowledge.hostile == ("zombie", "skeleton", "arrow")


def test_every_name_a_game_declares_is_one_of_its_cells_items_or_skills():
    from envs.crafter import cell_names as crafter_cells, crafter_catalog
    from envs.minecraft import cell_names as minecraft_cells
    from envs.minecraft_catalog import minecraft_catalog
    from envs.minedojo import CELL_NAMES
    from envs.minedojo_catalog import minedojo_catalog

    for catalog, cells in ((crafter_catalog(), crafter_cells()), (minecraft_catalog(), minecraft_cells()),
                           (minedojo_catalog(), CELL_NAMES)):
        k = catalog.knowledge
        for cell in (k.creatures + k.sturdy + k.deadly + k.solid + k.hostile + k.rock + tuple(k.dig_costs)
                     + tuple(k.place_near) + sum(k.place_near.values(), ()) + sum(k.lairs.values(), ())):
            assert cell in cells, (catalog.game, cell)
        for item in (k.weapons + tuple(k.survival) + tuple(i for i, _ in k.idle)
                     + tuple(v for v in (k.wall, k.rest, k.health) if v)):
            assert item in catalog.items, (catalog.game, item)
        assert all(catalog.producers(item) for item, _ in k.idle), catalog.game


MOB_CELLS = ("unknown", "ground", "rock", "creeper", "magma")


def _mob_game():
    """A second game that declares a hostile creature, a skill that fights it and a deadly cell."""
    from envs.knowledge import GameKnowledge, Threat

    knowledge = GameKnowledge(creatures=("creeper",), ground="ground", deadly=("magma",),
                              solid=("rock",), threats={"creeper": Threat(melee=(9.0, 5.0))},
                              danger_radius=2, health="hearts", low_health=3)
    skills = [Skill("defeat_creeper", "combat", target=("creeper",)),
              Skill("collect_rock", "gather", gives={"rock": 1}, target=("rock",))]
    return SkillCatalog(skills, {"hearts": {"initial": 10, "max": 10}, "rock": {}}, game="mobs",
                        knowledge=knowledge)


def _view_with(cells: dict[tuple[int, int], str]) -> Observation:
    view = np.ones((5, 5), np.int16)  # ground all round, the agent at (2, 2)
    for (x, y), name in cells.items():
        view[x, y] = MOB_CELLS.index(name)
    return Observation(rgb=np.zeros((1, 1, 3), np.uint8), local_view=view, inventory={"hearts": 10},
                       facing=(1, 0))


def test_a_hostile_creature_the_game_declares_is_fought_next_to_the_agent_and_feared_near_it():
    catalog = _mob_game()
    ex = DeliberateExecutor(catalog, MOB_CELLS, ("ground",))
    obs = _view_with({(3, 2): "creeper"})  # right beside us, and we face right
    ex.observe(obs, None)
    assert ex.hostile_near(1) and ex.act(obs, catalog["collect_rock"]) == "do"
    far = _view_with({(4, 4): "creeper"})
    ex.reset()
    ex.observe(far, None)
    assert ex.hostile_near(4) and not ex.hostile_near(3)
    x, y = ex.memory.pos
    danger = ex._danger(far, ("use", "collect_rock"))
    assert danger[(x + 2, y + 2)] == 9.0 and danger[(x + 2, y + 1)] == 5.0 and (x, y) not in danger
    # Hunting it with health to spare: its cells cost nothing extra.
    assert ex._danger(far, ("use", "defeat_creeper")) == {}


def test_the_map_keeps_the_ground_under_a_declared_creature_and_expects_a_move_into_a_deadly_cell():
    catalog = _mob_game()
    mem = WorldMemory(MOB_CELLS, ("ground",), catalog.knowledge)
    mem.observe(_view_with({(3, 2): "creeper", (2, 3): "magma"}), None)
    x, y = mem.pos
    assert mem.creatures == {(x + 1, y): MOB_CELLS.index("creeper")}
    assert mem.name_at((x + 1, y)) == "creeper" and int(mem.static[x + 1, y]) == MOB_CELLS.index("ground")
    # A step down into the magma (the game lets it happen): the screen moves with the agent.
    mem.observe(_view_with({(3, 1): "creeper", (2, 2): "magma"}), "move_down")
    assert mem.pos == (x, y + 1)


def test_the_idle_subgoal_stocks_what_the_game_names_and_none_where_it_names_nothing():
    from agent.loop.runner import _idle_subgoal
    from envs.crafter import crafter_catalog

    crafter = crafter_catalog()
    assert _idle_subgoal({"wood": 4}, crafter).skill == "collect_wood"
    assert _idle_subgoal({"wood": 5, "stone": 2}, crafter).skill == "collect_stone"
    assert _idle_subgoal({"wood": 9, "stone": 9}, crafter).skill == "collect_stone"  # all stocked: the last
    assert _idle_subgoal({}, _catalog()) is None
