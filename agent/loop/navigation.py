"""Path-finding over the agent's own map: Dijkstra where walking costs 1 and digging through
a cell the agent can break (the game's `dig_costs`, with the tools held) costs more. Unknown
cells are never entered; a cell next to them is a frontier, where exploring goes."""

from __future__ import annotations

import heapq
from typing import Callable

import numpy as np

from agent.loop.world_memory import WorldMemory
from envs.knowledge import Threat

Cell = tuple[int, int]
NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))
WALK_COST = 1.0


def step_costs(mem: WorldMemory, breakable: dict[str, float] | None = None) -> dict[int, float]:
    """Cost of entering a cell, by cell id; ids not listed are impassable. `breakable`: the
    cells the agent can break through now (its tools held), with what breaking one costs."""
    costs = {i: WALK_COST for i in mem.walkable_ids}
    costs.update({mem.ids[k]: v for k, v in (breakable or {}).items() if k in mem.ids})
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


def danger_map(mem: WorldMemory, threats: dict[int, Threat], weight: float = 1.0) -> dict[Cell, float]:
    """Extra cost of cells near the hostile creatures in sight (`threats`, by cell id): the
    cells within reach of a melee attacker, priced by distance, and the open lines along which
    a shooter fires, up to what stands in the way."""
    out: dict[Cell, float] = {}
    for (x, y), kind in mem.creatures.items():
        threat = threats.get(kind)
        if threat is None:
            continue
        reach = len(threat.melee) - 1
        for dx in range(-reach, reach + 1):
            for dy in range(-reach, reach + 1):
                if abs(dx) + abs(dy) <= reach:
                    cell = (x + dx, y + dy)
                    out[cell] = out.get(cell, 0.0) + weight * threat.melee[abs(dx) + abs(dy)]
        for dx, dy in NEIGHBOURS if threat.shoots else ():
            for k in range(0 if threat.in_flight else 1, threat.shoots + 1):
                cell = (x + k * dx, y + k * dy)
                if cell in mem.creatures or int(mem.static[cell]) not in mem.walkable_ids:
                    break
                out[cell] = out.get(cell, 0.0) + weight * threat.shot_cost
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
