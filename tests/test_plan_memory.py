"""The memory that saves the slow planner: the plan cursor, the cost accounting, the plan-level
memory (trained, gated, isolated) and its baselines, on the real game and a real store."""

import numpy as np
import pytest
import torch

from agent.loop.arbiter import Arbiter
from agent.loop.fast_path import FastPolicy
from agent.planners.planner import Plan, PlanContext, Subgoal, SymbolicPlanner
from agent.loop.episode import PlanCursor
from agent.loop.runner import Runner
from envs import make_env
from envs.tasks import OPEN_ENDED, resolve_task
from memory.plan_cache import PlanCache
from memory.plan_policy import THRESHOLDS, PlanSpec, features, plan_category
from memory.store import Store

CATALOG = make_env("crafter").catalog


class Counting:
    """The symbolic planner, counted and optionally slowed down or rewritten."""

    name = "counting"

    def __init__(self, rewrite=None, delay_s: float = 0.0):
        self.inner, self.calls, self.rewrite, self.delay_s = SymbolicPlanner(CATALOG), 0, rewrite, delay_s

    def plan(self, ctx):
        import time

        self.calls += 1
        time.sleep(self.delay_s)
        plan = self.inner.plan(ctx)
        plan = Plan(plan.subgoals, calls=1, tokens=30, tokens_in=25, tokens_out=5, latency_s=self.delay_s)
        return self.rewrite(plan) if self.rewrite else plan


@pytest.fixture
def store(tmp_path):
    s = Store.open(f"sqlite:///{tmp_path}/peam.db")
    s.sync_skills(CATALOG)
    yield s
    s.close()


def _recorded(store, planner=None, **kw):
    env = make_env("crafter")
    run_id = store.start_run(env="crafter", task="t", planner="counting", memory_mode="none", config={})
    return Runner(env, planner, store, run_id, **kw)


# -- the plan cursor ----------------------------------------------------------------------------

def test_the_slow_agent_walks_its_plan_and_asks_the_planner_once():
    env = make_env("crafter")
    task = resolve_task("make_wood_pickaxe", env.catalog)
    with_cursor, without = Counting(), Counting()
    a = Runner(env, with_cursor).run_episode(task, seed=0)
    b = Runner(env, without, cursor=False).run_episode(task, seed=0)
    assert a.success and b.success and a.outcomes == b.outcomes  # the same game
    assert with_cursor.calls == a.planner_calls == 1
    assert without.calls == b.planner_calls == len(b.outcomes) == 5
    assert a.decided_by == ["planner", "cursor", "cursor", "cursor", "cursor"]


def test_the_cursor_hands_back_a_plan_whose_next_subgoal_cannot_start():
    task = resolve_task("make_wood_pickaxe", CATALOG)
    cursor = PlanCursor()
    cursor.load([Subgoal("place_table"), Subgoal("make_wood_pickaxe")])
    poor = PlanContext(task=task, inventory={"wood": 1})  # a table needs more wood
    assert cursor.next(poor, CATALOG) is None and not cursor.rest
    cursor.load([Subgoal("place_table"), Subgoal("make_wood_pickaxe")])
    rich = PlanContext(task=task, inventory={"wood": 3})
    assert cursor.next(rich, CATALOG).skill == "place_table"
    assert cursor.next(rich, CATALOG) is None  # no table remembered nearby yet
    cursor.load([Subgoal("make_wood_pickaxe")])
    assert cursor.next(PlanContext(task=task, inventory={"wood": 1}, known=frozenset({"table"})), CATALOG)


def test_every_segment_records_who_chose_it_what_it_saw_and_what_the_planner_cost(store):
    runner = _recorded(store, Counting(delay_s=0.01))
    result = runner.run_episode(resolve_task("make_wood_pickaxe", CATALOG), seed=0)
    (episode,) = store.episodes()
    assert episode.planner_calls == 1 and episode.planner_tokens_in == 25 and episode.planner_tokens_out == 5
    assert episode.planner_latency_s >= 0.01 and episode.wall_s >= episode.planner_latency_s
    assert episode.executor_s > 0 and episode.fast_s == 0 and episode.memory_decisions == 0
    segments = store.segments()
    assert [s.decided_by for s in segments] == result.decided_by
    first = segments[0]
    assert first.planner_calls == 1 and first.planner_s >= 0.01 and first.planner_tokens == 30
    assert first.context["task"] == "make_wood_pickaxe" and first.context["plan"][-1] == "make_wood_pickaxe"
    assert first.cost_s == pytest.approx(first.wall_s + first.planner_s)
    rows = {r.name: r for r in store.skill_table("crafter")}
    assert rows["collect_wood"].attempts == 3  # the planner's call is counted with the skill it chose


def test_a_plan_naming_a_skill_outside_the_catalog_is_a_counted_fallback(store):
    def rocket(plan):
        return Plan([Subgoal("build_rocket")] + plan.subgoals, calls=1)

    result = _recorded(store, Counting(rewrite=rocket)).run_episode(resolve_task("make_wood_pickaxe", CATALOG), 0)
    assert result.success and result.fallbacks == 1 and result.decided_by[0] == "fallback"
    assert store.episodes()[0].planner_fallbacks == 1


def test_an_empty_plan_for_an_unfinished_task_is_a_counted_fallback():
    result = Runner(make_env("crafter"), Counting(rewrite=lambda p: Plan([], calls=1))).run_episode(
        resolve_task("place_table", CATALOG), seed=0)
    assert result.success and result.fallbacks >= 1


# -- what a decision is made from ---------------------------------------------------------------

def test_features_count_what_a_recipe_asks_for_and_give_an_unknown_task_no_slot():
    spec = PlanSpec.of("crafter")
    one = features({"task": "make_wood_pickaxe", "inventory": {"wood": 1}}, spec)
    two = features({"task": "make_wood_pickaxe", "inventory": {"wood": 2}}, spec)
    assert one.shape == (spec.n_features,) and (two - one).max() == 1.0  # "at least 2 wood" is one unit
    assert features({"task": "make_wood_pickaxe", "inventory": {"wood": 40}}, spec)[
        len(spec.tasks) + len(spec.items):].sum() >= THRESHOLDS
    unknown = features({"task": "make_golden_apple"}, spec)
    assert unknown[:len(spec.tasks)].sum() == 0
    ctx = PlanContext(task=resolve_task(OPEN_ENDED, CATALOG), inventory={"wood": 2}, known=frozenset({"table"}))
    assert features(ctx.as_record(), spec)[spec.tasks.index(OPEN_ENDED)] == 1.0
    assert plan_category(OPEN_ENDED, CATALOG) == "open" and plan_category("make_wood_pickaxe", CATALOG) == "craft"


# -- the plan-level memory, trained and gated ------------------------------------------------------

@pytest.fixture(scope="module")
def practised(tmp_path_factory):
    """A store where the slow agent practised make_wood_pickaxe and make_wood_sword, and the
    plan job for craft tasks ran through the real pipeline and gate."""
    from agent.services.evaluation import run_job
    from consolidation.plan_pipeline import PlanJobConfig
    from consolidation.plan_training import PlanTrainingConfig
    from consolidation.queue import enqueue
    from consolidation.worker import Worker

    root = tmp_path_factory.mktemp("plans")
    store = Store.open(f"sqlite:///{root}/peam.db")
    store.sync_skills(CATALOG)
    runner = _recorded(store)
    for j, name in enumerate(("make_wood_pickaxe", "make_wood_sword")):
        runner.run(resolve_task(name, CATALOG), seeds=[100 * j + k for k in range(10)])
    enqueue(store, game="crafter", category="craft", kind="plan", reason="test")
    config = PlanJobConfig(eval_episodes=2, forgetting_episodes=1, training=PlanTrainingConfig(seed=0))
    worker = Worker(store, lambda job, beat: run_job(store, job, beat, models_dir=root / "models",
                                                     plan_config=config), lease_s=600, name="test")
    job = worker.run_once()
    yield store, root / "models", job
    store.close()


def test_a_plan_job_trains_gates_and_promotes_a_plan_expert(practised):
    from memory.registry import promoted

    store, models, job = practised
    assert job.kind == "plan" and job.status == "promoted", (job.error, job.metrics)
    m = job.metrics
    assert m["candidate_score"] >= m["slow_score"] and m["proposals"] > 0
    (expert,) = promoted(store, "crafter", "plan")
    assert expert.category == "craft" and expert.kind == "plan"
    assert promoted(store, "crafter") == []  # no action expert was touched
    assert set(expert.metrics["skill_success"]) == {"make_wood_pickaxe", "make_wood_sword"}
    # Calibrated per task on held-out decisions: a threshold (or None) and what it stands on.
    sure, shown = expert.metrics["propose_above"], expert.metrics["calibration"]
    assert set(sure) == set(shown) == {"make_wood_pickaxe", "make_wood_sword"}
    for task, threshold in sure.items():
        above, agreed, held_out = shown[task]
        assert agreed <= above <= held_out
        assert threshold is None or agreed >= 0.95 * above


def test_the_promoted_memory_replaces_the_planners_calls_on_unseen_seeds(practised):
    from agent.services.memory_modes import expert_fast_path

    store, models, _ = practised
    fast = expert_fast_path("peam", store, "crafter", models)
    env = make_env("crafter")
    slow = Counting()
    memory_planner = Counting()
    task = resolve_task("make_wood_pickaxe", CATALOG)
    seeds = [5000, 5001, 5002]
    before = Runner(env, slow).run(task, seeds)
    after = Runner(env, memory_planner, arbiter=Arbiter.from_store(fast, store, "crafter")).run(task, seeds)
    assert sum(r.success for r in after) >= sum(r.success for r in before)
    assert memory_planner.calls < slow.calls == 3
    assert all(r.memory_decisions > 0 for r in after)


def test_the_fast_path_reports_each_tasks_calibrated_threshold(practised):
    import math
    from dataclasses import replace

    from memory.registry import promoted, ref_of

    store, models, _ = practised
    (row,) = promoted(store, "crafter", "plan")
    ref = ref_of(row)
    calibrated = {"make_wood_pickaxe": 0.9, "make_wood_sword": None}
    fast = FastPolicy(models, [], plan_experts=[replace(ref, propose_above=calibrated)])
    assert fast.confidence("make_wood_pickaxe", "plan").sure == 0.9
    assert fast.confidence("make_wood_sword", "plan").sure == math.inf  # none was enough
    older = FastPolicy(models, [], plan_experts=[replace(ref, propose_above=None)])  # trained before calibration
    assert older.confidence("make_wood_pickaxe", "plan").sure is None


def test_calibration_picks_the_lowest_threshold_whose_held_out_proposals_agree():
    from consolidation.plan_training import calibrate

    # Task a: sure answers agree, unsure ones (0.55) often do not. Task b: one disagreement in
    # 5, at 0.7. Task c: never held out. Decision 12 is a training one: calibration does not see it.
    confidence = torch.tensor([0.99] * 9 + [0.55] * 3 + [0.6] + [0.99] * 4 + [0.7] + [0.9])
    agrees = torch.tensor([True] * 9 + [False, False, True] + [False] + [True] * 4 + [False] + [True])
    tasks = ["a"] * 13 + ["b"] * 5 + ["c"]
    held_out = [i for i in range(18) if i != 12]
    sure, shown = calibrate(confidence, agrees, tasks, held_out, target=0.95)
    assert sure == {"a": 0.6, "b": 0.8, "c": 0.5}
    assert shown == {"a": [9, 9, 12], "b": [4, 4, 5], "c": [0, 0, 0]}
    sure, _ = calibrate(confidence, agrees, tasks, held_out, target=0.75)
    assert sure == {"a": 0.5, "b": 0.5, "c": 0.5}  # 10 of 12 agree at 0.5, and 4 of 5
    never = torch.zeros(19, dtype=torch.bool)  # nothing the expert chose was the planner's
    assert calibrate(confidence, never, tasks, held_out, target=0.95)[0] == {"a": None, "b": None, "c": 0.5}


def test_a_novel_task_goes_to_the_planner(practised):
    from agent.services.memory_modes import expert_fast_path

    store, models, _ = practised
    fast = expert_fast_path("peam", store, "crafter", models)
    planner = Counting()
    result = Runner(make_env("crafter"), planner, arbiter=Arbiter.from_store(fast, store, "crafter")).run_episode(
        resolve_task("make_stone_pickaxe", CATALOG), seed=0)  # craft, but never measured at the gate
    assert result.memory_decisions == 0 and planner.calls >= 1


def test_a_plan_expert_proposes_only_what_the_planner_chose_for_that_task(practised):
    from dataclasses import replace

    from memory.plan_policy import PlanMemory
    from memory.registry import promoted, ref_of

    store, models, _ = practised
    (row,) = promoted(store, "crafter", "plan")
    ref = ref_of(row)
    assert {task: set(names) for task, names in ref.support.items()} == {
        "make_wood_pickaxe": {"collect_wood", "place_table", "make_wood_pickaxe"},
        "make_wood_sword": {"collect_wood", "place_table", "make_wood_sword"}}
    ready = {"task": "make_wood_pickaxe", "inventory": {"wood": 3}, "known": ["table", "tree"],
             "in_sight": ["table", "tree"], "previous": "collect_wood"}
    # Its support shrunk to one subgoal, the expert can only ever answer that one, with certainty.
    memory = PlanMemory(models, [replace(ref, support={"make_wood_pickaxe": ["collect_wood"]})])
    assert memory.propose(ready, "craft") == ("collect_wood", pytest.approx(1.0))
    # The sibling task never appears in that support: novel to this expert, the planner's.
    assert memory.propose({**ready, "task": "make_wood_sword"}, "craft") is None
    unmasked = PlanMemory(models, [replace(ref, support=None)])  # an expert from before supports
    assert unmasked.propose({**ready, "task": "make_wood_sword"}, "craft") is not None


def test_the_memory_must_be_surer_of_an_open_ended_proposal_than_of_a_tasks():
    from memory.columns import OPEN
    from memory.protocol import Measured, Proposal

    class Unsure:  # a memory that covers everything, measured perfect, 70% sure of each answer
        version = 0

        def covers(self, category, level="action"):
            return True

        def confidence(self, name, level="action"):
            return Measured(1.0, 10)

        def propose(self, context, category):
            return Proposal(("collect_wood",), 0.7)

    arbiter = Arbiter(fast=Unsure())
    assert arbiter.propose("make_wood_pickaxe", "craft", {}) is not None  # a wrong one only fails
    assert arbiter.propose(OPEN_ENDED, OPEN, {}) is None  # a wrong one changes the whole game
    arbiter.open_plan_confidence = 0.6
    assert arbiter.propose(OPEN_ENDED, OPEN, {}) is not None


def test_training_a_plan_expert_leaves_the_base_and_other_experts_bytes_unchanged(practised, tmp_path):
    import shutil

    from consolidation.plan_training import PlanTrainingConfig, train_plan_expert
    from memory.expert_io import read_expert, sha256_of
    from memory.plan_policy import PLAN_DIR
    from memory.registry import expert_dir, promoted

    store, models, _ = practised
    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    (craft,) = promoted(store, "crafter", "plan")
    craft_file = expert_dir(copy, craft.path)  # registered relative to the models directory
    base = copy / PLAN_DIR / "base" / "model.safetensors"
    before = (sha256_of(base), sha256_of(craft_file))
    cand = train_plan_expert(store, models_dir=copy, game="crafter", catalog=CATALOG, category="craft",
                             tag="again", current_path=craft_file, config=PlanTrainingConfig(epochs=2))
    assert (sha256_of(base), sha256_of(craft_file)) == before
    tensors, config = read_expert(cand.path)
    assert all(".lora_A." in k or ".lora_B." in k for k in tensors) and config["peft_type"] == "LORA"
    assert not any("candidate" in k for k in tensors)  # no expert name in the keys (PEFT)


def test_the_gate_rejects_a_plan_expert_that_plays_worse_than_the_slow_agent(practised, tmp_path):
    import shutil

    from consolidation.plan_pipeline import PlanJobConfig, run_plan_pipeline
    from consolidation.plan_training import PlanTrainingConfig
    from consolidation.queue import claim, enqueue

    store, models, _ = practised
    shutil.copytree(models, tmp_path / "models")

    def evaluate(refs, tasks, n):  # the slow agent wins every task; the memory loses one
        return {t: {"episodes": n, "successes": n - (refs is not None and i == 0), "unlocked": 0,
                    "proposals": 3 if refs else 0, "proposal_successes": 3 if refs else 0, "calls": 0}
                for i, t in enumerate(tasks)}

    enqueue(store, game="crafter", category="craft", kind="plan", reason="test: worse")
    job = claim(store, "w", 600)
    outcome = run_plan_pipeline(store, job, lambda: None, evaluate=evaluate, models_dir=tmp_path / "models",
                                config=PlanJobConfig(training=PlanTrainingConfig(epochs=1)))
    assert outcome.status == "rejected" and outcome.metrics["candidate_score"] < outcome.metrics["slow_score"]


def test_a_failed_memory_choice_is_corrected_by_the_planner_and_mined_as_a_preference_pair(store, monkeypatch):
    import agent.loop.runner

    from consolidation.plan_training import plan_data
    from memory.protocol import Measured, Proposal

    class Wrong:
        """A plan memory that always proposes fighting a zombie (it fails in daylight)."""

        version = 1

        def reset(self, seed, world=None):
            pass

        def covers(self, category, level="action"):
            return level == "plan"

        def confidence(self, name, level="action"):
            return Measured(1.0, 5) if level == "plan" else Measured()

        def act(self, obs, skill):
            raise AssertionError("no action level")

        def done(self):
            return False

        def propose(self, context, category):
            return Proposal(("defeat_zombie",), 0.99)

    budget = agent.loop.runner.segment_budget  # a zombie hunt times out in 40 steps, before hunger interrupts it
    monkeypatch.setattr(agent.loop.runner, "segment_budget", lambda s: 40 if s.name == "defeat_zombie" else budget(s))
    planner = Counting()
    runner = _recorded(store, planner, arbiter=Arbiter(Wrong()))
    result = runner.run_episode(resolve_task("place_table", CATALOG), seed=0)
    assert result.decided_by[0] == "memory" and result.outcomes[0] == ("defeat_zombie", "timeout")
    assert result.decided_by[1] == "planner" and planner.calls >= 1 and result.success
    corrected = store.segments()[1]
    assert corrected.context["rejected"] == "defeat_zombie"
    data = plan_data(store, "crafter", PlanSpec.of("crafter"), CATALOG)
    spec = PlanSpec.of("crafter")
    assert len(data.chosen) >= 1 and spec.skills[int(data.rejected[0])] == "defeat_zombie"
    assert runner.arbiter.plan_trust("place_table") < 1.0  # the live tally counted the failure


# -- the baselines ------------------------------------------------------------------------------

def test_the_plan_cache_replays_a_chain_on_an_exact_match_only(store):
    _recorded(store, Counting()).run_episode(resolve_task("make_wood_pickaxe", CATALOG), seed=0)
    cache = PlanCache.from_store(store, "crafter", CATALOG)
    assert len(cache) == 1 and cache.covers("craft", "plan") and not cache.covers("craft", "action")
    start = {"task": "make_wood_pickaxe", "inventory": {"health": 9, "food": 9}}
    assert cache.propose(start, "craft").subgoals[-1] == "make_wood_pickaxe"
    assert cache.propose({**start, "inventory": {"wood": 1}}, "craft") is None  # another state: a miss
    assert cache.propose({**start, "task": "make_wood_sword"}, "craft") is None
    planner = Counting()
    replay = Runner(make_env("crafter"), planner, arbiter=Arbiter(cache)).run_episode(
        resolve_task("make_wood_pickaxe", CATALOG), seed=7)
    assert replay.success and planner.calls == 0 and replay.decided_by[0] == "memory"


def test_the_retrieval_library_recalls_the_nearest_remembered_decision(store):
    from memory.retrieval import SkillLibrary

    _recorded(store, Counting()).run_episode(resolve_task("make_wood_pickaxe", CATALOG), seed=0)
    library = SkillLibrary.for_env(store, make_env("crafter"))
    first = store.segments()[0].context
    assert library.propose(first, "craft").subgoals == ("collect_wood",)
    assert library.covers("craft", "plan") and library.confidence("make_wood_pickaxe", "plan").attempts == 1
    assert library.propose({**first, "task": "make_stone_pickaxe"}, "craft") is None


def test_the_simulated_llm_answers_the_symbolic_plan_after_its_delay():
    import time

    from agent.planners.llm_planner import LLMOptions, make_planner
    from agent.planners.sim_llm import SIMULATED_MODEL, SimulatedLLM

    task = resolve_task("make_stone_pickaxe", CATALOG)
    ctx = PlanContext(task=task, inventory={"wood": 1, "health": 9, "food": 9, "drink": 9, "energy": 9},
                      known=frozenset({"tree", "table"}),
                      achieved=frozenset({"collect_wood"}), failures={"collect_stone": 1})
    with SimulatedLLM(delay_s=0.05) as llm:
        planner = make_planner(f"openai:{llm.url}", CATALOG, options=LLMOptions(model=SIMULATED_MODEL))
        t0 = time.perf_counter()
        plan = planner.plan(ctx)
        assert time.perf_counter() - t0 >= 0.05 and llm.calls == 1
        planner.close()
    symbolic = SymbolicPlanner(CATALOG)
    assert [s.skill for s in plan.subgoals] == [s.skill for s in symbolic.chain(symbolic.next_goal(ctx), ctx)]
    assert not plan.fallback and plan.tokens_in > 50 and plan.tokens_out > 0


# -- the trigger weighs the planner's cost --------------------------------------------------------

def test_the_plan_trigger_fires_once_the_planners_seconds_pay_for_a_job(store):
    from consolidation.scoring import pending_plan_triggers

    _recorded(store, Counting(delay_s=0.05)).run(resolve_task("make_wood_pickaxe", CATALOG), seeds=[0, 1])
    fired = pending_plan_triggers(store, "crafter", job_cost_s=0.05, proposal_cost_s=1e-4)
    assert [t.category for t in fired] == ["craft"]
    assert pending_plan_triggers(store, "crafter", job_cost_s=60.0, proposal_cost_s=1e-4) == []


def test_plan_jobs_take_task_categories_and_the_open_ended_one(store):
    from consolidation.queue import QueueError, enqueue, get_job

    job = get_job(store, enqueue(store, game="crafter", category="open", kind="plan", reason="t"))
    assert job.kind == "plan" and job.target == "plans open"
    with pytest.raises(QueueError, match="unknown category 'open'"):
        enqueue(store, game="crafter", category="open", reason="an action job has no 'open' category")
    with pytest.raises(QueueError, match="task category"):
        enqueue(store, game="crafter", skill="collect_wood", kind="plan", reason="t")
    with pytest.raises(QueueError, match="unknown job kind"):
        enqueue(store, game="crafter", category="craft", kind="dream", reason="t")
