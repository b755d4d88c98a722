"""The Minecraft backend against the real thing: a flying-squid server and a mineflayer bot in
a Node child process (envs/minecraft.py). Skipped, with the reason, where Node 18+ or npm is
missing; the first test run installs the pinned Node packages (`npm ci`, ~15 s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envs.errors import PeamError

ROOT = Path(__file__).resolve().parents[1]
SEED = 1000  # a world where the chain of make_wood_pickaxe is a short walk


def _node_ready() -> str | None:
    from envs.minecraft_process import ensure_installed

    try:
        ensure_installed()
    except PeamError as e:
        return str(e)
    return None


_WHY = _node_ready()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=f"Minecraft backend unavailable: {_WHY}")


def _bots() -> dict[int, int]:
    """Every running bot.js of this worktree: pid -> parent pid."""
    out = {}
    script = str(ROOT / "envs" / "minecraft_node" / "bot.js")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if any(part.decode(errors="replace") == script for part in cmd) and ") Z" not in stat:
            out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _wait_gone(pids, timeout_s: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = set(pids) & set(_bots())
        if not left:
            return set()
        time.sleep(0.1)
    return set(pids) & set(_bots())


@pytest.fixture(autouse=True, scope="module")
def no_bot_left_behind():
    before = set(_bots())
    yield
    assert _wait_gone(set(_bots()) - before) == set(), "a Node process outlived the tests"


@pytest.fixture
def env():
    from envs.minecraft import MinecraftEnv

    env = MinecraftEnv()
    yield env
    env.close()


def _cli(*args, env=None, **kw):
    environ = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=environ, **kw)


# -- the catalog -------------------------------------------------------------------------------

def test_catalog_is_derived_from_minecraft_data_recipes_and_loot():
    from envs.minecraft_catalog import _load, minecraft_catalog

    cat = minecraft_catalog()
    items = {i["name"]: i["id"] for i in _load("items")}
    pickaxe = cat["craft_wooden_pickaxe"]
    recipe = _load("recipes")[str(items["wooden_pickaxe"])][0]
    cells = [c for row in recipe["inShape"] for c in row if c is not None]
    assert sum(pickaxe.requires.values()) == len(cells)  # 3 planks and 2 sticks, as the data says
    assert pickaxe.nearby == ("crafting_table",)  # a 3x3 recipe
    assert cat["craft_oak_planks"].nearby == () and cat["craft_oak_planks"].gives == {"oak_planks": 4}
    # stone is harvested with a pickaxe and drops cobblestone (the loot table without silk touch)
    assert cat["collect_cobblestone"].target == ("stone",)
    assert cat["collect_cobblestone"].requires == {"wooden_pickaxe": 1}
    assert {s.category for s in cat} == {"gather", "craft", "build"}
    assert 40 <= len(cat) <= 80


def test_what_the_backend_cannot_do_is_absent_from_the_catalog():
    from envs.minecraft_catalog import minecraft_catalog

    cat = minecraft_catalog()
    gives = {i for s in cat for i in s.gives}
    assert not gives & {"iron_ingot", "iron_pickaxe", "charcoal", "cooked_beef", "food", "health"}
    assert not cat.by_category("combat") and not cat.by_category("survive")


def test_crafter_task_names_resolve_to_minecraft_skills():
    from envs.minecraft_catalog import minecraft_catalog
    from envs.tasks import resolve_task

    cat = minecraft_catalog()
    assert resolve_task("make_wood_pickaxe", cat).goals == ("craft_wooden_pickaxe",)
    assert resolve_task("collect_wood", cat).goals == ("collect_oak_log",)
    assert resolve_task("make_stone_pickaxe", cat).goals == ("craft_stone_pickaxe",)


def test_a_3x3_recipe_needs_a_crafting_table_within_reach():
    script = """
const d = require('minecraft-data')('1.16.5'); const c = require('./crafting')
const slots = new Array(46).fill(null)
slots[10] = { type: d.itemsByName.oak_planks.id, count: 3 }; slots[11] = { type: d.itemsByName.stick.id, count: 2 }
const recipes = d.recipes[d.itemsByName.wooden_pickaxe.id]
console.log(JSON.stringify([c.chooseRecipe(recipes, slots, false).error, !!c.chooseRecipe(recipes, slots, true).recipe]))
"""
    from envs.minecraft_process import find_node, modules_dir

    out = subprocess.run([find_node(), "-e", script], cwd=ROOT / "envs" / "minecraft_node", capture_output=True,
                         text=True, env=dict(os.environ, NODE_PATH=str(modules_dir())), check=True)
    assert json.loads(out.stdout) == ["needs a crafting table within reach", True]


def test_a_bedrock_wall_bounds_the_world_so_the_agents_map_holds_it():
    from agent.loop.world_memory import SIZE
    from envs.minecraft_catalog import WORLD
    from envs.minecraft_process import find_node, modules_dir

    border = WORLD["border"]
    script = (f"const f = require('./generator.js').features; const m = f(1000, {border // 16}, 0);"
              f"console.log(JSON.stringify([m.get('{border},5,3'), m.get('{border},7,3'), m.get('{border - 1},5,3') || null]))")
    out = subprocess.run([find_node(), "-e", script], cwd=ROOT / "envs" / "minecraft_node", capture_output=True,
                         text=True, env=dict(os.environ, NODE_PATH=str(modules_dir())), check=True)
    assert json.loads(out.stdout)[:2] == ["bedrock", "bedrock"]
    assert border + WORLD["view_radius"] + 8 < SIZE // 2  # the map (and its crops) never run off


# -- the game ------------------------------------------------------------------------------------

def test_the_observation_is_what_the_bot_sees_around_it(env):
    obs, info = env.reset(seed=SEED)
    assert obs.local_view.shape == (11, 11)
    assert env.cell_names[obs.local_view[obs.center]] == "ground"  # where it stands
    assert obs.extras["position"] == (0, 0) and obs.inventory == {}
    assert set(info["achievements"]) == set(env.catalog.names)
    res = env.step(env.action_names.index("move_left"))
    assert res.observation.extras["position"] == (-1, 0) and res.observation.facing == (-1, 0)


def test_a_seed_gives_the_same_world_and_another_seed_another(env):
    first, _ = env.reset(seed=SEED)
    again, _ = env.reset(seed=SEED)
    other, _ = env.reset(seed=SEED + 1)
    assert (first.local_view == again.local_view).all()
    assert (first.local_view != other.local_view).any()


def test_a_real_episode_of_make_wood_pickaxe_succeeds_through_the_cli(tmp_path):
    proc = _cli("run", "--env", "minecraft", "--task", "make_wood_pickaxe", "--seed", str(SEED),
                "--db", f"sqlite:///{tmp_path / 'peam.db'}", "--consolidate", "off",
                env={"PEAM_HOME": str(tmp_path), "COLUMNS": "200"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1/1 episodes succeeded" in proc.stdout
    skills = _cli("skills", "--game", "minecraft", "--db", f"sqlite:///{tmp_path / 'peam.db'}",
                  env={"COLUMNS": "200"})
    assert "craft_wooden_pickaxe" in skills.stdout and "make_wood" not in skills.stdout


def test_without_node_the_cli_says_what_to_install_in_one_line(tmp_path):
    proc = _cli("run", "--env", "minecraft", "--task", "make_wood_pickaxe", "--db",
                f"sqlite:///{tmp_path / 'peam.db'}", env={"PATH": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Node.js 18" in proc.stderr
    assert not (tmp_path / "peam.db").exists()


# -- every process ends ----------------------------------------------------------------------------

def test_closing_the_env_ends_its_node_process(env):
    import socket

    env.reset(seed=SEED)
    pid, port = env.pid, env._game.hello["port"]
    assert pid in _bots()
    socket.create_connection(("127.0.0.1", port), timeout=5).close()  # the server listens
    env.close()
    assert _wait_gone({pid}) == set()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_a_killed_or_interrupted_run_leaves_no_node_process_behind(tmp_path, sig):
    run = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--env", "minecraft", "--task",
                            "make_stone_pickaxe", "--db", f"sqlite:///{tmp_path / 'peam.db'}"],
                           cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), PEAM_HOME=str(tmp_path)),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not [p for p, parent in _bots().items() if parent == run.pid]:
            assert time.monotonic() < deadline and run.poll() is None, "the run never started its game"
            time.sleep(0.1)
        children = {p for p, parent in _bots().items() if parent == run.pid}
    finally:
        run.send_signal(sig)
        try:
            run.wait(timeout=30)
        finally:
            run.kill()
            run.wait()
    assert _wait_gone(children) == set()


def test_a_crashed_game_fails_its_episode_and_the_run_goes_on(env, tmp_path):
    from agent.loop.runner import Runner
    from envs.tasks import resolve_task
    from memory.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'peam.db'}")
    store.sync_skills(env.catalog)
    run_id = store.start_run(env="minecraft", task="collect_wood", planner="symbolic", memory_mode="none", config={})
    killed = []

    def crash_first_episode(_n):
        if not killed:
            killed.append(env.pid)
            os.kill(env.pid, signal.SIGKILL)

    runner = Runner(env, None, store, run_id, on_step=crash_first_episode)
    task = resolve_task("collect_wood", env.catalog)
    crashed, after = runner.run_episode(task, SEED), runner.run_episode(task, SEED)
    assert not crashed.success and "crashed" in crashed.error
    assert after.success
    statuses = [e.status for e in reversed(store.episodes(run_id=run_id))]  # oldest first
    assert statuses == ["failed", "success"]
    assert _wait_gone(set(killed)) == set()
