"""The skill catalog is Crafter's own rules, and the planner's chains are executable."""

import pytest

from agent.planners.planner import PlanContext, SymbolicPlanner
from envs.catalog import Skill
from envs.crafter import crafter_catalog, game_data
from envs.errors import UnknownTaskError
from envs.tasks import OPEN_ENDED, resolve_task, suites


@pytest.fixture(scope="module")
def catalog():
    return crafter_catalog()


def fresh_inventory(catalog):
    return {k: v["initial"] for k, v in catalog.items.items()}


def test_every_crafter_achievement_is_a_skill(catalog):
    assert set(catalog.names) == set(game_data()["achievements"])


def test_requirements_come_from_data_yaml(catalog):
    data = game_data()
    assert catalog["make_stone_pickaxe"].consumes == data["make"]["stone_pickaxe"]["uses"]
    assert catalog["make_stone_pickaxe"].nearby == tuple(data["make"]["stone_pickaxe"]["nearby"])
    assert catalog["collect_iron"].requires == data["collect"]["iron"]["require"]
    assert catalog["place_table"].consumes == data["place"]["table"]["uses"]


def test_categories(catalog):
    assert catalog["collect_wood"].category == "gather"
    assert catalog["place_table"].category == "build"
    assert catalog["make_wood_pickaxe"].category == "craft"
    assert catalog["defeat_zombie"].category == "combat"
    assert catalog["collect_drink"].category == "survive"  # it restores a vital
    assert catalog["wake_up"].category == "survive"


def test_attempt_budgets_come_from_the_game_catalog(catalog):
    from agent.loop.runner import segment_budget

    assert segment_budget(catalog["eat_plant"]) == catalog["eat_plant"].budget == 2_000  # a sapling ripens slowly
    assert segment_budget(catalog["collect_wood"]) == catalog["collect_wood"].budget == 600
    assert segment_budget(catalog["collect_iron"]) == 1_200  # a mountain resource, by kind
    assert all(s.budget is not None for s in catalog)  # Crafter gives every skill its figure


def test_a_skill_whose_game_gives_no_budget_gets_the_runner_default():
    from agent.loop.runner import DEFAULT_BUDGET, segment_budget

    assert segment_budget(Skill("collect_oak_log", "gather", target=("oak_log",))) == DEFAULT_BUDGET


def test_each_skill_names_the_actions_that_can_serve_it(catalog):
    moves = {a for a in game_data()["actions"] if a.startswith("move_")}
    assert catalog["collect_wood"].actions == moves | {"noop", "do"}  # no table to eat the wood, no sleep
    assert catalog["place_table"].actions == moves | {"noop", "place_table"}
    assert catalog["make_wood_pickaxe"].actions == moves | {"noop", "make_wood_pickaxe"}
    assert catalog["wake_up"].actions == moves | {"noop", "sleep"}
    assert all(s.actions <= set(game_data()["actions"]) for s in catalog)


def test_suites_split_single_and_long_horizon(catalog):
    s = suites(catalog)
    assert "make_iron_pickaxe" in s["long_horizon"] and "collect_diamond" in s["long_horizon"]
    assert "collect_wood" in s["single"]
    assert s["benchmark"] == [OPEN_ENDED]


def test_unknown_task_names_the_choices(catalog):
    with pytest.raises(UnknownTaskError, match="make_stone_pickaxe"):
        resolve_task("make_golden_apple", catalog)


def simulate(catalog, plan, inventory):
    """Apply each subgoal's rules; fail if one is not executable when its turn comes."""
    inv, placed = dict(inventory), set()
    for sub in plan:
        skill = catalog[sub.skill]
        assert all(inv.get(i, 0) >= n for i, n in skill.requires.items()), (sub.skill, inv)
        assert all(c in placed for c in skill.nearby), (sub.skill, placed)
        for i, n in skill.consumes.items():
            inv[i] -= n
        for i, n in skill.gives.items():
            inv[i] = inv.get(i, 0) + n
        if skill.places:
            placed.add(skill.places)
    return inv


@pytest.mark.parametrize("goal", ["make_stone_pickaxe", "make_iron_pickaxe", "collect_diamond",
                                  "make_iron_sword", "place_furnace"])
def test_symbolic_plan_is_executable_in_order(catalog, goal):
    planner = SymbolicPlanner(catalog)
    ctx = PlanContext(resolve_task(goal, catalog), fresh_inventory(catalog))
    plan = planner.plan(ctx).subgoals
    assert plan[-1].skill == goal
    simulate(catalog, plan, fresh_inventory(catalog))


def test_planner_replans_from_the_current_inventory(catalog):
    planner = SymbolicPlanner(catalog)
    inv = fresh_inventory(catalog) | {"wood_pickaxe": 1, "wood": 3}
    ctx = PlanContext(resolve_task("make_stone_pickaxe", catalog), inv, known=frozenset({"table"}))
    assert [s.skill for s in planner.plan(ctx).subgoals] == ["collect_stone", "make_stone_pickaxe"]


def test_survival_need_pre_empts_the_task(catalog):
    planner = SymbolicPlanner(catalog)
    inv = fresh_inventory(catalog) | {"drink": 1}
    ctx = PlanContext(resolve_task("make_stone_pickaxe", catalog), inv)
    assert planner.plan(ctx).subgoals[0].skill == "collect_drink"


def test_nights_are_spent_in_a_shelter_rested_or_not(catalog):
    night = catalog.knowledge.night

    planner = SymbolicPlanner(catalog)
    rested = fresh_inventory(catalog)  # energy full
    task = resolve_task(OPEN_ENDED, catalog)
    assert planner.plan(PlanContext(task, rested, daylight=night / 2)).subgoals[0].skill == "wake_up"
    assert planner.plan(PlanContext(task, rested, daylight=1.0)).subgoals[0].skill != "wake_up"
    thirsty = rested | {"drink": 1}  # a vital that cannot wait still goes first
    assert planner.plan(PlanContext(task, thirsty, daylight=night / 2)).subgoals[0].skill == "collect_drink"


def test_open_ended_task_starts_with_the_tech_tree(catalog):
    planner = SymbolicPlanner(catalog)
    ctx = PlanContext(resolve_task(OPEN_ENDED, catalog), fresh_inventory(catalog))
    assert planner.plan(ctx).subgoals[0].skill == "collect_wood"
