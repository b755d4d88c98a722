"""Pieces every benchmark script shares: its dataclass of arguments from argv, and appending
its table to RESULTS.md."""

from __future__ import annotations

import argparse
from dataclasses import fields


def parse_args(args_type, description: str):
    """Each dataclass field becomes a `--name` option with the field's default and type; a
    bool field reads true/false, yes/no, 1/0 (`bool("False")` would be True)."""
    parser = argparse.ArgumentParser(description=description)
    for f in fields(args_type):
        kind = _flag if isinstance(f.default, bool) else type(f.default)
        parser.add_argument(f"--{f.name}", type=kind, default=f.default)
    return args_type(**vars(parser.parse_args()))


def _flag(text: str) -> bool:
    word = text.strip().lower()
    if word in ("true", "yes", "1"):
        return True
    if word in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


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


def sharpened(fast, temperature: float):
    """The sampling FastPolicy `fast` (`sample=True`), its action distribution sharpened in place
    to softmax(logits / temperature): the action head of every network it acts with (the base
    and each copy with an expert folded in) is divided by the temperature. That head is a plain
    linear layer no expert adapts (memory/lora.py DEFAULT_TARGETS), so its output, the logits,
    is divided exactly; the action mask (-inf) and the argmax are unchanged by it."""
    import torch

    heads = {id(net.action_head): net.action_head for net in [fast.policy, *fast.merged.values()]}
    with torch.no_grad():
        for head in heads.values():
            if type(head) is not torch.nn.Linear:
                raise TypeError(f"cannot sharpen an adapted action head ({type(head).__name__})")
            head.weight /= temperature
            head.bias /= temperature
    return fast
