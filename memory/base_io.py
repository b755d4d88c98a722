"""The frozen base policy on disk: `<models>/base/` holds `model.safetensors` + `config.json`.

The base's file format sits beside the experts' (`memory/expert_io.py`): every reader (the fast
path, the session's checks, the CLI) loads it from here; training it is consolidation's
(`consolidation/trainer.py`). Writes are atomic (temp directory, fsync, rename), and the
models directory's lock makes sure two workers on an empty directory train the base once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from envs.errors import PeamError

if TYPE_CHECKING:  # torch loads only with the weights: has_base and the lock stay light
    from memory.policy import Policy

BASE_DIR, WEIGHTS, CONFIG = "base", "model.safetensors", "config.json"
LOCK = ".base.lock"  # under the models directory: one process at a time makes a base


def has_base(models_dir: str | Path) -> bool:
    """Whether a base policy has been written under `models_dir`."""
    return (Path(models_dir) / BASE_DIR / WEIGHTS).is_file()


@contextlib.contextmanager
def base_lock(models_dir: str | Path):
    """Hold the models directory's base lock (flock: released by the kernel if the holder
    dies), so two workers on an empty models directory train the base once and neither
    replaces it under the other (issue 19, item 4)."""
    models = Path(models_dir)
    made = not models.exists()
    models.mkdir(parents=True, exist_ok=True)
    with open(models / LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if made and [p.name for p in models.iterdir()] == [LOCK]:
                # Nothing was made (no data, say): leave no trace, as a refused command should.
                # A process waiting meanwhile keeps the lock's inode and re-checks the base.
                (models / LOCK).unlink()
                models.rmdir()
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_base(models_dir: str | Path, train: Callable[[], object]) -> bool:
    """Run `train` (which writes the base) unless a base exists, under the base lock; whether
    it trained."""
    with base_lock(models_dir):
        if has_base(models_dir):
            return False
        train()
        return True


def base_sha256(models_dir: str | Path) -> str:
    """The sha256 of the base's weights under `models_dir` (what experts record)."""
    return hashlib.sha256((Path(models_dir) / BASE_DIR / WEIGHTS).read_bytes()).hexdigest()


def experts_on_base(store, models_dir: str | Path) -> list:
    """The promoted action experts that stand on the base in `models_dir` (or on no recorded
    base): what replacing that base would orphan."""
    from memory.registry import experts

    if not has_base(models_dir):
        return []
    digest = base_sha256(models_dir)
    return [e for e in experts(store, status="promoted", kind="action")
            if e.base_sha256 in (None, digest)]


def game_spec(game: str) -> dict:
    """What a base saved for `game` records of it: the names its inputs and outputs index."""
    from envs import make_env

    env = make_env(game)
    return {"game": game, "cell_names": list(env.cell_names), "action_names": list(env.action_names),
            "items": list(env.catalog.items), "skill_names": list(env.catalog.names),
            "view_shape": tuple(env.view_shape)}


def save_base(policy: Policy, path: str | Path, extra: dict) -> None:
    """`model.safetensors` + `config.json` into a temporary directory, fsynced, renamed into
    place: a crash leaves the old base or the new one whole."""
    from safetensors.torch import save_file

    from memory.expert_io import atomic_dir

    cfg = {k: v for k, v in asdict(policy.config).items() if k != "device"}
    doc = {"policy": cfg, "n_cells": policy.cell_emb.num_embeddings, "n_items": policy.n_items,
           "n_actions": policy.action_head.out_features, **extra}
    with atomic_dir(path) as tmp:
        sd = {k: v.detach().contiguous().cpu() for k, v in policy.state_dict().items()}
        save_file(sd, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2))


def load_base(path: str | Path, device: str = "cpu") -> tuple[Policy, dict]:
    """The base policy saved in directory `path` (`<models>/base`) and its config.json, with
    `sha256`: the digest of the weights loaded (the bytes hashed are the bytes loaded)."""
    from safetensors.torch import load

    from memory.policy import PolicyConfig, build_policy

    path = Path(path)
    if not (path / WEIGHTS).is_file() or not (path / CONFIG).is_file():
        raise PeamError(f"{path} holds no base policy: run `peam train-base` first")
    doc = json.loads((path / CONFIG).read_text())
    saved = {"map_radius": 0, "targets": False, **doc["policy"]}  # bases saved before these inputs had none
    cfg = PolicyConfig(**{**saved, "view_shape": tuple(saved["view_shape"]), "device": device})
    policy = build_policy(cfg, doc["n_cells"], doc["n_items"], doc["n_actions"], doc["skill_names"])
    data = (path / WEIGHTS).read_bytes()
    policy.load_state_dict(load(data))
    return policy, {**doc, "sha256": hashlib.sha256(data).hexdigest()}
