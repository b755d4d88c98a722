"""The deliberate executor: acts on a subgoal step by step from what the agent sees.

It sees the screen's cells, the inventory and its own map (`WorldMemory`); it never reads the
game's state. Each skill kind is a small behaviour — go to a target and use it, place a block
where it may go, craft next to a table, dig a shelter and sleep — over shared path-finding.
Reflexes (hit a zombie that stands next to the agent) come before the subgoal.
"""

from __future__ import annotations

import numpy as np

from agent.loop import navigation as nav
from agent.loop.world_memory import DIRS, OUTSIDE, WorldMemory
from envs.base import Observation
from envs.catalog import Skill, SkillCatalog

MOVES = {v: k for k, v in DIRS.items()}


class DeliberateExecutor:
    def __init__(self, catalog: SkillCatalog, cell_names: tuple[str, ...], walkable: tuple[str, ...],
                 seed: int = 0):
        self.catalog = catalog
        self.cell_names = cell_names
        self.walkable = walkable
        self.knowledge = k = catalog.knowledge  # the game's cells that move, hurt, kill, shelter
        self.blocking = k.solid + (OUTSIDE,)  # what a creature cannot walk through
        # A monster next to us is fought, not fled (running costs more health): those a
        # combat skill can defeat.
        self.fought = {t for s in catalog.by_category("combat") for t in s.target} & set(k.hostile)
        # A cell can be broken through while the tools of a skill acting on it are held.
        self.breakers = {cell: [s.requires for s in catalog if cell in s.target] for cell in k.dig_costs}
        rest = catalog.producers(k.rest) if k.rest else []
        self.rest_skill = rest[0].name if rest else None
        self.place_wall = f"place_{k.wall}" if k.wall else None
        source = catalog.producers(k.wall)[:1] if k.wall else []
        self.digging_tools = source[0].requires if source else None  # what breaks rock into a shelter
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """A fresh map; reseeded per episode so an episode replays the same for the same seed."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.memory = WorldMemory(self.cell_names, self.walkable, self.knowledge)
        self._path: list[nav.Cell] | None = None
        self._path_key = None
        self._path_age = 0
        self._site: tuple[nav.Cell, nav.Cell] | None = None  # (p, q) of an open-ground shelter

    def observe(self, obs: Observation, last_action: str | None) -> None:
        self.memory.observe(obs, last_action)

    # -- deciding ---------------------------------------------------------------------------

    def act(self, obs: Observation, skill: Skill) -> str:
        if obs.sleeping:
            return "noop"
        reflex = self._reflex(obs)
        if reflex:
            return reflex
        if skill.name == self.rest_skill:
            return self._sleep(obs)
        if skill.places:
            return self._place(obs, skill)
        if skill.nearby:
            return self._craft(obs, skill)
        if skill.target:
            return self._use_target(obs, skill)
        if skill.name in skill.actions:  # a craft that needs no station: its own action
            return skill.name
        return "noop"

    def _reflex(self, obs: Observation) -> str | None:
        """Hit a monster standing next to us: running costs more health."""
        for d in nav.NEIGHBOURS:
            cell = (self.memory.pos[0] + d[0], self.memory.pos[1] + d[1])
            if self.memory.name_at(cell) in self.fought:
                return self._face_and(d, "do")
        return None

    def _face_and(self, d: tuple[int, int], action: str) -> str:
        """`action` if we face direction d, else a move towards d (a turn when it is blocked)."""
        return action if tuple(self.memory.facing) == tuple(d) else MOVES[tuple(d)]

    def _use_target(self, obs: Observation, skill: Skill) -> str:
        targets = set(self.memory.cells_of(skill.target))
        for d in nav.NEIGHBOURS:
            if (self.memory.pos[0] + d[0], self.memory.pos[1] + d[1]) in targets:
                return self._face_and(d, "do")
        if targets:
            moving = any(t in self.knowledge.creatures for t in skill.target)
            step = self._walk(obs, ("use", skill.name), nav.adjacent_to(self.memory, targets),
                              replan_every=1 if moving else 12)
            if step:
                return step
        return self._explore(obs, skill)

    def _place(self, obs: Observation, skill: Skill) -> str:
        mem = self.memory
        stations = [set(mem.cells_of((c,))) for c in self.knowledge.place_near.get(skill.places, ())]
        if stations and all(stations) and not all(self._within_one(mem.pos, s) for s in stations):
            near = self._walk(obs, ("near", skill.places),
                              lambda c: 0.0 if all(self._within_one(c, s) for s in stations) else None)
            if near:
                return near
        ahead = (mem.pos[0] + mem.facing[0], mem.pos[1] + mem.facing[1])
        if self._placeable(ahead, skill):
            return f"place_{skill.places}"
        options = [d for d in nav.NEIGHBOURS
                   if self._placeable((mem.pos[0] + d[0], mem.pos[1] + d[1]), skill)]
        # Turning needs a blocked cell; otherwise step forward and look at the next one.
        turnable = [d for d in nav.NEIGHBOURS
                    if mem.name_at((mem.pos[0] + d[0], mem.pos[1] + d[1])) not in self.walkable]
        for d in options:
            if d in turnable:
                return MOVES[d]
        if options:
            return MOVES[options[int(self.rng.integers(len(options)))]]
        return self._explore(obs, skill)

    def _placeable(self, cell: nav.Cell, skill: Skill) -> bool:
        return cell not in self.memory.creatures and self.memory.name_at(cell) in skill.where

    def _craft(self, obs: Observation, skill: Skill) -> str:
        mem = self.memory
        need = [set(mem.cells_of((k,))) for k in skill.nearby]
        if all(self._within_one(mem.pos, cells) for cells in need):
            return skill.name
        if all(need):
            step = self._walk(obs, ("craft", skill.nearby),
                              lambda c: 0.0 if all(self._within_one(c, s) for s in need) else None)
            if step:
                return step
        return self._explore(obs, skill)

    @staticmethod
    def _within_one(cell: nav.Cell, cells: set[nav.Cell]) -> bool:
        x, y = cell
        return any((x + dx, y + dy) in cells for dx in (-1, 0, 1) for dy in (-1, 0, 1))

    # -- sleeping in a shelter ----------------------------------------------------------------

    def _sleep(self, obs: Observation) -> str:
        """Rest behind walls: seal a pocket, dig one into rock, or walk towards rock first.
        Asleep, a zombie hits for 7, so the open is only for a quiet day or no energy left."""
        k, inv = self.knowledge, obs.inventory
        energy = inv.get(k.rest, 0)
        tired = energy < self.catalog.items[k.rest]["max"]
        if self._enclosed(self.memory.pos):
            return "sleep" if tired else "noop"  # a full bar cannot sleep; waiting still heals
        if k.wall and inv.get(k.wall, 0) >= 1:
            seal = self._seal()
            if seal:
                return seal
        tools = self.digging_tools
        if tools is not None and all(inv.get(item, 0) >= n for item, n in tools.items()):
            step = self._dig_shelter(obs)
            if step:
                return step
        step = self._build_shelter(obs) if k.wall else None
        if step:
            return step
        hostile = self.hostile_near(6)
        quiet_day = obs.daylight > 0.8 and not hostile
        if tired and (quiet_day or energy == 0) and not self.hostile_near(3):
            return "sleep"
        return self._explore(obs, None, toward_rock=True)

    def hostile_near(self, radius: int) -> bool:
        """A hostile creature (the game's threats) remembered within `radius` steps (Manhattan)."""
        x, y = self.memory.pos
        return any(self.cell_names[v] in self.knowledge.threats
                   and abs(c[0] - x) + abs(c[1] - y) <= radius
                   for c, v in self.memory.creatures.items())

    def _enclosed(self, cell: nav.Cell, limit: int = 6) -> bool:
        """No zombie can reach `cell`: the walkable region around it is small and walled."""
        seen, todo = {cell}, [cell]
        while todo:
            x, y = todo.pop()
            for dx, dy in nav.NEIGHBOURS:
                n = (x + dx, y + dy)
                if n in seen:
                    continue
                name = self.memory.name_at(n)
                if name in self.blocking:
                    continue
                if name == "unknown" or len(seen) >= limit:
                    return False
                seen.add(n)
                todo.append(n)
        return True

    def _seal(self) -> str | None:
        """Put a stone in the one opening of a pocket, or step to where we face it: from the
        deep end of a two-cell pocket, a step back leaves us facing its mouth."""
        mem = self.memory
        for d in nav.NEIGHBOURS:
            n = (mem.pos[0] + d[0], mem.pos[1] + d[1])
            if not self._free(n):
                continue
            if tuple(mem.facing) == d and self._would_enclose(mem.pos, n):
                return self.place_wall
            beyond = (n[0] + d[0], n[1] + d[1])
            if self._free(beyond) and self._would_enclose(n, beyond):
                return MOVES[d]
        return None

    def _free(self, cell: nav.Cell) -> bool:
        return self.memory.name_at(cell) in self.walkable and cell not in self.memory.creatures

    def _would_enclose(self, cell: nav.Cell, blocked: nav.Cell) -> bool:
        mem = self.memory
        old = mem.static[blocked]
        mem.static[blocked] = mem.ids[self.knowledge.wall]
        try:
            return self._enclosed(cell)
        finally:
            mem.static[blocked] = old

    def _dig_shelter(self, obs: Observation) -> str | None:
        """Walk into a rock face two cells deep, so one wall block seals us in (see `_seal`)."""
        mem, wall = self.memory, self.knowledge.wall
        if not mem.cells_of((wall,)):
            return None
        solid = self.knowledge.solid

        def inside_rock(c: nav.Cell) -> float | None:
            if mem.name_at(c) != wall or c == mem.pos:
                return None
            walls = sum(mem.name_at((c[0] + dx, c[1] + dy)) in solid for dx, dy in nav.NEIGHBOURS)
            return 0.0 if walls >= 3 else None

        path = nav.search(mem, self._step_costs(obs), inside_rock, max_nodes=3000)
        if path is None or len(path) < 2:
            return None
        return self._follow(path)

    def _walls(self, p: nav.Cell, q: nav.Cell) -> list[nav.Cell]:
        """Cells to block around the pocket p→q; the mouth behind p (sealed last) comes last."""
        d = (q[0] - p[0], q[1] - p[1])
        e = (d[1], d[0])
        cells = [(q[0] + d[0], q[1] + d[1]), (q[0] + e[0], q[1] + e[1]), (q[0] - e[0], q[1] - e[1]),
                 (p[0] + e[0], p[1] + e[1]), (p[0] - e[0], p[1] - e[1]), (p[0] - d[0], p[1] - d[1])]
        return [c for c in cells if self.memory.name_at(c) not in self.blocking]

    def _build_shelter(self, obs: Observation) -> str | None:
        """No rock to dig into: wall in a two-cell pocket from carried stones. A cell is faced only
        by stepping towards it from the cell behind, so each wall is placed after a two-cell run-up,
        and the mouth last, from the pocket itself (see `_seal`)."""
        mem, stones = self.memory, obs.inventory.get(self.knowledge.wall, 0)
        if self._site is None or len(self._walls(*self._site)) > stones or not all(map(self._free, self._site)):
            self._site = self._pick_site(stones)
        if self._site is None:
            return None
        p, q = self._site
        walls = self._walls(p, q)
        todo = walls[:-1] or walls  # the mouth only once the rest stands
        if not walls:
            return None
        ahead = (mem.pos[0] + mem.facing[0], mem.pos[1] + mem.facing[1])
        if ahead in todo and ahead not in mem.creatures:
            return self.place_wall
        pocket = {p, q}

        def run_up(c: nav.Cell) -> float | None:
            for dx, dy in nav.NEIGHBOURS:
                s, w = (c[0] + dx, c[1] + dy), (c[0] + 2 * dx, c[1] + 2 * dy)
                if w in todo and self._free(s) and s not in todo and (len(todo) == 1 or s not in pocket or w != walls[-1]):
                    return 0.0
            return None

        if run_up(mem.pos) is not None:
            for dx, dy in nav.NEIGHBOURS:
                s, w = (mem.pos[0] + dx, mem.pos[1] + dy), (mem.pos[0] + 2 * dx, mem.pos[1] + 2 * dy)
                if w in todo and self._free(s) and s not in todo:
                    return MOVES[(dx, dy)]
        return self._walk(obs, ("build", self._site), run_up, replan_every=1)

    def _pick_site(self, stones: int) -> tuple[nav.Cell, nav.Cell] | None:
        """The nearby pocket that needs fewest stones, within what we carry."""
        mem, best = self.memory, None
        for dx in range(-3, 4):
            for dy in range(-3, 4):
                p = (mem.pos[0] + dx, mem.pos[1] + dy)
                for d in nav.NEIGHBOURS:
                    q = (p[0] + d[0], p[1] + d[1])
                    if not (self._free(p) and self._free(q)):
                        continue
                    need = len(self._walls(p, q))
                    score = need * 3 + abs(dx) + abs(dy)
                    if 1 <= need <= stones and (best is None or score < best[0]):
                        best = (score, (p, q))
        return best[1] if best else None

    # -- moving -------------------------------------------------------------------------------

    def _walk(self, obs: Observation, key, goal, replan_every: int = 12) -> str | None:
        mem = self.memory
        # Monsters move: replan often while one is in sight so paths keep clear of them.
        if self.hostile_near(6):
            replan_every = min(replan_every, 2)
        valid = (self._path is not None and self._path_key == key and mem.pos in self._path
                 and self._path_age < replan_every)
        if valid:
            self._path = self._path[self._path.index(mem.pos):]
            self._path_age += 1
        else:
            self._path = nav.search(mem, self._step_costs(obs), goal,
                                    danger=self._danger(obs, key))
            self._path_key, self._path_age = key, 0
        if not self._path or len(self._path) < 2:
            self._path = None
            return None
        return self._follow(self._path)

    def _danger(self, obs: Observation, key) -> dict[nav.Cell, float]:
        """Cells near monsters cost extra, except near the one we hunt with health to spare."""
        k, ids = self.knowledge, self.memory.ids
        hunted = set(self.catalog[key[1]].target) if key[0] == "use" else set()
        if obs.inventory.get(k.health, 0) <= k.low_health:
            hunted = set()
        threats = {ids[name]: threat for name, threat in k.threats.items() if name in ids and name not in hunted}
        return nav.danger_map(self.memory, threats)

    def _step_costs(self, obs: Observation) -> dict[int, float]:
        """Walking, and breaking through the cells whose tools are held (`nav.step_costs`)."""
        inv = obs.inventory
        breakable = {cell: cost for cell, cost in self.knowledge.dig_costs.items()
                     if any(all(inv.get(i, 0) >= n for i, n in tools.items()) for tools in self.breakers[cell])}
        return nav.step_costs(self.memory, breakable)

    def _follow(self, path: list[nav.Cell]) -> str:
        mem = self.memory
        nxt = path[1]
        d = (nxt[0] - mem.pos[0], nxt[1] - mem.pos[1])
        if mem.name_at(nxt) in self.walkable:
            return MOVES[d]
        return self._face_and(d, "do")  # something to dig through first

    def _explore(self, obs: Observation, skill: Skill | None, toward_rock: bool = False) -> str:
        mem, k = self.memory, self.knowledge
        prefer: set[int] = set()
        if toward_rock or skill is not None and skill.requires and any(t in k.rock for t in skill.target):
            prefer = {mem.ids[c] for c in k.rock if c in mem.ids}
        lairs = [k.lairs[t] for t in skill.target if t in k.lairs] if skill is not None else []
        if lairs:  # a creature found only in some cells: look there
            prefer = {mem.ids[c] for lair in lairs for c in lair if c in mem.ids}
        goal = nav.frontier(mem, prefer)
        step = self._walk(obs, ("explore", skill.name if skill else None), goal, replan_every=24)
        if step:
            return step
        safe = [d for d in nav.NEIGHBOURS if mem.name_at((mem.pos[0] + d[0], mem.pos[1] + d[1])) not in k.deadly]
        return MOVES[safe[int(self.rng.integers(len(safe)))]] if safe else "noop"
