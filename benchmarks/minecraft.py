"""The slow agent (symbolic planner + deliberate executor) on the Minecraft backend: a task on
`--episodes` seeds, one Node server + bot per episode.

Reports successes, seconds per episode (median, min, max; the process start included),
actions per second, the Node process's peak resident memory, and the installed size of the
Node packages and the time of a fresh `npm ci` (into a temporary directory, `--install 0` to
skip). Appends the table to `--results` with the command, the machine and the date.

    python benchmarks/minecraft.py --task make_stone_pickaxe --episodes 10 --seed 1000
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import parse_args, record  # noqa: E402


@dataclass
class Args:
    task: str = "make_stone_pickaxe"
    episodes: int = 10
    seed: int = 1000
    install: int = 1  # 1: time a fresh `npm ci` (needs the npm registry), 0: skip
    results: str = "benchmarks/RESULTS.md"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def play(env, task, seed: int) -> dict:
    from agent.loop.runner import Runner

    runner = Runner(env)
    rss = []
    runner.on_step = lambda _n: rss.append(peak_rss_mb(env.pid)) if env.pid else None
    t0 = time.perf_counter()
    result = runner.run_episode(task, seed)
    seconds = time.perf_counter() - t0
    env.close()
    return {"seed": seed, "success": result.success, "steps": result.steps, "seconds": seconds,
            "rss": max(rss, default=float("nan")), "error": result.error}


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def fresh_install() -> tuple[float, float]:
    """Seconds of `npm ci` + pruning into an empty directory, and the size it leaves."""
    from envs import minecraft_process as mp

    with tempfile.TemporaryDirectory() as tmp:
        os.environ[mp.DIR_ENV] = tmp
        try:
            t0 = time.perf_counter()
            mp.ensure_installed()
            return time.perf_counter() - t0, du_mb(Path(tmp) / "node_modules")
        finally:
            del os.environ[mp.DIR_ENV]


def main() -> None:
    args = parse_args(Args, __doc__.splitlines()[0])
    from envs.minecraft import MinecraftEnv
    from envs.minecraft_process import ensure_installed
    from envs.tasks import resolve_task

    modules = ensure_installed()
    env = MinecraftEnv()
    task = resolve_task(args.task, env.catalog)
    episodes = []
    for seed in range(args.seed, args.seed + args.episodes):
        ep = play(env, task, seed)
        episodes.append(ep)
        print(f"seed {seed}: {'success' if ep['success'] else 'failure'}, {ep['steps']} actions, "
              f"{ep['seconds']:.1f} s, peak RSS {ep['rss']:.0f} MB{' — ' + ep['error'] if ep['error'] else ''}",
              flush=True)
    install_s, install_mb = fresh_install() if args.install else (float("nan"), du_mb(modules))
    secs = [e["seconds"] for e in episodes]
    wins = sum(e["success"] for e in episodes)
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    rows = [
        ("successes", f"{wins}/{len(episodes)}"),
        ("seconds per episode (median, min, max)",
         f"{statistics.median(secs):.1f}, {min(secs):.1f}, {max(secs):.1f}"),
        ("actions per episode (median)", f"{statistics.median(e['steps'] for e in episodes):.0f}"),
        ("actions per second (all episodes)", f"{sum(e['steps'] for e in episodes) / sum(secs):.2f}"),
        ("Node peak RSS, MB (max over episodes)", f"{max(e['rss'] for e in episodes):.0f}"),
        ("node_modules after pruning, MB", f"{install_mb:.0f}"),
        ("fresh npm ci + pruning, s", f"{install_s:.1f}"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    cpu = platform.processor() or platform.machine()
    text = (f"\n## Minecraft backend: {task.name} on seeds {args.seed}-{args.seed + args.episodes - 1}\n\n"
            f"`{' '.join(['python'] + sys.argv)}` — {platform.node()} ({cpu}, {os.cpu_count()} cores, "
            f"Node {node}, shared with other jobs), {date.today()}\n\n"
            f"| measure | value |\n|---|---|\n{table}\n")
    record(args.results, text)


if __name__ == "__main__":
    main()
