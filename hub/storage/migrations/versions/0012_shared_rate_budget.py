"""Rate budgets shared by every process (issue 15).

The PostgreSQL-backed budget used when no Redis is configured
(hub.engine.shared_budget): one row per budget name with the send times of
its rolling window (or a token bucket's theoretical arrival time) and the
time a 429 blocks every sharer until.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 06:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_budget",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sent", sa.JSON(), nullable=False),
        sa.Column("blocked_until", sa.Float(), nullable=False),
        sa.Column("tat", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rate_budget")),
    )


def downgrade() -> None:
    op.drop_table("rate_budget")
