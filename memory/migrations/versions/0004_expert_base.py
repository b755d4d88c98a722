"""experts.base_sha256: the digest of the frozen base an expert was trained on, so an expert is
never loaded on another base (issue 19, item 4). NULL for experts registered before.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("experts") as batch:
        batch.add_column(sa.Column("base_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experts") as batch:
        batch.drop_column("base_sha256")
