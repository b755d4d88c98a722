"""Pieces every benchmark script shares: its dataclass of arguments from argv, and appending
its table to RESULTS.md."""

from __future__ import annotations

import argparse
from dataclasses import fields


def parse_args(args_type, description: str):
    """Each dataclass field becomes a `--name` option with the field's default and type."""
    parser = argparse.ArgumentParser(description=description)
    for f in fields(args_type):
        parser.add_argument(f"--{f.name}", type=type(f.default), default=f.default)
    return args_type(**vars(parser.parse_args()))


def record(path: str, text: str) -> None:
    print(text)
    with open(path, "a") as fh:
        fh.write("\n" + text)


def rates(res: dict) -> str:
    """measure_fast's result as "skill wins/attempts, ..."."""
    return ", ".join(f"{s} {v['successes']}/{v['attempts']}" for s, v in res.items())


def overall(res: dict) -> float:
    """measure_fast's result pooled over its skills, in percent."""
    wins, tries = sum(v["successes"] for v in res.values()), sum(v["attempts"] for v in res.values())
    return 100 * wins / max(tries, 1)


class Tempered:
    """A sampling FastPolicy (`sample=True`) whose action distribution is sharpened:
    softmax(logits / T)."""

    def __init__(self, fast, temperature: float):
        self.fast, self.temperature = fast, temperature

    def __getattr__(self, name):
        return getattr(self.fast, name)

    def act(self, obs, skill):
        import torch

        real = torch.softmax
        torch.softmax = lambda x, dim: real(x / self.temperature, dim)
        try:
            return self.fast.act(obs, skill)
        finally:
            torch.softmax = real
