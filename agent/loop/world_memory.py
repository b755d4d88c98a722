"""The agent's own memory of the world: a map it draws from what it has seen on screen.

It never reads the game's map. It knows where it is by dead reckoning: Crafter moves the
player first in a step, so a move succeeds exactly when the target cell was free on the
previous screen — the agent predicts that from its own view, then checks the new view
against its map and corrects itself if the two disagree.
"""

from __future__ import annotations

import numpy as np

from envs.base import Observation
from envs.knowledge import GameKnowledge

SIZE = 256  # map cells per side; the origin (where the agent starts) is the centre
DIRS = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
OUTSIDE = "outside"  # what `name_at` calls a cell beyond the world's edge


class WorldMemory:
    def __init__(self, cell_names: tuple[str, ...], walkable: tuple[str, ...],
                 knowledge: GameKnowledge = GameKnowledge()):
        self.names = cell_names
        self.ids = {n: i for i, n in enumerate(cell_names)}
        self.walkable_ids = {self.ids[n] for n in walkable}
        self.creature_ids = {self.ids[n] for n in knowledge.creatures if n in self.ids}
        # A move into a deadly cell succeeds (and kills): dead reckoning must expect it.
        self.enterable_ids = self.walkable_ids | {self.ids[n] for n in knowledge.deadly if n in self.ids}
        self.ground_id = self.ids.get(knowledge.ground, 0)
        self.static = np.zeros((SIZE, SIZE), np.int16)  # last material/plant seen; 0 = unknown
        self.seen_at = np.full((SIZE, SIZE), -1, np.int32)
        self.creatures: dict[tuple[int, int], int] = {}  # cell -> creature id, visible now
        self.pos = (SIZE // 2, SIZE // 2)
        self.facing = (0, 1)
        self.step = 0
        self.last_view: np.ndarray | None = None

    # -- updating ---------------------------------------------------------------------------

    def observe(self, obs: Observation, last_action: str | None) -> None:
        """Fold a new screen into the map; `last_action` is what produced it."""
        if "position" in obs.extras:  # the game reports it (Minecraft's debug screen)
            x, y = obs.extras["position"]
            self.pos = (SIZE // 2 + int(x), SIZE // 2 + int(y))
        elif self.last_view is not None and last_action in DIRS and not obs.sleeping:
            self.pos = self._localise(obs.local_view, DIRS[last_action])
        self.facing = obs.facing
        self.step += 1
        self._draw(obs.local_view)
        self.last_view = obs.local_view

    def _localise(self, view: np.ndarray, d: tuple[int, int]) -> tuple[int, int]:
        cx, cy = view.shape[0] // 2, view.shape[1] // 2
        ahead = int(self.last_view[cx + d[0], cy + d[1]])
        predicted_move = ahead in self.enterable_ids
        moved = (self.pos[0] + d[0], self.pos[1] + d[1])
        first, second = (moved, self.pos) if predicted_move else (self.pos, moved)
        # Check the prediction: the new view must agree with the map where it is known.
        if self._agreement(view, second) > self._agreement(view, first) + 3:
            return second
        return first

    def _agreement(self, view: np.ndarray, pos: tuple[int, int]) -> int:
        w, h = view.shape
        x0, y0 = pos[0] - w // 2, pos[1] - h // 2
        known = self.static[x0:x0 + w, y0:y0 + h]
        mask = (known > 0) & ~np.isin(view, list(self.creature_ids))
        return int((known[mask] == view[mask]).sum() - (known[mask] != view[mask]).sum())

    def _draw(self, view: np.ndarray) -> None:
        w, h = view.shape
        x0, y0 = self.pos[0] - w // 2, self.pos[1] - h // 2
        for c in [c for c in self.creatures if x0 <= c[0] < x0 + w and y0 <= c[1] < y0 + h]:
            del self.creatures[c]
        is_creature = np.isin(view, list(self.creature_ids))
        region = self.static[x0:x0 + w, y0:y0 + h]
        # A creature hides the ground under it: keep what was there, or guess grass.
        ground = np.where(is_creature, np.where(region > 0, region, self.ground_id), view)
        ground = np.where(view == 0, region, ground)  # 0: outside the world, nothing learnt
        self.static[x0:x0 + w, y0:y0 + h] = ground
        self.seen_at[x0:x0 + w, y0:y0 + h] = self.step
        for x, y in zip(*np.nonzero(is_creature)):
            if (x, y) != (w // 2, h // 2):
                self.creatures[(x0 + int(x), y0 + int(y))] = int(view[x, y])
        # Outside the world: mark as a wall so nobody walks there.
        outside = view == 0
        if outside.any():
            self.static[x0:x0 + w, y0:y0 + h][outside] = -1

    # -- queries ----------------------------------------------------------------------------

    def crop(self, radius: int) -> np.ndarray:
        """What the agent remembers around itself, (2r+1)² ids centred on it, creatures it
        sees now drawn over the ground; 0 = never seen (and outside the world)."""
        x, y = self.pos
        out = self.static[x - radius:x + radius + 1, y - radius:y + radius + 1].copy()  # (M, M)
        out[out < 0] = 0
        for (cx, cy), v in self.creatures.items():
            if abs(cx - x) <= radius and abs(cy - y) <= radius:
                out[cx - x + radius, cy - y + radius] = v
        out[radius, radius] = self.ids.get("player", 0)
        return out

    def name_at(self, cell: tuple[int, int]) -> str:
        if cell in self.creatures:
            return self.names[self.creatures[cell]]
        v = int(self.static[cell])
        return OUTSIDE if v < 0 else self.names[v]

    def cells_of(self, kinds: tuple[str, ...]) -> list[tuple[int, int]]:
        ids = [self.ids[k] for k in kinds if k in self.ids]
        out = [c for c, v in self.creatures.items() if v in ids]
        if any(i not in self.creature_ids for i in ids):
            xs, ys = np.nonzero(np.isin(self.static, ids))
            out += list(zip(xs.tolist(), ys.tolist()))
        return out

    def known_kinds(self, within: int) -> frozenset[str]:
        x, y = self.pos
        region = self.static[max(0, x - within):x + within + 1, max(0, y - within):y + within + 1]
        kinds = {self.names[i] for i in np.unique(region) if i > 0}
        kinds |= {self.names[v] for c, v in self.creatures.items()
                  if abs(c[0] - x) + abs(c[1] - y) <= within}
        return frozenset(kinds)
