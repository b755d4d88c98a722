"""The game contract: what an agent sees (`Observation`) and the Gymnasium-shaped `Env`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Observation:
    """Everything a player sees on screen, and nothing else.

    `local_view` holds one id per visible cell, indexed [x, y] with the player at the centre;
    ids index `Env.cell_names`. 0 is "nothing known" (outside the world). There is no world map
    and no absolute position: an agent that wants either must build it from what it has seen.
    """

    rgb: np.ndarray  # (H, W, 3) uint8, the rendered frame
    local_view: np.ndarray  # (view_w, view_h) int16 cell ids, player at the centre
    inventory: dict[str, int]  # items and vitals (health, food, drink, energy)
    facing: tuple[int, int] = (0, 1)  # the player sprite's direction, (dx, dy)
    sleeping: bool = False
    daylight: float = 1.0  # 1 = noon, 0 = darkest night, as the screen shows it
    extras: dict[str, Any] = field(default_factory=dict)  # backend-specific, agent-visible

    @property
    def center(self) -> tuple[int, int]:
        w, h = self.local_view.shape
        return w // 2, h // 2


class StepResult(NamedTuple):
    observation: Observation
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


@runtime_checkable
class Env(Protocol):
    """Gymnasium's five-method shape.

    `info["achievements"]` holds the game's own counters: its task-success signal. The runner
    scores with them (an episode's achievements, a task's success, the Crafter score) and
    nothing else reads them: what the agent knows it achieved, and every planner, prompt and
    policy input, comes from the observations and the reward (agent/loop/achieved.py).
    """

    name: str
    action_names: tuple[str, ...]
    cell_names: tuple[str, ...]
    walkable: tuple[str, ...]  # cells a player can step on
    view_shape: tuple[int, int]  # (width, height) of `Observation.local_view`

    @property
    def catalog(self): ...

    def reset(self, *, seed: int | None = None) -> tuple[Observation, dict[str, Any]]: ...

    def step(self, action: int) -> StepResult: ...

    def close(self) -> None: ...
