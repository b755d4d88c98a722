"""Failure–correction pairs: a fast-path segment that failed and the slow-path segment that
took over from the very state it stopped in. The runner links them when it records the
correction (`corrects_segment_id`); mining reads the links back with their steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memory import columns as C


@dataclass(frozen=True)
class FailureCorrectionPair:
    skill: str
    category: str
    failure_id: int
    correction_id: int
    failure: dict[str, np.ndarray]  # the fast path's steps (STEP_KEYS arrays)
    correction: dict[str, np.ndarray]  # the slow path's steps from the same state


def mine_pairs(store, *, game: str | None = None, category: str | None = None,
               successful_only: bool = True) -> list[FailureCorrectionPair]:
    """Every linked pair (of one category), oldest first. By default only corrections that
    succeeded count: a correction that failed too shows nothing to prefer."""
    pairs = []
    for corr in store.segments(path="slow", category=category, game=game):
        if corr.corrects_segment_id is None:
            continue
        if successful_only and corr.outcome != "success":
            continue
        failure = store.load_steps(corr.corrects_segment_id)
        correction = store.load_steps(corr.id)
        if len(failure.get(C.ACTION, ())) == 0 or len(correction.get(C.ACTION, ())) == 0:
            continue
        pairs.append(FailureCorrectionPair(corr.skill, corr.category, corr.corrects_segment_id,
                                           corr.id, failure, correction))
    return pairs
