"""The plan-cache baseline: the subgoal chains the planner answered, replayed on an exact match.

Agentic plan caching (test-time plan caching for LLM agents) keeps each plan the planner
produced, keyed by the task and a state signature, and serves it again, without a model call,
when the same key comes back: published at about half the cost and a quarter less latency for
~97% of the accuracy. No training, no generalisation: a key never seen is a miss. Here the key
is the task and the inventory without its vitals (what the agent holds: its tools and
materials); the value is the whole chain the planner returned there, which the runner's plan
cursor walks with the same precondition checks as a fresh plan.

It implements memory/protocol.py's `FastPath` at the plan level only. It is rebuilt from the
store's planner decisions (`from_store`), as the retrieval library is.
"""

from __future__ import annotations

from envs.errors import UnknownTaskError
from memory.protocol import BLIND, UNMEASURED, Level, Measured, Proposal


class PlanCache:
    def __init__(self, vitals: tuple[str, ...] = (), categories: dict[str, str] | None = None):
        self.vitals = frozenset(vitals)
        self.categories = dict(categories or {})  # task -> plan category
        self.entries: dict[tuple, tuple[str, ...]] = {}
        self.version = 0

    @staticmethod
    def _key_of(context: dict, vitals: frozenset[str]) -> tuple:
        held = tuple(sorted((k, int(v)) for k, v in (context.get("inventory") or {}).items()
                            if k not in vitals and v > 0))
        return context.get("task"), held

    def key(self, context: dict) -> tuple:
        return self._key_of(context, self.vitals)

    def add(self, context: dict, plan: list[str]) -> None:
        """Remember `plan` for the key of `context` (a later answer for the same key wins)."""
        if plan:
            self.entries[self.key(context)] = tuple(plan)
            self.version += 1

    @classmethod
    def from_store(cls, store, game: str, catalog) -> PlanCache:
        """Every plan the slow planner answered in `game`, oldest first."""
        from memory.plan_policy import plan_category

        cache = cls(catalog.vitals)
        for seg in store.segments(game=game):
            context = seg.context or {}
            if seg.decided_by in ("planner", "fallback") and context.get("plan"):
                cache.add(context, context["plan"])
                if context.get("task") not in cache.categories:
                    try:
                        cache.categories[context["task"]] = plan_category(context["task"], catalog)
                    except UnknownTaskError:  # a task of another catalog: never served
                        continue
        return cache

    # -- the fast-path protocol (plan level only) ---------------------------------------------

    def reset(self, seed: int, world=None) -> None:
        pass

    def covers(self, category: str, level: Level = "action") -> bool:
        return level == "plan" and category in self.categories.values()

    def confidence(self, name: str, level: Level = "action") -> Measured:
        """A cached plan is the planner's own answer: trusted blindly for a task it has seen."""
        return BLIND if level == "plan" and name in self.categories else UNMEASURED

    def propose(self, context: dict, category: str) -> Proposal | None:
        chain = self.entries.get(self.key(context))
        return None if chain is None else Proposal(chain, 1.0)

    def act(self, obs, skill) -> str:
        raise RuntimeError("the plan cache has no action level: covers(category, 'action') is False")

    def done(self) -> bool:
        return False

    def __len__(self) -> int:
        return len(self.entries)
