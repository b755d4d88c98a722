"""Who owns a run, and episodes stopped from outside.

- runs: `owner_host` and `owner_pid`, the process playing the run, so a run left `running` by a
  process that was killed (SIGKILL, a lost machine) is swept to `interrupted` (memory/runs.py).
- episodes: the status `interrupted` (Ctrl-C, SIGTERM, its process gone), apart from `failed`
  (the episode crashed).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD = "status IN ('running', 'success', 'failure', 'failed')"
NEW = "status IN ('running', 'success', 'failure', 'failed', 'interrupted')"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner_host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("owner_pid", sa.Integer(), nullable=True))
    with op.batch_alter_table("episodes") as batch:
        batch.drop_constraint("ck_episodes_status", type_="check")
        batch.create_check_constraint("ck_episodes_status", NEW)


def downgrade() -> None:
    with op.batch_alter_table("episodes") as batch:
        batch.drop_constraint("ck_episodes_status", type_="check")
        batch.create_check_constraint("ck_episodes_status", OLD)
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("owner_pid")
        batch.drop_column("owner_host")
