"""Write tiny real histories into a store: segments of Crafter skills, as the runner would."""

from __future__ import annotations

from envs.crafter import crafter_catalog
from memory.store import SegmentRecord, Store


def record(store: Store, segments) -> int:
    """One episode holding `segments`: (skill, path, outcome, steps, wall_s) tuples."""
    catalog = crafter_catalog()
    store.sync_skills(catalog)
    categories = {s.name: s.category for s in catalog}
    run = store.start_run(env="crafter", task="t", planner="symbolic", memory_mode="none",
                          config={})
    episode = store.start_episode(run, env="crafter", task="t", seed=0)
    for skill, path, outcome, steps, wall_s in segments:
        store.add_segment(episode, SegmentRecord(skill=skill, category=categories[skill],
                                                 path=path, outcome=outcome, start_step=0,
                                                 steps=steps, wall_s=wall_s))
    return episode
