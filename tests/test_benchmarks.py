"""The benchmark scripts: each one imports and parses its arguments, and their shared pieces
(benchmarks/common.py) do what they say."""

from __future__ import annotations

import copy
import importlib
import pathlib
import sys
from types import SimpleNamespace

import pytest
import torch

from envs import make_env
from memory.policy import PolicyConfig, build_policy

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in ("__init__", "common"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_imports_and_answers_help(script, monkeypatch, capsys):
    """In this process (a fresh interpreter per script costs seconds of imports each)."""
    module = importlib.import_module(f"benchmarks.{script}")
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code in (0, None)
    assert "usage:" in capsys.readouterr().out


def test_sharpened_divides_every_networks_logits_by_the_temperature_once():
    from benchmarks.common import sharpened

    env = make_env("crafter")
    net = build_policy(PolicyConfig(), len(env.cell_names), len(env.catalog.items),
                       len(env.action_names), env.catalog.names).eval()
    folded = copy.deepcopy(net)
    fast = SimpleNamespace(policy=net, merged={"gather": folded, "same net twice": net})
    view = torch.zeros((1, *env.view_shape), dtype=torch.long)  # (1, W, H)
    inputs = (view, torch.zeros(1, len(env.catalog.items)), torch.zeros(1, 2),
              net.tokenizer.encode(["collect_wood"]))
    with torch.no_grad():
        before = [m(*inputs) for m in (net, folded)]
        sharpened(fast, 0.25)
        after = [m(*inputs) for m in (net, folded)]
    for (logits, done), (sharp, done_after) in zip(before, after):
        torch.testing.assert_close(sharp, logits / 0.25)
        torch.testing.assert_close(done_after, done)  # the "subgoal done" head is left alone


def test_a_bool_argument_reads_false_as_false(monkeypatch, capsys):
    from dataclasses import dataclass

    from benchmarks.common import parse_args

    @dataclass
    class Args:
        mirror: bool = True
        episodes: int = 3

    for word, value in [("False", False), ("no", False), ("0", False), ("true", True), ("YES", True)]:
        monkeypatch.setattr(sys, "argv", ["x.py", "--mirror", word])
        assert parse_args(Args, "d") == Args(mirror=value)
    monkeypatch.setattr(sys, "argv", ["x.py", "--mirror", "maybe"])
    with pytest.raises(SystemExit):
        parse_args(Args, "d")
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err
