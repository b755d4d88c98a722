"""`peam bench ...`: the benchmarks whose tables go to benchmarks/RESULTS.md, a typer sub-app
that agent/cli.py adds. Imports are deferred into the commands, as in agent/cli.py, so
`peam --help` starts without torch."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from agent.services.memory_modes import MODES
from agent.services.views import terminal_console

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks whose tables go to benchmarks/RESULTS.md.")


def _append_section(results: str, markdown, result: dict, name: str) -> str:
    """Append the benchmark's markdown section, headed by the command that ran it, to `results`
    (links relative to it); returns the section."""
    import os
    import shlex

    command = f"peam bench {name} " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    text = markdown(result, command.strip(), relative_to=os.path.dirname(os.path.abspath(results)))
    with open(results, "a") as fh:
        fh.write("\n" + text)
    return text


@bench_app.command("continual")
def bench_continual(
    memory: str = typer.Option("peam", help=f"The memory mode: {', '.join(MODES)}."),
    episodes: int = typer.Option(48, min=1, help="Episodes per task of each stage while playing."),
    eval_episodes: int = typer.Option(12, min=1, help="Held-out episodes per skill per evaluation (and at the gate)."),
    score_episodes: int = typer.Option(10, min=0, help="Open-ended episodes after the last stage, for the Crafter score (0: skip)."),
    score_steps: int = typer.Option(10_000, min=1, help="Their step limit (Crafter's own episode length: 10,000)."),
    stages: int = typer.Option(4, min=1, max=4, help="How many stages (gather, build, craft, survive) to run."),
    practice_rounds: int = typer.Option(0, min=0, help="peam: practice (DAgger) rounds per job before the gate; 0: behavioural cloning alone."),
    practice_episodes: int = typer.Option(8, min=1, help="peam: practice episodes per skill per round."),
    mirror: bool = typer.Option(False, "--mirror", help="peam: train on every step mirrored left-right and top-bottom too."),
    targets: bool = typer.Option(True, "--targets/--no-targets", help="The policy's per-kind target tokens (where each kind's nearest cell lies)."),
    out: Optional[str] = typer.Option(None, help="Directory for the PNGs and stores (default: benchmarks/continual)."),
    device: str = typer.Option("cpu", help="auto (cuda when visible, else cpu), cpu or cuda."),
    results: str = typer.Option("benchmarks/RESULTS.md", help="Markdown file the section is appended to."),
):
    """Continual learning: categories arrive stage after stage; measure what the memory keeps."""
    from agent.bench.continual import ContinualConfig, run_continual
    from agent.bench.continual_report import markdown
    from consolidation.pipeline import ConsolidationConfig

    training = ConsolidationConfig(practice_rounds=practice_rounds, practice_episodes=practice_episodes,
                                   mirror=mirror, targets=targets)
    cfg = ContinualConfig(memory=memory, stages=stages, episodes=episodes, eval_episodes=eval_episodes,
                          device=device, out=out or "benchmarks/continual", score_episodes=score_episodes,
                          score_steps=score_steps, consolidation=training)
    cfg.validate()  # before anything is written
    console = terminal_console()
    result = run_continual(cfg, console)
    _append_section(results, markdown, result, "continual")
    console.print(f"BWT {100 * result['bwt']:+.1f} pp; final "
                  + ", ".join(f"{s} {100 * r:.0f}%" for s, r in result["final"].items())
                  + f"; plots {result['plots']['success']}, {result['plots']['fast_share']}; "
                  f"appended to {results}; store and models kept in {result['work']} "
                  "(benchmarks/memory_score.py replays them)")


@bench_app.command("savings")
def bench_savings(
    backends: str = typer.Option("symbolic,hf,openai", help="Planner backends, comma-separated: symbolic, hf "
                                                          "(a random tiny local model), openai (a simulated remote LLM)."),
    memories: str = typer.Option("none,retrieval,plan-cache,peam,moram", help="Memory modes, comma-separated."),
    tasks: str = typer.Option("", help="Craft tasks, comma-separated (default: every make_* task)."),
    episodes: int = typer.Option(72, min=1, help="Practice episodes per craft task (the slow agent's, with its planner)."),
    eval_episodes: int = typer.Option(12, min=1, help="Unseen episodes per task and memory mode."),
    cursorless_episodes: int = typer.Option(2, min=0, help="Episodes per task of the slow agent without its plan cursor."),
    gate_episodes: int = typer.Option(6, min=1, help="Held-out episodes per task at the plan gate."),
    open_practice: int = typer.Option(40, min=0, help="Open-ended practice games (0: skip open-ended Crafter)."),
    open_games: int = typer.Option(120, min=0, help="Open-ended games per memory mode."),
    open_llm_games: int = typer.Option(3, min=0, help="Open-ended games with the simulated LLM (none and peam)."),
    delay: float = typer.Option(1.0, min=0.0, help="Seconds the simulated remote LLM takes per answer."),
    device: str = typer.Option("cpu", help="cpu or cuda (plan experts' training)."),
    agreement: float = typer.Option(0.95, min=0.0, max=1.0, help="Plan experts' calibration: the share of held-out "
                                    "choices above a task's threshold that must be the planner's (0: no calibration)."),
    plan_confidence: float = typer.Option(0.5, min=0.0, max=1.0, help="The arbiter's floor: the plan memory's least "
                                          "probability of a proposal on a focused task."),
    out: str = typer.Option("benchmarks/savings", help="Directory for the PNGs."),
    results: str = typer.Option("benchmarks/RESULTS.md", help="Markdown file the section is appended to."),
    keep_work: bool = typer.Option(False, help="Keep the practice stores and models (a temp directory) to inspect."),
):
    """Planner calls, tokens and wall time per episode, before and after consolidation, per
    planner backend and memory mode; open-ended Crafter scores."""
    from agent.bench.savings import SavingsConfig, run_savings
    from agent.bench.savings_report import markdown

    split = lambda text: tuple(x.strip() for x in text.split(",") if x.strip())  # noqa: E731
    cfg = SavingsConfig(backends=split(backends), memories=split(memories), tasks=split(tasks), episodes=episodes,
                        eval_episodes=eval_episodes, cursorless_episodes=cursorless_episodes,
                        gate_episodes=gate_episodes, open_practice=open_practice, open_games=open_games,
                        open_llm_games=open_llm_games, delay_s=delay, device=device, out=out,
                        keep_work=keep_work, agreement=agreement, plan_confidence=plan_confidence)
    cfg.validate()  # before anything runs
    console = terminal_console()
    result = run_savings(cfg, console)
    console.print(_append_section(results, markdown, result, "savings"))
    console.print(f"appended to {results}; plots in {out}")
    if keep_work:
        console.print(f"stores and models kept in {result['work']}")
