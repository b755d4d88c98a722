"""The SQL schema of the store as SQLAlchemy 2 ORM models, one class per table.

Kept apart from `memory/store.py` (the operations) so each file reads top to bottom; the
migration `memory/migrations/versions/0001_initial.py` mirrors it and a test proves they agree.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, CheckConstraint, DateTime, ForeignKey, Integer, LargeBinary,
                        MetaData, String, Text, TypeDecorator, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from memory.columns import OUTCOMES, PATHS

# failed: crashed, see `error`; interrupted: stopped from outside (Ctrl-C, SIGTERM, its process
# killed), its committed segments kept
EPISODE_STATUSES = ("running", "success", "failure", "failed", "interrupted")

def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC on both backends: SQLite keeps no offset, so we re-attach it."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value}: pass a timezone-aware one")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


# Named constraints, so later migrations can drop or alter them (SQLite batch mode needs names).
NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s",
          "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
          "pk": "pk_%(table_name)s"}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict: JSON()}


def counter():
    return mapped_column(default=0, server_default="0")


class Skill(Base):
    """A catalog skill and its running statistics, updated with every committed segment."""

    __tablename__ = "skills"
    __table_args__ = (UniqueConstraint("game", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    game: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = counter()
    successes: Mapped[int] = counter()
    slow_attempts: Mapped[int] = counter()
    slow_successes: Mapped[int] = counter()
    fast_attempts: Mapped[int] = counter()
    fast_successes: Mapped[int] = counter()
    total_steps: Mapped[int] = counter()
    total_wall_s: Mapped[float] = counter()  # executor or fast path, plus the planner's seconds
    planner_calls: Mapped[int] = counter()  # slow-planner calls that chose this skill
    total_planner_s: Mapped[float] = counter()
    last_used_at: Mapped[datetime | None]
    # Worthiness factors (DESIGN.md "Methods"), each stored so the dashboard can explain it.
    worthiness: Mapped[float | None]
    cost_saving: Mapped[float | None]
    stability: Mapped[float | None]
    redundancy: Mapped[float | None]
    interference: Mapped[float | None]
    status: Mapped[str] = mapped_column(String(16), default="novel", server_default="novel")


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    env: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(128))
    planner: Mapped[str] = mapped_column(String(256))
    memory_mode: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    # Which process plays the run: a `running` run whose process is gone is swept to
    # `interrupted` (memory/runs.py).
    owner_host: Mapped[str | None] = mapped_column(String(255))
    owner_pid: Mapped[int | None]


class Episode(Base):
    __tablename__ = "episodes"
    __table_args__ = (CheckConstraint(f"status IN {EPISODE_STATUSES}", name="status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    env: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(128))
    seed: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    steps: Mapped[int] = counter()
    reward: Mapped[float] = counter()
    achievements: Mapped[dict | None]
    error: Mapped[str | None] = mapped_column(Text)
    planner_calls: Mapped[int] = counter()
    planner_tokens: Mapped[int] = counter()
    planner_latency_s: Mapped[float] = counter()
    fast_steps: Mapped[int] = counter()
    slow_steps: Mapped[int] = counter()
    # What the episode cost, where it was paid: the LLM's tokens each way, the deliberate
    # executor's and the fast path's decision seconds, the whole episode's wall seconds, and the
    # subgoals the memory chose instead of the planner (and the planner answers replaced by the
    # symbolic plan because they were unusable).
    planner_tokens_in: Mapped[int] = counter()
    planner_tokens_out: Mapped[int] = counter()
    memory_decisions: Mapped[int] = counter()
    planner_fallbacks: Mapped[int] = counter()
    executor_s: Mapped[float] = counter()
    fast_s: Mapped[float] = counter()
    wall_s: Mapped[float] = counter()
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class Segment(Base):
    """One subgoal attempt: which skill, which path, how it ended, and its steps (compressed)."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("episode_id", "index"),
                      CheckConstraint(f"path IN {PATHS}", name="path"),
                      CheckConstraint(f"outcome IN {OUTCOMES}", name="outcome"))
    id: Mapped[int] = mapped_column(primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"),
                                            index=True)
    index: Mapped[int]
    skill: Mapped[str] = mapped_column(String(128), index=True)
    category: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(8))
    outcome: Mapped[str] = mapped_column(String(16))
    start_step: Mapped[int]
    steps: Mapped[int]
    wall_s: Mapped[float]
    planner_calls: Mapped[int] = counter()
    planner_tokens: Mapped[int] = counter()
    planner_s: Mapped[float] = counter()  # the planner's seconds for the decision that chose this subgoal
    # Who chose this subgoal (memory.columns.DECIDERS) and what the agent saw when it did: the
    # plan-level memory learns "which subgoal next" from these.
    decided_by: Mapped[str] = mapped_column(String(16), default="planner", server_default="planner")
    context: Mapped[dict | None]
    # The fast-path failure this slow-path segment took over from (a failure-correction pair).
    corrects_segment_id: Mapped[int | None] = mapped_column(
        ForeignKey("segments.id", ondelete="SET NULL"))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class Expert(Base):
    __tablename__ = "experts"
    id: Mapped[int] = mapped_column(primary_key=True)
    # action: how to act on a subgoal (the policy's experts); plan: which subgoal next
    kind: Mapped[str] = mapped_column(String(16), default="action", server_default="action")
    game: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    skill: Mapped[str | None] = mapped_column(String(128))
    routing: Mapped[str] = mapped_column(String(16))  # category | topk | moram | lora
    rank: Mapped[int]
    version: Mapped[int]
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    # The sha256 of the frozen base's weights the expert was trained on: it is refused on any
    # other base (None: registered before this was recorded).
    base_sha256: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), index=True)  # candidate|promoted|...
    metrics: Mapped[dict | None]
    created_at: Mapped[datetime]
    promoted_at: Mapped[datetime | None]


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="action", server_default="action")  # as Expert.kind
    game: Mapped[str] = mapped_column(String(64))
    skill: Mapped[str | None] = mapped_column(String(128))
    category: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|evaluating|...
    worker: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    attempts: Mapped[int] = counter()
    error: Mapped[str | None] = mapped_column(Text)
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("experts.id", ondelete="SET NULL"))
    metrics: Mapped[dict | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Evaluation(Base):
    """A skill's measured success under one registry version: the forgetting curve's points."""

    __tablename__ = "evaluations"
    id: Mapped[int] = mapped_column(primary_key=True)
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("experts.id", ondelete="SET NULL"))
    skill: Mapped[str] = mapped_column(String(128), index=True)
    episodes: Mapped[int]
    successes: Mapped[int]
    success_rate: Mapped[float]
    registry_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
