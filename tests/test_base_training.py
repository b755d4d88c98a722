"""The fast policy's training entry point on a real (tiny) store: base by behavioural cloning,
then one category expert each over the frozen base, registered with its file's sha256."""

import hashlib
import os
import pathlib
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from agent.loop.runner import Runner
from consolidation.dataset import SegmentDataset, mirror_actions
from consolidation.fit import FitConfig
from consolidation.trainer import CATEGORY_EXPERTS, train_base, train_category_experts
from envs import make_env
from envs.tasks import resolve_task
from memory.base_io import load_base
from memory.expert_io import CONFIG_NAME, WEIGHTS_NAME, sha256_of
from memory.policy import PolicyConfig, SubgoalTokenizer
from memory.registry import experts, promote, promoted
from memory.store import Store

TINY = PolicyConfig(d_model=32, n_layers=1, n_heads=4)
PEAM = str(pathlib.Path(sys.executable).parent / "peam")


def peam(*args, home, timeout=120):
    environ = dict(os.environ, PEAM_HOME=str(home))
    environ.pop("PEAM_DB", None)
    return subprocess.run([PEAM, *args], capture_output=True, text=True, env=environ, timeout=timeout)


def file_sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("bc")
    s = Store.open(f"sqlite:///{root}/peam.db")
    env = make_env("crafter")
    s.sync_skills(env.catalog)
    run_id = s.start_run(env="crafter", task="make_wood_pickaxe", planner="symbolic",
                         memory_mode="none", config={})
    results = Runner(env, recorder=s, run_id=run_id).run(
        resolve_task("make_wood_pickaxe", env.catalog), seeds=[0, 1])
    assert all(r.success for r in results)
    yield s
    s.close()


def test_dataset_marks_the_last_step_done_and_splits_by_segment(store):
    tok = SubgoalTokenizer(make_env("crafter").catalog.names, 4)
    data = SegmentDataset(store, tok, game="crafter")
    rows = store.segments(path="slow", outcome="success")
    assert len(data) == sum(r.steps for r in rows) and data.n_segments == len(rows)
    assert data.view.shape == (len(data), 9, 7) and data.view.dtype == torch.long
    assert data.inventory.shape == (len(data), 16) and data.subgoal.shape == (len(data), 4)
    assert data.done.sum().item() == len(rows)  # one "done" per successful segment
    split = data.split(0.2, seed=0)
    assert torch.equal(split.train, data.split(0.2, seed=0).train)  # deterministic
    assert len(split.val) > 0
    assert not set(data.segment[split.train].tolist()) & set(data.segment[split.val].tolist())
    gather = SegmentDataset(store, tok, game="crafter", category="gather")
    assert set(gather.skills) == {"collect_wood"}


def test_mirrored_steps_show_the_same_situation_the_other_way_round(store):
    env = make_env("crafter")
    tok = SubgoalTokenizer(env.catalog.names, 4)
    names = list(env.action_names)
    plain = SegmentDataset(store, tok, game="crafter")
    data = SegmentDataset(store, tok, game="crafter", mirror=mirror_actions(names))
    n = len(plain)
    assert data.copies == 4 and len(data) == 4 * n
    left, right, up, down = (names.index(f"move_{d}") for d in ("left", "right", "up", "down"))
    flip_x = data.action[n:2 * n]  # the first copy: left and right swapped, nothing else
    for a, b in ((left, right), (right, left), (up, up), (down, down), (names.index("do"),) * 2):
        assert torch.all(flip_x[plain.action == a] == b)
    assert torch.equal(data.view[n:2 * n], plain.view.flip(1))  # x is the view's first axis
    assert torch.equal(data.map[2 * n:3 * n], plain.map.flip(2))  # the second copy: y flipped
    assert torch.equal(data.facing[3 * n:], -plain.facing)  # both: facing reversed
    assert torch.equal(data.action[3 * n:] == up, plain.action == down)
    assert torch.equal(data.segment[3 * n:], plain.segment)  # a copy stays with its segment
    split = data.split(0.2, seed=0)
    assert not set(data.segment[split.train].tolist()) & set(data.segment[split.val].tolist())
    # The agent sits at the centre: a mirrored view is still centred on it.
    w, h = plain.view.shape[1:]
    assert torch.equal(data.view[n:2 * n, w // 2, h // 2], plain.view[:, w // 2, h // 2])


def test_train_base_then_experts_saves_registers_and_keeps_the_base(store, tmp_path):
    base = train_base(store, out_dir=tmp_path, config=FitConfig(epochs=1, batch_size=16), policy_config=TINY,
                      progress=False)
    weights = tmp_path / "base" / "model.safetensors"
    assert weights.is_file() and (tmp_path / "base" / "config.json").is_file()
    assert isinstance(base["val_accuracy"], float) and 0.0 <= base["val_accuracy"] <= 1.0
    assert base["sha256"] == file_sha(weights)
    before = weights.read_bytes()
    policy, doc = load_base(tmp_path / "base")
    assert doc["game"] == "crafter" and policy.config.d_model == 32

    found = train_category_experts(store, models_dir=tmp_path, progress=False,
                                   config=replace(CATEGORY_EXPERTS, epochs=1, batch_size=16, rank=4))
    assert set(found) == {"gather", "build", "craft"}
    assert weights.read_bytes() == before  # the base is frozen, on disk too
    rows = {r.category: r for r in experts(store, "crafter")}
    for category, m in found.items():
        path = tmp_path / "experts" / category
        assert (path / WEIGHTS_NAME).is_file() and (path / CONFIG_NAME).is_file()
        assert rows[category].sha256 == file_sha(path / WEIGHTS_NAME) == sha256_of(path)
        assert rows[category].status == "candidate" and rows[category].routing == "category"
        assert rows[category].rank == 4 and rows[category].params == m["params"] > 0
    assert promoted(store, "crafter") == []
    promote(store, rows["gather"].id)
    assert [r.category for r in promoted(store, "crafter")] == ["gather"]


def test_mirror_trains_the_base_and_an_expert_on_four_copies_of_every_step(store, tmp_path):
    from consolidation.trainer import ExpertTrainingConfig, train_expert

    steps = sum(r.steps for r in store.segments(path="slow", outcome="success"))
    plain = train_base(store, out_dir=tmp_path / "plain", config=FitConfig(epochs=1), policy_config=TINY,
                       progress=False)
    base = train_base(store, out_dir=tmp_path, config=FitConfig(epochs=1, mirror=True), policy_config=TINY,
                      progress=False)
    assert (plain["copies"], base["copies"]) == (1, 4) and plain["samples"] == base["samples"] == steps
    assert base["train_samples"] + base["val_samples"] == 4 * steps
    cand = train_expert(store, models_dir=tmp_path, game="crafter", category="build", tag="m",
                        config=ExpertTrainingConfig(epochs=1, rank=4, mirror=True))
    assert cand.metrics["copies"] == 4


def test_train_base_on_an_empty_store_is_one_line(tmp_path):
    db = f"sqlite:///{tmp_path}/empty.db"
    Store.open(db).close()
    out = peam("train-base", "--db", db, "--out", str(tmp_path / "models"), "--device", "cpu",
               home=tmp_path, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == ["peam: error: no slow-path segments yet: run `peam run` or `peam demo` first"]
    assert not (tmp_path / "models").exists()


def test_a_small_dataset_still_gets_min_round_steps_between_validations():
    from consolidation.fit import MIN_ROUND_STEPS, passes_per_round

    assert passes_per_round(60, 64) == MIN_ROUND_STEPS  # one batch a pass
    assert passes_per_round(300, 64) == 5  # 5 batches a pass, 25 steps
    assert passes_per_round(64 * MIN_ROUND_STEPS, 64) == 1  # a large set: one pass a round
    assert passes_per_round(0, 64) == MIN_ROUND_STEPS


def test_an_expert_config_with_no_rounds_is_refused_before_anything_loads(store, tmp_path):
    from consolidation.trainer import ExpertTrainingConfig, train_expert
    from envs.errors import ConfigError

    with pytest.raises(ConfigError, match="epochs=0"):  # not "holds no base policy": checked first
        train_expert(store, models_dir=tmp_path, game="crafter", category="gather", tag="t",
                     config=ExpertTrainingConfig(epochs=0))
    with pytest.raises(ConfigError, match="batch_size=0"):
        train_category_experts(store, models_dir=tmp_path, config=replace(CATEGORY_EXPERTS, batch_size=0))
    assert not (tmp_path / "experts").exists()


def test_checking_for_a_base_and_taking_its_lock_load_no_torch(tmp_path):
    code = ("import sys; from memory.base_io import base_lock, has_base; "
            f"has_base({str(tmp_path)!r}); base_lock({str(tmp_path / 'm')!r}).__enter__(); "
            "sys.exit('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).parents[1])))
    assert out.returncode == 0, out.stderr


def test_early_stopping_keeps_the_best_rounds_values_and_stops_after_patience_stale_rounds():
    from consolidation.fit import BestRound

    weight = torch.nn.Parameter(torch.zeros(2))
    best = BestRound([weight], patience=2, min_delta=0.1)
    assert not best.should_stop(1.0, epoch=1)
    with torch.no_grad():
        weight.fill_(5.0)
    assert not best.should_stop(0.95, epoch=2)  # lower, but not by min_delta: one stale round
    assert best.should_stop(0.99, epoch=3)  # the second stale round ends training
    best.restore()
    assert best.epoch == 1 and torch.equal(weight.detach(), torch.zeros(2))
