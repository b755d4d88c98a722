"""What the slow planner costs, who decided each subgoal, and plan-level experts.

- segments: `decided_by` (planner, cursor, memory, reflex, fallback), the agent-visible
  `context` the decision was made in (JSON), and the planner's `planner_s` / `planner_tokens`
  spent on it, so a segment's cost counts the planner (issue "Memory that saves the slow path").
- episodes: LLM tokens in and out, executor / fast-path seconds, wall seconds, and how many
  subgoals the memory chose instead of the planner.
- skills: planner calls and seconds, next to their executor statistics.
- experts and jobs: `kind` (action: how to act on a subgoal; plan: which subgoal next).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def counter(name: str, type_=sa.Integer) -> sa.Column:
    return sa.Column(name, type_(), nullable=False, server_default="0")


def upgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("decided_by", sa.String(16), nullable=False, server_default="planner"))
        batch.add_column(sa.Column("context", sa.JSON(), nullable=True))
        batch.add_column(counter("planner_tokens"))
        batch.add_column(counter("planner_s", sa.Double))
    with op.batch_alter_table("episodes") as batch:
        for name in ("planner_tokens_in", "planner_tokens_out", "memory_decisions", "planner_fallbacks"):
            batch.add_column(counter(name))
        for name in ("executor_s", "fast_s", "wall_s"):
            batch.add_column(counter(name, sa.Double))
    with op.batch_alter_table("skills") as batch:
        batch.add_column(counter("planner_calls"))
        batch.add_column(counter("total_planner_s", sa.Double))
    for table in ("experts", "jobs"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="action"))


def downgrade() -> None:
    for table in ("experts", "jobs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("kind")
    with op.batch_alter_table("skills") as batch:
        batch.drop_column("total_planner_s")
        batch.drop_column("planner_calls")
    with op.batch_alter_table("episodes") as batch:
        for name in ("wall_s", "fast_s", "executor_s", "planner_fallbacks", "memory_decisions",
                     "planner_tokens_out", "planner_tokens_in"):
            batch.drop_column(name)
    with op.batch_alter_table("segments") as batch:
        for name in ("planner_s", "planner_tokens", "context", "decided_by"):
            batch.drop_column(name)
