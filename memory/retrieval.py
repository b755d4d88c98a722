"""The retrieval-memory baseline: a Voyager-style skill library of remembered successes.

Voyager (Wang et al., 2023) stores each skill that worked as *code*, indexed by an embedding of
its description, and retrieves it by nearest neighbour to reuse it. A Crafter agent here has no
program to store; what a successful slow-path segment leaves behind is its action trajectory.
So our analog keeps, for every successful slow-path segment and every step t of it,

    key   = embed(state at t)            (a fixed featurisation: no training, deterministic)
    value = the action taken at t        (+ the segment id and step index it came from)

indexed per subgoal: the skill is a *hard filter*, so the memories of two subgoals never mix.

"Replayed / imitated" means step-wise nearest-neighbour imitation: at every decision the
current state is embedded, the most similar remembered state of the same skill is found by
cosine similarity (one matmul over that skill's key matrix) and its action is done (k=1), or
the majority of the top-k vote (weighted by similarity, ties to the best-ranked). This is the
standard non-parametric memory baseline (episodic control / kNN-BC): its "parameters" are the
stored keys, it generalises only as far as the featurisation makes states look alike, and its
memory grows with every step remembered (`size_bytes`, to compare with the parameters an
expert adds). Replaying a whole trajectory open-loop would fail as soon as the world differs
from the remembered one; imitating step-wise is the closed-loop form of the same memory.

Loop-breaking: a nearest-neighbour policy falls into cycles (A -> B -> A ...), because the same
state always retrieves the same action. The library keeps a tiny history of recent state keys
per skill; when the current state was already seen r times within it, the (r+1)-th best
*distinct* action among the ranked neighbours is taken instead (cycling through them). A
repeated state is evidence that the best action did not help, so the next-best memory is
tried. `loop_break=False` turns this off (pure kNN).

Which subgoal next is remembered the same way, as Voyager retrieves a skill by the similarity
of its description: every decision the slow planner made (its agent-visible context, the
subgoal it chose) is a key and a value, and the nearest remembered context of the same task
answers when it is close enough (`RECALL_SIMILARITY`); otherwise the planner is asked.

It implements memory/protocol.py's `FastPath`. This module imports no agent code; the store is
duck-typed (memory.store.Store).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from memory import columns as C
from memory.protocol import BLIND, UNMEASURED, Level, Measured, Proposal

# Cosine similarity of decision contexts (memory/plan_policy.py features) above which a
# remembered decision answers for the planner: the same task, nearly the same inventory and
# surroundings.
RECALL_SIMILARITY = 0.95
PLANNED = ("planner", "cursor", "fallback")  # decisions of the slow planner (not reflexes, not memory)
INVENTORY_CAP = 9  # Crafter's item maximum: counts are scaled to [0, 1] by it
NEIGHBOURS = ((-1, -1), (0, -1), (1, -1), (-1, 0), (0, 0), (1, 0), (-1, 1), (0, 1), (1, 1))
# Weight of each block of the embedding (each block is L2-normalised first, then scaled, so no
# block dominates by its mere size): what is right around the player and faced matters most.
BLOCK_WEIGHTS = {"histogram": 1.0, "halves": 1.0, "around": 1.5, "faced": 1.5, "nearest": 1.0,
                 "inventory": 1.5, "facing": 0.5}


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


class StateEmbedder:
    """A fixed, deterministic featurisation of (local view, inventory, facing).

    Blocks, for a view of `cell_count` cell ids with the player at the centre:
      histogram  (C)     fraction of the view's cells holding each id
      halves     (4C)    presence of each id left / right / above / below the player
      around     (9C)    one-hot id of each cell of the 3x3 around the player
      faced      (C)     one-hot id of the cell the player faces
      nearest    (3C)    for each id: present, and (dx, dy) / half-view of its nearest cell
      inventory  (I)     counts clipped to INVENTORY_CAP, scaled to [0, 1]
      facing     (4)     one-hot direction (left, right, up, down)
    Each block is L2-normalised and weighted (BLOCK_WEIGHTS), then the whole vector is.
    """

    def __init__(self, cell_count: int, n_items: int, view_shape: tuple[int, int] = (9, 7)):
        self.cell_count, self.n_items = int(cell_count), int(n_items)
        self.view_shape = tuple(view_shape)
        w, h = self.view_shape
        cx, cy = w // 2, h // 2
        xs, ys = np.meshgrid(np.arange(w) - cx, np.arange(h) - cy, indexing="ij")  # (w, h)
        self._dx, self._dy = xs.ravel(), ys.ravel()
        self._dist = np.abs(self._dx) + np.abs(self._dy)  # Manhattan, as the player walks
        self._half = np.array([max(cx, 1), max(cy, 1)], np.float32)
        self._halves = np.stack([self._dx < 0, self._dx > 0, self._dy < 0, self._dy > 0])  # (4, w*h)
        self._around = np.array([(cx + dx) * h + (cy + dy) for dx, dy in NEIGHBOURS])
        self.dim = 18 * self.cell_count + self.n_items + 4

    def __call__(self, view: np.ndarray, inventory: np.ndarray, facing: np.ndarray) -> np.ndarray:
        """(T, w, h) views, (T, n_items) inventories, (T, 2) facings -> (T, dim) float32 unit rows."""
        view = np.asarray(view)
        if view.ndim == 2:
            view, inventory, facing = view[None], np.asarray(inventory)[None], np.asarray(facing)[None]
        t, c = len(view), self.cell_count
        if view.shape[1:] != self.view_shape:
            raise ValueError(f"view of shape {view.shape[1:]}, the library was built for {self.view_shape}")
        flat = np.clip(view.reshape(t, -1).astype(np.int64), 0, c - 1)  # (T, w*h)
        onehot = np.zeros((t, flat.shape[1], c), np.float32)
        np.put_along_axis(onehot, flat[..., None], 1.0, axis=2)  # (T, w*h, C)
        histogram = onehot.mean(1)
        halves = (np.einsum("qn,tnc->tqc", self._halves.astype(np.float32), onehot) > 0)
        around = onehot[:, self._around, :].reshape(t, -1)
        facing = np.asarray(facing, np.int64).reshape(t, 2)
        w, h = self.view_shape
        fx = np.clip(w // 2 + facing[:, 0], 0, w - 1)
        fy = np.clip(h // 2 + facing[:, 1], 0, h - 1)
        faced = onehot[np.arange(t), fx * h + fy]
        # nearest cell of each id: the smallest distance among the cells holding it
        dist = np.where(onehot > 0, self._dist[None, :, None], 10_000)  # (T, w*h, C)
        best = dist.argmin(1)  # (T, C)
        present = (dist.min(1) < 10_000).astype(np.float32)
        nearest = np.concatenate([present[..., None],
                                  (self._dx[best] / self._half[0] * present)[..., None],
                                  (self._dy[best] / self._half[1] * present)[..., None]], -1)
        inventory = np.clip(np.asarray(inventory, np.float32).reshape(t, -1), 0, INVENTORY_CAP) / INVENTORY_CAP
        direction = np.zeros((t, 4), np.float32)
        index = np.select([facing[:, 0] < 0, facing[:, 0] > 0, facing[:, 1] < 0], [0, 1, 2], 3)
        direction[np.arange(t), index] = 1.0
        blocks = {"histogram": histogram, "halves": halves.reshape(t, -1), "around": around,
                  "faced": faced, "nearest": nearest.reshape(t, -1), "inventory": inventory,
                  "facing": direction}
        parts = [BLOCK_WEIGHTS[k] * _unit_rows(v.astype(np.float32)) for k, v in blocks.items()]
        return _unit_rows(np.concatenate(parts, 1)).astype(np.float32)


@dataclass
class _SkillMemory:
    category: str
    keys: list[np.ndarray] = field(default_factory=list)  # per segment, (T, dim), until built
    actions: list[np.ndarray] = field(default_factory=list)
    origin: list[np.ndarray] = field(default_factory=list)  # (T, 2): segment id, step index
    segments: int = 0
    matrix: np.ndarray | None = None  # (N, dim) float32, stacked on first use
    values: np.ndarray | None = None  # (N,) int16
    where: np.ndarray | None = None  # (N, 2) int64

    def built(self) -> _SkillMemory:
        if self.matrix is None or len(self.matrix) != sum(len(k) for k in self.keys):
            self.matrix = np.concatenate(self.keys).astype(np.float32)
            self.values = np.concatenate(self.actions).astype(np.int16)
            self.where = np.concatenate(self.origin).astype(np.int64)
        return self


@dataclass(frozen=True)
class Match:
    action: str
    similarity: float  # cosine; 1.0 for an exact match (distance 0)
    segment_id: int
    step: int


class SkillLibrary:
    """Successful slow-path segments, indexed per skill, retrieved by nearest neighbour."""

    def __init__(self, cell_count: int, items: Sequence[str], action_names: Sequence[str],
                 view_shape: tuple[int, int] = (9, 7), k: int = 1, min_segments: int = 1,
                 loop_break: bool = True, history: int = 16):
        if k < 1 or min_segments < 1:
            raise ValueError(f"k and min_segments must be >= 1, got k={k}, min_segments={min_segments}")
        self.items, self.action_names = list(items), list(action_names)
        self.embed = StateEmbedder(cell_count, len(self.items), view_shape)
        self.k, self.min_segments = int(k), int(min_segments)
        self.loop_break = loop_break
        self.skills: dict[str, _SkillMemory] = {}
        self._history: deque = deque(maxlen=history)  # (skill, state key bytes) of recent decisions
        self.plan_spec = None  # memory.plan_policy.PlanSpec, once decisions are indexed
        self.decisions: dict[str, tuple[list[np.ndarray], list[str]]] = {}  # task -> (keys, subgoals)
        self.task_categories: dict[str, str] = {}

    # ----- building -----------------------------------------------------------------------

    @classmethod
    def from_store(cls, store, game: str, cell_count: int, items: Sequence[str],
                   action_names: Sequence[str], *, skills: Sequence[str] | None = None,
                   limit: int | None = None, **kw) -> SkillLibrary:
        """Every successful slow-path segment of `game` in the store (optionally only those of
        `skills`, at most `limit` segments, oldest first)."""
        library = cls(cell_count, items, action_names, **kw)
        rows = store.segments(path="slow", outcome="success", game=game)
        if skills is not None:
            wanted = set(skills)
            rows = [r for r in rows if r.skill in wanted]
        for row in rows[:limit]:
            library.add(row.skill, row.category, store.load_steps(row.id), segment_id=row.id)
        return library

    def index_decisions(self, store, game: str, catalog) -> int:
        """Every subgoal the slow planner chose in `game` (memory.columns.DECIDERS: planner,
        cursor, fallback), keyed by its decision context; returns how many."""
        from envs.errors import UnknownTaskError
        from memory.plan_policy import PlanSpec, features, plan_category

        self.plan_spec = PlanSpec.of(game)
        n = 0
        for seg in store.segments(game=game):
            context = seg.context or {}
            task = context.get("task")
            if seg.decided_by not in PLANNED or task not in self.plan_spec.tasks:
                continue
            if task not in self.task_categories:
                try:
                    self.task_categories[task] = plan_category(task, catalog)
                except UnknownTaskError:
                    continue
            keys, labels = self.decisions.setdefault(task, ([], []))
            key = features(context, self.plan_spec)
            keys.append(key / max(float(np.linalg.norm(key)), 1e-9))
            labels.append(seg.skill)
            n += 1
        return n

    @classmethod
    def for_env(cls, store, env, **kw) -> SkillLibrary:
        """`from_store` with the cell, item and action names and view shape read off `env`."""
        library = cls.from_store(store, env.catalog.game, len(env.cell_names), list(env.catalog.items),
                                 env.action_names, view_shape=tuple(env.view_shape), **kw)
        library.index_decisions(store, env.catalog.game, env.catalog)
        return library

    def add(self, skill: str, category: str, steps: dict[str, np.ndarray], segment_id: int = -1) -> int:
        """Index one segment's steps (memory.columns arrays); returns how many were indexed."""
        actions = np.asarray(steps.get(C.ACTION, ()))
        if len(actions) == 0:
            return 0
        keys = self.embed(steps[C.VIEW], steps[C.INVENTORY], steps[C.FACING])
        memory = self.skills.setdefault(skill, _SkillMemory(category))
        memory.keys.append(keys)
        memory.actions.append(actions.astype(np.int16))
        memory.origin.append(np.stack([np.full(len(actions), segment_id), np.arange(len(actions))], 1))
        memory.segments += 1
        return len(actions)

    # ----- the fast-path interface ------------------------------------------------------------

    @property
    def version(self) -> int:
        """The number of segments and decisions indexed (grows as the library learns)."""
        return sum(m.segments for m in self.skills.values()) + sum(len(v[1]) for v in self.decisions.values())

    @property
    def size_bytes(self) -> int:
        """Memory held by the index: keys (float32), actions and origins."""
        total = 0
        for m in self.skills.values():
            m.built()
            total += m.matrix.nbytes + m.values.nbytes + m.where.nbytes
        return total

    def steps(self, skill: str | None = None) -> int:
        """Remembered (state, action) pairs, of one skill or of all."""
        chosen = [self.skills[skill]] if skill in self.skills else [] if skill else self.skills.values()
        return sum(sum(len(a) for a in m.actions) for m in chosen)

    def covers(self, category: str, level: Level = "action") -> bool:
        """Action: at least `min_segments` successful segments of some skill of this category.
        Plan: remembered decisions of some task of this (task) category."""
        if level == "plan":
            return category in self.task_categories.values()
        return any(m.category == category and m.segments >= self.min_segments
                   for m in self.skills.values())

    def confidence(self, name: str, level: Level = "action") -> Measured:
        """Trusted blindly (one success in one attempt) where the library remembers this very
        skill (at least `min_segments` successes) or task, else unmeasured. A memory has no
        held-out success rate of its own to offer: it either remembers or it does not, and
        since the skill (task) is a hard filter it cannot borrow another's memories."""
        if level == "plan":
            return BLIND if name in self.decisions else UNMEASURED
        m = self.skills.get(_name(name))
        return BLIND if m is not None and m.segments >= self.min_segments else UNMEASURED

    def propose(self, context: dict, category: str) -> Proposal | None:
        """The subgoal of the most similar remembered decision of the same task, if it is at
        least RECALL_SIMILARITY alike; its similarity is the confidence."""
        from memory.plan_policy import features

        remembered = self.decisions.get(context.get("task"))
        if not remembered:
            return None
        keys, labels = remembered
        query = features(context, self.plan_spec)
        sims = np.stack(keys) @ (query / max(float(np.linalg.norm(query)), 1e-9))  # (decisions,)
        best = int(_top(sims, 1)[0])
        if sims[best] < RECALL_SIMILARITY:
            return None
        return Proposal((labels[best],), float(sims[best]))

    def done(self) -> bool:
        return False  # a trajectory memory has no notion of done: the game's signal ends a subgoal

    def act(self, obs, skill) -> str:
        """Step-wise nearest-neighbour imitation; "noop" for a skill never remembered (the
        progress monitor then hands over to the slow path)."""
        name = _name(skill)
        if name not in self.skills:
            return "noop"
        query = self.embed(obs.local_view, [obs.inventory.get(i, 0) for i in self.items], obs.facing)[0]
        ranked = self._ranked_actions(name, query)
        choice = 0
        if self.loop_break:
            key = (name, query.tobytes())
            repeats = sum(1 for h in self._history if h == key)
            self._history.append(key)
            choice = repeats % len(ranked)
        return self.action_names[ranked[choice]]

    def reset(self, seed: int | None = None, world=None) -> None:
        """Forget the loop-breaking history (e.g. at an episode's start)."""
        self._history.clear()

    # ----- retrieval ------------------------------------------------------------------------

    def nearest(self, obs_or_state, skill, n: int = 1) -> list[Match]:
        """The `n` most similar remembered states of `skill`, best first. Takes an Observation
        or a (view, inventory vector, facing) tuple."""
        m = self.skills[_name(skill)].built()
        sims = m.matrix @ self._query(obs_or_state)
        order = _top(sims, n)
        return [Match(self.action_names[m.values[i]], float(sims[i]), int(m.where[i, 0]),
                      int(m.where[i, 1])) for i in order]

    def _query(self, state) -> np.ndarray:
        if hasattr(state, "local_view"):
            return self.embed(state.local_view, [state.inventory.get(i, 0) for i in self.items],
                              state.facing)[0]
        view, inventory, facing = state
        return self.embed(view, inventory, facing)[0]

    def _ranked_actions(self, skill: str, query: np.ndarray) -> list[int]:
        """Distinct actions, best first: the top-k vote's winner, then the other actions in
        the order of their best neighbour (the fall-backs of loop-breaking)."""
        m = self.skills[skill].built()
        sims = m.matrix @ query
        depth = max(self.k, 8) if self.loop_break else self.k
        order = _top(sims, depth)
        ranked: list[int] = []
        for i in order:
            a = int(m.values[i])
            if a not in ranked:
                ranked.append(a)
        if self.k > 1:  # similarity-weighted majority of the top k; ties to the best-ranked
            votes: dict[int, float] = {}
            for i in order[: self.k]:
                votes[int(m.values[i])] = votes.get(int(m.values[i]), 0.0) + float(sims[i])
            winner = max(votes, key=lambda a: (votes[a], -ranked.index(a)))
            ranked.remove(winner)
            ranked.insert(0, winner)
        return ranked


def _top(sims: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest values, best first (deterministic; among the n kept, ties go to
    the earliest remembered)."""
    n = min(n, len(sims))
    if n < len(sims):
        part = np.argpartition(-sims, n - 1)[:n]
        return part[np.lexsort((part, -sims[part]))]
    return np.lexsort((np.arange(len(sims)), -sims))


def _name(skill) -> str:
    return skill if isinstance(skill, str) else skill.name
