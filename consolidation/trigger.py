"""The self-trigger: should a skill be consolidated now? Pure functions, no I/O.

DESIGN.md "Self-trigger, scale-free": driven by the agent's own statistics, never by a tuned
constant. A skill fires when
  1. the seconds its uses saved since its last job exceed the measured seconds of a job (both
     measured online, so the rule reads the same on a laptop and on a GPU, in any game), or
  2. its fast path fails significantly more often than its slow path, judged by a one-sided
     Fisher exact test on the counts (a test on counts, not a threshold on a rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from consolidation.worthiness import SkillEvidence

# The one constant: the conventional significance level (Fisher 1925). It bounds how often a
# fast path no worse than the slow one is retrained by chance, and it is dimensionless, so it
# does not depend on the game, the machine or the units of cost.
ALPHA = Fraction(1, 20)


@dataclass(frozen=True)
class Decision:
    fire: bool
    reason: str


def fisher_greater_p(a: int, b: int, c: int, d: int) -> Fraction:
    """One-sided Fisher exact p-value that row 1 has MORE of column 1 than chance, for the 2×2
    table [[a, b], [c, d]]: P(X ≥ a) under the hypergeometric law with the table's margins.

    Exact rational arithmetic (math.comb), so p is never rounded across ALPHA (scipy's
    `fisher_exact(..., alternative="greater")` gives the same number as a float).
    """
    if min(a, b, c, d) < 0:
        raise ValueError(f"counts must be non-negative, got {(a, b, c, d)}")
    row1, col1, n = a + b, a + c, a + b + c + d
    if n == 0:
        return Fraction(1)
    tail = sum(math.comb(col1, x) * math.comb(n - col1, row1 - x)
               for x in range(a, min(row1, col1) + 1))
    return Fraction(tail, math.comb(n, row1))


def fast_worse_p(e: SkillEvidence) -> Fraction:
    """p-value of "the fast path fails more often than the slow path" on the counts."""
    fast_failures = e.fast_attempts - e.fast_successes
    slow_failures = e.slow_attempts - e.slow_successes
    return fisher_greater_p(fast_failures, e.fast_successes, slow_failures, e.slow_successes)


def should_consolidate(evidence: SkillEvidence, *, savings_since_last_job_s: float,
                       job_cost_s: float) -> Decision:
    """Fire when the saving since the skill's last job has paid for a job, or when the fast
    path is significantly worse than the slow one (p < ALPHA)."""
    if job_cost_s <= 0:
        raise ValueError(f"job_cost_s must be positive seconds, got {job_cost_s}")
    if savings_since_last_job_s > job_cost_s:
        return Decision(True, f"saved {savings_since_last_job_s:.3g} s since the last job "
                              f"> {job_cost_s:.3g} s per job")
    if evidence.fast_attempts and evidence.slow_attempts:
        p = fast_worse_p(evidence)
        if p < ALPHA:
            return Decision(True, f"fast path fails more than slow: fast "
                                  f"{evidence.fast_successes}/{evidence.fast_attempts} vs slow "
                                  f"{evidence.slow_successes}/{evidence.slow_attempts} "
                                  f"(Fisher p={float(p):.2g} < {float(ALPHA)})")
    return Decision(False, f"saved {savings_since_last_job_s:.3g} s of {job_cost_s:.3g} s per "
                           f"job; fast path not significantly worse")
