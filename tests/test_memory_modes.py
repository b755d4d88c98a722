"""`--memory` modes (agent/services/memory_modes.py) and the in-process self-trigger between episodes
(agent/services/self_trigger.py)."""

import pytest

from agent.services.memory_modes import MODES, MemoryFastPath, check_mode, expert_fast_path
from agent.services.self_trigger import auto_consolidate
from consolidation.queue import jobs
from consolidation.worker import JobOutcome
from envs import make_env
from envs.errors import ConfigError
from memory.store import Store
from store_helpers import record


@pytest.fixture
def store(tmp_path):
    return Store.open(f"sqlite:///{tmp_path}/peam.db")


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown memory mode 'dreams'"):
        check_mode("dreams")
    for mode in MODES:
        check_mode(mode)


def test_no_base_means_no_fast_path_in_any_parametric_mode(store, tmp_path):
    env = make_env("crafter")
    for mode in ("peam", "shared-lora", "moram"):
        assert expert_fast_path(mode, store, "crafter", tmp_path / "models") is None
        assert MemoryFastPath(mode, store, env, tmp_path / "models").refresh().fast is None


def test_a_fast_path_much_worse_than_the_slow_one_triggers_a_job_between_episodes(store, tmp_path):
    # place_table: 10/10 on the slow path, 0/10 on the fast path (Fisher p = 1/184756).
    record(store, [("place_table", "slow", "success", 2, 0.01)] * 10
           + [("place_table", "fast", "failure", 20, 0.2)] * 10)
    seen = []

    def pipeline(job, beat):
        seen.append(job.target)
        return JobOutcome("rejected")

    done = auto_consolidate(store, make_env("crafter"), tmp_path / "models", fast=None, pipeline=pipeline)
    assert [j.status for j in done] == ["rejected"] and seen == ["category build"]
    assert jobs(store, 5)[0].reason.startswith("fast path fails more than slow")


def test_no_trigger_no_job(store, tmp_path):
    record(store, [("place_table", "slow", "success", 2, 0.01)] * 3)
    assert auto_consolidate(store, make_env("crafter"), tmp_path / "models", fast=None,
                            pipeline=lambda job, beat: pytest.fail("no job was due")) == []
    assert jobs(store, 5) == []


def test_a_fast_decision_is_timed_in_seconds_without_a_fast_path():
    from agent.services.decision_cost import fast_decision_s, plan_proposal_s

    env = make_env("crafter")
    assert 0 < fast_decision_s(None, env) < 5
    assert 0 < plan_proposal_s("crafter") < 5
