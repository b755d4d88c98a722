"""Task suites: what `peam run --task T` may ask for.

Every catalog skill is a single-skill task. Long-horizon tasks are the deep ends of the tech
tree. `all_achievements` is the open-ended Crafter benchmark: unlock as many as possible.
"""

from __future__ import annotations

from dataclasses import dataclass

from envs.catalog import SkillCatalog
from envs.errors import UnknownTaskError

OPEN_ENDED = "all_achievements"


@dataclass(frozen=True)
class Task:
    name: str
    goals: tuple[str, ...]  # skills to unlock; the episode succeeds when all are unlocked
    max_steps: int
    open_ended: bool = False  # keep playing after the goals (benchmark episodes)


def long_horizon_names(catalog: SkillCatalog) -> list[str]:
    """Skills at least four prerequisite steps deep, derived from the catalog itself."""
    return [s.name for s in catalog if _depth(catalog, s.name, set()) >= 4]


def _depth(catalog: SkillCatalog, name: str, seen: set[str]) -> int:
    if name in seen:
        return 0
    skill = catalog[name]
    deps: list[str] = list(skill.after)
    for item in skill.requires:
        deps += [p.name for p in catalog.producers(item)[:1]]
    for cell in skill.nearby:
        placer = catalog.placer(cell)
        deps += [placer.name] if placer else []
    return 1 + max((_depth(catalog, d, seen | {name}) for d in deps), default=0)


def suites(catalog: SkillCatalog) -> dict[str, list[str]]:
    longs = long_horizon_names(catalog)
    return {
        "single": [n for n in catalog.names if n not in longs],
        "long_horizon": longs,
        "benchmark": [OPEN_ENDED],
    }


def resolve_task(name: str, catalog: SkillCatalog, max_steps: int | None = None) -> Task:
    """The task called `name`, or a `UnknownTaskError` that lists the choices."""
    if name == OPEN_ENDED:
        return Task(name, tuple(catalog.names), max_steps or 10_000, open_ended=True)
    name = catalog.resolve(name)
    if name in catalog:
        deep = name in long_horizon_names(catalog)
        return Task(name, (name,), max_steps or (3_000 if deep else 1_500))
    choices = ", ".join(catalog.names + [OPEN_ENDED] + list(catalog.aliases))
    raise UnknownTaskError(f"unknown task {name!r} for {catalog.game}; choose one of: {choices}")
