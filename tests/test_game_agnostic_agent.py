"""The agent pieces a second game needs, on tiny real things (no Node): a position the game
reports, a craft that needs no station, skills listed by game."""

from __future__ import annotations

import numpy as np

from agent.executor import DeliberateExecutor
from agent.world_memory import SIZE, WorldMemory
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
