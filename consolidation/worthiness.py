"""Worthiness of a skill: is it worth internalizing into a fast expert? Pure functions, no I/O.

DESIGN.md "Methods / Worthiness": four factors — the cost it would save, the stability of its
successful demonstrations, its redundancy with an existing expert and the interference training
would cause — each stored so the dashboard can explain it, combined into one unitless score by
dividing by the measured cost of a consolidation job. `consolidation/scoring.py` reads the
evidence from the store; this module only does arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SkillEvidence:
    """What the store knows about one skill, as plain numbers."""

    uses: int  # attempts on either path
    slow_attempts: int
    slow_successes: int
    fast_attempts: int
    fast_successes: int
    slow_s_per_use: float | None  # mean seconds of a slow-path attempt; None: never slow
    fast_s_per_use: float | None  # mean seconds of a fast-path attempt; None: never fast
    success_steps: tuple[int, ...] = ()  # step counts of successful slow-path demonstrations
    expert_covers: bool = False  # a promoted expert serves the skill's category
    # Fast-path success rate of each OTHER skill served by that same expert (empty if none).
    others_fast_success: tuple[float, ...] = ()

    @property
    def fast_success_rate(self) -> float | None:
        return self.fast_successes / self.fast_attempts if self.fast_attempts else None

    @property
    def slow_success_rate(self) -> float | None:
        return self.slow_successes / self.slow_attempts if self.slow_attempts else None

    def saving_per_use_s(self, fast_cost_estimate_s: float) -> float:
        """Seconds one use would save on the fast path; never negative (a fast path slower
        than the slow one saves nothing, it does not earn negative worth)."""
        if self.slow_s_per_use is None:
            return 0.0
        fast = self.fast_s_per_use if self.fast_s_per_use is not None else fast_cost_estimate_s
        return max(self.slow_s_per_use - fast, 0.0)


@dataclass(frozen=True)
class Worthiness:
    """The four stored factors and their combination (columns of the `skills` table)."""

    cost_saving: float  # seconds
    stability: float  # in [0, 1)
    redundancy: float  # in [0, 1]
    interference: float  # in [0, 1)
    score: float  # unitless


def cost_saving(e: SkillEvidence, fast_cost_estimate_s: float) -> float:
    """DESIGN.md: "how often it is used × (slow − fast cost per use)", in seconds. Before any
    expert exists the fast cost is the caller's estimate (e.g. the measured per-use seconds of
    the fast policy on another skill)."""
    return e.uses * e.saving_per_use_s(fast_cost_estimate_s)


def stability(success_steps: tuple[int, ...] | list[int]) -> float:
    """DESIGN.md: "how consistent its successful demonstrations are, and how many".

    Consistency is 1 / (1 + CV) of the demos' step counts (CV = population std / mean): scale
    free, 1 when every demo takes the same number of steps, falling as they spread. Quantity is
    n / (n + 1) (Laplace's rule of succession shape): 0 with no demo, ½ with one, → 1 with many,
    so a single lucky demo is never as stable as many consistent ones. No tuned constant.
    """
    n = len(success_steps)
    if n == 0:
        return 0.0
    mean = sum(success_steps) / n
    if mean <= 0:
        return 0.0
    std = math.sqrt(sum((x - mean) ** 2 for x in success_steps) / n)
    return (1.0 / (1.0 + std / mean)) * (n / (n + 1))


def redundancy(e: SkillEvidence) -> float:
    """DESIGN.md: "how well an existing expert already covers it" = that expert's fast-path
    success rate on this skill; 0 when no expert covers it or it was never tried fast (no
    evidence of coverage is no coverage)."""
    if not e.expert_covers:
        return 0.0
    return e.fast_success_rate or 0.0


def interference(e: SkillEvidence) -> float:
    """DESIGN.md: "how much it would disturb skills sharing the same expert".

    Training the category's expert again puts at risk what it already does for the other skills
    it serves: the share of the expert's skills that are *other* skills, n / (n + 1), weighted
    by how well those work now (their mean fast success) = Σ success / (n + 1). 0 when no expert
    covers the category: a new expert is a new file and touches nothing else ("Isolation is
    physical").
    """
    if not e.expert_covers or not e.others_fast_success:
        return 0.0
    return sum(e.others_fast_success) / (len(e.others_fast_success) + 1)


def worthiness(e: SkillEvidence, *, job_cost_s: float, fast_cost_estimate_s: float) -> Worthiness:
    """cost_saving × stability × (1 − redundancy) × (1 − interference) / job_cost_s.

    A product, so any factor at its worst (nothing to save, no demo, fully covered, fully
    disturbing) makes the skill worthless whatever the others say; dividing by the measured
    seconds of a job makes the score unitless (DESIGN.md): > 1 means the saving already paid
    for a job once, whatever the machine or the game.
    """
    if job_cost_s <= 0:
        raise ValueError(f"job_cost_s must be positive seconds, got {job_cost_s}")
    saving = cost_saving(e, fast_cost_estimate_s)
    stable, redundant, disturbing = stability(e.success_steps), redundancy(e), interference(e)
    score = saving * stable * (1 - redundant) * (1 - disturbing) / job_cost_s
    return Worthiness(cost_saving=saving, stability=stable, redundancy=redundant,
                      interference=disturbing, score=score)
