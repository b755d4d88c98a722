"""The continual-learning benchmark on a tiny budget: the matrix, the metrics, the plots."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.bench.continual import ContinualConfig, run_continual
from agent.bench.continual_report import markdown
from consolidation.fit import FitConfig
from consolidation.pipeline import ConsolidationConfig
from consolidation.trainer import ExpertTrainingConfig
from envs.errors import PeamError

TINY = dict(stages=2, episodes=1, eval_episodes=1, eval_steps=120, score_episodes=1, score_steps=60,
            consolidation=ConsolidationConfig(base=FitConfig(epochs=1), expert=ExpertTrainingConfig(epochs=1)))


def _check(result: dict, out: Path) -> None:
    assert result["stages"] == ["gather", "build"]
    assert result["skills"] == ["collect_wood", "collect_stone", "place_table", "place_stone"]
    matrix = result["matrix"]
    assert len(matrix) == 2
    assert list(matrix[0]) == ["collect_wood", "collect_stone"]  # only what has arrived
    assert list(matrix[1]) == result["skills"]
    for row in matrix:
        assert all(0.0 <= v <= 1.0 for v in row.values())
    for key in ("forgetting",):
        assert set(result[key]) == set(result["skills"])
        assert all(math.isfinite(v) for v in result[key].values())
    assert math.isfinite(result["bwt"])
    score = result["score"]
    assert 0.0 <= score["crafter_score"] <= 100.0 and 0.0 <= score["fast_share"] <= 1.0
    assert (Path(result["work"]) / "peam.db").is_file()  # kept for benchmarks/memory_score.py
    replay = result["replay"]
    assert set(replay["success"]) == set(result["skills"]) and 0.0 <= replay["fast_share"] <= 1.0
    assert all(0.0 <= v <= 1.0 for v in replay["success"].values())
    assert len(result["fast_share"]) == 2 and all(0.0 <= v <= 1.0 for v in result["fast_share"])
    assert all(math.isfinite(v) and v > 0 for v in result["planner_calls_per_episode"])
    assert result["median_ms"]["slow"] is not None and result["median_ms"]["slow"] > 0
    for png in result["plots"].values():
        assert Path(png).is_file() and Path(png).stat().st_size > 1000
        assert Path(png).parent == out
    text = markdown(result, "peam bench continual --memory x", relative_to=out)
    assert "| after stage |" in text and "BWT" in text and "its tasks again" in text


@pytest.fixture(autouse=True)
def _temp_under_tmp_path(tmp_path, monkeypatch):
    """The benchmark keeps its store and models in a temp directory for replay: under the
    test's own directory, so a test run leaves nothing in /tmp."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def test_continual_none_and_peam(tmp_path):
    none = run_continual(ContinualConfig(memory="none", out=str(tmp_path / "none"), **TINY))
    _check(none, tmp_path / "none")
    assert all(v == 0.0 for row in none["matrix"] for v in row.values())  # no fast path at all
    assert none["fast_share"] == [0.0, 0.0] and none["note"]
    peam = run_continual(ContinualConfig(memory="peam", out=str(tmp_path / "peam"), **TINY))
    _check(peam, tmp_path / "peam")
    assert peam["fast_share"][0] == 0.0  # nothing is consolidated before the first stage
    assert len(peam["log"]) == 2  # one category job per stage


def test_moram_adds_frozen_atom_groups_stage_by_stage(tmp_path):
    moram = run_continual(ContinualConfig(memory="moram", out=str(tmp_path), **TINY))
    _check(moram, tmp_path)
    assert len(moram["log"]) == 2 and all("MoRAM" in line or "not trained" in line for line in moram["log"])


def test_unknown_mode_rejected():
    with pytest.raises(PeamError, match="unknown memory mode"):
        ContinualConfig(memory="bogus").validate()


def test_the_benchmark_hands_its_consolidation_config_on_whole_on_its_own_device_and_budget():
    cfg = ContinualConfig(device="cuda", eval_episodes=7, consolidation=ConsolidationConfig(
        base=FitConfig(epochs=4), expert=ExpertTrainingConfig(epochs=5, rank=2), mirror=True, practice_rounds=2))
    budgets = cfg.budgets()
    assert budgets.expert_config() == ExpertTrainingConfig(epochs=5, rank=2, device="cuda", mirror=True)
    assert budgets.base_config() == FitConfig(epochs=4, device="cuda", mirror=True)
    assert (budgets.eval_episodes, budgets.forgetting_episodes, budgets.practice_rounds) == (7, 2, 2)
