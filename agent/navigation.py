"""Path-finding over the agent's own map: Dijkstra where walking costs 1 and digging through
a cell the agent can break (stone with a pickaxe, a tree) costs more. Unknown cells are never
entered; a cell next to them is a frontier, where exploring goes."""

from __future__ import annotations

import heapq
from typing import Callable

import numpy as np

from agent.world_memory import WorldMemory

Cell = tuple[int, int]
NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))
WALK_COST = 1.0
DIG_COST = 3.0  # one `do` to break it, one move to step in, and the item it drops is a bonus


def step_costs(mem: WorldMemory, inventory: dict[str, int], may_dig: bool = True) -> dict[int, float]:
    """Cost of entering a cell, by cell id; ids not listed are impassable."""
    costs = {i: WALK_COST for i in mem.walkable_ids}
    if may_dig:
        digs = {"tree": 4.0}
        if inventory.get("wood_pickaxe", 0):
            digs.update(stone=DIG_COST, coal=DIG_COST)
        if inventory.get("stone_pickaxe", 0):
            digs["iron"] = DIG_COST
        if inventory.get("iron_pickaxe", 0):
            digs["diamond"] = DIG_COST
        costs.update({mem.ids[k]: v for k, v in digs.items() if k in mem.ids})  # Crafter's cells
    return costs


def search(mem: WorldMemory, costs: dict[int, float], is_goal: Callable[[Cell], float | None],
           max_nodes: int = 6000, slack: float = 0.0,
           danger: dict[Cell, float] | None = None) -> list[Cell] | None:
    """Cheapest path from the agent to a goal cell. `is_goal(cell)` returns None for a
    non-goal, or a bonus subtracted from that goal's cost; with `slack` > 0 the search goes
    on that much further to find a goal whose bonus makes it better. `danger` adds a cost to
    entering cells a monster can reach (see `danger_map`)."""
    danger = danger or {}
    start = mem.pos
    blocked = {c for c, v in mem.creatures.items()}
    dist = {start: 0.0}
    parent: dict[Cell, Cell] = {}
    heap = [(0.0, start)]
    best: tuple[float, Cell] | None = None
    expanded = 0
    static = mem.static
    while heap:
        d, cell = heapq.heappop(heap)
        if d > dist.get(cell, np.inf):
            continue
        if best is not None and d > best[0] + slack:
            break
        bonus = is_goal(cell)
        if bonus is not None:
            score = d - bonus
            if best is None or score < best[0]:
                best = (score, cell)
            if slack == 0:
                break
        expanded += 1
        if expanded > max_nodes:
            break
        x, y = cell
        for dx, dy in NEIGHBOURS:
            nxt = (x + dx, y + dy)
            if not (0 <= nxt[0] < static.shape[0] and 0 <= nxt[1] < static.shape[1]):
                continue
            step = costs.get(int(static[nxt]))
            if step is None or nxt in blocked:
                continue
            nd = d + step + danger.get(nxt, 0.0)
            if nd < dist.get(nxt, np.inf):
                dist[nxt] = nd
                parent[nxt] = cell
                heapq.heappush(heap, (nd, nxt))
    if best is None:
        return None
    path = [best[1]]
    while path[-1] != start:
        path.append(parent[path[-1]])
    return path[::-1]


def danger_map(mem: WorldMemory, hostile: set[int], weight: float = 1.0) -> dict[Cell, float]:
    """Extra cost of cells near monsters in sight: a zombie hits whoever stands next to it and
    walks one cell a step, and a skeleton shoots along its row and column up to 4 cells."""
    zombie, skeleton, arrow = mem.ids.get("zombie"), mem.ids.get("skeleton"), mem.ids.get("arrow")
    out: dict[Cell, float] = {}
    for (x, y), kind in mem.creatures.items():
        if kind not in hostile:
            continue
        if kind == zombie:
            for dx in range(-2, 3):
                for dy in range(-2, 3):
                    reach = abs(dx) + abs(dy)
                    if reach <= 2:
                        cell = (x + dx, y + dy)
                        out[cell] = out.get(cell, 0.0) + weight * (8.0 if reach <= 1 else 3.0)
        elif kind in (skeleton, arrow):  # an arrow flies on along its line; we cannot see which way
            for dx, dy in NEIGHBOURS:
                for k in range(0 if kind == arrow else 1, 5):
                    cell = (x + k * dx, y + k * dy)
                    if mem.name_at(cell) not in ("path", "grass", "sand"):
                        break
                    out[cell] = out.get(cell, 0.0) + weight * 4.0
    return out


def adjacent_to(mem: WorldMemory, targets: set[Cell]) -> Callable[[Cell], float | None]:
    def goal(cell: Cell) -> float | None:
        x, y = cell
        return 0.0 if any((x + dx, y + dy) in targets for dx, dy in NEIGHBOURS) else None

    return goal


def frontier(mem: WorldMemory, prefer: set[int] = frozenset(), bonus: float = 12.0):
    """Known passable cells next to unknown ones; cells of a preferred kind (say stone, when
    iron is wanted) are worth `bonus` steps of walking."""
    static = mem.static

    def goal(cell: Cell) -> float | None:
        x, y = cell
        if any(static[x + dx, y + dy] == 0 for dx, dy in NEIGHBOURS):
            near = static[x - 3:x + 4, y - 3:y + 4]
            return bonus if prefer and np.isin(near, list(prefer)).any() else 0.0
        return None

    return goal
