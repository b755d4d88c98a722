"""The self-trigger (consolidation/trigger.py): scale-free savings rule and the count test."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consolidation.trigger import fisher_greater_p, should_consolidate
from consolidation.worthiness import SkillEvidence


def counts(fast_ok: int, fast_n: int, slow_ok: int, slow_n: int) -> SkillEvidence:
    return SkillEvidence(uses=fast_n + slow_n, slow_attempts=slow_n, slow_successes=slow_ok,
                         fast_attempts=fast_n, fast_successes=fast_ok, slow_s_per_use=10.0,
                         fast_s_per_use=1.0)


def test_fires_when_the_savings_since_the_last_job_exceed_a_jobs_cost():
    e = counts(5, 5, 5, 5)
    assert should_consolidate(e, savings_since_last_job_s=101, job_cost_s=100).fire
    assert not should_consolidate(e, savings_since_last_job_s=99, job_cost_s=100).fire


def test_fires_when_the_fast_path_fails_significantly_more_than_the_slow_path():
    decision = should_consolidate(counts(0, 10, 10, 10), savings_since_last_job_s=0,
                                  job_cost_s=100)
    assert decision.fire and "Fisher" in decision.reason


def test_does_not_fire_on_one_fast_failure_in_five():
    assert not should_consolidate(counts(4, 5, 5, 5), savings_since_last_job_s=0,
                                  job_cost_s=100).fire


def test_does_not_fire_without_fast_or_slow_attempts_to_compare():
    assert not should_consolidate(counts(0, 10, 0, 0), savings_since_last_job_s=0,
                                  job_cost_s=1).fire
    assert not should_consolidate(counts(0, 0, 10, 10), savings_since_last_job_s=0,
                                  job_cost_s=1).fire


def test_fisher_p_matches_the_hypergeometric_tail_by_hand():
    # [[fast failures, fast successes], [slow failures, slow successes]]
    assert fisher_greater_p(10, 0, 0, 10) == Fraction(1, math.comb(20, 10))
    assert fisher_greater_p(1, 4, 0, 5) == Fraction(1, 2)
    assert fisher_greater_p(0, 5, 5, 0) == 1
    # scipy.stats.fisher_exact([[3, 1], [1, 3]], alternative="greater").pvalue = 0.2428...
    assert float(fisher_greater_p(3, 1, 1, 3)) == pytest.approx(17 / 70)


evidence_strategy = st.builds(
    lambda fn, fk, sn, sk, slow, fast: SkillEvidence(
        uses=fn + sn, fast_attempts=fn, fast_successes=min(fk, fn), slow_attempts=sn,
        slow_successes=min(sk, sn), slow_s_per_use=slow, fast_s_per_use=fast),
    st.integers(0, 40), st.integers(0, 40), st.integers(0, 40), st.integers(0, 40),
    st.integers(0, 10**6).map(float), st.one_of(st.none(), st.integers(0, 10**6).map(float)))


@settings(max_examples=300, deadline=None)
@given(e=evidence_strategy, saved=st.integers(0, 10**12), cost=st.integers(1, 10**12))
def test_the_decision_is_the_same_when_every_cost_is_scaled_by_ten(e, saved, cost):
    # Integer seconds keep ×10 exact in floating point, so the property is about the rule,
    # not about rounding.
    scaled = SkillEvidence(**(e.__dict__ | {
        "slow_s_per_use": e.slow_s_per_use * 10,
        "fast_s_per_use": None if e.fast_s_per_use is None else e.fast_s_per_use * 10}))
    once = should_consolidate(e, savings_since_last_job_s=float(saved), job_cost_s=float(cost))
    tenfold = should_consolidate(scaled, savings_since_last_job_s=float(saved) * 10,
                                 job_cost_s=float(cost) * 10)
    assert once.fire == tenfold.fire
