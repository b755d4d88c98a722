"""The SQL store: the one door through which runs, episodes, segments and skill statistics
are written and read, on SQLite (embedded default) or PostgreSQL.

Alembic (memory/migrations) creates and upgrades the schema (memory/tables.py) when a `Store`
opens. Step arrays ride along each segment as a compressed .npz blob, so a crash loses at most
the segment in progress.
"""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator

import numpy as np
from sqlalchemy import Engine, func, inspect, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from memory.columns import DECIDERS, OUTCOMES, PATHS, STEP_KEYS
from memory.db import StoreError, db_failure, masked, open_engine
from memory.runs import owner
from memory.tables import (EPISODE_STATUSES, Base, Episode, Evaluation, Expert, Job, Run,
                           Segment, Skill, utcnow)

__all__ = ["Store", "SegmentRecord", "SkillRow", "EpisodeRow", "SegmentRow", "StoreError",
           "Base", "Skill", "Run", "Episode", "Segment", "Expert", "Job", "Evaluation"]

MIGRATIONS = Path(__file__).parent / "migrations"
RUN_STATUSES = ("running", "finished", "failed", "interrupted")
# What `finish_episode` records of an episode's cost (memory/tables.py, Episode).
EPISODE_COSTS = ("planner_calls", "planner_tokens", "planner_tokens_in", "planner_tokens_out",
                 "planner_latency_s", "memory_decisions", "planner_fallbacks", "executor_s",
                 "fast_s", "wall_s")
MIGRATION_LOCK = 0x7065616D  # "peam": serialises concurrent first opens on PostgreSQL
# Alembic runs env.py through a process-wide `context` proxy: two threads migrating at once (two
# stores opened in one process) swap each other's connection, and SQLite then crashes the process.
_MIGRATING = threading.Lock()


@dataclass
class SegmentRecord:
    """What the runner hands over when a segment ends; `data` holds STEP_KEYS arrays of length
    `steps` (one row per step the segment took)."""

    skill: str
    category: str
    path: str
    outcome: str
    start_step: int
    steps: int
    wall_s: float
    planner_calls: int = 0
    corrects_segment_id: int | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)
    planner_s: float = 0.0  # the planner's seconds for the decision that chose this subgoal
    planner_tokens: int = 0
    decided_by: str = "planner"  # memory.columns.DECIDERS
    context: dict | None = None  # the agent-visible decision context (JSON-able)

    def __post_init__(self):
        # A wrong value here is a bug in the caller, not a user error: ValueError, not StoreError.
        if self.decided_by not in DECIDERS:
            raise ValueError(f"segment decided_by {self.decided_by!r} not in {DECIDERS}")
        if self.path not in PATHS:
            raise ValueError(f"segment path {self.path!r} not in {PATHS}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"segment outcome {self.outcome!r} not in {OUTCOMES}")
        for key, array in self.data.items():
            if key not in STEP_KEYS:
                raise ValueError(f"segment data key {key!r} not in {STEP_KEYS}")
            if np.asarray(array).dtype.hasobject or len(array) != self.steps:
                raise ValueError(f"segment data {key!r}: want a numeric array of length "
                                 f"{self.steps}, got {np.asarray(array).dtype} of {len(array)}")


def encode_steps(data: dict[str, np.ndarray]) -> bytes | None:
    """Step arrays as a compressed .npz (no pickle: any reader may load it safely)."""
    if not data:
        return None
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **{k: np.asarray(v) for k, v in data.items()})
    return buffer.getvalue()


def decode_steps(blob: bytes | None) -> dict[str, np.ndarray]:
    if not blob:
        return {}
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _rate(successes: int, attempts: int) -> float | None:
    return successes / attempts if attempts else None


@dataclass(frozen=True)
class SkillRow:
    game: str
    name: str
    category: str
    status: str
    attempts: int
    successes: int
    success_rate: float | None  # None until attempted
    slow_attempts: int
    slow_success_rate: float | None
    fast_attempts: int
    fast_success_rate: float | None
    mean_steps: float | None
    last_used_at: datetime | None
    worthiness: float | None

    @classmethod
    def of(cls, s: Skill) -> SkillRow:
        return cls(s.game, s.name, s.category, s.status, s.attempts, s.successes,
                   _rate(s.successes, s.attempts), s.slow_attempts,
                   _rate(s.slow_successes, s.slow_attempts), s.fast_attempts,
                   _rate(s.fast_successes, s.fast_attempts),
                   s.total_steps / s.attempts if s.attempts else None, s.last_used_at,
                   s.worthiness)


def _row(row_type, obj):
    """A plain dataclass copy of an ORM row, so callers never hold a live Session object."""
    return row_type(**{name: getattr(obj, name) for name in row_type.__dataclass_fields__})


@dataclass(frozen=True)
class EpisodeRow:
    id: int
    run_id: int
    env: str
    task: str
    seed: int
    status: str
    steps: int
    reward: float
    achievements: dict | None
    error: str | None
    planner_calls: int
    planner_tokens: int
    planner_latency_s: float
    fast_steps: int
    slow_steps: int
    planner_tokens_in: int
    planner_tokens_out: int
    memory_decisions: int
    planner_fallbacks: int
    executor_s: float
    fast_s: float
    wall_s: float
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class SegmentRow:
    id: int
    episode_id: int
    index: int
    skill: str
    category: str
    path: str
    outcome: str
    start_step: int
    steps: int
    wall_s: float
    planner_calls: int
    corrects_segment_id: int | None
    created_at: datetime
    planner_s: float = 0.0
    planner_tokens: int = 0
    decided_by: str = "planner"
    context: dict | None = None

    @property
    def cost_s(self) -> float:
        """What the segment cost in seconds: acting, plus the planner's decision that chose it."""
        return self.wall_s + self.planner_s


def migrate(engine: Engine, *, create: bool = True) -> None:
    """Bring the schema to Alembic head in one transaction (nothing half-made on failure)."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()  # no alembic.ini: nothing touches the application's logging
    config.set_main_option("script_location", str(MIGRATIONS))
    with _MIGRATING, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        tables = set(inspect(conn).get_table_names())
        if not create and "alembic_version" not in tables:
            raise StoreError(f"no peam store at {masked(engine.url)}: run `peam run` first, "
                             f"or point --db / PEAM_DB at an existing one")
        if tables and "alembic_version" not in tables:  # never write into another program's
            raise StoreError(f"{masked(engine.url)} holds tables of another program "
                             f"({', '.join(sorted(tables)[:5])}): peam writes only to its own "
                             f"stores; use an empty database or schema, or another --db / PEAM_DB")
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, "head")
        except CommandError as e:
            raise StoreError(f"cannot migrate {masked(engine.url)} ({e}): the database may "
                             f"come from a newer peam; upgrade peam or use another --db") from None
        except DBAPIError as e:  # e.g. no CREATE right on the schema, a read-only file
            if engine.url.get_backend_name() == "sqlite":  # no server, no grant: a file's remedy
                raise StoreError(db_failure(e, engine.url)) from None
            reason = str(e.orig).strip().splitlines()[0] if e.orig else type(e).__name__
            raise StoreError(f"cannot create the tables in {masked(engine.url)} ({reason}): "
                             f"grant write access or use another --db / PEAM_DB") from None
        missing = set(Base.metadata.tables) - set(inspect(conn).get_table_names())
        if missing:  # at head, yet a table is gone: changed outside peam, no upgrade restores it
            raise StoreError(f"{masked(engine.url)} lacks peam's tables {', '.join(sorted(missing))}"
                             f" (changed outside peam): restore it from a backup, or use another "
                             f"--db / PEAM_DB")


class Store:
    """The one door to the database: short transactions, plain dataclass rows out."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.url = masked(engine.url)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str | None = None, *, create: bool = True) -> Store:
        """Open (and with `create`, make) the store at `url` / $PEAM_DB / $PEAM_HOME/peam.db,
        migrated to the current schema."""
        engine = open_engine(url, create=create)
        try:
            migrate(engine, create=create)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def sync_skills(self, catalog) -> None:
        """One row per catalog skill; statistics of known skills are kept."""
        with self.session() as s:
            known = {k.name: k for k in s.scalars(select(Skill).where(Skill.game == catalog.game))}
            for skill in catalog:
                row = known.get(skill.name)
                if row is None:
                    s.add(Skill(game=catalog.game, name=skill.name, category=skill.category))
                elif row.category != skill.category:
                    row.category = skill.category

    def start_run(self, *, env: str, task: str, planner: str, memory_mode: str,
                  config: dict) -> int:
        with self.session() as s:  # `owner`: a run its process leaves behind is swept later
            run = Run(env=env, task=task, planner=planner, memory_mode=memory_mode,
                      config=config, started_at=utcnow(), status="running", **owner())
            s.add(run)
            s.flush()
            return run.id

    def finish_run(self, run_id: int, status: str) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"run status {status!r} not in {RUN_STATUSES}")
        with self.session() as s:
            run = _get(s, Run, run_id)
            run.status, run.finished_at = status, utcnow()

    def start_episode(self, run_id: int, *, env: str, task: str, seed: int) -> int:
        with self.session() as s:
            episode = Episode(run_id=run_id, env=env, task=task, seed=seed, status="running",
                              started_at=utcnow())
            s.add(episode)
            s.flush()
            return episode.id

    def add_segment(self, episode_id: int, seg: SegmentRecord) -> int:
        """Commit one segment and count it in its skill's statistics, in ONE transaction.

        The skill's game is the episode's env (the catalog's `game`). Counters are updated by
        SQL expressions (`attempts = attempts + 1`), so concurrent runners lose no update.
        """
        blob = encode_steps(seg.data)  # compress before the transaction: keep locks short
        now = utcnow()
        with self.session() as s:
            episode = _get(s, Episode, episode_id)
            index = s.scalar(select(func.count()).where(Segment.episode_id == episode_id))
            self._count_attempt(s, episode.env, seg, now)
            steps_column = Episode.fast_steps if seg.path == "fast" else Episode.slow_steps
            s.execute(update(Episode).where(Episode.id == episode_id)
                      .values({steps_column: steps_column + seg.steps}))
            segment = Segment(episode_id=episode_id, index=index, skill=seg.skill,
                              category=seg.category, path=seg.path, outcome=seg.outcome,
                              start_step=seg.start_step, steps=seg.steps, wall_s=seg.wall_s,
                              planner_calls=seg.planner_calls, planner_s=seg.planner_s,
                              planner_tokens=seg.planner_tokens, decided_by=seg.decided_by,
                              context=seg.context,
                              corrects_segment_id=seg.corrects_segment_id, data=blob,
                              created_at=now)
            s.add(segment)
            s.flush()
            return segment.id

    @staticmethod
    def _count_attempt(s: Session, game: str, seg: SegmentRecord, now: datetime) -> None:
        won = int(seg.outcome == "success")
        side = "slow" if seg.path == "slow" else "fast"
        counts = {"attempts": 1, "successes": won, f"{side}_attempts": 1,
                  f"{side}_successes": won, "total_steps": seg.steps,
                  "total_wall_s": seg.wall_s + seg.planner_s, "planner_calls": seg.planner_calls,
                  "total_planner_s": seg.planner_s}
        done = s.execute(
            update(Skill).where(Skill.game == game, Skill.name == seg.skill)
            .values({getattr(Skill, k): getattr(Skill, k) + v for k, v in counts.items()}
                    | {Skill.last_used_at: now}))
        if done.rowcount == 0:  # a skill the catalog sync did not know: start its row now
            s.add(Skill(game=game, name=seg.skill, category=seg.category, last_used_at=now,
                        **counts))
            s.flush()

    def finish_episode(self, episode_id: int, *, status: str, steps: int, reward: float,
                       achievements: dict, error: str | None = None, **costs) -> None:
        """`costs`: the episode's planner and compute counters (`EPISODE_COSTS`)."""
        if status not in EPISODE_STATUSES[1:]:
            raise ValueError(f"episode status {status!r} not in {EPISODE_STATUSES[1:]}")
        unknown = set(costs) - set(EPISODE_COSTS)
        if unknown:
            raise ValueError(f"unknown episode counters {sorted(unknown)}; known: {EPISODE_COSTS}")
        with self.session() as s:
            episode = _get(s, Episode, episode_id)
            episode.status, episode.steps, episode.reward = status, steps, reward
            episode.achievements, episode.error = achievements, error
            for name, value in costs.items():
                setattr(episode, name, value)
            episode.finished_at = utcnow()

    def fail_running_episodes(self, run_id: int, error: str) -> int:
        """Mark a crashed run's unfinished episodes `failed` (never silently dropped)."""
        with self.session() as s:
            done = s.execute(update(Episode)
                             .where(Episode.run_id == run_id, Episode.status == "running")
                             .values(status="failed", error=error, finished_at=utcnow()))
            return done.rowcount

    def skill_table(self, game: str | None = None) -> list[SkillRow]:
        query = select(Skill).order_by(Skill.game, Skill.id)
        if game is not None:
            query = query.where(Skill.game == game)
        with self.session() as s:
            return [SkillRow.of(k) for k in s.scalars(query)]

    def path_costs(self, game: str) -> dict[str, dict[str, tuple[int, float, float]]]:
        """{skill: {path: (attempts, mean steps, mean seconds)}} over the game's segments that
        reached a verdict (interrupted ones are no measure of a path), seconds without the
        planner's: what acting on the skill costs each path (the arbiter's cost rule)."""
        query = (select(Segment.skill, Segment.path, func.count(Segment.id), func.avg(Segment.steps),
                        func.avg(Segment.wall_s))
                 .join(Episode, Episode.id == Segment.episode_id)
                 .where(Episode.env == game, Segment.outcome != "interrupted")
                 .group_by(Segment.skill, Segment.path))
        out: dict[str, dict[str, tuple[int, float, float]]] = {}
        with self.session() as s:
            for skill, path, n, steps, seconds in s.execute(query):
                out.setdefault(skill, {})[path] = (int(n), float(steps), float(seconds))
        return out

    def mean_steps(self, game: str) -> dict[str, float]:
        """Each skill's mean steps per attempt where it has any: the arbiter's fast budgets."""
        return {r.name: r.mean_steps for r in self.skill_table(game) if r.mean_steps}

    def episodes(self, run_id: int | None = None, limit: int = 100) -> list[EpisodeRow]:
        """Newest first."""
        query = select(Episode).order_by(Episode.id.desc()).limit(limit)
        if run_id is not None:
            query = query.where(Episode.run_id == run_id)
        with self.session() as s:
            return [_row(EpisodeRow, e) for e in s.scalars(query)]

    def segments(self, *, skill: str | None = None, category: str | None = None,
                 path: str | None = None, outcome: str | None = None, limit: int | None = None,
                 episode_id: int | None = None, game: str | None = None) -> list[SegmentRow]:
        """Segments in commit order, without their step data (see `load_steps`)."""
        columns = [getattr(Segment, name) for name in SegmentRow.__dataclass_fields__]
        query = _where_segments(select(*columns).order_by(Segment.id).limit(limit), skill=skill,
                                category=category, path=path, outcome=outcome,
                                episode_id=episode_id, game=game)
        with self.session() as s:
            return [SegmentRow(*r) for r in s.execute(query)]

    def segment_count(self, **where) -> int:
        """How many segments match (the keywords of `segments`), counted by the database."""
        with self.session() as s:
            return int(s.scalar(_where_segments(select(func.count(Segment.id)), **where)))

    def load_steps(self, segment_id: int) -> dict[str, np.ndarray]:
        with self.session() as s:
            blob = s.scalar(select(Segment.data).where(Segment.id == segment_id))
            if blob is None and s.get(Segment, segment_id) is None:
                raise KeyError(f"no segment {segment_id}")
        return decode_steps(blob)


def _where_segments(query, *, skill=None, category=None, path=None, outcome=None, episode_id=None,
                    game=None):
    wanted = {Segment.skill: skill, Segment.category: category, Segment.path: path,
              Segment.outcome: outcome, Segment.episode_id: episode_id}
    query = query.where(*(col == v for col, v in wanted.items() if v is not None))
    if game is not None:
        query = query.join(Episode, Episode.id == Segment.episode_id).where(Episode.env == game)
    return query


def _get(s: Session, model, row_id: int):
    row = s.get(model, row_id)
    if row is None:  # a caller passing an id it never got from us: a bug, hence KeyError
        raise KeyError(f"no {model.__tablename__[:-1]} {row_id}")
    return row
