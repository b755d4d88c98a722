"""Worthiness factors (consolidation/worthiness.py) and their shell (consolidation/scoring.py)."""

from __future__ import annotations

import pytest

from consolidation.worthiness import SkillEvidence, stability, worthiness


def evidence(**kw) -> SkillEvidence:
    base = dict(uses=20, slow_attempts=20, slow_successes=18, fast_attempts=0, fast_successes=0,
                slow_s_per_use=10.0, fast_s_per_use=None, success_steps=(30, 31, 29, 30))
    return SkillEvidence(**(base | kw))


def test_cost_saving_is_uses_times_slow_minus_fast_seconds():
    w = worthiness(evidence(fast_s_per_use=2.0), job_cost_s=100, fast_cost_estimate_s=5.0)
    assert w.cost_saving == pytest.approx(20 * (10.0 - 2.0))


def test_cost_saving_uses_the_fast_estimate_before_any_expert_and_is_never_negative():
    assert worthiness(evidence(), job_cost_s=1, fast_cost_estimate_s=4.0).cost_saving == 120
    assert worthiness(evidence(fast_s_per_use=50.0), job_cost_s=1,
                      fast_cost_estimate_s=4.0).cost_saving == 0


def test_more_consistent_demos_are_more_stable():
    assert stability([30, 30, 30, 30]) > stability([10, 50, 20, 40])


def test_more_demos_of_equal_consistency_are_more_stable_and_none_is_zero():
    assert stability([]) == 0
    assert stability([30]) == pytest.approx(0.5)
    assert stability([30] * 9) == pytest.approx(0.9)


def test_a_covered_skill_has_redundancy_equal_to_its_experts_fast_success():
    e = evidence(expert_covers=True, fast_attempts=10, fast_successes=7, fast_s_per_use=1.0)
    assert worthiness(e, job_cost_s=1, fast_cost_estimate_s=1).redundancy == pytest.approx(0.7)


def test_an_uncovered_skill_has_no_redundancy_and_no_interference():
    w = worthiness(evidence(others_fast_success=(1.0, 1.0)), job_cost_s=1, fast_cost_estimate_s=1)
    assert (w.redundancy, w.interference) == (0, 0)


def test_interference_grows_with_the_skills_sharing_the_expert_and_their_success():
    def interference(others):
        e = evidence(expert_covers=True, others_fast_success=others)
        return worthiness(e, job_cost_s=1, fast_cost_estimate_s=1).interference

    assert interference(()) == 0
    assert interference((0.0, 0.0)) == 0  # nothing working to disturb
    assert interference((0.9,)) < interference((0.9, 0.9, 0.9)) < 1
    assert interference((0.3, 0.3)) < interference((0.9, 0.9))


def test_score_is_the_product_of_the_factors_over_the_job_cost_and_unitless():
    e = evidence(expert_covers=True, fast_attempts=4, fast_successes=1, fast_s_per_use=2.0,
                 others_fast_success=(0.5,))
    w = worthiness(e, job_cost_s=50, fast_cost_estimate_s=1)
    assert w.score == pytest.approx(
        w.cost_saving * w.stability * (1 - w.redundancy) * (1 - w.interference) / 50)
    scaled = SkillEvidence(**(e.__dict__ | {"slow_s_per_use": 100.0, "fast_s_per_use": 20.0}))
    assert worthiness(scaled, job_cost_s=500, fast_cost_estimate_s=10).score == \
        pytest.approx(w.score)


def test_refresh_worthiness_writes_the_factors_to_the_skills_table(tmp_path):
    from consolidation.scoring import refresh_worthiness
    from memory.store import Store
    from memory.tables import Skill
    from sqlalchemy import select
    from store_helpers import record

    with Store.open(f"sqlite:///{tmp_path / 'peam.db'}") as store:
        record(store, [("collect_wood", "slow", "success", 30, 10.0)] * 3
               + [("collect_wood", "slow", "failure", 50, 20.0)])
        scores = refresh_worthiness(store, "crafter", job_cost_s=40, fast_cost_estimate_s=1.0)
        w = scores["collect_wood"]
        assert w.cost_saving == pytest.approx(4 * (12.5 - 1.0))
        assert w.stability == pytest.approx(0.75)
        with store.session() as s:
            row = s.scalar(select(Skill).where(Skill.name == "collect_wood"))
            assert (row.worthiness, row.cost_saving, row.stability, row.redundancy,
                    row.interference) == pytest.approx((w.score, w.cost_saving, 0.75, 0, 0))
            untouched = s.scalar(select(Skill).where(Skill.name == "make_iron_sword"))
            assert untouched.worthiness == 0 and untouched.cost_saving == 0


def test_pending_triggers_count_only_the_savings_since_the_skills_last_job(tmp_path):
    from consolidation.queue import advance, claim, enqueue
    from consolidation.scoring import pending_triggers
    from memory.store import Store
    from store_helpers import record

    def fired(store):
        return {t.skill: t.decision for t in pending_triggers(
            store, "crafter", job_cost_s=40, fast_cost_estimate_s=1.0)}

    with Store.open(f"sqlite:///{tmp_path / 'peam.db'}") as store:
        record(store, [("collect_wood", "slow", "success", 30, 10.0)] * 4)
        assert fired(store) == {}  # 4 × (10 − 1) = 36 s saved < 40 s per job
        record(store, [("collect_wood", "slow", "success", 30, 10.0)])
        assert "saved 45 s" in fired(store)["collect_wood"].reason
        job = enqueue(store, game="crafter", category="gather", reason="trigger")
        assert fired(store) == {}  # its category's job is queued: nothing more to ask
        claim(store, "w", 60)
        advance(store, job, "w", "evaluating")
        advance(store, job, "w", "rejected")
        assert fired(store) == {}  # the savings were spent on that job
        # A fast path as slow as the slow one saves nothing, but it fails: 0/6 vs 3/3.
        record(store, [("collect_wood", "fast", "failure", 80, 10.0)] * 6
               + [("collect_wood", "slow", "success", 30, 10.0)] * 3)
        assert "Fisher" in fired(store)["collect_wood"].reason


def test_the_job_cost_is_the_median_wall_time_of_finished_jobs(tmp_path):
    from datetime import timedelta

    from consolidation.scoring import measured_job_cost_s
    from memory.store import Store
    from memory.tables import Job, utcnow
    from store_helpers import record

    with Store.open(f"sqlite:///{tmp_path / 'peam.db'}") as store:
        record(store, [])
        assert measured_job_cost_s(store, "crafter") is None
        now = utcnow()
        with store.session() as s:
            for seconds, status in [(10, "promoted"), (30, "rejected"), (1000, "failed"),
                                    (20, "rejected")]:
                s.add(Job(game="crafter", skill="collect_wood", reason="t", status=status,
                          created_at=now, started_at=now,
                          finished_at=now + timedelta(seconds=seconds)))
        assert measured_job_cost_s(store, "crafter") == 20
