"""The Ray runtime: many plain `Runner`s as actors, one shared LLM planner, GPU jobs as tasks.

The only module that imports Ray (STYLE 11). `Runner` stays a plain class; here it is wrapped
as `RunnerActor` (RLlib's EnvRunner split, minus its decorators):

- each actor builds its own env and planner and opens its OWN `Store` on the same URL, so
  trajectories go from the runners straight to the database; the driver only receives the
  small `EpisodeResult`s;
- an LLM planner (`hf:` / `openai:`) is one `PlannerActor` that every runner calls, so the model
  is loaded once (on the GPU when its device is cuda); concurrent `hf:` requests are batched
  into one `generate`. The symbolic planner runs inside each runner: it answers in well under
  a millisecond, and a remote call would cost more than the plan itself;
- an actor that dies mid-episode (`RayActorError`) is restarted by Ray; the pool marks that
  episode's row `failed` with the error and plays the seed again as a new episode row, so
  committed segments are neither lost nor duplicated;
- a cluster of several nodes refuses a SQLite store (a file on one machine); use PostgreSQL.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import ray
from ray.exceptions import RayActorError, RayTaskError

from agent.ray_address import check_ray_address
from agent.runner import EpisodeResult, Runner
from envs.errors import ConfigError, PeamError

MAX_RESTARTS = 3  # per runner actor; a runner that dies more often is dropped from the pool
MAX_ATTEMPTS = 3  # per seed: a seed whose runner died this often is reported as lost
BATCH_WINDOW_S = 0.005  # how long the first of a batch waits for others to join (hf planner)


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


def submit_job(fn: Callable, *args, gpu: bool = False) -> ray.ObjectRef:
    """Run `fn(*args)` as a Ray task (a consolidation job): on a GPU when asked for and the
    cluster has one, else on a CPU. Returns the ObjectRef; `ray.get` it for the result."""
    connect()
    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    return ray.remote(num_gpus=1 if gpu and has_gpu else 0)(fn).remote(*args)


# --------------------------------------------------------------------------- planner actor


@dataclass
class _Request:
    messages: list
    done: threading.Event
    answer: tuple[str, int, int] | None = None
    error: BaseException | None = None


class _Batcher:
    """Gathers `complete(messages)` calls that arrive together into one batched call.

    Runs in a threaded actor: each caller waits on its own event; the first caller of a round
    waits `window_s` for company, then (one model call at a time) answers everyone pending.
    """

    def __init__(self, complete_batch: Callable[[list], list], window_s: float = BATCH_WINDOW_S):
        self.complete_batch = complete_batch
        self.window_s = window_s
        self.pending: list[_Request] = []
        self.lock = threading.Lock()  # guards `pending`
        self.model_lock = threading.Lock()  # one generate at a time on the model
        self.sizes: list[int] = []  # batch sizes served, for tests and tuning

    def complete(self, messages: list) -> tuple[str, int, int]:
        request = _Request(messages, threading.Event())
        with self.lock:
            self.pending.append(request)
            leader = len(self.pending) == 1
        if leader:
            time.sleep(self.window_s)
            with self.model_lock:
                with self.lock:
                    batch, self.pending = self.pending, []
                self._serve(batch)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.answer

    def _serve(self, batch: list[_Request]) -> None:
        self.sizes.append(len(batch))
        try:
            answers = self.complete_batch([r.messages for r in batch])
            for request, answer in zip(batch, answers):
                request.answer = answer
        except BaseException as e:  # every waiter gets the error, none hangs
            for request in batch:
                request.error = e
        finally:
            for request in batch:
                request.done.set()


def hf_complete_batch(planner, batch: list) -> list[tuple[str, int, int]]:
    """One left-padded `generate` for several prompts of an `HFPlanner`; one prompt goes
    through the planner's own `complete`, so a lone request is answered exactly as in-process."""
    if len(batch) == 1:
        return [planner.complete(batch[0])]
    import torch

    from agent.llm_planner import LLMCallError

    tok, model, opts = planner.tokenizer, planner.model, planner.options
    tok.padding_side = "left"  # decoder-only models continue from the right end
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    enc = tok([planner.prompt_text(m) for m in batch], return_tensors="pt", padding=True,
              add_special_tokens=False).to(model.device)
    width = enc["input_ids"].shape[1]
    kwargs = dict(max_new_tokens=opts.max_new_tokens, do_sample=opts.temperature > 0,
                  pad_token_id=tok.pad_token_id)
    if opts.temperature > 0:
        kwargs.update(temperature=opts.temperature, top_p=opts.top_p)
    try:
        with torch.no_grad():
            out = model.generate(**enc, **kwargs)  # (batch, width + new tokens)
    except (RuntimeError, ValueError) as e:
        raise LLMCallError(f"generation failed: {str(e).splitlines()[0] if str(e) else e!r}") from None
    new = out[:, width:]  # (batch, new tokens)
    prompt_lens = enc["attention_mask"].sum(dim=1)  # (batch,)
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else eos if isinstance(eos, list) else [eos]
    ended = torch.isin(new, torch.tensor(eos, dtype=new.dtype, device=new.device))
    # a row's answer ends at its first eos; after it generate only pads (batch,)
    new_lens = torch.where(ended.any(dim=1), ended.int().argmax(dim=1) + 1, new.shape[1])
    texts = tok.batch_decode(new, skip_special_tokens=True)
    return [(t, int(p), int(n)) for t, p, n in zip(texts, prompt_lens, new_lens)]


class PlannerActor:
    """The one LLM planner of a pool; runners call `plan` concurrently (a threaded actor)."""

    def __init__(self, spec, catalog):
        from agent.llm_planner import HFPlanner
        from agent.llm_planner import make_planner

        self.planner = make_planner(spec.planner, catalog, options=spec.llm)
        self.batcher = None
        if isinstance(self.planner, HFPlanner):
            self.batcher = _Batcher(lambda batch: hf_complete_batch(self.planner, batch))
            self.planner.complete = self.batcher.complete  # plan()'s retry loop stays the planner's
        # openai: the server batches (vLLM, TGI); concurrent threads are enough here.

    def name(self) -> str:
        return self.planner.name

    def plan(self, ctx):
        return self.planner.plan(ctx)

    def batch_sizes(self) -> list[int]:
        return list(self.batcher.sizes) if self.batcher else []


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
        from agent.llm_planner import make_planner
        from envs import make_env as make_game
        from memory.store import Store

        env = (make_env or make_game)(spec.env)
        if planner is None:  # symbolic: plan here, see the module docstring
            planner = make_planner(spec.planner, env.catalog, options=spec.llm)
        else:
            planner = RemotePlanner(planner, ray.get(planner.name.remote()))
        from agent.memory_modes import MemoryFastPath
        from memory.db import data_home

        self.store = Store.open(db_url)
        self.runner = Runner(env, planner, self.store)
        # The experts' files must be where every node can read them (shared storage).
        self.memory = MemoryFastPath(spec.memory, self.store, env, data_home() / "models")
        self.node_id = ray.get_runtime_context().get_node_id()
        self.registry_version: int | None = None

    def ready(self) -> str:
        return self.node_id

    def refresh(self, registry_version: int) -> None:
        """Records the registry version the driver saw; the runner itself checks the registry
        at the start of every episode (`MemoryFastPath.refresh`) and reloads on a change."""
        self.registry_version = registry_version

    def run_episode(self, task, seed: int, run_id: int) -> tuple[EpisodeResult, str]:
        self.runner.run_id = run_id
        self.runner.arbiter = self.memory.refresh()  # newly promoted experts, from this episode on
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

    def refresh(self, registry_version: int) -> None:
        ray.get([a.refresh.remote(registry_version) for a in self.actors])

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
