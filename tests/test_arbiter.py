"""The arbiter: who acts on a subgoal. Its trust in the fast path pools the gate's held-out
measurement with what the fast path does live; danger keeps the fast path out; a skill the
gate never measured stays slow. Unit tests on the rule, and the real game through the runner."""

from agent.loop.arbiter import ADEQUATE, COST_TRIES, Arbiter
from agent.loop.fast_path import FastPolicy
from agent.loop.runner import Runner
from envs import make_env
from envs.tasks import resolve_task
from memory.protocol import FastPath, Measured, Proposal
from memory.registry import ExpertRef

CATALOG = make_env("crafter").catalog
WOOD = CATALOG["collect_wood"]


class Stubborn:
    """A fast path covering gather, which the gate passed (rate 1.0 on `evidence` attempts),
    and which in play only stands still: the progress monitor hands over after a few steps."""

    def __init__(self, evidence: int = 1, version=("gather", 1)):
        self._evidence, self.version = evidence, version
        self.calls = 0

    def reset(self, seed, world=None):
        pass

    def covers(self, category, level="action"):
        return level == "action" and category == "gather"

    def confidence(self, name, level="action"):
        return Measured(1.0, self._evidence)

    def act(self, obs, skill):
        self.calls += 1
        return "noop"

    def done(self):
        return False

    def propose(self, context, category):
        return None


def test_every_fast_path_implements_the_one_protocol():
    from memory.plan_cache import PlanCache
    from memory.retrieval import SkillLibrary

    env = make_env("crafter")
    library = SkillLibrary(len(env.cell_names), list(env.catalog.items), env.action_names)
    for fast in (Stubborn(), _policy(), PlanCache(), library):
        assert isinstance(fast, FastPath), type(fast).__name__


def test_trust_pools_the_gate_with_live_attempts():
    arbiter = Arbiter(Stubborn(evidence=2))
    assert arbiter.trust(WOOD) == 1.0 and arbiter.path_for(WOOD) == "fast"
    arbiter.record(WOOD, "failure")
    assert arbiter.trust(WOOD) == 2 / 3
    arbiter.record(WOOD, "interrupted")  # danger or a survival need: no verdict on the skill
    assert arbiter.trust(WOOD) == 2 / 3
    arbiter.record(WOOD, "timeout")
    assert arbiter.trust(WOOD) == 2 / 4 and arbiter.path_for(WOOD) == "fast"  # ADEQUATE is 0.5
    arbiter.record(WOOD, "failure")
    assert arbiter.trust(WOOD) < ADEQUATE and arbiter.path_for(WOOD) == "slow"
    arbiter.record(WOOD, "success")
    assert arbiter.trust(WOOD) == 3 / 6


def test_a_newly_loaded_fast_path_starts_with_a_clean_live_record():
    arbiter = Arbiter(Stubborn())
    arbiter.record(WOOD, "failure")
    arbiter.record(WOOD, "failure")
    assert arbiter.path_for(WOOD) == "slow"
    arbiter.fast = Stubborn(version=("gather", 2))  # a new expert was promoted
    assert arbiter.path_for(WOOD) == "fast"


def test_danger_and_uncovered_categories_keep_the_slow_path():
    arbiter = Arbiter(Stubborn())
    assert arbiter.path_for(WOOD, danger=True) == "slow"
    assert arbiter.path_for(CATALOG["place_table"]) == "slow"  # build: no expert
    assert Arbiter().path_for(WOOD) == "slow"  # no fast path at all


def _policy(*refs: ExpertRef, plans: tuple[ExpertRef, ...] = ()) -> FastPolicy:
    """A FastPolicy with the registry's records only (the trust and cost rules): no base to load."""
    fast = FastPolicy.__new__(FastPolicy)
    fast.index = {r.category: i for i, r in enumerate(refs)}
    fast.experts = {r.category: r for r in refs}
    fast.category_of = {s.name: s.category for s in CATALOG}
    fast.plan_experts = {r.category: r for r in plans}
    fast.plans, fast.version = None, 1
    return fast


def test_an_expert_trusts_only_the_skills_its_gate_measured():
    fast = _policy(ExpertRef("gather", "x", 1, {"collect_wood": 0.75}, {"collect_wood": 4}))
    assert fast.confidence("collect_wood") == Measured(0.75, 4)
    stone = CATALOG["collect_stone"]  # same category, never measured by the gate
    assert fast.confidence("collect_stone") == Measured(0.0, 0)
    assert Arbiter(fast).path_for(stone) == "slow"
    fast.experts = {"gather": ExpertRef("gather", "x", 1)}  # promoted with no gate (a baseline)
    assert fast.confidence("collect_stone") == Measured(1.0, 1)


def test_live_failures_in_the_game_move_the_skill_back_to_the_slow_path():
    env = make_env("crafter")
    fast = Stubborn()
    runner = Runner(env, arbiter=Arbiter(fast))
    task = resolve_task("collect_wood", env.catalog)
    first, second, third = runner.run(task, seeds=[0, 1, 2])
    # Gate 1/1, then live: fail (1/2, still adequate) -> fail (1/3) -> slow from then on.
    assert first.paths[:2] == ["fast", "slow"] and first.corrections == 1 and first.success
    assert second.paths[:2] == ["fast", "slow"] and second.success
    assert "fast" not in third.paths and third.success and third.fast_steps == 0


def test_a_fast_segment_hands_over_the_moment_danger_arises():
    env = make_env("crafter")
    fast = Stubborn()
    runner = Runner(env, arbiter=Arbiter(fast))
    danger_after = 3

    def hostile_near(radius):  # a zombie comes close once the fast path has taken 3 steps
        return fast.calls >= danger_after

    runner.executor.hostile_near = hostile_near
    result = runner.run_episode(resolve_task("collect_wood", env.catalog), seed=0)
    assert result.outcomes[0] == ("collect_wood", "interrupted") and result.paths[0] == "fast"
    assert result.fast_steps == danger_after and result.corrections == 0
    assert set(result.paths[1:]) == {"slow"} and result.success
    assert runner.arbiter.trust(CATALOG["collect_wood"]) == 1.0  # danger is no verdict on the skill


def test_low_health_is_danger():
    env = make_env("crafter")
    runner = Runner(env)
    obs, _ = env.reset(seed=0)
    runner.executor.reset(0)
    runner.executor.observe(obs, None)
    from agent.loop.episode import EpisodeState

    state = EpisodeState(obs=obs, achievements={})
    assert not runner._danger(state)
    obs.inventory["health"] = 3
    assert runner._danger(state)


def test_forcing_one_skill_keeps_every_other_on_the_slow_path():
    arbiter = Arbiter(Stubborn(), force_fast=frozenset({"collect_stone"}))
    arbiter.record(CATALOG["collect_stone"], "failure")
    arbiter.record(CATALOG["collect_stone"], "failure")  # forced: live failures do not matter
    assert arbiter.path_for(CATALOG["collect_stone"]) == "fast"
    assert arbiter.path_for(WOOD) == "slow"  # covered and trusted, but not the skill measured
    assert arbiter.path_for(CATALOG["collect_stone"], danger=True) == "slow"


def test_measure_fast_attempts_the_measured_skill_with_its_prerequisites_on_the_slow_path():
    from agent.services.evaluation import measure_fast

    class NoStats:  # measure_fast reads only what the slow path costs from the store
        def path_costs(self, game):
            return {}

    env = make_env("crafter")
    out = measure_fast(Stubborn(), NoStats(), env, ["collect_stone"], episodes=3, max_steps=400)
    # collect_wood (gather too, covered) is the slow path's: every episode reaches collect_stone,
    # whose fast attempt fails (this fast path only waits) unless danger interrupts it.
    assert out["collect_stone"]["attempts"] >= 2 and out["collect_stone"]["successes"] == 0
    # Each attempt waits until the monitor hands over or the budget (100 steps, no statistics) ends.
    assert 8 * out["collect_stone"]["attempts"] <= out["collect_stone"]["steps"] <= 100 * out["collect_stone"]["attempts"]
    runner = Runner(env, arbiter=Arbiter(Stubborn(), force_fast=frozenset({"collect_stone"})))
    result = runner.run_episode(resolve_task("collect_stone", env.catalog, 400), seed=0)
    fast = [name for (name, _), path in zip(result.outcomes, result.paths) if path == "fast"]
    assert set(fast) == {"collect_stone"} and result.success


def test_a_fast_attempt_gets_budget_factor_times_the_mean_slow_steps():
    arbiter = Arbiter(Stubborn(), slow_mean_steps={"collect_wood": 40.0})
    assert arbiter.fast_budget(WOOD, slow_budget=600) == int(1.5 * 40 + 20)
    arbiter.budget_factor = 3.0
    assert arbiter.fast_budget(WOOD, slow_budget=100) == 100  # never more than the slow path's
    assert arbiter.fast_budget(CATALOG["place_table"], slow_budget=600) == 100  # no statistics yet


def test_a_fast_path_that_succeeds_at_too_high_a_cost_loses_the_subgoal():
    """collect_wood takes the slow path 6 steps: a fast path that always succeeds but in 20
    steps costs 3.3× that, over the limit (no worse than the executor, 1×), once COST_TRIES
    attempts have shown it."""
    arbiter = Arbiter(Stubborn(evidence=4), slow_mean_steps={"collect_wood": 6.0}, max_cost=2.0)
    for _ in range(COST_TRIES - 1):
        arbiter.record(WOOD, "success", 20)
        assert arbiter.path_for(WOOD) == "fast"  # too few attempts to judge the cost
    arbiter.record(WOOD, "success", 20)
    assert arbiter.trust(WOOD) == 1.0 and not arbiter.affordable(WOOD) and arbiter.path_for(WOOD) == "slow"
    cheap = Arbiter(Stubborn(evidence=4), slow_mean_steps={"collect_wood": 6.0}, max_cost=2.0)
    for steps, outcome in ((8, "success"), (10, "success"), (14, "failure")):  # 10.7 + 1/3 × 6 = 12.7 > 12
        cheap.record(WOOD, outcome, steps)
    assert cheap.path_for(WOOD) == "slow"
    cheap.record(WOOD, "success", 4)  # 9 + 1/4 × 6 = 10.5 ≤ 12
    assert cheap.path_for(WOOD) == "fast"
    assert Arbiter(Stubborn(), {"collect_wood": 6.0}, max_cost=None).affordable(WOOD)  # not weighed


def test_by_default_the_fast_path_acts_only_where_it_costs_no_more_than_the_executor():
    """Steps and seconds: 7 steps a subgoal against the executor's 6 is worse; so are as many
    steps in twice the seconds (a policy's forward pass against a breadth-first search)."""
    arbiter = Arbiter(Stubborn(evidence=0), {"collect_wood": 6.0}, {"collect_wood": 0.01})
    for _ in range(COST_TRIES):
        arbiter.record(WOOD, "success", 7, 0.005)
    assert not arbiter.affordable(WOOD)
    same_steps = Arbiter(Stubborn(evidence=0), {"collect_wood": 6.0}, {"collect_wood": 0.01})
    for _ in range(COST_TRIES):
        same_steps.record(WOOD, "success", 6, 0.02)
    assert not same_steps.affordable(WOOD)
    cheaper = Arbiter(Stubborn(evidence=0), {"collect_wood": 6.0}, {"collect_wood": 0.01})
    for _ in range(COST_TRIES):
        cheaper.record(WOOD, "success", 5, 0.008)
    assert cheaper.affordable(WOOD) and cheaper.path_for(WOOD) == "fast"


def test_the_gates_measured_cost_counts_before_any_live_attempt():
    """An expert whose held-out attempts at the gate cost 3.3× the slow path's steps starts on
    the slow path; one whose gate attempts were cheap starts fast, until live attempts say
    otherwise (the two are pooled)."""
    fast = _policy(ExpertRef("gather", "x", 1, {"collect_wood": 1.0}, {"collect_wood": 4}, {"collect_wood": 80}))
    assert fast.confidence("collect_wood") == Measured(1.0, 4, 80)
    assert Arbiter(fast, {"collect_wood": 6.0}, max_cost=2.0).path_for(WOOD) == "slow"  # 20 steps a subgoal > 2 × 6
    fast.experts["gather"] = ExpertRef("gather", "x", 1, {"collect_wood": 0.75}, {"collect_wood": 4},
                                       {"collect_wood": 30})
    arbiter = Arbiter(fast, {"collect_wood": 6.0}, max_cost=2.0)
    assert arbiter.path_for(WOOD) == "fast"  # 7.5 + 1/4 × 6 = 9 ≤ 12
    for _ in range(4):
        arbiter.record(WOOD, "success", 30)
    assert arbiter.path_for(WOOD) == "slow"  # (30 + 120) / 8 + 1/8 × 6 = 19.5 > 12
    fast.experts["gather"] = ExpertRef("gather", "x", 1, {"collect_wood": 1.0}, {"collect_wood": 4})
    assert fast.confidence("collect_wood").steps is None  # a store whose gate did not count steps: live alone
    assert Arbiter(fast, {"collect_wood": 6.0}).path_for(WOOD) == "fast"


class Proposer(Stubborn):
    """A plan-level memory for craft tasks that always proposes `subgoal` with `p`."""

    def __init__(self, subgoal="collect_wood", p=0.99, rate=1.0, attempts=4):
        super().__init__()
        self.subgoal, self.p, self.gate = subgoal, p, Measured(rate, attempts)

    def covers(self, category, level="action"):
        return level == "plan" and category == "craft"

    def confidence(self, name, level="action"):
        return self.gate if level == "plan" and name == "make_wood_pickaxe" else Measured()

    def propose(self, context, category):
        return Proposal((self.subgoal,), self.p)


def test_the_memory_proposes_only_for_measured_tasks_it_is_sure_of():
    context = {"task": "make_wood_pickaxe"}
    assert Arbiter(Proposer()).propose("make_wood_pickaxe", "craft", context).subgoals == ("collect_wood",)
    assert Arbiter(Proposer()).propose("make_stone_pickaxe", "craft", context) is None  # novel task
    assert Arbiter(Proposer()).propose("collect_wood", "gather", context) is None  # not covered
    assert Arbiter(Proposer(p=0.45)).propose("make_wood_pickaxe", "craft", context) is None  # unsure
    assert Arbiter(Proposer(rate=0.25)).propose("make_wood_pickaxe", "craft", context) is None  # gate
    assert Arbiter(Proposer(rate=0.0), force_plan=True).propose("make_wood_pickaxe", "craft", context)


def test_the_threshold_calibrated_for_a_task_raises_the_arbiters_own():
    import math

    context = {"task": "make_wood_pickaxe"}

    def proposer(p, sure):
        memory = Proposer(p=p)
        memory.gate = Measured(1.0, 4, sure=sure)
        return memory

    assert Arbiter(proposer(0.8, 0.9)).propose("make_wood_pickaxe", "craft", context) is None
    assert Arbiter(proposer(0.95, 0.9)).propose("make_wood_pickaxe", "craft", context) is not None
    assert Arbiter(proposer(0.55, 0.3)).propose("make_wood_pickaxe", "craft", context) is not None
    assert Arbiter(proposer(0.45, 0.3)).propose("make_wood_pickaxe", "craft", context) is None  # the floor holds
    assert Arbiter(proposer(0.55, None)).propose("make_wood_pickaxe", "craft", context) is not None  # uncalibrated
    # No threshold was enough at calibration: the planner keeps the task, even when forced.
    assert Arbiter(proposer(1.0, math.inf), force_plan=True).propose("make_wood_pickaxe", "craft", context) is None


def test_failed_proposals_move_a_task_back_to_the_planner():
    arbiter = Arbiter(Proposer(attempts=2))
    arbiter.record_plan("make_wood_pickaxe", "failure")
    arbiter.record_plan("make_wood_pickaxe", "interrupted")  # no verdict on the choice
    assert arbiter.plan_trust("make_wood_pickaxe") == 2 / 3
    arbiter.record_plan("make_wood_pickaxe", "timeout")
    arbiter.record_plan("make_wood_pickaxe", "failure")
    assert arbiter.propose("make_wood_pickaxe", "craft", {}) is None
