"""The Ray runtime: many plain `Runner`s as actors sharing one LLM planner actor.

The only module that imports Ray (STYLE 11). `Runner` stays a plain class; here it is wrapped
as `RunnerActor` (RLlib's EnvRunner split, minus its decorators):

- each actor builds its own env and planner and opens its OWN `Store` on the same URL, so
  trajectories go from the runners straight to the database; the driver only receives the
  small `EpisodeResult`s;
- an LLM planner (`hf:` / `openai:`) is one `PlannerActor` that every runner calls, so the model
  is loaded once (on the GPU when its device is cuda); concurrent `hf:` requests are batched
  into one `generate` (agent/services/request_batcher.py). The symbolic planner runs inside each
  runner: it answers in well under a millisecond, and a remote call would cost more than the
  plan itself;
- an actor that dies mid-episode (`RayActorError`) is restarted by Ray; the pool marks that
  episode's row `failed` with the error and plays the seed again as a new episode row, so
  committed segments are neither lost nor duplicated;
- a cluster of several nodes refuses a SQLite store (a file on one machine); use PostgreSQL.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Callable

import ray
from ray.exceptions import RayActorError, RayTaskError

from agent.services.ray_address import check_ray_address
from agent.loop.episode import EpisodeResult
from agent.loop.runner import Runner
from envs.errors import ConfigError, PeamError

MAX_RESTARTS = 3  # per runner actor; a runner that dies more often is dropped from the pool
MAX_ATTEMPTS = 3  # per seed: a seed whose runner died this often is reported as lost


# --------------------------------------------------------------------------- cluster


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start a local Ray (`num_cpus`), or join a cluster (`auto`, `HOST:PORT`, `ray://…`;
    $RAY_ADDRESS too, as in Ray itself). A no-op when Ray is already up."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    check_ray_address(address)  # 3 s, where ray.init would retry for minutes
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # "local": a fresh instance, never a cluster an earlier `ray start` left behind
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
    except ConnectionError as e:
        raise ConfigError(f"cannot join the Ray cluster at {address!r} ({str(e).splitlines()[0]}):"
                          f" start it with `ray start --head` or fix --address") from None


def alive_nodes() -> list[str]:
    return [n["NodeID"] for n in ray.nodes() if n.get("Alive")]


def check_store_fits_cluster(db_url: str) -> None:
    """A SQLite file lives on one machine: several nodes must share a PostgreSQL server."""
    from memory.db import parse_url

    nodes = len(alive_nodes())
    if nodes > 1 and parse_url(db_url).get_backend_name() == "sqlite":
        raise ConfigError(f"a SQLite store cannot be shared by a {nodes}-node Ray cluster: use "
                          f"PostgreSQL, e.g. --db postgresql+psycopg://USER@HOST:5432/DB")


def shareable_url(url: str | None) -> str:
    """The store URL as every runner must see it: resolved ($PEAM_DB, $PEAM_HOME) and, for
    SQLite, an absolute file path (actors need not share the driver's working directory)."""
    from memory.db import parse_url, resolve_url, sqlite_path

    parsed = parse_url(resolve_url(url))
    if parsed.get_backend_name() != "sqlite":
        return resolve_url(url)
    path = sqlite_path(parsed)
    if path is None:
        raise ConfigError("an in-memory SQLite store cannot be shared by Ray runners: use a "
                          "file (--db sqlite:///PATH/peam.db) or PostgreSQL")
    return parsed.set(database=str(path.resolve())).render_as_string(hide_password=False)


# --------------------------------------------------------------------------- planner actor


class PlannerActor:
    """The one LLM planner of a pool; runners call `plan` concurrently (a threaded actor)."""

    def __init__(self, spec, catalog):
        from agent.planners.llm_planner import HFPlanner, make_planner
        from agent.services.request_batcher import RequestBatcher

        self.planner = make_planner(spec.planner, catalog, options=spec.llm)
        self.batcher = None
        if isinstance(self.planner, HFPlanner):
            self.batcher = RequestBatcher(self.planner.complete_batch)
            self.planner.complete = self.batcher.complete  # plan()'s retry loop stays the planner's
        # openai: the server batches (vLLM, TGI); concurrent threads are enough here.

    def name(self) -> str:
        return self.planner.name

    def plan(self, ctx):
        return self.planner.plan(ctx)


class RemotePlanner:
    """What a runner holds in place of a planner when the planner is an actor."""

    def __init__(self, handle, name: str):
        self.handle, self.name = handle, name

    def plan(self, ctx):
        return ray.get(self.handle.plan.remote(ctx))


# --------------------------------------------------------------------------- runner actor


class RunnerActor:
    """A plain `Runner` with its own env, planner and store connection."""

    def __init__(self, spec, db_url: str, planner=None, make_env: Callable | None = None):
        from agent.planners.llm_planner import make_planner
        from envs import make_env as make_game
        from memory.store import Store

        env = (make_env or make_game)(spec.env)
        if planner is None:  # symbolic: plan here, see the module docstring
            planner = make_planner(spec.planner, env.catalog, options=spec.llm)
        else:
            planner = RemotePlanner(planner, ray.get(planner.name.remote()))
        from agent.services.memory_modes import MemoryFastPath
        from memory.db import data_home

        self.store = Store.open(db_url)
        self.runner = Runner(env, planner, self.store)
        # The experts' files must be where every node can read them (shared storage).
        self.memory = MemoryFastPath(spec.memory, self.store, env, data_home() / "models")
        self.node_id = ray.get_runtime_context().get_node_id()

    def ready(self) -> str:
        return self.node_id

    def run_episode(self, task, seed: int, run_id: int) -> tuple[EpisodeResult, str]:
        self.runner.run_id = run_id
        # The registry is checked here, every episode: newly promoted experts play from now on.
        self.runner.arbiter = self.memory.refresh()
        try:
            result = self.runner.run_episode(task, seed)
        except Exception as e:  # the runner already marked the row failed; report, not raise
            result = EpisodeResult(seed=seed, episode_id=None, success=False, steps=0, reward=0.0,
                                   unlocked=[], died=False, segments=0, planner_calls=0,
                                   error=f"{type(e).__name__}: {e}")
        return result, self.node_id


# --------------------------------------------------------------------------- the pool


class RunnerPool:
    """N runner actors (plus one planner actor for LLM planners) playing seeds in parallel.

    `RunnerPool(spec, n_workers, address)` starts (or joins) Ray and waits until every runner
    is ready; `run(task, seeds, run_id)` returns results in seed order; `close()` ends it all.
    """

    def __init__(self, spec, n_workers: int = 0, address: str | None = None, *,
                 db_url: str | None = None, make_env: Callable | None = None):
        self.db_url = shareable_url(db_url or spec.db)
        self.owns_ray = not ray.is_initialized()  # leave a caller's Ray up when we close
        connect(address or spec.address, num_cpus=max(n_workers, 1))
        try:
            check_store_fits_cluster(self.db_url)
            from memory.store import Store

            # Create and migrate the schema once, here: N actors doing it at the same moment on
            # a fresh SQLite file race each other (seen in CI as an actor dying in __init__).
            Store.open(self.db_url).close()
            n = n_workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
            self.planner = self._planner_actor(spec, n, make_env)
            actor = ray.remote(num_cpus=1, max_restarts=MAX_RESTARTS, max_task_retries=0)(RunnerActor)
            # max_task_retries=0: the pool retries, so the dead attempt's row is failed first.
            self.actors = [actor.remote(spec, self.db_url, self.planner, make_env) for _ in range(n)]
            self.nodes = ray.get([a.ready.remote() for a in self.actors])
        except RayActorError as e:
            self.close()
            raise PeamError(f"a Ray runner could not start: {_first_line(e)}") from None
        except BaseException:
            self.close()
            raise
        self.lost: list[tuple[int, str]] = []  # (seed, error) of every attempt a dead actor lost
        self.placements: dict[int, str] = {}  # seed -> node id of the runner that played it

    @staticmethod
    def _planner_actor(spec, n: int, make_env: Callable | None):
        if spec.planner == "symbolic":
            return None
        from envs import make_env as make_game

        catalog = (make_env or make_game)(spec.env).catalog
        gpu = spec.llm is not None and str(spec.llm.device).startswith("cuda")
        actor = ray.remote(num_cpus=0, num_gpus=1 if gpu else 0, max_concurrency=n + 1,
                           max_restarts=MAX_RESTARTS, max_task_retries=MAX_ATTEMPTS)(PlannerActor)
        return actor.remote(spec, catalog)

    def describe(self) -> str:
        planner = "one shared planner actor" if self.planner is not None else "local planners"
        return (f"ray: {len(self.actors)} runners on {len(set(self.nodes))} node(s), {planner}; "
                f"store {self._masked_url()}")

    def _masked_url(self) -> str:
        from memory.db import masked

        return masked(self.db_url)

    def run(self, task, seeds: list[int], run_id: int,
            on_result: Callable[[EpisodeResult], None] | None = None) -> list[EpisodeResult]:
        """Play every seed once (a seed whose runner died is played again); results in seed
        order. `on_result` sees each result as it comes back."""
        from memory.store import Store

        queue, idle = deque(seeds), list(self.actors)
        inflight: dict = {}  # ObjectRef -> (actor, seed); seed None: a restarted actor's ping
        attempts: dict[int, int] = {}
        deaths: dict[int, int] = {}  # id(actor) -> deaths seen
        results: dict[int, EpisodeResult] = {}
        store = Store.open(self.db_url)
        try:
            while queue or inflight:
                while queue and idle:
                    actor, seed = idle.pop(0), queue.popleft()
                    inflight[actor.run_episode.remote(task, seed, run_id)] = (actor, seed)
                if not inflight:
                    raise PeamError("every Ray runner died: see the failed episodes' errors")
                [ref], _ = ray.wait(list(inflight), num_returns=1)
                actor, seed = inflight.pop(ref)
                if seed is None:  # a restarted runner's ping came back: it takes seeds again
                    try:
                        ray.get(ref)
                        idle.append(actor)
                    except (RayActorError, RayTaskError):
                        pass  # it did not come back: the others play on
                    continue
                try:
                    result, node = ray.get(ref)
                except RayActorError as e:
                    error = f"runner actor died: {_first_line(e)}"
                    self.lost.append((seed, error))
                    _fail_running_episode(store, run_id, seed, error)
                    attempts[seed] = attempts.get(seed, 0) + 1
                    if attempts[seed] < MAX_ATTEMPTS:
                        queue.appendleft(seed)
                    else:
                        results[seed] = _lost(seed, error)
                        _report(on_result, results[seed])
                    deaths[id(actor)] = deaths.get(id(actor), 0) + 1
                    if deaths[id(actor)] <= MAX_RESTARTS:
                        # Ray restarts it, but a call made while it restarts fails at once
                        # (max_task_retries=0): a replayed seed could use up its attempts on a
                        # runner not yet back (seen in CI on a loaded host). A ping that
                        # retries brings it back to the idle list once it answers.
                        inflight[actor.ready.options(max_task_retries=-1).remote()] = (actor, None)
                    continue
                except RayTaskError as e:  # a bug in a runner, not a death
                    result, node = _lost(seed, f"runner error: {_first_line(e)}"), None
                results[seed], self.placements[seed] = result, node
                idle.append(actor)
                _report(on_result, result)
        finally:
            store.close()
        return [results[s] for s in seeds]

    def close(self) -> None:
        """Kill the actors and leave Ray (a cluster we joined keeps running)."""
        if ray.is_initialized():
            for actor in getattr(self, "actors", []) + [getattr(self, "planner", None)]:
                if actor is not None:
                    ray.kill(actor, no_restart=True)
            if getattr(self, "owns_ray", True):
                ray.shutdown()

    def __enter__(self) -> RunnerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fail_running_episode(store, run_id: int, seed: int, error: str) -> None:
    """The dead attempt's row, found by (run, seed, running): one seed runs at a time."""
    for row in store.episodes(run_id, limit=10_000):
        if row.seed == seed and row.status == "running":
            store.finish_episode(row.id, status="failed", steps=row.slow_steps + row.fast_steps,
                                 reward=0.0, achievements={}, error=error,
                                 planner_calls=row.planner_calls)


def _lost(seed: int, error: str) -> EpisodeResult:
    return EpisodeResult(seed=seed, episode_id=None, success=False, steps=0, reward=0.0,
                         unlocked=[], died=False, segments=0, planner_calls=0, error=error)


def _report(on_result, result: EpisodeResult) -> None:
    if on_result is not None:
        on_result(result)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
