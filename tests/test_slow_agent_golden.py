"""The slow agent replays the same game for the same seed: golden trajectories on Crafter,
recorded before the game's knowledge moved from agent/ to envs/ (issue 18), so any change of
behaviour on Crafter shows here. A deliberate change of behaviour re-records them (`_play`)."""

from __future__ import annotations

import hashlib

import pytest

from agent.loop.runner import Runner
from envs.crafter import CrafterEnv
from envs.tasks import resolve_task

# task, seed, step limit -> steps, planner calls, sha256 of the actions (first 16 hex digits)
GOLDEN = [
    (("make_stone_pickaxe", 1, None), (37, 1, "691389825edfb717")),
    (("make_iron_pickaxe", 3, None), (154, 2, "b3abf211ad39dacd")),  # a furnace placed beside the table
    # Open-ended: night, a shelter, zombies, a skeleton in the tunnels, a sword.
    (("all_achievements", 2, 400), (400, 11, "00404d4dd2e98605")),
]


class _RecordingCrafter(CrafterEnv):
    def reset(self, *, seed=None):
        self.actions: list[int] = []
        return super().reset(seed=seed)

    def step(self, action):
        self.actions.append(int(action))
        return super().step(action)


def _play(env: _RecordingCrafter, task: str, seed: int, max_steps: int | None) -> tuple[int, int, str]:
    result = Runner(env).run_episode(resolve_task(task, env.catalog, max_steps), seed)
    return result.steps, result.planner_calls, hashlib.sha256(bytes(env.actions)).hexdigest()[:16]


@pytest.fixture(scope="module")
def env():
    return _RecordingCrafter()


@pytest.mark.parametrize("episode, expected", GOLDEN, ids=[f"{t}-{s}" for (t, s, _), _ in GOLDEN])
def test_the_slow_agent_takes_the_recorded_actions_on_crafter(env, episode, expected):
    assert _play(env, *episode) == expected
