"""`peam bench savings` on the smallest budget: it measures what it says, names each backend's
consolidation and leaves no temp directory behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.bench.savings import SavingsConfig, run_savings
from agent.bench.savings_report import markdown
from envs.errors import ConfigError


def _tiny(tmp_path: Path, **kw) -> SavingsConfig:
    return SavingsConfig(backends=("symbolic",), memories=("none", "peam"), tasks=("make_wood_pickaxe",), episodes=2, eval_episodes=1,
                         cursorless_episodes=0, gate_episodes=1, open_practice=0, plan_epochs=2, out=str(tmp_path / "png"), **kw)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("savings")
    return run_savings(_tiny(tmp)), tmp


def test_the_slow_agent_and_the_memory_are_measured_on_the_same_tasks(tiny_run):
    result, _ = tiny_run
    rows = result["backends"]["symbolic"]["rows"]
    assert set(rows) == {"cursorless", "none", "peam"}
    tasks = result["tasks"]
    assert tasks == ["make_wood_pickaxe"]
    for mode in ("none", "peam"):
        assert rows[mode]["all"]["episodes"] == len(tasks)
        assert set(rows[mode]["tasks"]) == set(tasks)
    assert rows["none"]["all"]["calls"] >= 1.0  # the slow agent asks its planner at least once an episode
    assert rows["none"]["all"]["memory_share"] == 0.0


def test_the_report_names_each_backend_and_the_temp_directory_is_gone(tiny_run):
    result, tmp = tiny_run
    assert not Path(result["work"]).exists()
    assert all(line.startswith("symbolic, peam: plan job") for line in result["log"])
    text = markdown(result, "peam bench savings --backends symbolic", relative_to=str(tmp))
    assert "Consolidation: symbolic, peam: plan job" in text
    assert "| slow (cursor) |" in text and "| peam |" in text
    assert all(Path(p).is_file() for p in result["plots"].values())


def test_keep_work_keeps_the_stores_and_the_plan_memorys_settings_reach_it(tmp_path):
    from memory.store import Store
    from memory.tables import Expert

    cfg = _tiny(tmp_path, keep_work=True, agreement=0.0, plan_confidence=0.7)  # no calibration: the floor
    cfg.memories = ("peam",)
    result = run_savings(cfg)
    try:
        root = Path(result["work"]) / "symbolic"
        assert (root / "practice.db").is_file()
        store = Store.open(f"sqlite:///{root}/peam.db", create=False)
        with store.session() as s:
            (expert,) = s.query(Expert).filter(Expert.kind == "plan").all()
            assert set(expert.metrics["propose_above"].values()) == {0.5}
        store.close()
        text = markdown(result, "peam bench savings", relative_to=str(tmp_path))
        assert "(agreement 0) and at least 0.7." in text
    finally:
        import shutil

        shutil.rmtree(result["work"], ignore_errors=True)


@pytest.mark.parametrize("kw, message", [({"backends": ("gpt",)}, "unknown planner backend"),
                                         ({"memories": ("lookup",)}, "unknown memory mode"),
                                         ({"eval_episodes": 0}, "must be >= 1"),
                                         ({"agreement": 1.5}, r"must lie in \[0, 1\]"),
                                         ({"tasks": ("collect_wood",)}, "not a craft task")])
def test_bad_configs_are_refused_before_anything_runs(tmp_path, kw, message):
    cfg = _tiny(tmp_path)
    for k, v in kw.items():
        setattr(cfg, k, v)
    with pytest.raises(ConfigError, match=message):
        run_savings(cfg)
    assert not (tmp_path / "png").exists()
