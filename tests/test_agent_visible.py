"""The planner and the executor act on what the player sees, never on the engine's state.

While they decide, every door into Crafter's world (its map, its objects, its semantic view)
is locked: touching one fails the test. The env adapter alone may open them, to draw the
screen between decisions.
"""

import ast
import contextlib
import pathlib

import pytest

import crafter.engine as engine
from agent.runner import Runner
from envs import make_env
from envs.tasks import resolve_task

AGENT_DIR = pathlib.Path(__file__).resolve().parents[1] / "agent"


class Lock:
    def __init__(self):
        self.locked = False
        self.breaches = []


@contextlib.contextmanager
def locked_engine(monkeypatch, lock):
    def guard(name, original):
        def wrapper(*args, **kwargs):
            if lock.locked:
                lock.breaches.append(name)
                raise AssertionError(f"agent code touched the engine: {name}")
            return original(*args, **kwargs)
        return wrapper

    for name in ("__getitem__", "nearby", "mask", "count"):
        monkeypatch.setattr(engine.World, name, guard(name, getattr(engine.World, name)))
    monkeypatch.setattr(engine.World, "objects", property(guard("objects", engine.World.objects.fget)))
    monkeypatch.setattr(engine.SemanticView, "__call__", guard("semantic", engine.SemanticView.__call__))
    yield


def test_planner_and_executor_never_touch_the_engine(monkeypatch):
    lock = Lock()
    env = make_env("crafter")
    runner = Runner(env)
    for obj, method in ((runner.executor, "act"), (runner.planner, "plan")):
        original = getattr(obj, method)

        def locked(*a, _original=original, **k):
            lock.locked = True
            try:
                return _original(*a, **k)
            finally:
                lock.locked = False

        monkeypatch.setattr(obj, method, locked)
    with locked_engine(monkeypatch, lock):
        result = runner.run_episode(resolve_task("make_stone_pickaxe", env.catalog), seed=2)
    assert lock.breaches == []
    assert result.steps > 0


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


def test_the_lock_catches_a_peek_at_the_map(monkeypatch):
    lock = Lock()
    env = make_env("crafter")
    env.reset(seed=0)
    with locked_engine(monkeypatch, lock):
        lock.locked = True
        with pytest.raises(AssertionError, match="touched the engine"):
            env._game._world[(0, 0)]
        with pytest.raises(AssertionError):
            env._game._sem_view()
    assert lock.breaches == ["__getitem__", "semantic"]
