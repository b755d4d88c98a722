"""`peam bench savings`: does consolidated experience replace the slow planner's calls?

For each planner backend — `symbolic`; `hf:` on a random tiny local model (its answers are
unusable, so every plan is the symbolic fallback after two model calls: the cost of a local
model is measured, not its judgement); `openai:` against a loopback server that answers correct
plans after a delay (agent/planners/sim_llm.py, a simulated remote LLM) — the slow agent practises the
craft chains (every `make_*` task of the catalog) on practice seeds, with its plan cursor. Then,
per memory mode, a copy of that store is consolidated (peam / moram: a plan job for the craft
tasks through the queue, worker and gate; retrieval / plan-cache: rebuilt from the records)
and the agent plays the same tasks on unseen seeds with that backend. The slow agent without
its cursor is measured too, on fewer episodes.

Open-ended Crafter (symbolic backend, seeds 90000 onwards as memory_score.py): the slow agent
practises open-ended games, each memory consolidates them (an `open` plan job), and every mode
plays the same games; then the craft tasks are played again (forgetting). With the simulated
LLM, a few open-ended games measure the wall time.

Reported per backend and mode: planner calls, LLM tokens, wall seconds per episode, success
per task, the share of subgoal decisions the memory made and of steps the fast path took;
two PNGs; a markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from envs.errors import ConfigError

BACKENDS = ("symbolic", "hf", "openai")
MEMORIES = ("none", "retrieval", "plan-cache", "peam", "moram")
PRACTICE_SEED = 20_000  # task j, episode k -> PRACTICE_SEED + 100 j + k
EVAL_SEED = 30_000  # unseen by practice and by the gate (agent/services/evaluation.py uses 1,000,000+)
OPEN_PRACTICE_SEED = 95_000
SCORE_SEED = 90_000  # benchmarks/memory_score.py's seeds: the published 120-game figures


@dataclass
class SavingsConfig:
    backends: tuple[str, ...] = BACKENDS
    tasks: tuple[str, ...] = ()  # craft tasks to play (empty: every make_* task of the catalog)
    memories: tuple[str, ...] = MEMORIES
    episodes: int = 72  # practice episodes per craft task (24 left the memory unsure: RESULTS.md)
    eval_episodes: int = 12  # unseen episodes per task and mode
    cursorless_episodes: int = 2  # per task: the slow agent without its plan cursor
    gate_episodes: int = 6  # held-out episodes per task at the plan gate
    open_practice: int = 40  # open-ended practice games (0: skip the open-ended part)
    open_games: int = 120  # open-ended games per mode, symbolic backend
    open_llm_games: int = 3  # open-ended games with the simulated LLM (none and peam)
    delay_s: float = 1.0  # the simulated remote LLM's answer delay
    device: str = "cpu"
    plan_epochs: int = 40  # the plan trainer's rounds (consolidation/plan_training.py's default)
    # Where the plan memory answers: its calibration target (0: no calibration, every task at
    # the floor) and the arbiter's floor on a focused task (agent/loop/arbiter.py).
    agreement: float = 0.95
    plan_confidence: float = 0.5
    out: str = "benchmarks/savings"
    keep_work: bool = False  # keep the stores and models (a temp directory of ~100 MB) to inspect

    def validate(self) -> None:
        from agent.services.memory_modes import MODES

        bad = [b for b in self.backends if b not in BACKENDS]
        if bad:
            raise ConfigError(f"unknown planner backend {bad[0]!r}; use {', '.join(BACKENDS)}")
        bad = [m for m in self.memories if m not in MODES or m == "shared-lora"]
        if bad:
            raise ConfigError(f"unknown memory mode {bad[0]!r} for this benchmark; use {', '.join(MEMORIES)}")
        if min(self.episodes, self.eval_episodes, self.gate_episodes, self.plan_epochs) < 1:
            raise ConfigError("episodes, eval_episodes, gate_episodes and plan_epochs must be >= 1")
        if min(self.cursorless_episodes, self.open_practice, self.open_games, self.open_llm_games) < 0:
            raise ConfigError("cursorless_episodes, open_practice, open_games, open_llm_games must be >= 0")
        if self.delay_s < 0:
            raise ConfigError("delay_s must be >= 0")
        if not (0 <= self.agreement <= 1 and 0 <= self.plan_confidence <= 1):
            raise ConfigError("agreement and plan_confidence must lie in [0, 1]")


# -- one row of measurements ------------------------------------------------------------------

def summarise(results) -> dict:
    """Per-episode means of what a list of EpisodeResults cost and achieved."""
    n = max(len(results), 1)
    decided = sum(len(r.decided_by) - r.decided_by.count("reflex") for r in results)
    steps = sum(r.steps for r in results)
    return {"episodes": len(results), "successes": sum(r.success for r in results),
            "calls": sum(r.planner_calls for r in results) / n,
            "tokens_in": sum(r.tokens_in for r in results) / n,
            "tokens_out": sum(r.tokens_out for r in results) / n,
            "planner_s": sum(r.planner_s for r in results) / n,
            "wall_s": sum(r.wall_s for r in results) / n,
            "wall_median_s": statistics.median(r.wall_s for r in results) if results else 0.0,
            "steps": steps / n, "unlocked": sum(len(r.unlocked) for r in results) / n,
            "memory_share": sum(r.memory_decisions for r in results) / max(decided, 1),
            "fast_share": sum(r.fast_steps for r in results) / max(steps, 1),
            "fallbacks": sum(r.fallbacks for r in results) / n}


def _play(runner, tasks, episodes: int, seed0: int, progress=None, bar=None) -> dict[str, list]:
    """Episodes of each task on seeds `seed0 + 100 j + k`, j the task's place among the craft
    tasks: a task played alone (`--tasks`) gets the seeds it gets in the full run."""
    from envs.tasks import resolve_task

    craft = [s.name for s in runner.env.catalog if s.category == "craft"]
    out = {}
    for name in tasks:
        j = craft.index(name) if name in craft else 0
        task = resolve_task(name, runner.env.catalog)
        out[name] = []
        for k in range(episodes):
            out[name].append(runner.run_episode(task, seed0 + 100 * j + k))
            if progress is not None:
                progress.advance(bar)
    return out


# -- the backends -------------------------------------------------------------------------------

class Backends:
    """The planners the benchmark compares, and what they need running (the loopback server)."""

    def __init__(self, catalog, work: Path, delay_s: float):
        self.catalog, self.work, self.delay_s = catalog, work, delay_s
        self.server = None

    def planner(self, name: str):
        from agent.planners.llm_planner import LLMOptions, make_planner

        if name == "symbolic":
            return make_planner("symbolic", self.catalog)
        if name == "hf":
            path = self.work / "tiny-llm"
            if not path.exists():
                from agent.planners.sim_llm import random_causal_lm

                corpus = [*self.catalog.names, '{"subgoals": [], "rationale": ""}', "inventory requires gives near"]
                random_causal_lm(path, corpus)
            return make_planner(f"hf:{path}", self.catalog, options=LLMOptions(max_new_tokens=32, dtype="float32"))
        if self.server is None:
            from agent.planners.sim_llm import SimulatedLLM

            self.server = SimulatedLLM(self.catalog.game, self.delay_s).start()
        from agent.planners.sim_llm import SIMULATED_MODEL

        return make_planner(f"openai:{self.server.url}", self.catalog,
                            options=LLMOptions(model=SIMULATED_MODEL, timeout_s=30 + 2 * self.delay_s))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def label(name: str, delay_s: float) -> str:
    return {"symbolic": "symbolic", "hf": "hf: tiny random model (CPU)",
            "openai": f"openai: simulated remote LLM, {delay_s:g} s"}[name]


# -- consolidating one memory mode ----------------------------------------------------------------

def consolidate(memory: str, store, env, models: Path, categories: list[str], cfg: SavingsConfig, log: list[str],
                backend: str = "symbolic"):
    """Turn the store's experience into `memory`'s fast path; returns it (None for `none`)."""
    from agent.services.memory_modes import expert_fast_path

    if memory == "none":
        return None
    if memory == "retrieval":
        from memory.retrieval import SkillLibrary

        return SkillLibrary.for_env(store, env)
    if memory == "plan-cache":
        from memory.plan_cache import PlanCache

        return PlanCache.from_store(store, env.name, env.catalog)
    from agent.services.evaluation import plan_success
    from consolidation.plan_pipeline import PlanJobConfig, run_plan_pipeline
    from consolidation.plan_training import PlanTrainingConfig
    from consolidation.queue import enqueue
    from consolidation.worker import Worker

    training = PlanTrainingConfig(device=cfg.device, routing="moram" if memory == "moram" else "category",
                                  epochs=cfg.plan_epochs, agreement=cfg.agreement)
    job_cfg = PlanJobConfig(eval_episodes=cfg.gate_episodes, training=training)

    def pipeline(job, beat):
        return run_plan_pipeline(store, job, beat, models_dir=models, config=job_cfg,
                                 evaluate=lambda refs, tasks, n: plan_success(store, models, env.name, refs, tasks, n, cfg.device))

    for category in categories:
        enqueue(store, game=env.name, category=category, kind="plan", reason=f"savings benchmark ({memory})")
    worker = Worker(store, pipeline, lease_s=3600, name="savings")
    while (job := worker.run_once()) is not None:
        m = job.metrics or {}
        log.append(f"{backend}, {memory}: plan job #{job.id} {job.target} {job.status}"
                   + (f": held-out score {m.get('candidate_score')} vs slow {m.get('slow_score')}, "
                      f"{m.get('proposals')} proposals, {m.get('decisions')} decisions, val acc "
                      f"{100 * (m.get('val_accuracy') or 0):.0f}%" if "candidate_score" in m else f" {job.error or ''}"))
    return expert_fast_path(memory, store, env.name, models, cfg.device)


# -- the benchmark ------------------------------------------------------------------------------

def run_savings(cfg: SavingsConfig, console=None) -> dict:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.bench.savings_report import plots  # it reads this module's seeds, so it is imported here
    from agent.loop.runner import Runner
    from envs import make_env
    from envs.tasks import OPEN_ENDED
    from memory.plan_policy import plan_category
    from memory.store import Store

    cfg.validate()
    console = console or Console()
    env = make_env("crafter")
    craft = [s.name for s in env.catalog if s.category == "craft"]
    unknown = [t for t in cfg.tasks if t not in craft]
    if unknown:
        raise ConfigError(f"{unknown[0]!r} is not a craft task; use one of {', '.join(craft)}")
    tasks = list(cfg.tasks) or craft
    categories = sorted({plan_category(t, env.catalog) for t in tasks})
    work = Path(tempfile.mkdtemp(prefix="peam-savings-"))
    backends = Backends(env.catalog, work, cfg.delay_s)
    result = {"config": asdict(cfg), "tasks": tasks, "backends": {}, "log": [], "work": str(work)}
    open_part = bool(cfg.open_practice) and "symbolic" in cfg.backends
    t_start = time.perf_counter()
    total = (len(cfg.backends) * len(tasks) * (cfg.episodes + cfg.cursorless_episodes
                                               + cfg.eval_episodes * len(cfg.memories))
             + open_part * (cfg.open_practice + len(cfg.memories) * (cfg.open_games + len(tasks) * cfg.eval_episodes)
                            + 2 * cfg.open_llm_games * ("openai" in cfg.backends)))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    kept = {}  # memory -> (fast path, store): the symbolic stores, for the open-ended games with the LLM
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("savings", total=total)

            def say(text: str) -> None:
                progress.update(bar, description=f"savings: {text}")

            for backend in cfg.backends:
                planner = backends.planner(backend)
                with_open = open_part and backend == "symbolic"
                root = work / backend
                root.mkdir()
                say(f"{backend}: the slow agent practises")
                practice = Store.open(f"sqlite:///{root}/practice.db")
                practice.sync_skills(env.catalog)
                run_id = practice.start_run(env=env.name, task="savings practice", planner=backend,
                                            memory_mode="none", config={})
                recorder = Runner(env, planner, practice, run_id)
                _play(recorder, tasks, cfg.episodes, PRACTICE_SEED, progress, bar)
                if with_open:
                    _play(recorder, [OPEN_ENDED], cfg.open_practice, OPEN_PRACTICE_SEED, progress, bar)
                practice.finish_run(run_id, "finished")
                practice.close()
                say(f"{backend}: the slow agent without its cursor")
                rows = {"cursorless": _play(Runner(env, planner, cursor=False), tasks, cfg.cursorless_episodes,
                                            EVAL_SEED, progress, bar)}
                for memory in cfg.memories:
                    say(f"{backend}: {memory} consolidates")
                    shutil.copy(root / "practice.db", root / f"{memory}.db")
                    store = Store.open(f"sqlite:///{root}/{memory}.db")
                    models = root / f"models-{memory}"
                    fast = consolidate(memory, store, env, models, categories, cfg, result["log"], backend)
                    say(f"{backend}: {memory} plays unseen seeds")
                    rows[memory] = _play(Runner(env, planner, arbiter=_arbiter(fast, store, env, cfg)),
                                         tasks, cfg.eval_episodes, EVAL_SEED, progress, bar)
                    if with_open:
                        result.setdefault("open", {"games": cfg.open_games, "rows": {}, "llm": {}, "craft_after": {}})
                        fast = _open_stage(memory, store, env, models, fast, planner, tasks, cfg, result,
                                           progress, bar, say)
                        kept[memory] = (fast, store)
                    else:
                        store.close()
                result["backends"][backend] = {
                    "label": label(backend, cfg.delay_s),
                    "rows": {m: {"all": summarise([r for rs in per.values() for r in rs]),
                                 "tasks": {t: summarise(rs) for t, rs in per.items()}} for m, per in rows.items()}}
                if hasattr(planner, "close"):
                    planner.close()
            if kept and "openai" in cfg.backends and cfg.open_llm_games:
                llm = backends.planner("openai")
                for memory in ("none", "peam"):
                    if memory in kept:
                        fast, store = kept[memory]
                        say(f"open-ended: {memory} with the simulated LLM")
                        runner = Runner(env, llm, arbiter=_arbiter(fast, store, env, cfg))
                        result["open"]["llm"][memory] = summarise(
                            _play(runner, [OPEN_ENDED], cfg.open_llm_games, SCORE_SEED, progress, bar)[OPEN_ENDED])
                llm.close()
    finally:
        for _, store in kept.values():
            store.close()
        backends.close()
        if not cfg.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = time.perf_counter() - t_start
    result["plots"] = plots(result, Path(cfg.out))
    return result


def _open_stage(memory, store, env, models, fast, planner, tasks, cfg, result, progress, bar, say):
    """The second stage, symbolic backend: consolidate the open-ended games on top of the craft
    stage (an `open` plan job), play the open-ended games, then the craft tasks again
    (forgetting). Returns the memory after the stage."""
    from agent.loop.runner import Runner
    from envs.crafter import crafter_score, game_data
    from envs.tasks import OPEN_ENDED
    from memory.columns import OPEN

    if memory in ("peam", "moram"):
        say(f"open-ended: {memory} consolidates")
        fast = consolidate(memory, store, env, models, [OPEN], cfg, result["log"], "symbolic")
    say(f"open-ended: {memory} plays {cfg.open_games} games")
    runner = Runner(env, planner, arbiter=_arbiter(fast, store, env, cfg))
    games = _play(runner, [OPEN_ENDED], cfg.open_games, SCORE_SEED, progress, bar)[OPEN_ENDED]
    rates = [100 * sum(a in r.unlocked for r in games) / max(len(games), 1) for a in game_data()["achievements"]]
    result["open"]["rows"][memory] = {**summarise(games), "score": crafter_score(rates) if games else 0.0}
    say(f"open-ended: {memory}, the craft tasks again (forgetting)")
    per = _play(runner, tasks, cfg.eval_episodes, EVAL_SEED, progress, bar)
    result["open"]["craft_after"][memory] = {"all": summarise([r for rs in per.values() for r in rs]),
                                             "intact": _experts_intact(store, models)}
    return fast


def _arbiter(fast, store, env, cfg: SavingsConfig):
    from agent.loop.arbiter import Arbiter

    return Arbiter.from_store(fast, store, env.name, plan_confidence=cfg.plan_confidence)


def _experts_intact(store, models: Path) -> bool:
    """Every promoted plan expert's file still has the digest it was registered with."""
    from memory.expert_io import sha256_of
    from memory.registry import expert_dir, promoted

    return all(sha256_of(expert_dir(models, r.path)) == r.sha256 for r in promoted(store, "crafter", "plan"))
