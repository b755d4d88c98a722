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
