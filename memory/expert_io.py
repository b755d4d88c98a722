"""One expert on disk: a directory with `adapter_model.safetensors` + `adapter_config.json`.

The format is PEFT's: tensors keyed `base_model.model.<module>.lora_A.weight` (no adapter name)
and a `LoraConfig`-shaped JSON, so a plain-LoRA expert (routing 'lora' or one 'category' expert)
loads with `peft.PeftModel.from_pretrained(base, path)`. Routed experts ('moram' atom groups,
the 'topk' mixture) add a `peam` block to the JSON, which PEFT cannot read, on purpose.
Writes are atomic (DESIGN.md "Promotion is atomic"): a temporary directory is written, fsynced
and renamed into place, so a crash leaves either the old directory or the new one whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from memory.inject import AdapterError, adapter_state_dict, load_adapter_state_dict, wrappers
from memory.lora import LoraConfig

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
PREFIX = "base_model.model."  # PEFT's PeftModel -> LoraModel -> your model
PLAIN = ("lora", "category")  # routings whose single expert is a plain LoRA


def adapter_config_dict(config: LoraConfig, target_modules: list[str]) -> dict:
    """PEFT `LoraConfig` fields; `target_modules` are the exact module paths the file holds."""
    d = {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": None,
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": target_modules,
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "use_rslora": False,
        "use_dora": False,
    }
    if config.routing not in PLAIN:
        d["peam"] = config.to_dict()
    return d


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _model_config(model: nn.Module) -> LoraConfig:
    layers = list(wrappers(model).values())
    if not layers:
        raise AdapterError("this model has no LoRA layers; call memory.inject.inject(model, config) first")
    return layers[0].config


def save_expert(model: nn.Module, expert: str, path: str | Path, config: LoraConfig | None = None) -> str:
    """Write `expert` to the directory `path` atomically; return the sha256 of its tensors file.

    Replacing an existing directory moves the old one aside first (rename(2) cannot swap
    directories); the registry writes each new expert version to a fresh path, which is atomic.
    """
    from safetensors.torch import save_file

    config = config or _model_config(model)
    path = Path(path)
    sd = {PREFIX + k: v.contiguous().cpu() for k, v in adapter_state_dict(model, expert).items()}
    targets = list(wrappers(model))
    with atomic_dir(path) as tmp:
        save_file(sd, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(adapter_config_dict(config, targets), indent=2))
    return sha256_of(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Write a directory's files into a temporary sibling (yielded), then fsync them, rename
    it into place and fsync the parent: a crash at any point leaves the old directory or the
    new one whole, never a mix (DESIGN.md, "Promotion is atomic and gated")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for f in tmp.iterdir():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)


def _replace_dir(src: Path, dst: Path) -> None:
    """rename(2) is atomic but will not replace a non-empty directory: move the old one aside."""
    if not dst.exists():
        os.rename(src, dst)
        return
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(dst, old)
    os.rename(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def sha256_of(path: str | Path) -> str:
    """sha256 of an expert's tensors file (`path` is the file or its directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_expert(path: str | Path, sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors (keys without PEFT's prefix) and the JSON config of an expert directory.

    With `sha256` (the registry's), the tensors file must hash to it: safetensors checks the
    header, not the numbers, so an altered tensor would otherwise load (issue 19, item 5). The
    bytes hashed are the bytes loaded."""
    from safetensors.torch import load

    path = Path(path)
    weights, cfg_file = path / WEIGHTS_NAME, path / CONFIG_NAME
    if not weights.is_file() or not cfg_file.is_file():
        raise AdapterError(f"{path} is not an expert directory: it needs {WEIGHTS_NAME} and {CONFIG_NAME}")
    try:
        cfg = json.loads(cfg_file.read_text())
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise AdapterError(f"{cfg_file} is not valid JSON ({e}); restore it or retrain the expert") from None
    data = weights.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise AdapterError(f"{weights} does not match the sha256 registered for it (altered or damaged "
                           "since it was trained): restore the file or retrain the expert")
    try:
        sd = load(data)
    except Exception as e:  # safetensors raises its own SafetensorError, OSError, ...
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AdapterError(f"{weights} is corrupt or truncated ({msg}); restore it or retrain the expert") from None
    return {k.removeprefix(PREFIX): v for k, v in sd.items()}, cfg


def load_expert(model: nn.Module, path: str | Path, expert: str, config: LoraConfig | None = None,
                sha256: str | None = None) -> None:
    """Load the expert at `path` into `model` under the name `expert`; a misfit (or, with
    `sha256`, a file that does not hash to it) raises AdapterError."""
    config = config or _model_config(model)
    sd, cfg = read_expert(path, sha256)
    saved = cfg.get("peam", {}).get("routing", "lora")
    if (saved in PLAIN) != (config.routing in PLAIN) or (saved not in PLAIN and saved != config.routing):
        raise AdapterError(f"{path} holds a {saved!r} expert but the model routes by {config.routing!r}")
    if cfg.get("r") != config.r or cfg.get("lora_alpha") != config.alpha:
        raise AdapterError(
            f"{path} was trained with r={cfg.get('r')}, alpha={cfg.get('lora_alpha')}; "
            f"the model is configured with r={config.r}, alpha={config.alpha}"
        )
    load_adapter_state_dict(model, sd, expert)
