"""Behavioural-cloning data: the store's successful slow-path segments as tensors.

One sample per step: what the player saw (view, inventory, facing), the subgoal it pursued
(as the policy tokenizer's word ids), the action the slow path took, and `done` = 1 on the
step that completed the subgoal (the last step of a successful segment). The validation split
is by segment, never by step, so no segment leaks half into each side.

With `teacher=True` the fast path's own segments join, whatever their outcome, labelled with
the action the slow path would have taken at each of their steps (the runner records it):
DAgger (Ross et al. 2011). Behavioural cloning shows the policy only the states the slow path
walks through; one wrong step takes it where it has never been shown what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from envs.errors import PeamError
from memory import columns as C


NO_DATA = "no slow-path segments yet: run `peam run` or `peam demo` first"


class NoDataError(PeamError):
    """The store holds nothing to learn from."""


@dataclass
class Split:
    train: torch.Tensor  # (N_train,) sample indices
    val: torch.Tensor  # (N_val,) sample indices; empty when the data holds a single segment


class SegmentDataset:
    """Tensors over the steps of successful slow-path segments, in commit order.

    view (N, W, H) long; inventory (N, n_items) float; facing (N, 2) float; subgoal (N, words)
    long; action (N,) long; done (N,) float; segment (N,) long: which segment (0..S-1) a step
    came from. `skills` / `categories` (S,) name each segment's subgoal.
    """

    def __init__(self, store, tokenizer, *, game: str | None = None, category: str | None = None,
                 skill: str | None = None, path: str = "slow", limit: int | None = None,
                 map_radius: int = C.MAP_RADIUS, teacher: bool = False,
                 mirror: tuple[np.ndarray, np.ndarray] | None = None):
        rows = store.segments(path=path, outcome="success", category=category, skill=skill,
                              game=game, limit=limit)
        if teacher:
            rows += [r for r in store.segments(path="fast", category=category, skill=skill, game=game,
                                               limit=limit) if r.outcome != "interrupted"]
        views, maps, invs, facings, actions, dones, seg_ids = [], [], [], [], [], [], []
        side = 2 * map_radius + 1
        self.skills: list[str] = []
        self.categories: list[str] = []
        self.segment_ids: list[int] = []  # the store's ids
        self.relabelled = 0  # samples labelled by the teacher (fast-path steps)
        self.copies = 1  # 4 with `mirror`: each step also mirrored three ways
        for row in rows:
            data = store.load_steps(row.id)
            n = len(data.get(C.ACTION, ()))
            if n == 0:
                continue
            if row.path == "fast":
                if len(data.get(C.TEACHER, ())) != n:
                    continue  # recorded before the slow path shadowed the fast one: no labels
                data = {**data, C.ACTION: data[C.TEACHER]}
                self.relabelled += n
            k = len(self.skills)
            self.skills.append(row.skill)
            self.categories.append(row.category)
            self.segment_ids.append(row.id)
            steps = step_arrays(data, side)
            views.append(steps[C.VIEW])
            maps.append(steps[C.MAP])
            invs.append(steps[C.INVENTORY])
            facings.append(steps[C.FACING])
            actions.append(steps[C.ACTION])
            done = np.zeros(n, np.float32)
            done[-1] = float(row.outcome == "success")  # the step on which the game's counter rose
            dones.append(done)
            seg_ids.append(np.full(n, k, np.int64))
        if not self.skills:
            self.view = torch.zeros(0, 9, 7, dtype=torch.long)
            self.map = torch.zeros(0, side, side, dtype=torch.long)
            self.inventory = torch.zeros(0, 0)
            self.facing = torch.zeros(0, 2)
            self.action = torch.zeros(0, dtype=torch.long)
            self.done = torch.zeros(0)
            self.segment = torch.zeros(0, dtype=torch.long)
            self.subgoal = torch.zeros(0, tokenizer.max_words, dtype=torch.long)
            return
        self.view = torch.from_numpy(np.concatenate(views))
        self.map = torch.from_numpy(np.concatenate(maps))
        self.inventory = torch.from_numpy(np.concatenate(invs))
        self.facing = torch.from_numpy(np.concatenate(facings))
        self.action = torch.from_numpy(np.concatenate(actions))
        self.done = torch.from_numpy(np.concatenate(dones))
        self.segment = torch.from_numpy(np.concatenate(seg_ids))
        per_segment = tokenizer.encode(self.skills)  # (S, words)
        self.subgoal = per_segment[self.segment]  # (N, words)
        if mirror is not None:
            self._add_mirrored(*mirror)

    def _add_mirrored(self, flip_x: np.ndarray, flip_y: np.ndarray) -> None:
        """Append every step mirrored left–right, top–bottom and both, with its action mirrored
        (`flip_x` / `flip_y`: action index -> the mirrored action's index). The game's rules do
        not care which way is left, so each remembered step shows four: the policy learns "walk
        towards the tree" from a quarter of the steps. A copy keeps its segment's index, so a
        validation segment's copies stay out of training."""
        fx, fy = torch.as_tensor(flip_x, dtype=torch.long), torch.as_tensor(flip_y, dtype=torch.long)
        parts = {k: [getattr(self, k)] for k in ("view", "map", "inventory", "facing", "action", "done",
                                                  "segment", "subgoal")}
        for axes in ((1,), (2,), (1, 2)):
            parts["view"].append(self.view.flip(axes))  # (N, W, H): x is axis 1, y axis 2
            parts["map"].append(self.map.flip(axes))
            sign = torch.tensor([-1.0 if 1 in axes else 1.0, -1.0 if 2 in axes else 1.0])
            parts["facing"].append(self.facing * sign)
            action = self.action
            if 1 in axes:
                action = fx[action]
            if 2 in axes:
                action = fy[action]
            parts["action"].append(action)
            for k in ("inventory", "done", "segment", "subgoal"):
                parts[k].append(getattr(self, k))
        for k, v in parts.items():
            setattr(self, k, torch.cat(v))
        self.copies = 4

    def __len__(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_segments(self) -> int:
        return len(self.skills)

    def batch(self, idx: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The samples at `idx`, on `device`, keyed as the policy's forward takes them + targets."""
        return {C.VIEW: self.view[idx].to(device), C.MAP: self.map[idx].to(device),
                C.INVENTORY: self.inventory[idx].to(device),
                C.FACING: self.facing[idx].to(device), C.SUBGOAL: self.subgoal[idx].to(device),
                C.ACTION: self.action[idx].to(device), C.DONE: self.done[idx].to(device)}

    def split(self, val_fraction: float = 0.2, seed: int = 0,
              segments: list[int] | None = None) -> Split:
        """Train/validation sample indices, split by segment with a seeded shuffle; at least one
        segment goes to validation once there are two. `segments` restricts to those segments."""
        pool = list(range(self.n_segments)) if segments is None else list(segments)
        order = np.random.default_rng(seed).permutation(len(pool))
        n_val = 0 if len(pool) < 2 else max(1, round(val_fraction * len(pool)))
        val_segs = torch.tensor(sorted(pool[i] for i in order[:n_val]), dtype=torch.long)
        train_segs = torch.tensor(sorted(pool[i] for i in order[n_val:]), dtype=torch.long)
        in_val = torch.isin(self.segment, val_segs)
        in_train = torch.isin(self.segment, train_segs)
        return Split(train=torch.nonzero(in_train).flatten(), val=torch.nonzero(in_val).flatten())

    def segments_of(self, category: str) -> list[int]:
        return [i for i, c in enumerate(self.categories) if c == category]


def mirror_actions(action_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(flip_x, flip_y): each action's index -> its mirror image's index, left–right and
    top–bottom (only the moves change; `do`, crafting, placing and sleeping are their own)."""
    index = {n: i for i, n in enumerate(action_names)}

    def flip(pair: tuple[str, str]) -> np.ndarray:
        out = np.arange(len(action_names))
        for a, b in (pair, pair[::-1]):
            if a in index and b in index:
                out[index[a]] = index[b]
        return out

    return flip(("move_left", "move_right")), flip(("move_up", "move_down"))


def step_arrays(data: dict, side: int, limit: int | None = None) -> dict[str, np.ndarray]:
    """One segment's recorded steps (the store's STEP_KEYS arrays), the first `limit` of them,
    as the policy takes them: view, map (cropped to `side`) and action as int64, inventory and
    facing as float32."""
    n = len(data[C.ACTION])
    k = n if limit is None else min(n, limit)
    return {C.VIEW: data[C.VIEW][:k].astype(np.int64), C.MAP: _map_of(data, n, side)[:k],
            C.INVENTORY: data[C.INVENTORY][:k].astype(np.float32),
            C.FACING: data[C.FACING][:k].astype(np.float32), C.ACTION: data[C.ACTION][:k].astype(np.int64)}


def _map_of(data: dict, n: int, side: int) -> np.ndarray:
    """The recorded map crop, centre-cropped to `side`; zeros ("never seen") for segments
    recorded before maps were (the policy then learns from the view alone)."""
    if C.MAP not in data or side <= 1:
        return np.zeros((n, max(side, 1), max(side, 1)), np.int64)
    m = data[C.MAP].astype(np.int64)
    off = (m.shape[1] - side) // 2
    if off < 0:
        return np.pad(m, ((0, 0), (-off, -off), (-off, -off)))
    return m[:, off:off + side, off:off + side]
