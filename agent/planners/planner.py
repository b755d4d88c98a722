"""The planner interface and the symbolic tech-tree planner (the default slow planner).

A planner is a pure function of what the agent knows: the task, its inventory, what it has
seen itself achieve and which kinds of cell it remembers. It returns the ordered subgoals, each a catalog
skill. The runner walks them with a plan cursor (agent/loop/runner.py) and asks again only when the
plan runs dry or breaks (`ready` checks a subgoal's preconditions from what the agent sees).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from envs.catalog import Skill, SkillCatalog
from envs.tasks import Task


@dataclass(frozen=True)
class Subgoal:
    skill: str
    reason: str = ""


@dataclass(frozen=True)
class PlanContext:
    """Agent-visible state a planner may use, and nothing more."""

    task: Task
    inventory: dict[str, int]
    # Skills the agent saw itself do this episode (agent/loop/achieved.py), never the game's counters.
    achieved: frozenset[str] = frozenset()
    known: frozenset[str] = frozenset()  # cell kinds it remembers within reach of a short walk
    in_sight: frozenset[str] = frozenset()  # cell kinds on screen now
    failures: dict[str, int] = field(default_factory=dict)  # failed attempts per skill, this episode
    previous: str | None = None  # the subgoal just finished, for hysteresis on survival needs
    daylight: float = 1.0  # how bright the screen is; zombies come out in the dark

    def as_record(self) -> dict:
        """The context as JSON, as the store keeps it with each segment and the plan-level
        memory reads it (memory/plan_policy.py `features`)."""
        return {"task": self.task.name, "inventory": {k: int(v) for k, v in self.inventory.items()},
                "known": sorted(self.known), "in_sight": sorted(self.in_sight),
                "achieved": sorted(self.achieved), "failures": dict(self.failures),
                "previous": self.previous, "daylight": round(float(self.daylight), 3)}


def ready(skill: Skill, ctx: PlanContext) -> bool:
    """Whether a subgoal can start from what the agent sees: the items it requires are held,
    the cells it must be near are remembered within a short walk, and the skills whose effect
    it needs are achieved. The plan cursor asks the planner again when the next subgoal of its
    plan is not ready (a tool broke, the table was left behind)."""
    return (all(ctx.inventory.get(item, 0) >= n for item, n in skill.requires.items())
            and all(cell in ctx.known for cell in skill.nearby)
            and all(name in ctx.achieved for name in skill.after))


@dataclass
class Plan:
    subgoals: list[Subgoal]
    calls: int = 0  # model calls made (0 for the symbolic planner)
    tokens: int = 0  # tokens_in + tokens_out
    latency_s: float = 0.0
    tokens_in: int = 0  # prompt tokens (all calls)
    tokens_out: int = 0  # generated tokens
    fallback: bool = False  # an LLM's answer was unusable and the symbolic plan was used


class Planner(Protocol):
    name: str

    def plan(self, ctx: PlanContext) -> Plan: ...


# Shelter blocks kept in stock (the game's `wall`): one seals a dug pocket, the other mends a breach.
SHELTER_BLOCKS = 2


class SymbolicPlanner:
    """Backward chaining over the catalog's requirements with a simulated inventory."""

    name = "symbolic"

    def __init__(self, catalog: SkillCatalog):
        self.catalog = catalog

    def plan(self, ctx: PlanContext) -> Plan:
        urgent = self.urgent(ctx)
        if urgent:
            return Plan([urgent])
        goal = self.next_goal(ctx)
        if goal is None:
            return Plan([])
        return Plan(self.chain(goal, ctx))

    def urgent(self, ctx: PlanContext) -> Subgoal | None:
        """The survival need that cannot wait, lowest vital first (the game's `survival` levels)."""
        k = self.catalog.knowledge
        levels = {v: n for v, n in k.survival.items()
                  if v in self.catalog.vitals and self.catalog.producers(v)}  # this game's vitals
        needs = [(ctx.inventory.get(v, 0), v) for v, level in levels.items()
                 if ctx.inventory.get(v, 0) < level]
        rests = k.rest in levels
        if not needs and rests and ctx.inventory.get(k.health, k.low_health) < k.low_health:
            # Health only comes back with time; asleep it comes back twice as fast, and
            # behind walls nothing hurts us meanwhile.
            return Subgoal(self._producer(k.rest, ctx).name, "health is low: rest in a shelter")
        if not needs and rests and k.night is not None and ctx.daylight < k.night:
            # Nights are spent behind walls, rested or not: monsters crowd the open in the dark,
            # and a rested agent that goes out for the next subgoal dies there (the traced
            # deaths are in RESULTS.md). Waiting also heals.
            needs = [(ctx.inventory.get(k.rest, 0), k.rest)]
        if not needs and ctx.previous:
            # Keep drinking (eating) once started until nearly full: one sip per trip wastes
            # the walk to the water.
            for vital in levels:
                maximum = self.catalog.items.get(vital, {}).get("max", 9)
                if ctx.previous == self._producer(vital, ctx).name and ctx.inventory.get(vital, 0) < maximum - 1:
                    needs = [(ctx.inventory.get(vital, 0), vital)]
        if not needs:
            return self._arm(ctx) or self._stock_walls(ctx)
        _, vital = min(needs)
        producer = self._producer(vital, ctx)
        return Subgoal(producer.name, f"{vital} is low ({ctx.inventory.get(vital, 0)})")

    def _arm(self, ctx: PlanContext) -> Subgoal | None:
        """The cheapest weapon (the game's `weapons`), once it can be made where we are: in
        Crafter a wood sword costs one wood at a table we know, and halves the hits a zombie
        takes; bare-handed, two zombies at once kill us before we kill them. Only on the
        open-ended task: a focused task keeps its short chain."""
        weapons = [w for w in self.catalog.knowledge.weapons if w in self.catalog.items]
        makers = self.catalog.producers(weapons[0]) if weapons else []
        armed = any(ctx.inventory.get(w, 0) for w in weapons)
        if ctx.task.open_ended and not armed and makers and ready(makers[0], ctx):
            return Subgoal(makers[0].name, "arm before the monsters come")
        return None

    def _stock_walls(self, ctx: PlanContext) -> Subgoal | None:
        """Tools eat the blocks we carry, and a night without one to seal a shelter is spent
        fighting in the open: top the stock up while its source is a short walk away."""
        wall = self.catalog.knowledge.wall
        sources = self.catalog.producers(wall) if wall else []
        if (sources and ready(sources[0], ctx) and any(t in ctx.known for t in sources[0].target)
                and ctx.inventory.get(wall, 0) < SHELTER_BLOCKS):
            return Subgoal(sources[0].name, "keep blocks for a shelter")
        return None

    def next_goal(self, ctx: PlanContext) -> str | None:
        """The task's next goal not yet achieved; for open-ended tasks the cheapest one to reach."""
        locked = [g for g in ctx.task.goals if g not in ctx.achieved]
        if ctx.task.open_ended:  # wait until what a skill acts on exists (a plant to ripen)
            locked = [g for g in locked if not self.catalog[g].after
                      or not all(a in ctx.achieved for a in self.catalog[g].after)
                      or any(t in ctx.known for t in self.catalog[g].target)] or locked
        if not locked:
            return None
        if not ctx.task.open_ended:
            return locked[0]

        def cost(name: str) -> float:
            # Fewest subgoals first; fights and skills that failed before wait, since a
            # shelter and better tools make them safer later.
            skill = self.catalog[name]
            risk = 8 if skill.category == "combat" or skill.after else 0
            if set(skill.gives) & weapons:  # a weapon makes every later fight shorter and cheaper in health
                risk -= 4
            return (len(self.chain(name, ctx)) + risk + 6 * ctx.failures.get(name, 0)
                    - 2 * enables.get(name, 0))

        weapons = set(self.catalog.knowledge.weapons)
        # Tools and stations first: a skill counts for every other skill that needs its output.
        enables = {s.name: sum(1 for o in self.catalog if set(o.requires) & set(s.gives)
                               or (s.places and s.places in o.nearby)) for s in self.catalog}

        return min(locked, key=cost)

    def chain(self, goal: str, ctx: PlanContext) -> list[Subgoal]:
        """Ordered subgoals ending in `goal`, from the current inventory."""
        sim = dict(ctx.inventory)
        known = set(ctx.known)
        done = set(ctx.achieved)
        out: list[Subgoal] = []
        self._ensure(self.catalog[goal], sim, known, done, out, ctx, depth=0)
        return out

    def _ensure(self, skill: Skill, sim, known, done, out, ctx, depth: int) -> None:
        if depth > 12:  # the tech tree is acyclic; this guards against a malformed catalog
            raise ValueError(f"requirement cycle at {skill.name}")
        for name in skill.after:
            if name not in done:
                self._ensure(self.catalog[name], sim, known, done, out, ctx, depth + 1)
        # Placements first: they consume inputs (a table eats wood) the skill may also need.
        for cell in skill.nearby:
            if cell not in known:
                placer = self.catalog.placer(cell)
                if placer is not None:
                    self._ensure(placer, sim, known, done, out, ctx, depth + 1)
        # Acquiring one input can consume another (a pickaxe for stone eats wood): repeat
        # until every requirement holds at once.
        for _ in range(8):
            short = [(i, c) for i, c in skill.requires.items() if sim.get(i, 0) < c]
            if not short:
                break
            item, _count = short[0]
            before = sim.get(item, 0)
            self._ensure(self._producer(item, ctx), sim, known, done, out, ctx, depth + 1)
            if sim.get(item, 0) <= before:
                break
        out.append(Subgoal(skill.name, f"towards {ctx.task.name}"))
        for item, n in skill.consumes.items():
            sim[item] = sim.get(item, 0) - n
        for item, n in skill.gives.items():
            sim[item] = sim.get(item, 0) + n
        if skill.places:
            known.add(skill.places)
        done.add(skill.name)

    def _producer(self, item: str, ctx: PlanContext) -> Skill:
        producers = self.catalog.producers(item)
        if not producers:
            raise ValueError(f"no skill gives {item!r}")
        # Prefer a producer whose prerequisites are met (eat_plant once a plant is ripe).
        ready = [p for p in producers if all(a in ctx.achieved for a in p.after)
                 and (not p.target or any(t in ctx.known for t in p.target))]
        plain = [p for p in producers if not p.after]
        return (ready or plain or producers)[0]
