"""The games: the `Env` protocol, observations, skill catalogs and task suites.

Nothing heavy is imported here; `envs.make_env` loads a backend on demand.
"""

from envs.base import Env, Observation, StepResult
from envs.errors import PeamError, UnknownEnvError, UnknownTaskError

__all__ = [
    "Env", "Observation", "StepResult", "PeamError", "UnknownEnvError", "UnknownTaskError",
    "make_env", "ENV_NAMES",
]

ENV_NAMES = ("crafter", "minecraft", "minedojo")


def make_env(name: str, **kwargs) -> Env:
    """Build a game backend by name (`crafter`, `minecraft`, `minedojo`)."""
    if name == "crafter":
        from envs.crafter import CrafterEnv

        return CrafterEnv(**kwargs)
    if name == "minecraft":
        from envs.minecraft import MinecraftEnv  # a Node child process per episode

        return MinecraftEnv(**kwargs)
    if name == "minedojo":
        from envs.minedojo import MineDojoEnv  # optional extra; raises a PeamError if absent

        return MineDojoEnv(**kwargs)
    raise UnknownEnvError(f"unknown env {name!r}: choose one of {', '.join(ENV_NAMES)}")
