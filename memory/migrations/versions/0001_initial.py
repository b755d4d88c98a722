"""The initial schema: skills, runs, episodes, segments, experts, jobs, evaluations.

Written by hand to mirror memory/tables.py; tests/test_store.py proves with Alembic's
`compare_metadata` that the two agree on SQLite and PostgreSQL. Values are spelled out rather
than imported, because a migration must not change when the code moves on.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def counter(name: str, type_=sa.Integer) -> sa.Column:
    return sa.Column(name, type_(), nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "skills",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("game", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        *(counter(c) for c in ("attempts", "successes", "slow_attempts", "slow_successes",
                               "fast_attempts", "fast_successes", "total_steps")),
        counter("total_wall_s", sa.Double),
        sa.Column("last_used_at", UTC, nullable=True),
        *(sa.Column(c, sa.Double(), nullable=True)
          for c in ("worthiness", "cost_saving", "stability", "redundancy", "interference")),
        sa.Column("status", sa.String(16), nullable=False, server_default="novel"),
        sa.PrimaryKeyConstraint("id", name="pk_skills"),
        sa.UniqueConstraint("game", "name", name="uq_skills_game"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("env", sa.String(64), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("planner", sa.String(256), nullable=False),
        sa.Column("memory_mode", sa.String(32), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_table(
        "episodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("env", sa.String(64), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        counter("steps"),
        counter("reward", sa.Double),
        sa.Column("achievements", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        counter("planner_calls"),
        counter("planner_tokens"),
        counter("planner_latency_s", sa.Double),
        counter("fast_steps"),
        counter("slow_steps"),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_episodes"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_episodes_run_id_runs",
                                ondelete="CASCADE"),
        sa.CheckConstraint("status IN ('running', 'success', 'failure', 'failed')",
                           name="ck_episodes_status"),
    )
    op.create_index("ix_episodes_run_id", "episodes", ["run_id"])
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("skill", sa.String(128), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("path", sa.String(8), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("start_step", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("wall_s", sa.Double(), nullable=False),
        counter("planner_calls"),
        sa.Column("corrects_segment_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"],
                                name="fk_segments_episode_id_episodes", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["corrects_segment_id"], ["segments.id"],
                                name="fk_segments_corrects_segment_id_segments",
                                ondelete="SET NULL"),
        sa.UniqueConstraint("episode_id", "index", name="uq_segments_episode_id"),
        sa.CheckConstraint("path IN ('slow', 'fast')", name="ck_segments_path"),
        sa.CheckConstraint("outcome IN ('success', 'failure', 'timeout', 'interrupted')",
                           name="ck_segments_outcome"),
    )
    op.create_index("ix_segments_episode_id", "segments", ["episode_id"])
    op.create_index("ix_segments_skill", "segments", ["skill"])
    op.create_table(
        "experts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("game", sa.String(64), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("skill", sa.String(128), nullable=True),
        sa.Column("routing", sa.String(16), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("params", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("promoted_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_experts"),
    )
    op.create_index("ix_experts_status", "experts", ["status"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("game", sa.String(64), nullable=False),
        sa.Column("skill", sa.String(128), nullable=True),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("lease_until", UTC, nullable=True),
        sa.Column("heartbeat_at", UTC, nullable=True),
        counter("attempts"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("expert_id", sa.Integer(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("finished_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], name="fk_jobs_expert_id_experts",
                                ondelete="SET NULL"),
    )
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("expert_id", sa.Integer(), nullable=True),
        sa.Column("skill", sa.String(128), nullable=False),
        sa.Column("episodes", sa.Integer(), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.Column("success_rate", sa.Double(), nullable=False),
        sa.Column("registry_version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"],
                                name="fk_evaluations_expert_id_experts", ondelete="SET NULL"),
    )
    op.create_index("ix_evaluations_skill", "evaluations", ["skill"])


def downgrade() -> None:
    for table in ("evaluations", "jobs", "experts", "segments", "episodes", "runs", "skills"):
        op.drop_table(table)
