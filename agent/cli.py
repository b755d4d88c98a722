"""`peam`: run the agent, read what it knows. Every command validates its input before it
writes anything; a `PeamError` becomes one line on stderr and exit code 2.

Imports are deferred into the commands so `peam --help` starts without torch, Ray or
SQLAlchemy.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from envs.errors import PeamError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="peam: a game agent whose memory grows by training.")

DB_HELP = "Database URL (default: $PEAM_DB, else SQLite at $PEAM_HOME/peam.db, PEAM_HOME=./peam-data)."


def _console():
    from rich.console import Console

    # Piped output (CI logs, `| less`) gets a table-friendly width instead of rich's 80.
    return Console(width=None if sys.stdout.isatty() else 120)


@app.command()
def run(
    env: str = typer.Option("crafter", help="Game backend: crafter (embedded) or minedojo (extra)."),
    task: str = typer.Option("make_stone_pickaxe", help="A catalog skill, a long-horizon task, or all_achievements."),
    episodes: int = typer.Option(1, min=1, help="Episodes to play."),
    seed: int = typer.Option(0, help="Seed of the first episode; episode i uses seed+i."),
    max_steps: Optional[int] = typer.Option(None, min=1, help="Step limit per episode (default: the task's)."),
    planner: str = typer.Option("symbolic", help="symbolic, hf:PATH_OR_ID or openai:BASE_URL."),
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    llm_model: Optional[str] = typer.Option(None, help="openai: model name (else $PEAM_LLM_MODEL)."),
    llm_temperature: float = typer.Option(0.0, help="LLM sampling temperature (0 = greedy)."),
    llm_max_new_tokens: int = typer.Option(128, help="LLM answer length limit."),
    llm_device: str = typer.Option("cpu", help="hf: torch device (cpu, cuda)."),
    llm_timeout: float = typer.Option(60.0, help="openai: seconds per request."),
):
    """Play episodes of a task and record every skill attempt in the store."""
    from agent.session import RunSpec, run_episodes

    llm = None
    if planner != "symbolic":
        from agent.llm_planner import LLMOptions

        llm = LLMOptions(model=llm_model, temperature=llm_temperature,
                         max_new_tokens=llm_max_new_tokens, device=llm_device, timeout_s=llm_timeout)
    spec = RunSpec(env=env, task=task, episodes=episodes, seed=seed, max_steps=max_steps,
                   planner=planner, db=db, llm=llm)
    results = run_episodes(spec, console=_console())
    failed = sum(r.error is not None for r in results)
    raise typer.Exit(1 if failed == len(results) else 0)


@app.command()
def skills(
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    game: Optional[str] = typer.Option(None, help="Only this game's skills."),
    all_: bool = typer.Option(False, "--all", help="Also list skills never attempted."),
):
    """What the agent knows: every skill with its attempts and success on each path."""
    from agent.views import skills_table
    from memory.store import Store

    store = Store.open(db, create=False)
    _console().print(skills_table(store.skill_table(game), include_unattempted=all_))


@app.command()
def demo(
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    episodes: int = typer.Option(2, min=1, help="Episodes per task."),
):
    """A short tour: the agent practises a ladder of tasks, then shows what it knows."""
    from agent.session import demo as run_demo

    run_demo(db=db, episodes=episodes, console=_console())


@app.command()
def dashboard(
    host: str = typer.Option("127.0.0.1", help="Address to bind; beyond loopback needs $PEAM_DASHBOARD_TOKEN."),
    port: int = typer.Option(8765, min=1, max=65535, help="Port to listen on."),
    db: Optional[str] = typer.Option(None, help=DB_HELP),
):
    """Serve the web dashboard: skills, experts, consolidation jobs and runs, plus a JSON API."""
    import os

    from agent.dashboard.app import check_bind, create_app
    from memory.store import Store

    token = os.environ.get("PEAM_DASHBOARD_TOKEN") or None
    check_bind(host, token)
    store = Store.open(db, create=False)
    import uvicorn

    uvicorn.run(create_app(store, token=token, read_only_bind=False), host=host, port=port)


@app.command("train-base")
def train_base(
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    epochs: int = typer.Option(3, min=1, help="Passes over the slow-path data (early stopping may end sooner)."),
    batch_size: int = typer.Option(64, min=1, help="Steps per gradient step."),
    lr: float = typer.Option(3e-4, min=0.0, help="AdamW learning rate of the base."),
    device: str = typer.Option("auto", help="auto (cuda when visible, else cpu), cpu or cuda."),
    out: Optional[str] = typer.Option(None, help="Output directory (default: $PEAM_HOME/models)."),
    experts: bool = typer.Option(True, "--experts/--no-experts", help="Also train one LoRA expert per skill category."),
    game: str = typer.Option("crafter", help="Whose segments to learn from."),
):
    """Behavioural cloning: fit the fast policy on the slow path's successful segments, then one
    category expert each over the frozen base; experts are registered as candidates."""
    import os
    from pathlib import Path

    from envs.errors import ConfigError

    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")
    from consolidation.base_training import train_base as fit_base
    from consolidation.base_training import train_category_experts
    from memory.db import DEFAULT_HOME
    from memory.store import Store

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    out_dir = Path(out) if out else Path(os.environ.get("PEAM_HOME") or DEFAULT_HOME) / "models"
    console = _console()
    store = Store.open(db, create=False)
    base = fit_base(store, epochs=epochs, batch_size=batch_size, lr=lr, device=device,
                    out_dir=out_dir, game=game, console=console,
                    progress=console.is_terminal)
    acc = base["val_accuracy"]
    console.print(f"base: {base['samples']} steps from {base['segments']} segments, "
                  f"{base['epochs_run']} epoch(s), val loss {_num(base['val_loss'])}, "
                  f"val action accuracy {_num(acc)} -> {base['path']}")
    if experts:
        for category, m in train_category_experts(store, out_dir=out_dir, epochs=epochs,
                                                  batch_size=batch_size, device=device,
                                                  console=console,
                                                  progress=console.is_terminal).items():
            console.print(f"expert {category}: {m['segments']} segments, val accuracy "
                          f"{_num(m['base_val_accuracy'])} (base) -> {_num(m['val_accuracy'])}, "
                          f"registered #{m['expert_id']} (candidate) -> {m['path']}")


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main() -> None:
    try:
        app()
    except PeamError as exc:
        print(f"peam: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
