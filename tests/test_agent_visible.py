"""The agent acts on what the player sees, never on the engine's state (DESIGN.md, "Contracts").

For a whole episode, every attribute of Crafter's engine is locked: the raw env, its world, the
world's objects (the player included) and its views. Reading one — a method or a plain
attribute, through `env._game` or through a reference kept from earlier — fails the test. Only
the env adapter's `reset` and `step` (envs/crafter.py) open the lock: they draw the screen and
read off what it shows. Everything else runs locked: the runner, the world memory, the
arbiter, the fast path, retrieval, the plan cache, the symbolic and LLM planners, the session
that wires them, and the store that records them.

Two mutations that read the engine outside `executor.act` and `planner.plan` passed the lock
this file held before (issue 19, item 15); each now has a test showing the lock catches it.
"""

import ast
import contextlib
import pathlib

import crafter
import crafter.engine as engine
import crafter.objects as objects
import pytest
import torch

from agent.loop.arbiter import Arbiter
from agent.loop.executor import DeliberateExecutor
from agent.loop.fast_path import FastPolicy
from agent.planners.llm_planner import LLMOptions, make_planner
from agent.services.memory_modes import MemoryFastPath
from agent.loop.runner import Runner
from agent.services.session import RunSpec, run_episodes
from agent.planners.sim_llm import SIMULATED_MODEL, SimulatedLLM
from envs import make_env
from envs.crafter import CrafterEnv
from envs.tasks import resolve_task
from memory.base_io import BASE_DIR, game_spec, save_base
from memory.expert_io import save_expert
from memory.inject import add_expert, inject, wrappers
from memory.lora import LoraConfig
from memory.policy import PolicyConfig, build_policy
from memory.registry import ExpertRef
from memory.store import Store

AGENT_DIR = pathlib.Path(__file__).resolve().parents[1] / "agent"
# Every class of the engine an agent could reach; objects.Object covers the player, the
# creatures, arrows, plants and fences, engine.World the adapter's ordered subclass too.
ENGINE = (crafter.Env, engine.World, engine.Textures, engine.GlobalView, engine.UncoverView,
          engine.LocalView, engine.ItemView, engine.SemanticView, objects.Object)


class Lock:
    def __init__(self):
        self.armed = False
        self.open = 0  # depth of adapter calls (reset, step) in progress
        self.breaches: list[str] = []

    @property
    def locked(self) -> bool:
        return self.armed and self.open == 0


@contextlib.contextmanager
def engine_locked(monkeypatch):
    """Lock every attribute read of the engine until the block ends, except inside
    CrafterEnv.reset and CrafterEnv.step."""
    lock = Lock()
    for cls in ENGINE:
        original = cls.__getattribute__

        def guarded(self, name, _original=original):
            if lock.locked:
                where = f"{type(self).__name__}.{name}"
                lock.breaches.append(where)
                raise AssertionError(f"agent code read the engine: {where}")
            return _original(self, name)

        monkeypatch.setattr(cls, "__getattribute__", guarded)
    for method in ("reset", "step"):
        original = getattr(CrafterEnv, method)

        def opened(self, *args, _original=original, **kwargs):
            lock.open += 1
            try:
                return _original(self, *args, **kwargs)
            finally:
                lock.open -= 1

        monkeypatch.setattr(CrafterEnv, method, opened)
    lock.armed = True
    try:
        yield lock
    finally:
        lock.armed = False


def play(runner, task="make_stone_pickaxe", seed=2, max_steps=None):
    return runner.run_episode(resolve_task(task, runner.catalog, max_steps), seed)


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path}/peam.db") as opened:
        opened.sync_skills(make_env("crafter").catalog)
        yield opened


def recorded_runner(store, **kw) -> Runner:
    run_id = store.start_run(env="crafter", task="lock", planner="symbolic", memory_mode="none", config={})
    return Runner(make_env("crafter"), recorder=store, run_id=run_id, **kw)


# ---- the whole episode, every part of the agent locked out ---------------------------------------

def test_the_slow_path_and_the_store_never_read_the_engine(monkeypatch, store):
    runner = recorded_runner(store)
    with engine_locked(monkeypatch) as lock:
        result = play(runner)
    assert lock.breaches == []
    assert result.success and result.steps > 0


@pytest.mark.parametrize("mode", ["retrieval", "plan-cache"])
def test_a_memory_built_from_the_store_never_reads_the_engine(monkeypatch, store, tmp_path, mode):
    play(recorded_runner(store))  # experience to remember, gathered unlocked
    runner = recorded_runner(store)
    with engine_locked(monkeypatch) as lock:
        runner.arbiter = MemoryFastPath(mode, store, runner.env, tmp_path / "models").refresh()
        runner.arbiter.force_fast = runner.arbiter.force_plan = True  # use it wherever it covers
        result = play(runner)
    assert lock.breaches == []
    assert runner.arbiter.fast is not None and result.memory_decisions + result.fast_steps > 0


def _fast_path(models_dir, env) -> FastPolicy:
    """A fast path of a tiny base with a trained-looking expert per category it acts for."""
    torch.manual_seed(0)
    policy = build_policy(PolicyConfig(d_model=32, n_layers=1, n_heads=4), len(env.cell_names),
                          len(env.catalog.items), len(env.action_names), env.catalog.names)
    save_base(policy, models_dir / BASE_DIR, game_spec("crafter"))
    inject(policy, LoraConfig(routing="category"))
    refs = []
    for category in ("gather", "build", "craft"):
        add_expert(policy, category)
        with torch.no_grad():
            for layer in wrappers(policy).values():
                layer.lora_B[category].weight.normal_(0, 0.5)
        save_expert(policy, category, models_dir / category)
        refs.append(ExpertRef(category, str(models_dir / category)))
    return FastPolicy(models_dir, refs, seed=0)


def test_the_fast_path_and_the_arbiter_never_read_the_engine(monkeypatch, tmp_path):
    env = make_env("crafter")
    runner = Runner(env, arbiter=Arbiter(_fast_path(tmp_path, env), force_fast=True))
    with engine_locked(monkeypatch) as lock:
        result = play(runner, "make_wood_pickaxe", max_steps=150)
    assert lock.breaches == []
    assert result.fast_steps > 0 and result.corrections > 0  # the slow path took over, locked too


def test_an_llm_planner_never_reads_the_engine(monkeypatch):
    env = make_env("crafter")
    with SimulatedLLM(delay_s=0.0) as llm:
        planner = make_planner(f"openai:{llm.url}", env.catalog, options=LLMOptions(model=SIMULATED_MODEL))
        runner = Runner(env, planner)
        with engine_locked(monkeypatch) as lock:
            result = play(runner, "make_wood_pickaxe")
    assert lock.breaches == []
    assert result.success and result.planner_calls > 0


def test_a_whole_run_with_auto_consolidation_never_reads_the_engine(monkeypatch, store, tmp_path):
    monkeypatch.setenv("PEAM_HOME", str(tmp_path))
    spec = RunSpec(task="make_wood_pickaxe", episodes=2, seed=3, memory="peam", consolidate="auto")
    with engine_locked(monkeypatch) as lock:
        results = run_episodes(spec, store=store)
    assert lock.breaches == []
    assert [r.success for r in results] == [True, True]


# ---- the lock catches what the old one let through ----------------------------------------------

def test_the_lock_catches_the_runner_reading_the_players_position(monkeypatch):
    runner = Runner(make_env("crafter"))
    context = Runner._context

    def peeking(self, task, state):  # the mutation: the runner looks up where the player stands
        self.peeked = self.env._game._player.pos
        return context(self, task, state)

    monkeypatch.setattr(Runner, "_context", peeking)
    with engine_locked(monkeypatch) as lock:
        with pytest.raises(AssertionError, match="read the engine: Env._player"):
            play(runner)
    assert lock.breaches[:1] == ["Env._player"]


def test_the_lock_catches_the_executor_reading_the_map_through_a_kept_reference(monkeypatch):
    env = make_env("crafter")
    runner = Runner(env)
    kept = {}
    reset, act = CrafterEnv.reset, DeliberateExecutor.act

    def reset_keeping_the_world(self, **kw):  # smuggled out while the adapter held it open
        out = reset(self, **kw)
        kept["world"] = self._game._world
        return out

    def peeking(self, obs, skill):  # the mutation: the executor reads the whole map
        kept["map"] = kept["world"]._mat_map
        return act(self, obs, skill)

    monkeypatch.setattr(CrafterEnv, "reset", reset_keeping_the_world)
    monkeypatch.setattr(DeliberateExecutor, "act", peeking)
    with engine_locked(monkeypatch) as lock:
        with pytest.raises(AssertionError, match="read the engine: OrderedWorld._mat_map"):
            play(runner)
    assert lock.breaches == ["OrderedWorld._mat_map"]
    assert "map" not in kept


def test_the_lock_catches_a_peek_at_the_map_a_view_or_a_creature(monkeypatch):
    env = make_env("crafter")
    env.reset(seed=0)
    game = env._game
    world, player = game._world, game._player
    with engine_locked(monkeypatch) as lock:
        for peek in (lambda: world[(0, 0)], lambda: game._sem_view(), lambda: player.inventory,
                     lambda: world.objects, lambda: game._local_view):
            with pytest.raises(AssertionError, match="read the engine"):
                peek()
        env.step(0)  # the adapter itself may
    assert lock.breaches == ["OrderedWorld.area", "Env._sem_view", "Player.inventory",
                             "OrderedWorld.objects", "Env._local_view"]


def test_agent_package_never_imports_the_game():
    """Only envs/ may import crafter or minedojo."""
    for path in AGENT_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("crafter", "minedojo"), f"{path.name} imports {name}"


# ---- the game's achievement counters reach no decision (issue 19, item 16) ----------------------

class GarbledCounters:
    """Crafter with true observations but the info dict garbled: the counters absent, or
    claiming every achievement from the first step. Only the task's verdict may change."""

    def __init__(self, how: str):
        self.env, self.how = make_env("crafter"), how

    def __getattr__(self, name):
        return getattr(self.env, name)

    def _garble(self, info):
        if self.how == "absent":
            return {}
        return {**info, "achievements": {k: 7 for k in info["achievements"]}}

    def reset(self, **kw):
        obs, info = self.env.reset(**kw)
        return obs, self._garble(info)

    def step(self, action):
        res = self.env.step(action)
        return res._replace(info=self._garble(res.info))


class ContextWatcher(Runner):
    """A runner that keeps every decision context it builds."""

    def __init__(self, env):
        super().__init__(env)
        self.contexts = []

    def _context(self, task, state):
        ctx = super()._context(task, state)
        self.contexts.append(ctx)
        return ctx


def _decisions(env):
    from agent.planners.prompts import build_messages
    from memory.plan_policy import PlanSpec, features

    runner = ContextWatcher(env)
    result = play(runner, "all_achievements", seed=4, max_steps=400)
    spec = PlanSpec.of("crafter")
    return result, [(c.as_record(), build_messages(c, env.catalog), features(c.as_record(), spec).tolist())
                    for c in runner.contexts]


@pytest.mark.parametrize("how", ["absent", "claims_all"])
def test_garbled_achievement_counters_change_no_context_prompt_or_plan_feature(how):
    true_result, true_decisions = _decisions(make_env("crafter"))
    garbled_result, garbled_decisions = _decisions(GarbledCounters(how))
    assert any(record["achieved"] for record, _, _ in true_decisions)  # the agent saw itself achieve
    assert garbled_decisions == true_decisions
    assert garbled_result.outcomes == true_result.outcomes  # segments judged from the screen too
    assert garbled_result.unlocked != true_result.unlocked  # the score alone reads the counters


def test_what_the_agent_achieved_is_what_the_game_counted_on_a_whole_game():
    env = make_env("crafter")
    runner = ContextWatcher(env)
    result = play(runner, "all_achievements", seed=90000, max_steps=1500)
    assert len(result.unlocked) >= 15
    assert sorted(runner.contexts[-1].achieved) == result.unlocked
