"""`peam`: run the agent, read what it knows. Every command validates its input before it
writes anything; a `PeamError` becomes one line on stderr and exit code 2.

Imports are deferred into the commands so `peam --help` starts without torch, Ray or
SQLAlchemy.
"""

from __future__ import annotations

from typing import Optional

import typer

from agent.bench.cli import bench_app
from agent.services.memory_modes import modes_help
from agent.services.views import terminal_console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="peam: a game agent whose memory grows by training.")
app.add_typer(bench_app, name="bench")

MAX_LIST = 100_000  # rows a listing may ask for; more would overflow the database's integers
DB_HELP = "Database URL (default: $PEAM_DB, else SQLite at $PEAM_HOME/peam.db, PEAM_HOME=./peam-data)."


@app.command()
def run(
    env: str = typer.Option("crafter", help="Game backend: crafter (embedded), minecraft (Node server + bot) or minedojo (extra)."),
    task: str = typer.Option("make_stone_pickaxe", help="A catalog skill, a long-horizon task, or all_achievements."),
    episodes: int = typer.Option(1, min=1, help="Episodes to play."),
    seed: int = typer.Option(0, help="Seed of the first episode (0..2**31-1); episode i uses seed+i."),
    max_steps: Optional[int] = typer.Option(None, min=1, max=10**7, help="Step limit per episode (default: the task's)."),
    planner: str = typer.Option("symbolic", help="symbolic, hf:PATH_OR_ID or openai:BASE_URL."),
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    llm_model: Optional[str] = typer.Option(None, help="openai: model name (else $PEAM_LLM_MODEL)."),
    llm_temperature: float = typer.Option(0.0, help="LLM sampling temperature (0 = greedy)."),
    llm_max_new_tokens: int = typer.Option(128, help="LLM answer length limit."),
    llm_device: str = typer.Option("cpu", help="hf: torch device (cpu, cuda)."),
    llm_timeout: float = typer.Option(60.0, help="openai: seconds per request."),
    memory: str = typer.Option("peam", help=f"The memory: {modes_help()}."),
    consolidate: str = typer.Option("auto", help="auto: the self-trigger runs consolidation jobs between episodes; off."),
    workers: int = typer.Option(0, min=0, max=1024, help="Ray runner actors playing in parallel (0 = in this process)."),
    address: Optional[str] = typer.Option(None, help="Join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT (multi-node needs PostgreSQL)."),
):
    """Play episodes of a task and record every skill attempt in the store."""
    from agent.services.session import RunSpec, run_episodes

    llm = None
    if planner != "symbolic":
        from agent.planners.llm_planner import LLMOptions

        llm = LLMOptions(model=llm_model, temperature=llm_temperature,
                         max_new_tokens=llm_max_new_tokens, device=llm_device, timeout_s=llm_timeout)
    spec = RunSpec(env=env, task=task, episodes=episodes, seed=seed, max_steps=max_steps,
                   planner=planner, db=db, llm=llm, workers=workers, address=address,
                   memory=memory, consolidate=consolidate)
    results = run_episodes(spec, console=terminal_console())
    failed = sum(r.error is not None for r in results)
    raise typer.Exit(1 if failed == len(results) else 0)


@app.command()
def skills(
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    game: Optional[str] = typer.Option(None, help="Only this game's skills."),
    all_: bool = typer.Option(False, "--all", help="Also list skills never attempted."),
):
    """What the agent knows: every skill with its attempts and success on each path."""
    from agent.services.views import skills_table
    from memory.store import Store

    store = Store.open(db, create=False)
    terminal_console().print(skills_table(store.skill_table(game), include_unattempted=all_))


@app.command()
def demo(
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    episodes: int = typer.Option(3, min=1, help="Episodes per task."),
):
    """A short tour: the agent practises a ladder of tasks, then shows what it knows."""
    from agent.services.demo import demo as run_demo

    run_demo(db=db, episodes=episodes, console=terminal_console())


@app.command()
def dashboard(
    host: str = typer.Option("127.0.0.1", help="Address to bind; beyond loopback needs $PEAM_DASHBOARD_TOKEN."),
    port: int = typer.Option(8765, min=1, max=65535, help="Port to listen on."),
    db: Optional[str] = typer.Option(None, help=DB_HELP),
):
    """Serve the web dashboard: skills, experts, consolidation jobs and runs, plus a JSON API.
    It answers to localhost, 127.0.0.1, ::1, the --host address and the names in
    $PEAM_DASHBOARD_HOSTS (comma-separated), and refuses writes from other sites' pages."""
    import os

    from agent.dashboard.app import bind_socket, check_bind, create_app
    from agent.dashboard.guard import HOSTS_ENV, allowed_hosts
    from memory.store import Store

    token = os.environ.get("PEAM_DASHBOARD_TOKEN") or None
    check_bind(host, token)
    store = Store.open(db, create=False)
    sock = bind_socket(host, port)  # a taken port is one line here, not uvicorn's traceback
    import uvicorn

    app_ = create_app(store, token=token, read_only_bind=False,
                      hosts=allowed_hosts(host, os.environ.get(HOSTS_ENV)))
    terminal_console().print(f"dashboard at http://{host if ':' not in host else f'[{host}]'}:{port} "
                     f"(Ctrl-C stops)")
    uvicorn.Server(uvicorn.Config(app_, host=host, port=port)).run(sockets=[sock])


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
    replace: bool = typer.Option(False, "--replace", help="Replace a base that promoted experts were trained on, retiring them."),
):
    """Behavioural cloning: fit the fast policy on the slow path's successful segments, then one
    category expert each over the frozen base; experts are registered as candidates."""
    import os
    from pathlib import Path

    from envs.errors import ConfigError

    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")
    import dataclasses

    from consolidation.fit import FitConfig
    from consolidation.trainer import CATEGORY_EXPERTS, train_category_experts
    from consolidation.trainer import train_base as fit_base
    from memory.base_io import base_lock, experts_on_base
    from memory.db import DEFAULT_HOME
    from memory.registry import retire
    from memory.store import Store

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    out_dir = Path(out) if out else Path(os.environ.get("PEAM_HOME") or DEFAULT_HOME) / "models"
    console = terminal_console()
    store = Store.open(db, create=False)
    with base_lock(out_dir):  # no worker makes or reads a half-decided base meanwhile
        on_base = experts_on_base(store, out_dir)
        if on_base and not replace:
            raise ConfigError(f"the base in {out_dir} carries {len(on_base)} promoted expert(s) "
                              f"(#{', #'.join(str(e.id) for e in on_base)}): a new base would orphan "
                              "them; add --replace to retire them and train a new base")
        base = fit_base(store, out_dir=out_dir, game=game,
                        config=FitConfig(epochs=epochs, batch_size=batch_size, lr=lr, device=device),
                        console=console, progress=console.is_terminal)
        retire(store, [e.id for e in on_base])
    if on_base:
        console.print(f"retired {len(on_base)} promoted expert(s) of the old base "
                      f"(#{', #'.join(str(e.id) for e in on_base)}): their categories consolidate "
                      "again on the new base (`peam consolidate --category C`, or the self-trigger)")
    acc = base["val_accuracy"]
    console.print(f"base: {base['samples']} steps from {base['segments']} segments, "
                  f"{base['epochs_run']} epoch(s), val loss {_num(base['val_loss'])}, "
                  f"val action accuracy {_num(acc)} -> {base['path']}")
    if experts:
        experts_config = dataclasses.replace(CATEGORY_EXPERTS, epochs=epochs, batch_size=batch_size, device=device)
        for category, m in train_category_experts(store, models_dir=out_dir, config=experts_config,
                                                  console=console,
                                                  progress=console.is_terminal).items():
            console.print(f"expert {category}: {m['segments']} segments, val accuracy "
                          f"{_num(m['base_val_accuracy'])} (base) -> {_num(m['val_accuracy'])}, "
                          f"registered #{m['expert_id']} (candidate) -> {m['path']}")


@app.command()
def consolidate(
    skill: Optional[str] = typer.Option(None, help="Train an expert for this skill."),
    category: Optional[str] = typer.Option(None, help="Train an expert for this skill category (with --plan: this "
                                                    "task category, or 'open' for the open-ended task)."),
    plan: bool = typer.Option(False, "--plan", help="A plan expert: which subgoal next, instead of the planner."),
    game: str = typer.Option("crafter", help="Whose skill or category."),
    wait: bool = typer.Option(False, "--wait", help="Follow the job until it ends (needs a running `peam worker`)."),
    db: Optional[str] = typer.Option(None, help=DB_HELP),
):
    """Force a consolidation job for a skill or a category (the trigger's decision is skipped)."""
    from consolidation.queue import FINAL, QueueError, enqueue, get_job
    from memory.store import Store

    if (skill is None) == (category is None):
        raise QueueError("name exactly one of --skill or --category")
    store = Store.open(db, create=False)
    job_id = enqueue(store, game=game, skill=skill, category=category, kind="plan" if plan else "action",
                     reason="forced by `peam consolidate`")
    job = get_job(store, job_id)
    console = terminal_console()
    console.print(f"job #{job.id} for {job.target} ({game}): {job.status}")
    if not wait:
        return
    import time

    with console.status(f"job #{job.id}: {job.status}") as spinner:
        while job.status not in FINAL:
            time.sleep(0.5)
            job = get_job(store, job_id)
            spinner.update(f"job #{job.id}: {job.status} (attempts {job.attempts})")
    detail = job.error or (f"expert #{job.expert_id}" if job.expert_id else "")
    console.print(f"job #{job.id}: {job.status}" + (f" — {detail}" if detail else ""))
    raise typer.Exit(1 if job.status == "failed" else 0)


@app.command("jobs")
def jobs_(
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    status: Optional[str] = typer.Option(None, help="Only jobs in this status (queued, running, evaluating, promoted, rejected, failed)."),
    limit: int = typer.Option(50, min=1, max=MAX_LIST, help="Newest jobs to show."),
):
    """The consolidation jobs, newest first."""
    from consolidation.queue import ACTIVE, FINAL, jobs
    from envs.errors import ConfigError
    from memory.store import Store

    if status is not None and status not in ACTIVE + FINAL:
        raise ConfigError(f"unknown job status {status!r}; use one of {', '.join(ACTIVE + FINAL)}")
    store = Store.open(db, create=False)
    from agent.services.views import jobs_table

    terminal_console().print(jobs_table(jobs(store, limit, status)))


@app.command("runs")
def runs_(
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    limit: int = typer.Option(20, min=1, max=10_000, help="Newest runs to show."),
):
    """The runs, newest first; a run whose process died is shown (and stored) as interrupted."""
    from agent.services.views import runs_table
    from memory.runs import recent_runs
    from memory.store import Store

    store = Store.open(db, create=False)
    terminal_console().print(runs_table(recent_runs(store, limit)))


@app.command()
def worker(
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    once: bool = typer.Option(False, "--once", help="Run at most one job, then exit."),
    device: str = typer.Option("auto", help="auto (cuda when visible, else cpu), cpu or cuda."),
    lease: float = typer.Option(60.0, min=1.0, help="Seconds a job is held without a heartbeat before it is requeued."),
):
    """Run consolidation jobs: train, evaluate and promote experts as jobs are queued."""
    import threading

    from envs.errors import ConfigError

    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")
    from consolidation.worker import Worker, check_device
    from memory.store import Store

    check_device(device)  # before a job is claimed: a worker's misconfiguration fails no job

    store = Store.open(db, create=False)
    from agent.services.evaluation import run_job

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    console = terminal_console()
    worker = Worker(store, lambda job, beat: run_job(store, job, beat, device=device),
                    lease_s=lease, poll_s=min(2.0, lease / 3))
    if once:
        job = worker.run_once()
        console.print("no queued job" if job is None else
                      f"job #{job.id} for {job.target}: {job.status}"
                      + (f" — {job.error}" if job.error else ""))
        raise typer.Exit(1 if job is not None and job.status == "failed" else 0)
    console.print(f"worker {worker.name} on {device}, waiting for jobs (Ctrl-C stops; a job "
                  f"cut short is requeued after its {lease:g} s lease)")
    try:
        worker.run_forever(threading.Event())
    except KeyboardInterrupt:
        console.print("worker stopped")


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main() -> None:
    from agent.services.cli_exit import run_cli

    run_cli(app)


if __name__ == "__main__":
    main()
