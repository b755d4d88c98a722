"""Skills and their catalog: what each skill needs, what it gives, how success is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from envs.errors import UnknownTaskError
from envs.knowledge import GameKnowledge

CATEGORIES = ("gather", "build", "craft", "combat", "survive")


@dataclass(frozen=True)
class Skill:
    """One unit of behaviour the agent can learn, named after the achievement it unlocks.

    The game's own counter `info["achievements"][skill.achievement]` scores it as a task; the
    agent judges an attempt from what it sees (agent/loop/achieved.py reads gives, consumes, places
    and target).
    """

    name: str
    category: str
    requires: dict[str, int] = field(default_factory=dict)  # items held (tools and inputs)
    consumes: dict[str, int] = field(default_factory=dict)  # items used up
    gives: dict[str, int] = field(default_factory=dict)  # items received
    nearby: tuple[str, ...] = ()  # cells that must be within reach (table, furnace)
    target: tuple[str, ...] = ()  # the cells or creatures the skill acts on
    places: str | None = None  # the cell it puts into the world
    where: tuple[str, ...] = ()  # cells a placement may go on
    after: tuple[str, ...] = ()  # skills whose effect in the world it needs first
    achievement: str = ""
    budget: int | None = None  # steps one attempt may take; None: the runner's default for its kind
    # The game's actions that can serve the skill (empty: the game does not say, any may). The
    # fast path never takes another: it only spends a step, or worse (agent/loop/fast_path.py).
    actions: frozenset[str] = frozenset()

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise ValueError(f"skill {self.name}: category {self.category!r} not in {CATEGORIES}")
        if not self.achievement:
            object.__setattr__(self, "achievement", self.name)


class SkillCatalog:
    """An ordered, immutable set of skills with look-ups the planner needs."""

    def __init__(self, skills: list[Skill], items: dict[str, dict], game: str,
                 aliases: dict[str, str] | None = None, knowledge: GameKnowledge | None = None):
        self.game = game
        self.knowledge = knowledge or GameKnowledge()  # what the agent must know beyond skills
        self.items = items  # item name -> {"max": .., "initial": ..}
        self._skills = {s.name: s for s in skills}
        # Other games' names for the same skill (Minecraft answers Crafter's make_wood_pickaxe).
        self.aliases = {a: n for a, n in (aliases or {}).items() if n in self._skills and a not in self._skills}

    def __iter__(self) -> Iterator[Skill]:
        return iter(self._skills.values())

    def __len__(self) -> int:
        return len(self._skills)

    def __contains__(self, name: str) -> bool:
        return name in self._skills

    def __getitem__(self, name: str) -> Skill:
        try:
            return self._skills[name]
        except KeyError:
            raise UnknownTaskError(
                f"unknown skill {name!r} for {self.game}; known: {', '.join(self._skills)}"
            ) from None

    def resolve(self, name: str) -> str:
        """The skill's own name for `name`, an alias or the name itself."""
        return self.aliases.get(name, name)

    @property
    def names(self) -> list[str]:
        return list(self._skills)

    def producers(self, item: str) -> list[Skill]:
        """Skills that give `item`, cheapest-looking first (fewest requirements)."""
        found = [s for s in self if s.gives.get(item, 0) > 0]
        return sorted(found, key=lambda s: (len(s.requires) + len(s.nearby), s.name))

    def placer(self, cell: str) -> Skill | None:
        return next((s for s in self if s.places == cell), None)

    def by_category(self, category: str) -> list[Skill]:
        return [s for s in self if s.category == category]

    @property
    def vitals(self) -> tuple[str, ...]:
        """Items that start full and drain (health, food, drink, energy)."""
        return tuple(n for n, v in self.items.items() if v.get("initial", 0) > 0)
