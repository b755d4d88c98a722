"""What a game tells the agent beyond its skills: which cells move, hurt or kill, how hostile
creatures reach the player, what a shelter is built of, when to rest, what to do when idle.

Each game declares one `GameKnowledge` with its catalog (envs/crafter.py derives most of
Crafter's from its data.yaml), and the agent reads it there: agent/ names no cell, creature,
item or skill of any game. A field left empty means the game has no such thing, and the
behaviour that needs it never starts (no hostile creatures: no danger costs, no reflexes).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Threat:
    """How one hostile creature hurts, as path-finding prices the cells around it."""

    melee: tuple[float, ...] = ()  # extra cost of a cell by its Manhattan distance 0, 1, 2, ...
    shoots: int = 0  # cells along its row and column it hits from afar
    shot_cost: float = 0.0  # extra cost of each cell on those lines
    in_flight: bool = False  # a missile: its lines start at its own cell, not the next one


@dataclass(frozen=True)
class GameKnowledge:
    """The game's declarations the agent acts on; every name is one of the game's cells,
    items or skills."""

    creatures: tuple[str, ...] = ()  # cells that move by themselves; the map keeps the ground under them
    ground: str | None = None  # what a creature most likely stands on, where the map never saw under it
    sturdy: tuple[str, ...] = ()  # cells with hidden health: a hit may change nothing visible
    deadly: tuple[str, ...] = ()  # cells that kill whoever steps on them (a move into one succeeds)
    solid: tuple[str, ...] = ()  # cells no creature walks through: the walls of a shelter
    threats: dict[str, Threat] = field(default_factory=dict)  # hostile creatures and how they hurt
    danger_radius: int = 0  # steps within which a hostile creature puts the player in danger
    lairs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # creature -> the only cells it lives on
    rock: tuple[str, ...] = ()  # cells of the rock where tool-gated materials lie; shelters dig in
    dig_costs: dict[str, float] = field(default_factory=dict)  # cell -> cost of breaking through it
    place_near: dict[str, tuple[str, ...]] = field(default_factory=dict)  # placed cell -> cells it wants in reach
    wall: str | None = None  # the item a shelter's walls are placed from (and the cell it becomes)
    rest: str | None = None  # the vital that sleeping restores
    health: str | None = None  # the vital whose end is death
    low_health: int = 0  # health under which the agent rests instead of risking a fight
    night: float | None = None  # daylight under which hostile creatures come out
    survival: dict[str, int] = field(default_factory=dict)  # vital -> level under which it pre-empts the task
    weapons: tuple[str, ...] = ()  # items that shorten fights, cheapest first
    # Open-ended play with every goal met: keep these items stocked, in order, each up to its
    # count; all stocked, the last one again. Empty: the episode ends.
    idle: tuple[tuple[str, int], ...] = ()

    @property
    def hostile(self) -> tuple[str, ...]:
        return tuple(self.threats)
