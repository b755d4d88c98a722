"""Our `Env` seen as a `gymnasium.Env`, so Gymnasium's own checker can vet the contract and
Gymnasium-based code can drive any backend."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.base import Env, Observation


class GymnasiumEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, env: Env):
        self.env = env
        self._items = list(env.catalog.items)
        top = max(v["max"] for v in env.catalog.items.values())
        w, h = env.view_shape
        size = getattr(env, "size", 64)
        self.observation_space = gym.spaces.Dict({
            "rgb": gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
            "local_view": gym.spaces.Box(0, len(env.cell_names) - 1, (w, h), np.int16),
            "inventory": gym.spaces.Box(0, top, (len(self._items),), np.int16),
        })
        self.action_space = gym.spaces.Discrete(len(env.action_names))

    def _convert(self, obs: Observation) -> dict:
        inv = np.array([obs.inventory.get(k, 0) for k in self._items], np.int16)
        return {"rgb": obs.rgb, "local_view": obs.local_view.astype(np.int16), "inventory": inv}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**31 - 1))
        obs, info = self.env.reset(seed=seed)
        return self._convert(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(int(action))
        return self._convert(obs), reward, terminated, truncated, info

    def close(self):
        self.env.close()
