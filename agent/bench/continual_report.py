"""The continual benchmark's report: two PNGs per memory mode and the RESULTS.md section
(`agent/bench/continual.py` runs the protocol)."""

from __future__ import annotations

import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path


def plots(result: dict, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem, stages = result["config"]["memory"], result["stages"]
    x = list(range(1, len(stages) + 1))
    fig, ax = plt.subplots(figsize=(7, 4))
    for s in result["skills"]:
        xs = [i + 1 for i, row in enumerate(result["matrix"]) if s in row]
        ax.plot(xs, [result["matrix"][i - 1][s] for i in xs], marker="o", label=s)
    ax.set_xticks(x, stages)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("stage (category arriving)")
    ax.set_ylabel("held-out fast-path success")
    ax.set_title(f"continual: success per skill after each stage ({mem})")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    success = out / f"continual_{mem}_success.png"
    fig.savefig(success, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(x, [100 * v for v in result["fast_share"]])
    ax.set_xticks(x, stages)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of steps on the fast path")
    ax.set_title(f"continual: fast-path share while playing ({mem})")
    fig.tight_layout()
    share = out / f"continual_{mem}_fast_share.png"
    fig.savefig(share, dpi=100)
    plt.close(fig)
    return {"success": str(success), "fast_share": str(share)}


def _pct(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def num(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _ms(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def markdown(result: dict, command: str, relative_to: str | Path | None = None) -> str:
    """A RESULTS.md section: command, machine, date, the matrix, the metrics, the plots."""
    cfg, stages, skills = result["config"], result["stages"], result["skills"]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ms = result["median_ms"]

    def link(p):
        if relative_to is None:
            return p
        return os.path.relpath(p, relative_to)

    lines = [f"## Continual learning, memory `{cfg['memory']}` ({now})", "",
             f"`{command}` on {platform.machine()}, {os.cpu_count()} cores, device {cfg['device']}; "
             f"{result['wall_s']:.0f} s wall. Stages {', '.join(stages)}; {cfg['episodes']} episode(s) "
             f"per task while playing, {cfg['eval_episodes']} held-out episode(s) per skill per evaluation.", ""]
    if result.get("note"):
        lines += [f"Note: {result['note']}.", ""]
    if cfg["memory"] == "shared-lora":
        lines += ["Note: the shared-LoRA baseline has no gate; its expert is promoted after every stage.", ""]
    lines += ["Held-out fast-path success R[stage][skill] (rows: after each stage):", "",
              "| after stage | " + " | ".join(skills) + " |",
              "| --- |" + " ---: |" * len(skills)]
    for stage, row in zip(stages, result["matrix"]):
        lines.append(f"| {stage} | " + " | ".join(_pct(row.get(s)) if s in row else "·" for s in skills) + " |")
    last = result["evaluations"][-1]
    lines += ["", "| skill | final | final fast-path successes / attempts | forgetting (max earlier − final) |",
              "| --- | ---: | ---: | ---: |"]
    for s in skills:
        lines.append(f"| {s} | {_pct(result['final'][s])} | {last[s]['successes']}/{last[s]['attempts']} | "
                     f"{100 * result['forgetting'][s]:+.0f} pp |")
    fp = ", ".join(f"{k} {v:,}" for k, v in result["footprint"].items()) or "none"
    lines += ["", f"BWT (mean final − right after own stage): **{100 * result['bwt']:+.1f} pp**. "
              f"Fast-path share of steps per stage: "
              + ", ".join(f"{s} {100 * v:.0f}%" for s, v in zip(stages, result["fast_share"]))
              + ". Planner calls per episode per stage: "
              + ", ".join(f"{v:.1f}" for v in result["planner_calls_per_episode"])
              + f". Median ms per decision: fast {_ms(ms['fast'])} "
              f"(median of {result['decisions']['fast']} episodes' means), slow "
              f"{_ms(ms['slow'])} ({result['decisions']['slow']}). "
              f"Held per category ({'bytes' if cfg['memory'] == 'retrieval' else 'parameters'}): {fp}.", ""]
    if result.get("replay"):
        rp = result["replay"]
        lines += [f"After the protocol, its tasks again on fresh seeds ({rp['episodes']} per skill), the "
                  f"memory arbitrated as in a run (not forced): **fast path {100 * rp['fast_share']:.0f}% "
                  f"of the steps**; task success "
                  + ", ".join(f"{s} {_pct(v)}" for s, v in rp["success"].items()) + ".", ""]
    if result.get("score"):
        sc = result["score"]
        lines += [f"After the protocol: **Crafter score {sc['crafter_score']:.1f}%** over {sc['episodes']} "
                  f"open-ended episodes of ≤ {sc['max_steps']} steps (mean {sc['mean_steps']:.0f} steps, "
                  f"{sc['died']} died), fast path {100 * sc['fast_share']:.0f}% of their steps.", ""]
    if result["log"]:
        lines += ["Consolidation: " + "; ".join(result["log"]) + ".", ""]
    lines += [f"![success per skill]({link(result['plots']['success'])}) "
              f"![fast-path share]({link(result['plots']['fast_share'])})", ""]
    return "\n".join(lines)
