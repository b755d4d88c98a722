"""The savings benchmark's report: two PNGs (planner calls and wall time per episode) and the
RESULTS.md section (`agent/bench/savings.py` runs the protocol)."""

from __future__ import annotations

import time
from pathlib import Path

from agent.bench.savings import SCORE_SEED


def plots(result: dict, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    backends = list(result["backends"])
    modes = ["cursorless"] + [m for m in result["config"]["memories"]]
    for key, title, unit in (("calls", "planner calls per episode", "calls"),
                             ("wall_s", "wall time per episode", "s")):
        fig, axes = plt.subplots(1, max(len(backends), 1), figsize=(4.5 * max(len(backends), 1), 3.6), squeeze=False)
        for ax, backend in zip(axes[0], backends):
            rows = result["backends"][backend]["rows"]
            values = [rows[m]["all"][key] if m in rows else 0 for m in modes]
            ax.bar(range(len(modes)), values, color=["#bbbbbb", "#777777"] + ["#4c72b0"] * (len(modes) - 2))
            ax.set_xticks(range(len(modes)), ["no cursor" if m == "cursorless" else m for m in modes],
                          rotation=30, ha="right")
            ax.set_title(result["backends"][backend]["label"], fontsize=9)
            ax.set_ylabel(unit)
        fig.suptitle(f"craft tasks, unseen seeds: {title} (slow agent: no cursor, none)")
        fig.tight_layout()
        path = out / f"savings_{'calls' if key == 'calls' else 'wall'}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths[key] = str(path)
    return paths


def markdown(result: dict, command: str, relative_to: str | None = None) -> str:
    import os
    import platform

    import torch

    cfg = result["config"]
    when = time.strftime("%Y-%m-%d %H:%M")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    rel = (lambda p: os.path.relpath(p, relative_to)) if relative_to else (lambda p: p)
    lines = [f"## Savings: planner calls replaced by the memory ({when})", "",
             f"`{command}` — {machine}; {result['wall_s'] / 60:.0f} min. Craft tasks "
             f"({', '.join(result['tasks'])}): {cfg['episodes']} practice episodes each, then "
             f"{cfg['eval_episodes']} unseen seeds each per mode; the slow agent without its cursor on "
             f"{cfg['cursorless_episodes']} per task. Calls, tokens and seconds are per episode. The plan "
             f"memory answers above its calibrated thresholds (agreement {cfg.get('agreement', 0.95):g}) "
             f"and at least {cfg.get('plan_confidence', 0.5):g}.", ""]
    for backend, data in result["backends"].items():
        rows = data["rows"]
        none = rows.get("none", {}).get("all")
        lines += [f"**{data['label']}**", "",
                  "| agent | success | planner calls | vs slow | tokens in/out | wall s | vs slow | subgoals by memory | fast steps |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for mode, row in rows.items():
            a = row["all"]
            if not a["episodes"]:
                continue
            name = "slow, no cursor" if mode == "cursorless" else ("slow (cursor)" if mode == "none" else mode)
            fewer = ""
            if none and none["calls"] and mode != "none":
                fewer = f"{100 * (a['calls'] / none['calls'] - 1):+.0f}%"
            speed = f"{none['wall_s'] / a['wall_s']:.1f}×" if none and a["wall_s"] and mode != "none" else ""
            lines.append(f"| {name} | {a['successes']}/{a['episodes']} | {a['calls']:.2f} | {fewer} | "
                         f"{a['tokens_in']:.0f}/{a['tokens_out']:.0f} | {a['wall_s']:.2f} | {speed} | "
                         f"{100 * a['memory_share']:.0f}% | {100 * a['fast_share']:.0f}% |")
        lines.append("")
        per_task = " · ".join(f"{t} " + "/".join(f"{row['tasks'][t]['successes']}" for row in rows.values())
                              for t in result["tasks"])
        calls = " · ".join(f"{t} " + "/".join(f"{row['tasks'][t]['calls']:.2f}" for row in rows.values())
                           for t in result["tasks"])
        lines += [f"Successes per task ({' / '.join(rows)}): {per_task}.", "",
                  f"Planner calls per episode and task (same order): {calls}.", ""]
    if result.get("open"):
        op = result["open"]
        lines += [f"**Open-ended Crafter, {op['games']} games (seeds {SCORE_SEED}–{SCORE_SEED + op['games'] - 1}), "
                  f"symbolic planner, after {cfg['open_practice']} practice games**", "",
                  "| agent | Crafter score | planner calls / game | subgoals by memory | fast steps | mean steps | wall s / game |",
                  "|---|---|---|---|---|---|---|"]
        for mode, a in op["rows"].items():
            lines.append(f"| {'slow (cursor)' if mode == 'none' else mode} | {a['score']:.1f}% | {a['calls']:.1f} | "
                         f"{100 * a['memory_share']:.0f}% | {100 * a['fast_share']:.0f}% | {a['steps']:.0f} | {a['wall_s']:.2f} |")
        lines.append("")
        if op["llm"]:
            lines += [f"With the simulated LLM ({cfg['delay_s']:g} s), {cfg['open_llm_games']} games: "
                      + "; ".join(f"{m}: {a['calls']:.1f} calls, {a['wall_s']:.1f} s per game"
                                  for m, a in op["llm"].items()) + ".", ""]
        if op.get("craft_after"):
            lines += ["Forgetting: the craft tasks again after the open-ended stage (same unseen seeds): "
                      + "; ".join(f"{m} {a['all']['successes']}/{a['all']['episodes']} succeeded, "
                                  f"{a['all']['calls']:.2f} calls per episode, plan expert files unchanged: {a['intact']}"
                                  for m, a in op["craft_after"].items()) + ".", ""]
    if result["log"]:
        lines += ["Consolidation: " + "; ".join(result["log"]) + ".", ""]
    lines += [f"![planner calls]({rel(result['plots']['calls'])}) ![wall time]({rel(result['plots']['wall_s'])})", ""]
    return "\n".join(lines)
